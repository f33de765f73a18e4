"""Where requests go: URL templates, auth headers and name validation. Pure, no I/O.

Names are checked before they are put in a URL path, so that a name can never smuggle in a
query string, a fragment, ``..`` or another host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._capabilities import BINDINGS, allowed, list_path, listable_parents
from ._exceptions import InvalidNameError, UnsupportedError

__all__ = ["VIDEO_MAX_BYTES", "GeminiBackend", "validate_name", "validate_parent"]

# The default cap on one downloaded video: an 8 s Veo clip in 1080p is a few MB, a 4K one some tens.
VIDEO_MAX_BYTES = 200_000_000

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


# Google's resource names are short (a Veo operation's is ~60 characters); a name past this is a
# mistake, and a URL past a few kilobytes is refused by servers and proxies anyway.
MAX_NAME_LENGTH = 1024


def _segments(value: Any, what: str) -> list[str]:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidNameError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} is {len(value):,} characters long; names are at most {MAX_NAME_LENGTH}")
    parts = value.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidNameError(f"{what} {value[:120]!r} has an empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(part):
            raise InvalidNameError(
                f"{what} {value[:120]!r} has a segment with characters outside [A-Za-z0-9._~-]"
            )
    return parts


def validate_name(name: str) -> str:
    """Return ``name`` if it names an operation: ``.../operations/<id>`` or ``batches/<id>``."""
    parts = _segments(name, "operation name")
    is_op = len(parts) >= 2 and parts[-2] == "operations"
    is_batch = len(parts) == 2 and parts[0] == "batches"
    if not (is_op or is_batch):
        raise InvalidNameError(
            f"{name[:120]!r} is not an operation name: expected 'operations/<id>', "
            "'<parent>/operations/<id>' (e.g. 'models/veo-3.0-generate-001/operations/abc') "
            "or 'batches/<id>'"
        )
    return name


def validate_parent(parent: str) -> str:
    """Return ``parent`` if it can hold an operations collection (``models/x``, ``tunedModels/y``)."""
    parts = _segments(parent, "parent")
    if parts[-1] == "operations":
        raise InvalidNameError(
            f"parent {parent!r} should name the resource that holds the operations, "
            f"without '/operations' (e.g. {'/'.join(parts[:-1]) or 'None'!r})"
        )
    return parent


@dataclass(frozen=True)
class GeminiBackend:
    """The Gemini API (generativelanguage): key in the x-goog-api-key header."""

    base_url: str
    api_version: str

    def __post_init__(self) -> None:
        _segments(self.api_version, "api_version")

    @property
    def root(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}"

    def operation_url(self, name: str) -> str:
        return f"{self.root}/{validate_name(name)}"

    def cancel_url(self, name: str) -> str:
        return f"{self.operation_url(name)}:cancel"

    def list_url(self, parent: str | None) -> str:
        """Where ``parent``'s operations are listed ("operations" for the top level). Where the
        version binds no such list: UnsupportedError, naming what can be listed."""
        target = "operations" if parent is None else validate_parent(parent)
        if self.api_version not in BINDINGS:  # a version we have no table for: the usual shape
            return f"{self.root}/{target if parent is None else target + '/operations'}"
        path = list_path(self.api_version, target)
        if path is None:
            what = "top-level list" if parent is None else f"list of {target!r}"
            raise UnsupportedError(
                f"the Gemini API ({self.api_version}) has no {what}; it lists "
                f"{', '.join(listable_parents(self.api_version))} (list_all() with no parent reads them all)"
            )
        return f"{self.root}/{path}"

    def can(self, action: str, name: str) -> bool:
        """Whether the service binds ``action`` for the operation ``name`` (False for a bad name)."""
        try:
            validate_name(name)
        except InvalidNameError:
            return False
        # A version we have no table for (say a future v1alpha): the service will say.
        return self.api_version not in BINDINGS or allowed(self.api_version, action, name)

    @staticmethod
    def list_params(page_size: int | None, page_token: str | None, filter: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if page_size is not None:
            if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
                raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
            params["pageSize"] = str(page_size)
        if page_token:
            params["pageToken"] = page_token
        if filter:
            params["filter"] = filter
        return params

    def keyed(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the key: only on this service's own origin
        (scheme, host and port of base_url), never to a host a response or redirect names."""
        own = _origin(self.base_url)
        return own is not None and _origin(url) == own

    def media_url(self, uri: str) -> str:
        """A video URI from a response, checked before anything is sent with the key: only one on
        this service's origin is fetched. A gs:// URI (Vertex AI writes videos to Cloud Storage)
        or another host: UnsupportedError that says what to do instead."""
        if not isinstance(uri, str) or not uri:
            raise UnsupportedError("the response names no video URI")
        if uri.startswith("gs://"):
            raise UnsupportedError(
                f"{uri[:300]} is in Cloud Storage: download it with Google Cloud credentials "
                "(gcloud storage cp, or google-cloud-storage); the API key cannot read it")
        if not self.keyed(uri):
            raise UnsupportedError(
                f"{uri[:300]} is not on {self.base_url}: it is not fetched with this client's key")
        return uri

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None for anything else (or a URL with a user)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)
