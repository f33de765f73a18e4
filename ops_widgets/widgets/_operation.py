"""OperationWidget: one operation, live, as an anywidget showing an engine handle.

It never polls: it subscribes to the handle, and every poll that changed something becomes one
state message (hold_sync), at most ten a second. Its synced state changes on the engine thread
only (subscriber calls, heartbeat, cancel), which reaches the browser both while the kernel is
idle and while another cell blocks. A click on Cancel is a message, handed over to the engine;
so is a view's request for a finished video, whose bytes go back in a message's buffer.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from .._client import AsyncOperations
from .._engine import AsyncTracked
from .._exceptions import OpsError, TooLargeError
from .._sync import Operations
from .._text import summary_line
from .._types import Operation
from ._display import Sightings, publish, refresh, with_snapshot
from ._lifetime import supersede, watch_files_weakly
from ._media import INLINE_VIDEO_MAX, MAX_VIDEOS, too_large_text, video_count, video_message
from ._snapshot import operation_html
from ._view import Throttle, poll_status, view_state

__all__ = ["OperationWidget", "Target", "default_client", "handle_for"]

# In a wheel the front-end ships in ops_widgets/static; in a clone (editable install) it is js/.
# Paths, not text, so that ANYWIDGET_HMR=1 can hot-reload them while developing.
_PACKAGE = Path(__file__).resolve().parent.parent
STATIC = _PACKAGE / "static" if (_PACKAGE / "static" / "widgets.js").is_file() else _PACKAGE.parent / "js"

logger = logging.getLogger("ops_widgets")

Target = str | Operation | AsyncTracked  # a Tracked is an AsyncTracked
HEARTBEAT = 10.0  # seconds between refreshes of a running widget (the front-end expects < 35 s)


_default: Operations | None = None
_default_lock = threading.Lock()


def default_client() -> Operations:
    """The one client that widgets made from a bare name share (``Operations()``, from the
    environment's key), closed at interpreter exit. AuthenticationError if there is no key."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Operations()
            atexit.register(_default.close)
        return _default


class OperationWidget(anywidget.AnyWidget):
    """A live view of one operation: progress bar, status badge, elapsed time, ETA and Cancel.
    A succeeded video plays inline, with Save: a view asks for it, the kernel downloads it through
    the client and sends the bytes as a binary buffer (never in the synced state, which only
    counts the videos); a video past 64 MB or a failed download is said as text.

    ``OperationWidget(name_or_op_or_tracked, client=None, notify=False)``; a name or Operation is
    tracked with a blocking ``Operations`` client (default: one shared ``Operations()`` from
    GEMINI_API_KEY). ``notify=True`` (or the bell) tells when it ends, once, while it is shown.
    With AsyncOperations, use ``await client.watch(name)``.

    Closing it closes the handle it tracked a name with; a handle it was given stays open
    (``close_handle=True``: close that too, for a handle made just for it, as ``watch()`` does).
    In a notebook, a re-run of the cell that made it closes it, as ``close()`` would.
    """

    _esm = STATIC / "widgets.js"
    _css = STATIC / "widgets.css"
    _view = t.Unicode("operation").tag(sync=True)  # which view of the shared module renders it

    # The synced state: server text and figures only. Never a key, a header or a client.
    name = t.Unicode("", help="Full operation name").tag(sync=True)
    op_id = t.Unicode("", help="Last segment of the name").tag(sync=True)
    kind = t.Unicode("other", help="What it is for: one of ops_widgets' KINDS").tag(sync=True)
    kind_label = t.Unicode("", help="What the kind is called on screen (the front-end keeps no list of kinds)").tag(
        sync=True)
    state = t.Unicode("running", help="running, cancelling, succeeded, failed, cancelled or filtered").tag(sync=True)
    progress = t.Float(None, allow_none=True, help="Percent, or None when not reported").tag(sync=True)
    elapsed = t.Float(None, allow_none=True, help="Seconds since it started").tag(sync=True)
    eta = t.Float(None, allow_none=True, help="Seconds left, or None").tag(sync=True)
    eta_is_estimate = t.Bool(False, help="ETA from typical durations, not progress").tag(sync=True)
    progress_rate = t.Float(0.0, help="Percent per second now (0: unknown); the bar moves on between polls").tag(
        sync=True)
    error_code = t.Unicode("", help="gRPC code name and number of a failure").tag(sync=True)
    error_message = t.Unicode("", help="The server's error message (shown as text)").tag(sync=True)
    result = t.List(t.Dict(), help="Short result items: {label, text}, plain text").tag(sync=True)
    poll_error = t.Unicode("", help="Why polling is failing, while it retries").tag(sync=True)
    stopped = t.Unicode("", help="Why nothing polls it any more although it is not done; empty while polled").tag(
        sync=True)
    cancel_error = t.Unicode("", help="Why the last cancel failed").tag(sync=True)
    compact = t.Bool(False, help="One row, for lists of operations").tag(sync=True)
    polling = t.Bool(True, help="False when nothing polls it any more while it runs (its client was closed)").tag(
        sync=True)
    can_cancel = t.Bool(True, help="Whether the service can cancel it at all (Gemini API: batches only)").tag(
        sync=True)
    video_count = t.Int(0, help="How many videos it has to play: their bytes are sent when a view asks, "
                        "never kept in this state").tag(sync=True)
    # Set by Python or by the bell; only the front-end acts on it. A saved notebook reopened
    # notifies nothing: the front-end never tells of an operation that had ended when first shown.
    notify = t.Bool(False, help="Say when it ends while the page shows it (JupyterLab's notification, or "
                    "the browser's when the page is hidden); the bell toggles it").tag(sync=True)

    def __init__(self, target: Target, client: Operations | None = None, *, close_handle: bool = False,
                 **kwargs: Any) -> None:
        handle = handle_for(target, client)
        watch_files_weakly(self)  # or anywidget keeps every instance, closed or not
        super().__init__(**kwargs)
        self._handle = handle
        self._owns_handle = close_handle or not isinstance(target, AsyncTracked)
        self._throttle = Throttle(0.1, clock=handle.clock.monotonic)
        self._cancelling = False  # these two: engine thread only
        self._cancel_error = ""
        self._closed = False
        self._sightings = Sightings()
        # Saved outputs: every display of this widget shares one display id, so that the static
        # snapshot in them is rewritten once it has ended (see _ipython_display_).
        self._display_id = uuid.uuid4().hex
        self._displayed = False
        self._ended_key: tuple[str, bool] | None = None  # what the last refresh showed
        self._on_end: list[Callable[[], None]] = []  # engine thread: called when it ends
        self._videos: dict[int, Future[bytes]] = {}  # downloads, shared by every view that asks
        self._videos_lock = threading.Lock()
        self.on_msg(self._on_front_message)
        # The first call pushes the whole state (on the engine thread) before this returns.
        self._unsubscribe = handle.subscribe(self._on_change)
        handle.call_later(HEARTBEAT, self._beat)
        # A re-run of the cell that made a widget closes it (its views went with the cell's old
        # outputs; it would go on sending them updates and keep its videos): ipywidgets and the
        # comm keep every open widget. After ours is live, so a poller both follow never stops.
        supersede(self)

    @property
    def tracked(self) -> AsyncTracked:
        """The engine handle this widget shows."""
        return self._handle

    @property
    def operation(self) -> Operation:
        return self._handle.operation

    def __str__(self) -> str:
        """The one text form: "name  state  42%  1m 12s", as str(op) and the terminal write it."""
        return summary_line(self._handle.operation, self._handle.elapsed)

    __repr__ = __str__  # what a notebook shows as text/plain, and a terminal or script prints

    def snapshot_html(self) -> str:
        """The widget as static HTML (escaped, inline colours, no script): what a saved notebook
        shows where the live widget cannot run (GitHub, nbviewer, nbconvert without widget state)."""
        return operation_html(self._view_state(), str(self))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_snapshot(super()._repr_mimebundle_(**kwargs), str(self), self.snapshot_html())

    def _ipython_display_(self) -> None:
        """Shown with a display id (the last expression of a cell too), so that the saved output's
        snapshot can be refreshed when the operation ends while the kernel lives."""
        self._displayed = publish(self._repr_mimebundle_(), self._display_id) or self._displayed

    # -- on the engine thread -----------------------------------------------------------------

    def _on_change(self, op: Operation) -> None:
        self._push()
        self._refresh_if_ended()

    def _beat(self) -> None:
        """While running: refresh elapsed/ETA every HEARTBEAT seconds. The front-end counts
        these as signs of life, so a kernel busy in a cell still looks live."""
        if self._closed or not self._handle.polling:
            return  # nothing live behind it any more: let the front-end say so
        self._push()
        self._handle.call_later(HEARTBEAT, self._beat)

    def _push(self) -> None:
        """Every state change goes out through the throttle: at most ten messages a second."""
        self._throttle.run(self._send_state, self._handle.call_later)

    def _send_state(self) -> None:
        if self._closed:
            return
        state = self._view_state()
        with self.hold_sync():  # everything one poll changed goes out in one message
            for key, value in state.items():
                if getattr(self, key) != value:
                    setattr(self, key, value)

    def _view_state(self) -> dict[str, Any]:
        """Every synced trait, from the handle's latest snapshot and figures."""
        h = self._handle
        op = h.operation
        poll_error, stopped = poll_status(op.done, h.polling, h.last_error)
        return {"video_count": video_count(op)} | view_state(
            op,
            elapsed=h.elapsed,
            eta=h.eta,
            eta_is_estimate=h.eta_is_estimate,
            cancelling=self._cancelling or h.cancel_requested,
            can_cancel=h.can_cancel,
            polling=h.polling,
            poll_error=poll_error,
            stopped=stopped,
            cancel_error=self._cancel_error,
            progress_rate=h.progress_rate,
        )

    def _refresh_if_ended(self) -> None:
        """Once it has ended (done, or nothing polls it any more), rewrite the saved outputs'
        snapshot. At once, not after the throttle: the update then reaches the kernel's output
        before a wait() on the same poll returns, so the cell running now carries it (nbclient
        keeps only the messages of the cell it runs)."""
        op = self._handle.operation
        ended = op.done or not self._handle.polling
        shown = (op.state.value, ended)
        if self._closed or not ended or shown == self._ended_key:
            return
        self._ended_key = shown
        if self._displayed:
            refresh(self._display_id, self._repr_mimebundle_)
        for call in list(self._on_end):
            call()

    def _start_cancel(self) -> None:
        h = self._handle
        if h.operation.done or self._cancelling or not h.can_cancel or not h.polling:
            return
        self._cancelling = True
        self._cancel_error = ""
        self._push()
        future = self._handle.request_cancel()
        future.add_done_callback(lambda f: self._handle.call_soon(lambda: self._cancel_done(f)))

    def _cancel_done(self, future: Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self._cancelling = False
            self._cancel_error = f"Cancel failed: {exc}"
        self._push()

    # -- from the browser or the kernel (any thread) --------------------------------------------

    def _on_front_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "cancel":
            self.cancel()
        elif kind == "ping":
            self.send({"type": "pong"})  # the front-end shows "not live" when nobody answers
        elif kind == "on_screen":
            self._on_screen(content.get("view"), content.get("value") is True)
        elif kind == "video_request":
            self._video_asked(content.get("index"))

    def _on_screen(self, view: Any, visible: bool) -> None:
        """A view (of possibly several of this widget) came into sight or left it: while any is
        in sight, the operation is polled at the watched cadence."""
        on = self._sightings.report(view, visible)
        if not self._closed:
            self._handle.set_on_screen(on)

    # -- videos: downloaded when a view asks, sent as a binary buffer (never in the saved state) --

    def _video_asked(self, index: Any) -> None:
        """A view asks for video ``index`` of the succeeded operation (any thread): one download
        per video, shared by every view that asks; a failed one is tried again at the next ask.
        It runs on the engine loop, apart from polling: whatever happens goes to the page as text."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_VIDEOS or self._closed:
            return
        with self._videos_lock:
            future = self._videos.get(index)
            if future is None or future.cancelled() or (future.done() and future.exception() is not None):
                future = self._handle.request_video(index, max_bytes=INLINE_VIDEO_MAX)
                self._videos[index] = future
        future.add_done_callback(lambda f: self._send_video(index, f))

    def _send_video(self, index: int, future: Future[bytes]) -> None:
        if self._closed or future.cancelled():
            return
        op = self._handle.operation
        exc = future.exception()
        if exc is None:
            data = future.result()
            self.send(video_message(op, index, data), buffers=[data])
            return
        if isinstance(exc, TooLargeError):
            text = too_large_text(exc)
        elif isinstance(exc, OpsError):
            text = f"The video could not be fetched: {exc}"
        else:  # a bug: said plainly on the page, logged in full
            logger.error("downloading video %d of %s failed", index, op.name, exc_info=exc)
            text = f"The video could not be fetched ({type(exc).__name__}); see the kernel's log"
        self.send(video_message(op, index, None, text))

    def cancel(self) -> None:
        """Ask the server to cancel (once); the badge shows "cancelling" until it confirms."""
        self._handle.call_soon(self._start_cancel)

    def close(self) -> None:
        self._closed = True
        for future in list(getattr(self, "_videos", {}).values()):
            future.cancel()  # a download still under way stops; its bytes are let go
        unsubscribe = getattr(self, "_unsubscribe", None)  # None if __init__ failed half-way
        if unsubscribe is not None:
            unsubscribe()
            if self._owns_handle:  # a handle it was given is its giver's to close
                self._handle.close()
        super().close()


def handle_for(target: Target, client: Operations | None) -> AsyncTracked:
    if isinstance(target, AsyncTracked):
        return target
    if not isinstance(target, (str, Operation)):
        raise TypeError(f"expected an operation name, an Operation or a tracked handle, got {type(target).__name__}")
    if isinstance(client, AsyncOperations):
        raise TypeError("with AsyncOperations, use `await client.watch(name)`")
    return (client or default_client()).track(target)

