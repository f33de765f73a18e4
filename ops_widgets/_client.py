"""AsyncOperations: the one implementation of I/O (httpx.AsyncClient, typed errors, retries)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, TypeVar, Union

import httpx

from . import _schedule
from ._backends import GeminiBackend
from ._engine import AsyncTracked, Hub, Tracked
from ._frame import FrameBuilder, ListingProgress
from ._exceptions import (
    ApiError,
    AuthenticationError,
    MalformedOperationError,
    OpsError,
    RateLimitError,
    TransportError,
    WaitTimeout,
)
from ._types import ListOperationsResponse, Operation

if TYPE_CHECKING:
    import pandas as pd
    from ipywidgets import VBox

    from .widgets import OperationWidget

__all__ = ["DEFAULT_BASE_URL", "AsyncOperations", "NameOrOperation", "ProgressCallback"]

logger = logging.getLogger("ops_widgets")

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

NameOrOperation = Union[str, Operation]
ProgressCallback = Callable[[Operation], Union[None, Awaitable[None]]]
H = TypeVar("H", AsyncTracked, Tracked)

_NO_KEY = (
    "No API key. Pass api_key=..., or set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment. "
    "To try ops_widgets with no account, use the local emulator: "
    "`from ops_widgets.emulator import Emulator; emu = Emulator.start(); ops = emu.client()` "
    "(or run `ops-widgets emulator` and pass its base_url and key)."
)

# Request retry (not polling cadence): short, jittered, capped.
_RETRY_INITIAL = 0.5
_RETRY_MAX = 30.0
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_TRANSPORT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
_CHUNK = 250  # operations laid out into a frame between two turns of the event loop


class _Secret:
    """Holds the key so that no repr, log or traceback locals dump shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


def _name(op: NameOrOperation) -> str:
    return op.name if isinstance(op, Operation) else op


def _retryable(error: Exception) -> bool:
    if isinstance(error, ApiError):
        return error.status_code in _RETRYABLE_STATUS
    return isinstance(error.__cause__, _RETRYABLE_TRANSPORT)


