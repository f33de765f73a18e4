"""OperationWidget: one operation, live, as an anywidget bound to the engine's Tracked handle.

It never polls: it subscribes to the handle, and every poll that changed something becomes one
state message (hold_sync), at most ten a second. Updates arrive on the engine thread, which
reaches the browser both while the kernel is idle and while another cell blocks. A click on
Cancel is a message, handed to the engine loop thread-safely.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

import anywidget
import ipywidgets
import traitlets as t

from .._engine import AsyncTracked, Tracked, _Handle
from .._types import Operation
from ._view import Throttle, summary_line, view_state

if TYPE_CHECKING:
    from .._sync import Operations

__all__ = ["OperationWidget", "watch_all"]

# In a wheel the front-end ships in ops_widgets/static; in a clone (editable install) it is js/.
# Paths, not text, so that ANYWIDGET_HMR=1 can hot-reload them while developing.
_PACKAGE = Path(__file__).resolve().parent.parent
_STATIC = _PACKAGE / "static" if (_PACKAGE / "static" / "widgets.js").is_file() else _PACKAGE.parent / "js"

Target = Union[str, Operation, Tracked, AsyncTracked]
HEARTBEAT = 10.0  # seconds between refreshes of a running widget (the front-end expects < 35 s)


class OperationWidget(anywidget.AnyWidget):  # type: ignore[misc]
    """A live view of one operation: progress bar, status badge, elapsed time, ETA and Cancel.

    ``OperationWidget(name_or_op_or_tracked, client=None)``; a name or Operation needs a blocking
    ``Operations`` client (default: ``Operations()`` from GEMINI_API_KEY). With AsyncOperations,
    use ``await client.watch(name)``.
    """

    _esm = _STATIC / "widgets.js"
    _css = _STATIC / "widgets.css"
    _view = t.Unicode("operation").tag(sync=True)  # which view of the shared module renders it

    # The synced state: server text and figures only. Never a key, a header or a client.
    name = t.Unicode("", help="Full operation name").tag(sync=True)
    op_id = t.Unicode("", help="Last segment of the name").tag(sync=True)
    kind = t.Unicode("other", help="video, tuning, import, batch or other").tag(sync=True)
    state = t.Unicode("running", help="running, cancelling, succeeded, failed or cancelled").tag(sync=True)
    progress = t.Float(None, allow_none=True, help="Percent, or None when not reported").tag(sync=True)
    elapsed = t.Float(None, allow_none=True, help="Seconds since it started").tag(sync=True)
    eta = t.Float(None, allow_none=True, help="Seconds left, or None").tag(sync=True)
    eta_is_estimate = t.Bool(False, help="ETA from typical durations, not progress").tag(sync=True)
    error_code = t.Unicode("", help="gRPC code name and number of a failure").tag(sync=True)
    error_message = t.Unicode("", help="The server's error message (shown as text)").tag(sync=True)
    result = t.List(t.Dict(), help="Short result items: {label, text, href?}").tag(sync=True)
    poll_error = t.Unicode("", help="Why polling is failing, while it retries").tag(sync=True)
    cancel_error = t.Unicode("", help="Why the last cancel failed").tag(sync=True)
    compact = t.Bool(False, help="One row, for lists of operations").tag(sync=True)

    def __init__(self, target: Target, client: Operations | None = None, **kwargs: Any) -> None:
        handle = _handle_for(target, client)
        super().__init__(**kwargs)
        self._handle = handle
        self._throttle = Throttle(0.1)
        self._cancelling = False
        self._cancel_error = ""
        self._closed = False
        self.on_msg(self._on_front_message)
        self._unsubscribe = handle.subscribe(self._on_change)
        try:
            handle._poller.hub.loop.call_soon_threadsafe(self._beat)
        except RuntimeError:
            pass  # no engine loop any more: a finished view

    @property
    def tracked(self) -> _Handle:
        """The engine handle this widget shows."""
        return self._handle

    @property
    def operation(self) -> Operation:
        return self._handle.operation

    def __repr__(self) -> str:
        return f"<OperationWidget {summary_line(self._handle.operation, self._handle.elapsed)}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):
            bundle[0]["text/plain"] = repr(self)
        elif isinstance(bundle, dict):
            bundle["text/plain"] = repr(self)
        return bundle

    # -- updates from the engine ----------------------------------------------------------

    def _on_change(self, op: Operation) -> None:
        self._throttle.run(self._push, self._handle._poller.hub.loop)

    def _beat(self) -> None:
        """On the engine loop, while running: refresh elapsed/ETA every HEARTBEAT seconds. The
        front-end counts these as signs of life, so a kernel busy in a cell still looks live."""
        if self._closed or self._handle.operation.done or self._handle._poller.stopped:
            return  # nothing live behind it any more: let the front-end say so
        self._push()
        self._handle._poller.hub.loop.call_later(HEARTBEAT, self._beat)

    def _push(self) -> None:
        h = self._handle
        op = h.operation
        eta, estimate = h._poller.eta()
        error = h.last_error
        # Done on first sight with no times in its metadata: how long it ran is not known.
        unknown = op.done and op.create_time is None and not h._poller.saw_running
        state = view_state(
            op,
            elapsed=None if unknown else h.elapsed,
            eta=eta,
            eta_is_estimate=estimate,
            cancelling=self._cancelling or h.cancel_requested,
            poll_error="" if error is None else f"Polling keeps failing, still trying: {error}",
            cancel_error=self._cancel_error,
        )
        with self.hold_sync():  # everything one poll changed goes out in one message
            for key, value in state.items():
                if getattr(self, key) != value:
                    setattr(self, key, value)

    # -- messages from the browser ----------------------------------------------------------

    def _on_front_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "cancel":
            self.cancel()
        elif kind == "ping":
            self.send({"type": "pong"})  # the front-end shows "not live" when nobody answers

    def cancel(self) -> None:
        """Ask the server to cancel (once); the badge shows "cancelling" until it confirms."""
        if self._handle.operation.done or self._cancelling:
            return
        self._cancelling = True
        self._cancel_error = ""
        self._push()
        poller = self._handle._poller
        # Possibly on the kernel's thread or a subshell's: only hand the work over.
        future = asyncio.run_coroutine_threadsafe(poller.cancel(), poller.hub.loop)
        future.add_done_callback(self._cancel_done)

    def _cancel_done(self, future: Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self._cancelling = False
            self._cancel_error = f"Cancel failed: {exc}"
        self._push()

    def close(self) -> None:
        self._closed = True
        unsubscribe = getattr(self, "_unsubscribe", None)  # None if __init__ failed half-way
        if unsubscribe is not None:
            unsubscribe()
            self._handle.close()
        super().close()


def _handle_for(target: Target, client: Operations | None) -> _Handle:
    if isinstance(target, _Handle):
        return target
    if not isinstance(target, (str, Operation)):
        raise TypeError(f"expected an operation name, an Operation or a tracked handle, got {type(target).__name__}")
    from .._client import AsyncOperations
    from .._sync import Operations

    if isinstance(client, AsyncOperations):
        raise TypeError("with AsyncOperations, use `await client.watch(name)`")
    return (client or Operations()).track(target)


def watch_all(
    targets: Iterable[Target], client: Operations | None = None, *, poll_interval: float | None = None
) -> ipywidgets.VBox:
    """A compact stacked list of OperationWidgets, one row per operation."""
    widgets = []
    for target in targets:
        if not isinstance(target, _Handle):
            if client is None:
                from .._sync import Operations

                client = Operations()
            target = client.track(target, poll_interval=poll_interval)
        widgets.append(OperationWidget(target, compact=True))
    return ipywidgets.VBox(widgets)
