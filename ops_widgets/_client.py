"""AsyncOperations: the operations API on asyncio. Requests go through the Transport, every poll
and wait through the Engine; this module decides which URL and which shape, and lays out frames."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _batch, _history, _schedule
from . import _capabilities as caps
from ._auth import GoogleAuth, LoopRequest, default_credentials
from ._backends import VIDEO_MAX_BYTES, Call, GeminiBackend, VertexBackend
from ._capabilities import BINDINGS
from ._clock import SYSTEM_CLOCK, Clock
from ._engine import AsyncTracked, Engine
from ._exceptions import (
    ApiError,
    AuthenticationError,
    InvalidNameError,
    MalformedOperationError,
    NotFoundError,
    OpsError,
    TooLargeError,
    UnsupportedError,
    WaitTimeout,
)
from ._frame import FrameBuilder, ListingProgress
from ._transport import Auth, Secret, StaticAuth, Transport
from ._types import ListOperationsResponse, Operation, RawOperation, RawPage, State

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from .widgets import OperationsList, OperationWidget

__all__ = [
    "DEFAULT_BASE_URL", "DEFAULT_VERTEX_LOCATION", "VIDEO_MAX_BYTES", "AsyncOperations", "NameOrOperation",
    "ProgressCallback",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_VERTEX_LOCATION = "global"  # as google-genai: no location given or in GOOGLE_CLOUD_LOCATION

NameOrOperation = str | Operation
ProgressCallback = Callable[[Operation], None | Awaitable[None]]
# `list` is a method name below: inside the class body it would shadow the builtin in annotations.
_List = list

_NO_KEY = (
    "No API key. Pass api_key=..., or set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment. "
    "To try ops_widgets with no account, use the local emulator: "
    "`from ops_widgets.emulator import Emulator; emu = Emulator.start(); ops = emu.client()` "
    "(or run `ops-widgets emulator` and pass its base_url and key)."
)
_EXPRESS_HINT = (
    "Vertex AI takes an API key (express mode) only for some methods, such as a publisher model's "
    "predictLongRunning and fetchPredictOperation with no project in the name; for this one use Google "
    "credentials: Operations(vertexai=True, project=..., location=...) with no api_key uses Application "
    "Default Credentials (`gcloud auth application-default login`), or pass credentials=..."
)
_CHUNK = 250  # operations laid out into a frame between two turns of the event loop
_MAX_EMPTY_PAGES = 50  # empty pages in a row, each with a new token, before a listing gives up
_SWEEP_AHEAD = 4  # collections fetched at once by a listing with no parent
_SWEEP_PAGE_SIZE = 1000  # the largest page the operations lists serve
_MAX_CATALOG_PAGES = 100  # pages of GET models / tunedModels followed (a server looping tokens stops)
# Connections beyond poll_concurrency for direct calls (the engine's requests, long-polls among
# them, are bounded by poll_concurrency; direct calls are not throttled).
_SPARE_CONNECTIONS = 32
# A long-poll's HTTP timeout is the timeout it asks the server for plus this: the server answers at
# its timeout, and the answer must not be cut off on its way.
_LONG_POLL_SLACK = 30.0


def _name(op: NameOrOperation) -> str:
    return op.name if isinstance(op, Operation) else op


def _video_source(op: Operation, index: int) -> str | bytes:
    """Where video ``index`` of a done video operation is: a URI to fetch, or the bytes a Vertex AI
    response sent inline. UnsupportedError that says why there is none."""
    what = op.name[:200]
    if not op.done:
        raise UnsupportedError(f"{what} is still running; wait for it (wait(name)) and ask again")
    if op.error is not None:
        state = "was cancelled" if op.cancelled else f"failed ({op.error.code} {op.error.message[:300]})"
        raise UnsupportedError(f"{what} {state}: it has no video")
    sources: _List[str] | _List[bytes] = op.video_data or op.video_uris
    if not sources:
        why = "the safety checks withheld it" if op.filtered else "its response holds no video"
        raise UnsupportedError(f"{what} has no video: {why}")
    if index >= len(sources):
        raise UnsupportedError(f"{what} has {len(sources)} video(s): there is no video {index} (they count from 0)")
    return sources[index]


def _cancelled_or_cancelling(op: Operation) -> bool:
    return op.state is State.CANCELLED or op.cancelling


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in ("true", "1")


def _positive(what: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Bad arguments fail here, before anything is sent."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


class AsyncOperations:
    """Get, list, wait for, cancel and delete long-running operations (asyncio).

    The Gemini API by default: the key comes from ``api_key``, else GEMINI_API_KEY, else
    GOOGLE_API_KEY, and travels only in the ``x-goog-api-key`` header. ``vertexai=True`` (or
    GOOGLE_GENAI_USE_VERTEXAI=true) is Vertex AI, set up as google-genai sets it up: ``project``
    and ``location`` (else GOOGLE_CLOUD_PROJECT, GOOGLE_CLOUD_LOCATION, default "global"),
    ``credentials`` (any google-auth Credentials; else google.auth.default() with the
    cloud-platform scope), or ``api_key`` for express mode; ``base_url`` replaces the regional
    host, ``api_version`` is "v1" (default) or "v1beta1". An instance belongs to the event loop
    that first uses it.
    ``poll_concurrency`` and ``poll_rate`` (requests per second, None for no cap) bound what the
    polling engine (track, wait, widgets) sends; direct calls are not throttled. On Vertex AI, the
    operations that bind ``:wait`` are long-polled (one request in flight each, about one a
    minute), up to all but an eighth of ``poll_concurrency`` of them at once. ``clock`` is the
    time everything reads and waits on (a VirtualClock simulates hours in milliseconds);
    ``time_scale`` says how many times faster than real life the service runs (an emulator's
    ``speed``): typical durations, the schedule's gaps and the rate cap scale with it, so polling
    a sped-up emulator looks like polling the real service, sped up. ``history`` keeps every
    tracked operation in the local history (see history() and resume()); OPS_WIDGETS_HISTORY=0
    turns it off everywhere.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        vertexai: bool | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: Any = None,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float | None = 30.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_concurrency: int = 16,
        poll_rate: float | None = 10.0,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        history: bool = True,
    ) -> None:
        if isinstance(poll_concurrency, bool) or not isinstance(poll_concurrency, int) or poll_concurrency < 1:
            raise ValueError(f"poll_concurrency must be an integer >= 1, got {poll_concurrency!r}")
        _positive("poll_rate", poll_rate)
        _positive("time_scale", time_scale)
        _positive("timeout", timeout)
        self._clock = clock or SYSTEM_CLOCK
        self._backend: GeminiBackend | VertexBackend
        auth: Auth
        if vertexai is None:
            vertexai = bool(_env_flag("GOOGLE_GENAI_USE_VERTEXAI"))
        if not vertexai:
            if project is not None or location is not None or credentials is not None:
                raise ValueError("project, location and credentials are for Vertex AI: pass vertexai=True "
                                 "(or set GOOGLE_GENAI_USE_VERTEXAI=true)")
            key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
            if not key:
                raise AuthenticationError(_NO_KEY)
            self._backend = GeminiBackend(base_url or DEFAULT_BASE_URL, api_version or "v1beta")
            auth = StaticAuth({name: Secret(value) for name, value in self._backend.auth_headers(key).items()})
            service = _history.service_key("gemini", self._backend.base_url, self._backend.api_version)
        else:
            self._backend, auth = self._vertex(api_key, project, location, credentials, base_url, api_version,
                                               custom_transport=transport is not None)
            service = _history.service_key("vertex", self._backend.root.rsplit("/", 1)[0],
                                           self._backend.api_version, project=self._backend.project,
                                           location=self._backend.location)
        self._transport = Transport(auth, clock=self._clock, timeout=timeout, max_retries=max_retries,
                                    transport=transport,
                                    max_connections=max(100, poll_concurrency + _SPARE_CONNECTIONS))
        self._poll_concurrency, self._poll_rate = poll_concurrency, poll_rate
        self._history: _history.Recorder | _history.NoHistory = _history.NoHistory()
        if _history.wanted(history):
            self._history = _history.Recorder(_history.store_for(), service, secrets=auth.secrets(),
                                              clock=self._clock)
        # Durations of this service's finished runs, from earlier kernels too.
        self._durations = _schedule.Durations(scale=1.0 / time_scale, learnt=self._history.runs())
        self._time_scale = time_scale
        self._engine: Engine | None = None

    def _vertex(self, api_key: str | None, project: str | None, location: str | None, credentials: Any,
                base_url: str | None, api_version: str | None, *,
                custom_transport: bool) -> tuple[VertexBackend, Auth]:
        """Vertex AI's backend and auth, resolved as google-genai resolves them: arguments first,
        then GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION; an API key is express mode."""
        if api_key and credentials is not None:
            raise ValueError("api_key (express mode) and credentials exclude each other: pass one")
        env_key = os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")
        project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
        location = location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_VERTEX_LOCATION
        # An explicit key is express mode; a key from the environment only when nothing names a project.
        key = api_key or (env_key if credentials is None and project is None else None)
        auth: Auth
        if key:
            auth = StaticAuth({"x-goog-api-key": Secret(key)}, hint=_EXPRESS_HINT)
        else:
            if credentials is None:
                credentials, found = default_credentials()
                project = project or found
            project = project or getattr(credentials, "project_id", None) or None
            # With its own httpx transport (an in-process emulator), token requests go through it too.
            request = (lambda loop: LoopRequest(loop, self._transport.exchange)) if custom_transport else None
            auth = GoogleAuth(credentials, clock=self._clock, request=request)
        backend = VertexBackend(project, location, api_version or "v1", base_url)
        return backend, auth

    def __repr__(self) -> str:
        b = self._backend
        if isinstance(b, VertexBackend):
            return (f"{type(self).__name__}(vertexai=True, project={b.project!r}, location={b.location!r}, "
                    f"api_version={b.api_version!r})")
        return f"{type(self).__name__}(base_url={b.base_url!r}, api_version={b.api_version!r})"

    @property
    def clock(self) -> Clock:
        """The clock this client reads and waits on."""
        return self._clock

    def _polling(self) -> Engine:
        """This client's engine, on the loop that runs it."""
        self._transport.bind()
        if self._engine is None:
            self._engine = Engine(
                poll=self._poll, cancel=self.cancel, can_cancel=self.can_cancel, clock=self._clock,
                video=lambda op, index, cap: self.download_video(op, index, max_bytes=cap),
                max_concurrency=self._poll_concurrency, durations=self._durations,
                # The service's time runs time_scale times faster: so do the schedule's gaps (in
                # Durations) and the rate cap, so a sped-up emulator looks like real life sped up.
                max_rate=None if self._poll_rate is None else self._poll_rate * self._time_scale,
                pause=self._transport.pause, list_page=self._sweep_page,
                sweep_parent=self._backend.listing_parent,
                seen=self._history.seen, gone=self._history.vanished,  # every tracked snapshot, in one place
                # :wait where the service binds it for the name (Vertex AI; never the Gemini API):
                # one long-poll in flight per name.
                long_poll=self._long_poll, can_long_poll=lambda name: self._backend.can("wait", name),
            )
        return self._engine

    async def aclose(self) -> None:
        """Stop this client's pollers (their waiters get an error) and close the connection pool.
        A closed client refuses to be used again."""
        if self._engine is not None:
            self._engine.close(OpsError("the client was closed while this operation was tracked"))
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncOperations:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the API -------------------------------------------------------------------------

    async def _send(self, call: Call, *, retries: int | None = None, timeout: float | None = None) -> Any:
        return await self._transport.request(call.verb, call.url, call.params, retries=retries, body=call.body,
                                             timeout=timeout)

    async def get(self, name: NameOrOperation) -> Operation:
        """The operation (or Vertex AI job) as it is now: one GET, with request retries (a Veo
        operation on Vertex AI, which has no GET: one POST {model}:fetchPredictOperation)."""
        return self._backend.parse(await self._send(self._backend.read(_name(name))))

    async def _poll(self, name: str) -> Operation:
        # The engine's poll: no request retries, the poller owns retry and rate-limit policy.
        return self._backend.parse(await self._send(self._backend.read(name), retries=0))

    async def _long_poll(self, name: str, timeout: float) -> Operation:
        # The engine's long-poll (POST {name}:wait?timeout=...): no request retries, as for _poll,
        # and an HTTP timeout past the one the server is asked to hold the request for.
        limit = self._transport.timeout
        http_timeout = None if limit is None else max(limit, timeout + _LONG_POLL_SLACK)
        return self._backend.parse(await self._send(self._backend.wait(name, timeout), retries=0, timeout=http_timeout))

    async def _sweep_page(self, parent: str, token: str | None) -> tuple[_List[Operation], str | None]:
        # A page of a list sweep: the largest the service gives, no request retries (the pollers
        # that asked own retry and rate-limit policy, as for their GETs).
        url = self._backend.list_url(parent)
        params = self._backend.list_params(_SWEEP_PAGE_SIZE, token, None)
        page = self._backend.read_list(await self._transport.request("GET", url, params, retries=0))
        return [Operation.from_fields(op) for op in page.operations], page.next_page_token

    async def track(self, name: NameOrOperation, *, poll_interval: float | None = None) -> AsyncTracked:
        """A live handle on the operation, polled by the shared engine (one poller per name).

        Its first GET goes through the engine's rate limit and is retried as polls are: it
        raises at once for what retrying cannot fix (NotFoundError, a bad key), and for transient
        failures (5xx, dropped or broken answers, 429) only after five minutes of them.
        ``poll_interval`` asks for a poll at least that often while the handle lives, instead of
        the adaptive schedule (the shortest interval asked for by any handle of the name wins).
        """
        _positive("poll_interval", poll_interval)
        self._check_name(name)
        poller = await self._polling().poller(name)
        return AsyncTracked(poller, poll_interval=poll_interval)  # (poller() yields even for an Operation)

    def _check_name(self, target: NameOrOperation) -> None:
        """A bad (or unreadable) name fails here, before anything is sent (an Operation carries its
        name as the service gave it)."""
        if not isinstance(target, Operation):
            self._backend.read(target)

    async def track_all(
        self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None
    ) -> _List[AsyncTracked]:
        """track() each of ``names``, in the order given, the handles all at once or none (the
        first error raises). Names of a listable collection get their first snapshots from its
        list pages; the rest by GETs, as many at once and as fast as the client's
        poll_concurrency and poll_rate allow."""
        _positive("poll_interval", poll_interval)
        targets = list(names)
        for target in targets:
            self._check_name(target)
        pollers = await self._polling().pollers_for(targets)
        handles: _List[AsyncTracked] = _List()
        for i, poller in enumerate(pollers, 1):
            handles.append(AsyncTracked(poller, poll_interval=poll_interval))
            if i % _CHUNK == 0:
                await asyncio.sleep(0)  # ten thousand handles: a chunk per turn of the loop
        return handles

    async def as_completed(
        self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None, timeout: float | None = None
    ) -> AsyncGenerator[Operation, None]:
        """Each operation once it is done (succeeded, failed or cancelled), in the order they
        finish: ``async for op in ops.as_completed(names)``.

        They are tracked by the shared engine, as track() does (``poll_interval`` as there), so
        this sends no request that tracking them would not; the order is the order in which
        polling sees them done. An operation that cannot be followed any more (deleted: a
        NotFoundError) raises from the loop; WaitTimeout once ``timeout`` seconds have passed
        (the operations go on). Leaving the loop early stops following the rest.
        """
        _positive("timeout", timeout, allow_zero=True)
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        handles = await self.track_all(names, poll_interval=poll_interval)
        waits = [asyncio.ensure_future(h.wait()) for h in handles]
        try:
            left = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
            try:
                for next_done in asyncio.as_completed(waits, timeout=left):
                    yield await next_done
            except asyncio.TimeoutError:
                done = sum(1 for w in waits if w.done())
                raise WaitTimeout(f"{len(waits) - done} of {len(waits)} operations were still running "
                                  f"after {timeout:g}s (they go on)") from None
        finally:
            for w in waits:
                w.cancel()
            for h in handles:
                h.close()

    async def watch(
        self, name: NameOrOperation, *, poll_interval: float | None = None, notify: bool = False
    ) -> OperationWidget:
        """An OperationWidget showing the operation live (it shows a track() handle; it never polls).

        ``notify=True``: when it ends while the page shows the widget, say so (JupyterLab's
        notification, or the browser's when the page is hidden); its bell turns this on and off."""
        from .widgets import OperationWidget  # lazy: anywidget and ipywidgets only when wanted

        return OperationWidget(await self.track(name, poll_interval=poll_interval), close_handle=True, notify=notify)

    async def watch_all(
        self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None, notify: bool = False
    ) -> OperationsList:
        """One live list widget (OperationsList), a row per operation, tracked concurrently.
        ``notify=True``: one notification for each operation that ends while the list is shown."""
        from .widgets import OperationsList

        return OperationsList(await self.track_all(names, poll_interval=poll_interval), close_handles=True,
                              notify=notify)

    async def history(self, *, all_services: bool = False, flatten_metadata: bool = False) -> pd.DataFrame:
        """Every operation tracked on this service (``all_services``: on any), in this kernel or
        an earlier one, from the local history: to_dataframe()'s columns with each one's last
        snapshot, plus service, first_seen and last_seen (UTC) and vanished (gone from the
        service); the most recently seen first. UnsupportedError when the history is off."""
        recorder = self._recorder()
        return await asyncio.to_thread(recorder.frame, all_services=all_services, flatten_metadata=flatten_metadata)

    async def track_unfinished(self, *, poll_interval: float | None = None) -> _List[AsyncTracked]:
        """track() again every operation of this service that the history saw not done (in any
        kernel, before a restart too). One the service no longer has (404) is marked vanished
        in the history, and left out now and from then on."""
        recorder = self._recorder()
        names = await asyncio.to_thread(recorder.unfinished)

        async def one(name: str) -> AsyncTracked | None:
            try:
                return await self.track(name, poll_interval=poll_interval)
            except NotFoundError:
                return None  # track() marked it vanished

        return [h for h in await asyncio.gather(*(one(n) for n in names)) if h is not None]

    async def resume(self, *, poll_interval: float | None = None) -> OperationsList:
        """Pick up where an earlier kernel left off: track_unfinished(), shown as watch_all()."""
        from .widgets import OperationsList

        return OperationsList(await self.track_unfinished(poll_interval=poll_interval), close_handles=True)

    def _recorder(self) -> _history.Recorder:
        if not isinstance(self._history, _history.Recorder):
            raise UnsupportedError(
                f"this client keeps no history (history=False, or {_history.ENV_SWITCH}=0 in the environment)")
        return self._history

    async def list(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListOperationsResponse:
        """One page of operations. ``parent`` is a collection the service lists: "batches",
        "models/veo-3.0-generate-001", "tunedModels/my-model"; None is the top level, which only
        v1 has (UnsupportedError on v1beta, with nothing sent: use list_all(), which reads every
        collection)."""
        return ListOperationsResponse.from_page(await self._list_page(parent, page_size, page_token, filter))

    async def _list_page(
        self, parent: str | None, page_size: int | None, page_token: str | None, filter: str | None
    ) -> RawPage:
        # A page as checked fields: list() makes Operations of them, list_dataframe() lays them out as they are.
        url = self._backend.list_url(parent)
        params = self._backend.list_params(page_size, page_token, filter)
        return self._backend.read_list(await self._transport.request("GET", url, params))

    async def list_all(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        filter: str | None = None,
        max_items: int | None = None,
    ) -> _List[Operation]:
        """Every operation of ``parent``, following every page (up to ``max_items``). With no
        parent: every operation the key can see (v1beta has no top-level list, so it reads the
        batches, the operations of each model that runs long operations and of each tuned model,
        several at a time)."""
        result: _List[Operation] = []
        async for page in self._listing(parent, page_size, filter, max_items):
            result.extend(map(Operation.from_fields, page))
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
        """list_all() as a DataFrame (see to_dataframe), built page by page: no page is kept, and
        no Operation is made (each page's checked JSON is laid out as it is, by the same rules).

        ``progress`` shows how far the listing got: a small widget in a notebook, a text line
        on stderr elsewhere.
        """
        builder = FrameBuilder(flatten_metadata=flatten_metadata)
        shown = ListingProgress(progress)
        pages = 0
        async for page in self._listing(parent, page_size, filter, max_items):
            for start in range(0, len(page), _CHUNK):
                builder.add(page[start:start + _CHUNK])
                await asyncio.sleep(0)  # the next page's request goes out; pollers get their turn
            pages += 1
            shown.update(builder.count, pages)
        shown.close(builder.count, pages)
        return await asyncio.to_thread(builder.build)  # off the loop: pollers keep running

    async def _listing(
        self, parent: str | None, page_size: int | None, filter: str | None, max_items: int | None
    ) -> AsyncIterator[_List[RawOperation]]:
        """The pages of ``parent``; with none, of every collection the service lists, in a fixed
        order, the next few collections fetched while this one is read (a bounded queue each)."""
        if parent is not None:
            async for page in self._pages(parent, page_size, filter, max_items):
                yield page
            return
        parents = await self._sweep_parents()
        if parents == ["operations"]:  # the version lists everything at the top level
            async for page in self._pages(None, page_size, filter, max_items):
                yield page
            return
        queues: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        tasks: _List[asyncio.Task[None]] = []

        async def produce(parent: str, queue: asyncio.Queue[tuple[str, Any]]) -> None:
            try:
                async for page in self._pages(parent, page_size, filter, max_items):
                    await queue.put(("page", page))
                await queue.put(("end", None))
            except Exception as exc:  # handed to the reader, who raises it where it was asked for
                await queue.put(("error", exc))

        count = 0
        try:
            for i, _ in enumerate(parents):
                for j in range(i, min(i + _SWEEP_AHEAD, len(parents))):
                    if j not in queues:
                        queues[j] = asyncio.Queue(maxsize=2)
                        tasks.append(asyncio.ensure_future(produce(parents[j], queues[j])))
                while True:
                    kind, item = await queues[i].get()
                    if kind == "end":
                        break
                    if kind == "error":
                        raise item
                    page = item if max_items is None else item[: max_items - count]
                    count += len(page)
                    yield page
                    if max_items is not None and count >= max_items:
                        return
                del queues[i]
        finally:
            for task in tasks:
                task.cancel()  # the caller stopped early, or a collection failed: leave nothing behind

    async def _sweep_parents(self) -> _List[str]:
        """The collections list_all() with no parent reads (from GET models and GET tunedModels
        where the version has no top-level list)."""
        if isinstance(self._backend, VertexBackend):
            return self._backend.sweep_parents()
        version = self._backend.api_version
        if version not in BINDINGS or caps.allowed(version, "list", "operations"):
            return ["operations"]
        models: _List[dict[str, object]] = []
        tuned: _List[str] = []
        for collection, key in (("models", "models"), ("tunedModels", "tunedModels")):
            token: str | None = None
            for _ in range(_MAX_CATALOG_PAGES):
                params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
                data = await self._transport.request("GET", f"{self._backend.root}/{collection}", params)
                items = data.get(key) if isinstance(data, dict) else None
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and key == "models":
                        models.append(item)
                    elif isinstance(item, dict) and isinstance(item.get("name"), str):
                        tuned.append(item["name"])
                token = data.get("nextPageToken") if isinstance(data, dict) else None
                if not isinstance(token, str) or not token:
                    break
        return caps.sweep_parents(version, models, tuned)

    async def _pages(
        self, parent: str | None, page_size: int | None, filter: str | None, max_items: int | None
    ) -> AsyncIterator[_List[RawOperation]]:
        """The operations of each page in turn, up to ``max_items``: the one pager.

        The next page is requested as soon as this one's token is known, so the server works on
        it while the caller uses this one.
        """
        seen: set[str] = set()
        count = empty = 0
        fetch = asyncio.ensure_future(self._list_page(parent, page_size, None, filter))
        try:
            while True:
                page = await fetch
                ops = page.operations if max_items is None else page.operations[: max_items - count]
                count += len(ops)
                empty = 0 if page.operations else empty + 1
                token = page.next_page_token
                if token is not None and empty >= _MAX_EMPTY_PAGES:
                    # Fresh tokens on empty pages forever would be followed forever (even with
                    # max_items, which empty pages never reach).
                    raise MalformedOperationError(
                        f"the server sent {empty} empty pages in a row, each with a new page token; stopped"
                    )
                more = token is not None and (max_items is None or count < max_items)
                if more and token is not None:
                    if token in seen:  # a server bug would otherwise loop forever
                        raise MalformedOperationError(f"the server sent page token {token[:40]!r} twice")
                    seen.add(token)
                    fetch = asyncio.ensure_future(self._list_page(parent, page_size, token, filter))
                yield ops
                if not more:
                    return
        finally:
            if not fetch.done():
                fetch.cancel()  # the caller stopped early: do not leave a request behind

    async def batch_results(self, name: NameOrOperation) -> pd.DataFrame:
        """A done, succeeded batch's results: one row per request, in the batch's order.

        Columns: key (the request's metadata key), text (the first candidate's text parts, joined),
        finish_reason, error_message (string); prompt_tokens, output_tokens, total_tokens,
        error_code (Int64); NA where a result has no such field. Inline results are read from the
        batch itself; a responses file is streamed and parsed 10,000 lines at a time (neither the
        file nor its parsed lines are held whole). A line that cannot be read is a row whose
        error_message says so. UnsupportedError (saying its state) while the batch runs, or when
        it failed or was cancelled: such a batch has no results.
        """
        name = _name(name)
        if isinstance(self._backend, VertexBackend):
            raise UnsupportedError("batch_results() reads the Gemini API's batches; a Vertex AI batch prediction "
                                   "job writes its results to Cloud Storage (outputInfo.gcsOutputDirectory)")
        self._backend.operation_url(name)  # a bad name fails here, before anything is sent
        if not name.startswith("batches/"):
            raise InvalidNameError(f"{name[:200]}: not a batch (batches/<id>); only batches have results")
        op = await self.get(name)
        if not op.succeeded:
            state = op.batch_state or op.state.value
            why = f": {op.error.code} {op.error.message[:500]}" if op.error is not None else ""
            then = "wait for it (wait(name)) and ask again" if not op.done else "it has no results"
            raise UnsupportedError(f"{name[:200]} is {op.state.value} ({state}){why}; {then}")
        output = op.response or op.metadata.get("output") or {}  # both are the GenerateContentBatchOutput
        if not isinstance(output, dict):
            output = {}
        rows = _batch.ResultRows()
        items = _batch.inlined_items(output)
        if items is not None:
            rows.add_items(items)
        elif "responsesFile" in output:
            try:
                path = _batch.download_path(output["responsesFile"])
            except ValueError as exc:
                raise MalformedOperationError(f"{name[:200]}: responsesFile: {exc}") from None
            # Media downloads sit beside the API's paths; the Files service is v1beta's alone (v1 binds
            # no files.download), so a v1 client reads the file there too.
            url = f"{self._backend.base_url.rstrip('/')}/download/v1beta/{path}"
            async for chunk in self._transport.stream("GET", url, {"alt": "media"}):
                rows.feed(chunk)  # a chunk's lines parsed between reads: pollers get their turns
            rows.finish()
        else:
            raise MalformedOperationError(
                f"{name[:200]} succeeded but its response has neither inlinedResponses nor responsesFile")
        return await asyncio.to_thread(rows.build)

    async def download_video(
        self, name: NameOrOperation, index: int = 0, *, max_bytes: int = VIDEO_MAX_BYTES
    ) -> bytes:
        """The bytes of video ``index`` (from 0) of a done video operation (Veo), e.g. an MP4.

        Fetched through this client, the key in its header only, and only from the service's own
        host (a redirect elsewhere is followed without the key). A done Operation in hand is not
        fetched again; a name costs one GET first. Videos a Vertex AI response holds inline
        (bytesBase64Encoded) come from the response. UnsupportedError, with nothing downloaded,
        when it runs, failed, was filtered, has no such video, or keeps it in Cloud Storage
        (a gs:// URI, which the key cannot read); TooLargeError past ``max_bytes`` (200 MB).
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index must be an integer >= 0, got {index!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        op = name if isinstance(name, Operation) and name.done else await self.get(name)
        source = _video_source(op, index)
        if isinstance(source, bytes):
            if len(source) > max_bytes:
                raise TooLargeError(f"{op.name[:200]}: video {index} is {len(source):,} bytes, more than "
                                    f"max_bytes={max_bytes:,}", limit=max_bytes, size=len(source))
            return source
        url = self._backend.media_url(source)  # UnsupportedError for gs:// or another host: nothing sent
        return await self._transport.download(url, max_bytes=max_bytes, keyed=self._backend.keyed)

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
                except Exception as exc:  # one row's failure, whatever it is, never loses the others
                    return f"{type(exc).__name__}: {exc}"
                return None

        errors = await asyncio.gather(*(one(n) for n in names))
        outcomes: pd.DataFrame = pd.DataFrame({
            "name": pd.array(names, dtype="string"),
            "ok": [e is None for e in errors],
            "error": pd.array(errors, dtype="string"),
        })
        return outcomes

    def can_cancel(self, name: NameOrOperation) -> bool:
        """Whether the service can cancel this operation (on the Gemini API v1beta: batches only;
        v1 adds tuning operations). Pure: nothing is sent."""
        return self._backend.can("cancel", _name(name))

    def can_delete(self, name: NameOrOperation) -> bool:
        """Whether the service can delete this operation (v1beta: batches only). Nothing is sent."""
        return self._backend.can("delete", _name(name))

    async def cancel(self, name: NameOrOperation) -> None:
        """Ask the server to cancel; it finishes as cancelled (error code 1) when it can.

        Idempotent: when the server refuses because the operation is already cancelled or being
        cancelled (a retry whose first attempt's answer was lost, or anyone's earlier cancel),
        that is the outcome asked for and nothing is raised.
        UnsupportedError, with nothing sent, where the service cannot cancel (see can_cancel)."""
        call = self._backend.cancel(_name(name))
        self._backend.supported("cancel", _name(name))
        try:
            await self._send(call)
        except ApiError as exc:
            if exc.status_code not in (400, 409) or not _cancelled_or_cancelling(await self.get(name)):
                raise

    async def delete(self, name: NameOrOperation) -> None:
        """Forget the operation on the server (it does not cancel it).

        UnsupportedError, with nothing sent, where the service cannot delete (see can_delete)."""
        call = self._backend.delete(_name(name))
        self._backend.supported("delete", _name(name))
        await self._send(call)

    async def wait(
        self,
        name: NameOrOperation,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Operation:
        """Poll every ``poll_interval`` seconds until done and return the final Operation.

        ``on_progress(op)`` (sync or async) runs after every one of those polls, the last one
        included; an exception from it ends the wait with that exception. WaitTimeout after
        ``timeout`` seconds (None: no limit); the operation itself goes on. Other trackers of the
        same name share the requests: none is sent twice for the same instant.
        """
        _positive("poll_interval", poll_interval)
        _positive("timeout", timeout, allow_zero=True)
        return await self._wait(name, _schedule.fixed(poll_interval), timeout, on_progress)

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
        """Like wait(), with exponentially growing, fully jittered delays between polls
        (``initial_delay`` times ``multiplier`` each time, up to ``max_delay``)."""
        _positive("initial_delay", initial_delay)
        _positive("max_delay", max_delay)
        _positive("timeout", timeout, allow_zero=True)
        if not multiplier > 1:
            raise ValueError(f"multiplier must be > 1, got {multiplier!r}")
        delays = _schedule.backoff(initial_delay, max_delay, multiplier)
        return await self._wait(name, delays, timeout, on_progress)

    async def _wait(
        self,
        name: NameOrOperation,
        delays: Iterator[float],
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> Operation:
        name = _name(name)
        self._check_name(name)
        engine = self._polling()
        start = self._clock.monotonic()
        # One deadline for all of it: the first snapshot's tries, then the polls.
        poller = await engine.poller(name, deadline=None if timeout is None else start + timeout)
        return await engine.wait(poller, delays, timeout, on_progress, start=start)