class AsyncOperations:
    """Get, list, wait for, cancel and delete long-running operations (asyncio).

    The key comes from ``api_key``, else GEMINI_API_KEY, else GOOGLE_API_KEY, and travels only
    in the ``x-goog-api-key`` header. An instance belongs to the event loop that first uses it.
    ``poll_concurrency`` and ``poll_rate`` (requests per second, None for no cap) bound what the
    polling engine of track() sends; direct calls are not throttled.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = "v1beta",
        timeout: float | None = 30.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_concurrency: int = 16,
        poll_rate: float | None = 10.0,
    ) -> None:
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key:
            raise AuthenticationError(_NO_KEY)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self._key = _Secret(key)
        self._backend = GeminiBackend(base_url, api_version)
        self._timeout = timeout
        self._max_retries = max_retries
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hub: Hub | None = None
        self._hub_options: dict[str, Any] = {"max_concurrency": poll_concurrency, "max_rate": poll_rate}
        # Injected time, so tests can run waits and retries on a virtual clock.
        self._clock: Callable[[], float] = time.monotonic
        self._wall: Callable[[], float] = time.time
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._rand: Callable[[], float] = random.random
        # Typical durations are real-world ones; the emulator runs `speed` times faster.
        self._typical_scale = 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._backend.base_url!r}, api_version={self._backend.api_version!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _bind(self) -> None:
        """Tie this client (its pool and pollers) to the running loop, or refuse another."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            if not self._loop.is_closed():
                raise RuntimeError(
                    "this AsyncOperations is in use on another event loop; create one per loop, "
                    "or use the blocking Operations, which is safe from any thread"
                )
            # Its loop is gone (e.g. a second asyncio.run): start afresh.
            self._http, self._hub = None, None
        self._loop = loop

    def _engine(self) -> Hub:
        self._bind()
        if self._hub is None:
            self._hub = Hub(self, **self._hub_options)
        return self._hub

    def _client(self) -> httpx.AsyncClient:
        self._bind()
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), transport=self._transport, follow_redirects=False
            )
        return self._http

    async def _request(
        self, method: str, url: str, params: dict[str, str] | None = None, *, retries: int | None = None
    ) -> Any:
        """Send with retries; return the decoded JSON or raise a typed error."""
        http = self._client()
        headers = self._backend.auth_headers(self._key.value)
        delays = _schedule.backoff(_RETRY_INITIAL, _RETRY_MAX, 2.0, rand=self._rand)
        retries = self._max_retries if retries is None else retries
        for attempt in range(retries + 1):
            started = self._clock()
            error: ApiError | TransportError
            try:
                resp = await http.request(method, url, params=params, headers=headers)
            except httpx.HTTPError as exc:
                error = TransportError(f"{method} {url}: {type(exc).__name__}: {exc or 'no details'}")
                error.__cause__ = exc  # as `raise ... from exc` would, once we raise it below
            else:
                logger.debug(
                    "%s %s -> %s in %.0f ms", method, resp.request.url, resp.status_code,
                    1000 * (self._clock() - started),
                )
                if resp.is_success:
                    return _decode(resp, method, url)
                error = ApiError.from_response(
                    resp.status_code, resp.content, resp.headers.get("content-type", "")
                )
            if attempt >= retries or not _retryable(error):
                raise error
            delay = next(delays)
            if isinstance(error, RateLimitError) and error.retry_delay is not None:
                delay = error.retry_delay  # the server said how long; jitter would only be early
            logger.info("%s %s failed (%s); retry %d/%d in %.2fs", method, url, error,
                        attempt + 1, retries, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Stop this client's pollers and close the connection pool."""
        if self._hub is not None:
            for poller in list(self._hub.pollers.values()):
                poller.close(OpsError("the client was closed while this operation was tracked"))
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def __aenter__(self) -> AsyncOperations:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the API -------------------------------------------------------------------------

    async def get(self, name: NameOrOperation) -> Operation:
        """The operation as it is now."""
        return await self._get(_name(name))

    async def _get(self, name: str, retries: int | None = None) -> Operation:
        """``retries=0`` for the polling engine, which owns retry and rate-limit policy."""
        data = await self._request("GET", self._backend.operation_url(name), retries=retries)
        return Operation.from_api_response(data)

    async def track(self, name: NameOrOperation, *, poll_interval: float | None = None) -> AsyncTracked:
        """A live handle on the operation, polled by the shared engine (one poller per name).

        ``poll_interval`` asks for a fixed interval instead of the adaptive schedule (the
        shortest interval asked for by any tracker of the name wins).
        """
        return await self._track(name, poll_interval, AsyncTracked)

    async def watch(self, name: NameOrOperation, *, poll_interval: float | None = None) -> OperationWidget:
        """An OperationWidget showing the operation live (it binds to track(); it never polls)."""
        from .widgets import OperationWidget  # lazy: anywidget and ipywidgets only when wanted

        return OperationWidget(await self.track(name, poll_interval=poll_interval))

    async def watch_all(self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None) -> VBox:
        """A compact stacked list of OperationWidgets, tracked concurrently."""
        from .widgets import watch_all

        return watch_all(await self._track_all(names, poll_interval, AsyncTracked))

    async def _track_all(
        self, names: Iterable[NameOrOperation], poll_interval: float | None, handle: type[H]
    ) -> list[H]:
        """Track many at once: their first GETs go out together, not one after another."""
        return list(await asyncio.gather(*(self._track(n, poll_interval, handle) for n in names)))

    async def _track(self, name: NameOrOperation, poll_interval: float | None, handle: type[H]) -> H:
        if not isinstance(name, Operation):
            self._backend.operation_url(name)  # a bad name fails here, before anything is sent
        return handle(await self._engine().poller(name, poll_interval))

    async def list(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListOperationsResponse:
        """One page of operations. ``parent`` is e.g. "models/veo-3.0-generate-001"."""
        url = self._backend.list_url(parent)
        params = self._backend.list_params(page_size, page_token, filter)
        return ListOperationsResponse.from_api_response(await self._request("GET", url, params))

    async def list_all(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        filter: str | None = None,
        max_items: int | None = None,
    ) -> list[Operation]:
        """Every operation, following every page (up to ``max_items``)."""
        result: list[Operation] = []
        async for page in self._pages(parent, page_size, filter, max_items):
            result.extend(page)
        return result

    async def list_dataframe(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        filter: str | None = None,
        max_items: int | None = None,
        flatten_metadata: bool = True,
        progress: bool = True,
    ) -> pd.DataFrame:
        """list_all() as a DataFrame (see to_dataframe), built page by page: no page is kept.

        ``progress`` shows how far the listing got: a small widget in a notebook, a text line
        on stderr elsewhere.
        """
        builder = FrameBuilder(flatten_metadata=flatten_metadata)
        shown = ListingProgress(progress)
        pages = 0
        async for page in self._pages(parent, page_size, filter, max_items):
            for start in range(0, len(page), _CHUNK):
                builder.add(page[start:start + _CHUNK])
                await asyncio.sleep(0)  # the next page's request goes out; pollers get their turn
            pages += 1
            shown.update(builder.count, pages)
        shown.close(builder.count, pages)
        return await asyncio.to_thread(builder.build)  # off the loop: pollers keep running

    async def _pages(
        self, parent: str | None, page_size: int | None, filter: str | None, max_items: int | None
    ) -> AsyncIterator[list[Operation]]:
        """The operations of each page in turn, up to ``max_items``: the one pager.

        The next page is requested as soon as this one's token is known, so the server works on
        it while the caller uses this one.
        """
        seen: set[str] = set()
        count = 0
        fetch = asyncio.ensure_future(self.list(parent=parent, page_size=page_size, filter=filter))
        try:
            while True:
                page = await fetch
                ops = page.operations if max_items is None else page.operations[: max_items - count]
                count += len(ops)
                token = page.next_page_token
                more = token is not None and (max_items is None or count < max_items)
                if more:
                    if token in seen:  # a server bug would otherwise loop forever
                        raise MalformedOperationError(f"the server sent page token {token[:40]!r} twice")
                    seen.add(token)
                    fetch = asyncio.ensure_future(
                        self.list(parent=parent, page_size=page_size, page_token=token, filter=filter)
                    )
                yield ops
                if not more:
                    return
        finally:
            if not fetch.done():
                fetch.cancel()  # the caller stopped early: do not leave a request behind

    async def cancel_many(
        self, names: Iterable[NameOrOperation] | pd.DataFrame, *, concurrency: int = 8
    ) -> pd.DataFrame:
        """Cancel each (a DataFrame means its index); never stops at a failure.

        Returns a DataFrame of outcomes: name, ok, error (the typed error's text, or NA).
        """
        return await self._many(self.cancel, names, concurrency)

    async def delete_many(
        self, names: Iterable[NameOrOperation] | pd.DataFrame, *, concurrency: int = 8
    ) -> pd.DataFrame:
        """Delete each (a DataFrame means its index); never stops at a failure. See cancel_many."""
        return await self._many(self.delete, names, concurrency)

    async def _many(
        self,
        action: Callable[[NameOrOperation], Awaitable[None]],
        targets: Iterable[NameOrOperation] | pd.DataFrame,
        concurrency: int,
    ) -> pd.DataFrame:
        import pandas as pd

        if isinstance(targets, pd.DataFrame):
            names = [str(n) for n in targets.index]
        else:
            names = [_name(t) for t in targets]
        gate = asyncio.Semaphore(concurrency)

        async def one(name: str) -> str | None:
            async with gate:
                try:
                    await action(name)
                except OpsError as exc:
                    return f"{type(exc).__name__}: {exc}"
                return None

        errors = await asyncio.gather(*(one(n) for n in names))
        return pd.DataFrame({
            "name": pd.array(names, dtype="string"),
            "ok": [e is None for e in errors],
            "error": pd.array(errors, dtype="string"),
        })

    async def cancel(self, name: NameOrOperation) -> None:
        """Ask the server to cancel; it finishes as cancelled (error code 1) when it can."""
        await self._request("POST", self._backend.cancel_url(_name(name)))

    async def delete(self, name: NameOrOperation) -> None:
        """Forget the operation on the server (it does not cancel it)."""
        await self._request("DELETE", self._backend.operation_url(_name(name)))

    async def wait(
        self,
        name: NameOrOperation,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Operation:
        """Poll every ``poll_interval`` seconds until done; WaitTimeout after ``timeout``."""
        return await self._wait(_name(name), _schedule.fixed(poll_interval), timeout, on_progress)

    async def wait_with_backoff(
        self,
        name: NameOrOperation,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        multiplier: float = 2.0,
        timeout: float | None = 3600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Operation:
        """Poll with exponentially growing, fully jittered delays until done."""
        delays = _schedule.backoff(initial_delay, max_delay, multiplier, rand=self._rand)
        return await self._wait(_name(name), delays, timeout, on_progress)

    async def _wait(
        self,
        name: str,
        delays: Iterator[float],
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> Operation:
        self._backend.operation_url(name)  # reject a bad name before anything else
        poller = self._hub.active(name) if self._hub is not None else None
        if poller is not None and self._loop is asyncio.get_running_loop():
            # Already tracked: join its poller rather than start a second request stream.
            return await poller.wait(timeout, on_progress)
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            op = await self.get(name)
            if on_progress is not None:
                result = on_progress(op)
                if inspect.isawaitable(result):
                    await result
            if op.done:
                return op
            delay = _schedule.clip_to_deadline(next(delays), self._clock(), deadline)
            if delay is None:
                raise WaitTimeout(
                    f"{name} was still running after {timeout:g}s (it goes on; wait again or cancel it)",
                    op,
                )
            await self._sleep(delay)



def _decode(resp: httpx.Response, method: str, url: str) -> Any:
    try:
        return resp.json() if resp.content else {}
    except ValueError:
        excerpt = " ".join(resp.text[:120].split())
        raise MalformedOperationError(
            f"{method} {url}: the answer (HTTP {resp.status_code}) is not JSON: {excerpt!r}"
        ) from None

