"""Google credentials for Vertex AI (I/O): OAuth2 access tokens from google-auth, kept fresh.

``GoogleAuth`` is the Transport's ``Auth`` for a google-auth ``Credentials``: it hands out
``Authorization: Bearer <token>`` per request and refreshes the token

- before it expires, on the client's Clock: the token's lifetime is measured when it arrives
  (``credentials.expiry`` minus now) and counted on the client's clock from when the refresh
  began, so a sped-up or virtual clock is honoured; a refresh starts once 80% of the lifetime has
  passed or 5 minutes before the end, whichever comes first (never before half of it). google-auth's
  own ``valid`` is not used: it calls any token within 3m45s of its expiry stale, so short-lived
  tokens would be refreshed before every request;
- never on the event loop's thread: google-auth's refresh blocks (it signs a JWT and sends a
  request), so it runs in a worker thread (``asyncio.to_thread``);
- once at a time: every request and poller that needs a token meanwhile awaits the same refresh
  (a request with a still-valid token does not wait: it sends the old one while the new one comes);
- once more when the service answers 401 (an expired or revoked token): one refresh, one retry.

The token is held in one ``Secret`` (never in a repr, a log record or an exception message).
Token requests go through google-auth's ``requests`` transport, or, when the client was given
its own httpx transport (an in-process emulator, a recording transport), through that transport,
carried from the worker thread onto the client's loop (``LoopRequest``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from ._clock import Clock, call_on_loop
from ._exceptions import AuthenticationError, OpsError, TransportError
from ._transport import Secret

__all__ = ["CLOUD_PLATFORM", "GoogleAuth", "LoopRequest", "default_credentials", "refresh_plan"]

logger = logging.getLogger("ops_widgets")

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_RETRY_FAILED_REFRESH = 5.0  # seconds before a failed early refresh is tried again (the old token still works)
_REFRESH_TIMEOUT = 60.0  # seconds a token request may take through the client's loop

_REFRESH_HELP = (
    "Check that the credentials are current (a service-account key can be deleted or disabled, a user "
    "login expires: run `gcloud auth application-default login` again) and that their token_uri is "
    "reachable, or pass other credentials=..."
)
_ADC_HELP = (
    "Vertex AI needs Google credentials: run `gcloud auth application-default login` (on a laptop), "
    "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or pass credentials=... "
    "(any google-auth Credentials); express mode takes an API key instead: api_key=..."
)


def refresh_plan(began: float, lifetime: float | None) -> tuple[float, float]:
    """(refresh at, stop using at) on the client's clock for a token whose refresh began at
    ``began`` and that lives ``lifetime`` seconds (None: no expiry given, refresh only when refused).

    Refresh once 80% of the lifetime has passed or 5 minutes before the end, whichever comes
    first, but never before half of it (a 2-minute token is refreshed after a minute). Until the
    new token is in, the old one is sent, but not in its last tenth (at most a minute): a request
    on its way must not arrive after the service's expiry."""
    if lifetime is None:
        return math.inf, math.inf
    lifetime = max(lifetime, 0.0)
    lead = max(0.2 * lifetime, min(300.0, 0.5 * lifetime))
    return began + lifetime - lead, began + lifetime - min(60.0, 0.1 * lifetime)


def default_credentials() -> tuple[Any, str | None]:
    """google.auth.default() with the cloud-platform scope: (credentials, its project or None).
    AuthenticationError saying how to set credentials up when there are none."""
    import google.auth
    from google.auth import exceptions

    try:
        credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
    except exceptions.DefaultCredentialsError as exc:
        raise AuthenticationError(f"no Google credentials found. {_ADC_HELP}") from exc
    return credentials, project or None


class _Answer:
    """What LoopRequest hands google-auth back (google.auth.transport.Response's shape)."""

    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status, self.headers, self.data = status, headers, data


class LoopRequest:
    """A google-auth transport Request that sends through a coroutine on the client's loop: for
    token requests from the refresh's worker thread when the client has its own httpx transport
    (which belongs to the loop). Blocks that worker thread, never the loop."""

    Send = Callable[..., Coroutine[Any, Any, tuple[int, dict[str, str], bytes]]]

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        self._loop, self._send = loop, send

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float | None = None, **kwargs: Any) -> _Answer:
        from google.auth import exceptions

        if isinstance(body, str):
            body = body.encode()
        coro = self._send(method, url, content=body, headers=dict(headers or {}))
        future = call_on_loop(coro, self._loop)  # a VirtualClock's time may move meanwhile
        try:
            return _Answer(*future.result(timeout or _REFRESH_TIMEOUT))
        except Exception as exc:  # google-auth expects its TransportError from a Request
            future.cancel()
            raise exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc  # type: ignore[no-untyped-call]


