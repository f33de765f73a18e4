"""The errors ops_widgets raises.

Hierarchy::

    OpsError
    ├── ApiError                  the service answered with an error status
    │   ├── BadRequestError       400 (INVALID_ARGUMENT, FAILED_PRECONDITION, ...)
    │   ├── AuthenticationError   401; 400 with ErrorInfo API_KEY_INVALID; no key configured
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError         404
    │   ├── RateLimitError        429 (``retry_delay`` from RetryInfo, in seconds)
    │   └── ServerError           5xx
    ├── TransportError            the request never got an answer (httpx errors, mapped)
    ├── TooLargeError             a download bigger than its cap (``limit``; ``size`` when told)
    ├── InvalidNameError          also a ValueError: rejected before any request is sent
    ├── UnsupportedError          the service has no such method for this operation; nothing was sent
    ├── MalformedOperationError   also a ValueError: a body that is not an Operation
    │   └── BrokenAnswerError     a success answer that is not JSON (cut short): retried first
    └── WaitTimeout               also a TimeoutError: ``.operation`` is the last one seen

``ApiError.from_response`` is the one place where an HTTP answer becomes an error.
Messages hold server text and status only, never request headers (where the key lives).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._progress import as_number

if TYPE_CHECKING:
    from ._types import Operation

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "BrokenAnswerError",
    "InvalidNameError",
    "MalformedOperationError",
    "NotFoundError",
    "OpsError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TooLargeError",
    "TransportError",
    "UnsupportedError",
    "WaitTimeout",
]

_EXCERPT = 200  # characters of a non-JSON body kept in the message
_MESSAGE_MAX = 2000  # a server message longer than this is cut: it goes into every traceback
_BODY_MAX = 65536  # bytes of a non-JSON body looked at (a proxy page can be megabytes)
# protobuf Duration's range: a retryDelay beyond it is not a Duration, so it gives no advice.
_MAX_DURATION_SECONDS = 315_576_000_000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class OpsError(Exception):
    """Base class of every error ops_widgets raises."""


class ApiError(OpsError):
    """The service answered with an error. ``status_code`` is the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        status: str | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.status = status
        self.details: list[Any] = details or []

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status_code, self.status) if p is not None)
        return f"{head}: {self.message}" if head else self.message

    @classmethod
    def from_response(cls, status_code: int, body: bytes, content_type: str = "") -> ApiError:
        """Type an error answer from its status and Google error body (or whatever came)."""
        status: str | None = None
        details: list[Any] = []
        message = ""
        try:
            payload = json.loads(body) if body else None
        except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deep
            payload = None
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            # Only text is a message: str() of a number or an object would echo it whole.
            if isinstance(err.get("message"), str):
                message = _cut(err["message"], _MESSAGE_MAX)
            if isinstance(err.get("status"), str):
                status = _cut(err["status"], _EXCERPT)
            details = err["details"] if isinstance(err.get("details"), list) else []
        else:
            # A proxy's HTML page or plain text: keep a short, single-line excerpt.
            text = body[:_BODY_MAX].decode("utf-8", "replace")
            if "html" in content_type.lower() or text.lstrip().startswith("<"):
                # [^<>] rather than [^>]: a body of many "<" and no ">" stays linear, not quadratic.
                text = re.sub(r"<[^<>]*>", " ", text)
            text = " ".join(text.split())
            kind = _cut(" ".join(content_type.split()), 100) or "no content type"
            message = f"non-JSON error body ({kind}): {_cut(text, _EXCERPT)}"
        if not message:
            message = f"HTTP {status_code}"
        kwargs: dict[str, Any] = {"status_code": status_code, "status": status, "details": details}
        if status_code == 400 and _has_reason(details, "API_KEY_INVALID"):
            return AuthenticationError(message + " (check the API key)", **kwargs)
        if status_code == 429:
            return RateLimitError(message, retry_delay=_retry_delay(details), **kwargs)
        error_cls = _BY_STATUS.get(status_code)
        if error_cls is None:
            error_cls = ServerError if status_code >= 500 else ApiError
        return error_cls(message, **kwargs)


class BadRequestError(ApiError):
    """400: the request was not valid."""


class AuthenticationError(ApiError):
    """The API key is missing or not valid."""


class PermissionDeniedError(ApiError):
    """403: the caller may not do this (or sent no credentials at all)."""


class NotFoundError(ApiError):
    """404: no such operation (or it was deleted)."""


class RateLimitError(ApiError):
    """429: quota exhausted. ``retry_delay`` is the server's advice in seconds, or None."""

    def __init__(self, message: str, *, retry_delay: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_delay = retry_delay


class ServerError(ApiError):
    """5xx: the service failed; usually worth retrying."""


class TransportError(OpsError):
    """No answer: connection refused or dropped, timeout, protocol error."""


class TooLargeError(OpsError):
    """A download is bigger than the cap it was given: ``limit`` bytes. ``size`` is the size the
    server announced (Content-Length), or None when it said nothing and the cap was hit reading."""

    def __init__(self, message: str, *, limit: int, size: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.size = size


class InvalidNameError(OpsError, ValueError):
    """An operation name or parent that cannot be right; nothing was sent."""


class UnsupportedError(OpsError):
    """The service binds no such method for this operation (e.g. cancelling a Veo operation on
    the Gemini API, which cancels batches only); nothing was sent."""


class MalformedOperationError(OpsError, ValueError):
    """A JSON body that does not have the shape of an Operation or a list of them."""


class BrokenAnswerError(MalformedOperationError):
    """A success answer whose body is not JSON at all (cut short, or a proxy's page): sent again
    a few times before it is raised, since the next answer is usually whole."""


class WaitTimeout(OpsError, TimeoutError):
    """wait() ran out of time. The operation itself goes on; ``operation`` is the last seen."""

    def __init__(self, message: str, operation: Operation | None = None) -> None:
        super().__init__(message)
        self.operation = operation


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


def _is_detail(detail: Any, type_suffix: str) -> bool:
    """Is this error detail a google.rpc message of that type? ``@type`` may be anything."""
    type_ = detail.get("@type") if isinstance(detail, Mapping) else None
    return isinstance(type_, str) and type_.endswith(type_suffix)


def _has_reason(details: list[Any], reason: str) -> bool:
    return any(_is_detail(d, "google.rpc.ErrorInfo") and d.get("reason") == reason for d in details)


def _retry_delay(details: list[Any]) -> float | None:
    """RetryInfo.retryDelay in seconds, or None when there is none or it is not a Duration.

    It is a protobuf Duration in JSON: "47s", "0.5s"; some proxies send {"seconds": "47", "nanos": 0}.
    """
    for d in details:
        if not _is_detail(d, "google.rpc.RetryInfo"):
            continue
        delay = d.get("retryDelay")
        seconds: float | None = None
        if isinstance(delay, str) and delay.endswith("s"):
            seconds = as_number(delay[:-1])
        elif isinstance(delay, Mapping):
            whole, nanos = as_number(delay.get("seconds", 0)), as_number(delay.get("nanos", 0))
            if whole is not None and nanos is not None:
                seconds = whole + nanos / 1e9
        # None rather than inf or 1e300: whoever waits on this must be able to sleep it.
        if seconds is None or abs(seconds) > _MAX_DURATION_SECONDS:
            return None
        return max(0.0, seconds)
    return None