class GoogleAuth:
    """The Transport's Auth for google-auth credentials: see the module docstring."""

    def __init__(self, credentials: Any, *, clock: Clock,
                 request: Callable[[asyncio.AbstractEventLoop], Any] | None = None) -> None:
        self._credentials = credentials
        self._clock = clock
        self._request = request  # makes google-auth's Request for a refresh (None: requests')
        self._token = Secret("")  # one object, its value replaced: readers of secrets() see the new one
        self._refresh_at = -math.inf
        self._expires_at = -math.inf
        self._refreshing: asyncio.Future[None] | None = None
        self._closed = False
        self._failed_early: float = -math.inf
        self.refreshes = 0  # completed refreshes (for tests and benchmarks)

    def __repr__(self) -> str:
        return f"GoogleAuth({type(self._credentials).__name__})"

    def secrets(self) -> list[Secret]:
        return [self._token]

    async def headers(self) -> dict[str, Secret]:
        now = self._clock.monotonic()
        if now >= self._refresh_at:
            usable = bool(self._token.value) and now < self._expires_at
            if not usable:
                await self._refresh()  # nothing valid to send: wait for the one refresh
            elif self._refreshing is None and now >= self._failed_early + _RETRY_FAILED_REFRESH:
                self._start()  # early: this request still sends the current token
        out = {"authorization": Secret(f"Bearer {self._token.value}")}
        quota = getattr(self._credentials, "quota_project_id", None)
        if isinstance(quota, str) and quota:
            out["x-goog-user-project"] = Secret(quota)
        return out

    async def rejected(self, sent: dict[str, Secret]) -> bool:
        """A 401: refresh (once, however many requests were refused with the same token)."""
        used = sent.get("authorization")
        if used is not None and used.value == f"Bearer {self._token.value}":
            self._refresh_at = self._expires_at = -math.inf
            try:
                await self._refresh()
            except OpsError:
                return False
        return True

    def explain(self, error: AuthenticationError) -> AuthenticationError:
        if error.status_code == 401:
            account = getattr(self._credentials, "service_account_email", None)
            who = f" ({account})" if isinstance(account, str) else ""
            error.message = (f"{error.message} (a freshly refreshed token of these credentials{who} was "
                             "refused: check that they are for this project's Google Cloud, or make new ones "
                             "with `gcloud auth application-default login`)")
            error.args = (error.message,)
        return error

    async def aclose(self) -> None:
        """The client closes: cancel a refresh in flight (its worker thread finishes on its own and
        its token is dropped); the requests that waited for it get an OpsError."""
        self._closed = True
        task = self._refreshing
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start(self) -> asyncio.Future[None]:
        if self._refreshing is None:
            task = asyncio.ensure_future(self._refresh_now())
            self._refreshing = task
            task.add_done_callback(self._refreshed)
        return self._refreshing

    def _refreshed(self, task: asyncio.Future[None]) -> None:
        self._refreshing = None
        if not task.cancelled() and task.exception() is not None:  # retrieved here, raised to its waiters
            now = self._failed_early = self._clock.monotonic()
            if now < self._expires_at:  # an early refresh: nobody waits on it, so say it here
                logger.warning("refreshing the Google credentials failed (the current token still works): %s",
                               task.exception())

    async def _refresh(self) -> None:
        if self._closed:
            raise OpsError("this client was closed; create a new one")
        refreshing = self._start()
        try:
            await asyncio.shield(refreshing)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            asked = me is not None and getattr(me, "cancelling", lambda: 0)() > 0  # Python >= 3.11 can tell
            if refreshing.cancelled() and self._closed and not asked:  # aclose() cancelled the refresh
                raise OpsError("the client was closed while a Google access token was being refreshed") from None
            raise

    async def _refresh_now(self) -> None:
        from google.auth import exceptions

        began = self._clock.monotonic()
        loop = asyncio.get_running_loop()
        request = self._request(loop) if self._request is not None else _requests_request()
        credentials = self._credentials

        def refresh() -> tuple[str, float | None]:  # on a worker thread
            credentials.refresh(request)
            expiry = credentials.expiry
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)  # google-auth's naive UTC
            return str(credentials.token or ""), None if expiry is None else (expiry - now).total_seconds()

        try:
            token, lifetime = await asyncio.to_thread(refresh)
        except exceptions.RefreshError as exc:
            raise AuthenticationError(f"the Google credentials could not be refreshed: {_cut(exc)}. "
                                      f"{_REFRESH_HELP}") from exc
        except exceptions.TransportError as exc:
            raise TransportError(f"the token request got no answer: {_cut(exc)}") from exc
        except exceptions.GoogleAuthError as exc:
            raise AuthenticationError(
                f"the Google credentials cannot make a token: {_cut(exc)}. {_REFRESH_HELP}") from exc
        if not token:
            raise AuthenticationError(f"the Google credentials gave no access token. {_ADC_HELP}")
        self._token.value = token
        self._refresh_at, self._expires_at = refresh_plan(began, lifetime)
        self.refreshes += 1
        logger.debug("Google access token refreshed; it lives %s s", "?" if lifetime is None else f"{lifetime:.0f}")


def _cut(exc: BaseException) -> str:
    return str(exc)[:300] or type(exc).__name__


def _requests_request() -> Any:
    try:
        from google.auth.transport.requests import Request
    except ImportError as exc:  # google-auth[requests] is a dependency; a broken install says so
        raise AuthenticationError("google-auth's requests transport is missing: pip install 'google-auth[requests]'"
                                  ) from exc
    return Request()
