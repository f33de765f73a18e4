"""OperationsList: many operations as ONE anywidget (what watch_all shows), one aligned row each,
a summary line ("37/120 done · 3 failed · ETA 4m 00s") and a confirmed "Cancel all running".

One model for the whole list (ipywidgets containers do not render in marimo; one model per row
does not scale). Like OperationWidget it never polls: it subscribes to engine handles, and every
change goes out through one throttle, at most ten state messages a second, on the engine thread
of the first handle (the others are handed over to it).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import anywidget
import traitlets as t

from .._client import AsyncOperations
from .._engine import AsyncTracked
from .._sync import Operations
from .._types import Operation
from ._display import Sightings, publish, refresh, with_snapshot
from ._lifetime import supersede, watch_files_weakly
from ._operation import HEARTBEAT, STATIC, Target, default_client
from ._snapshot import list_html
from ._view import LIST_ROW_KEYS, Throttle, list_summary, poll_status, view_state

__all__ = ["OperationsList", "watch_all"]


class OperationsList(anywidget.AnyWidget):
    """A live list of operations: ``OperationsList(handles)`` (``ops.watch_all(names)`` makes one).

    Closing it leaves the handles it was given open, but for those ``close_handles`` names
    (True: all of them; or one bool per handle), made just for it as ``watch_all()`` makes them.
    In a notebook, a re-run of the cell that made it closes it, as ``close()`` would.
    """

    _esm = STATIC / "widgets.js"
    _css = STATIC / "widgets.css"
    _view = t.Unicode("list").tag(sync=True)  # which view of the shared module renders it

    rows = t.List(t.Dict(), help="One per operation, in the order given: what each row shows").tag(sync=True)
    summary = t.Unicode("", help='"37/120 done · 3 failed · ETA 4m 00s"').tag(sync=True)
    cancellable = t.Int(0, help="Running rows the service can cancel and nothing is cancelling yet").tag(sync=True)
    not_cancellable = t.Int(0, help="Running rows the service has no cancel for").tag(sync=True)
    notify = t.Bool(False, help="Say when each operation ends while the list is shown (JupyterLab's "
                    "notification, or the browser's when the page is hidden); the bell toggles it").tag(sync=True)

    def __init__(self, handles: Sequence[AsyncTracked], *, close_handles: bool | Sequence[bool] = False,
                 **kwargs: Any) -> None:
        handles = list(handles)
        owned = [close_handles] * len(handles) if isinstance(close_handles, bool) else list(close_handles)
        if len(owned) != len(handles):  # before the comm opens: a bad call leaves nothing open
            raise ValueError(f"close_handles: {len(owned)} flags for {len(handles)} handles")
        watch_files_weakly(self)  # or anywidget keeps every instance, closed or not
        super().__init__(**kwargs)
        self._handles, self._owned = handles, owned
        self._cancelling: set[int] = set()  # these two: on the first handle's engine thread only
        self._cancel_errors: dict[int, str] = {}
        self._closed = False
        self._sightings = Sightings()
        self._display_id = uuid.uuid4().hex
        self._displayed = False
        self._ended = 0  # operations seen ended when the saved output was last rewritten
        self._unsubscribes: list[Any] = []
        self.on_msg(self._on_front_message)
        if not self._handles:
            self._send_state()
        else:
            first = self._handles[0]
            self._throttle = Throttle(0.1, clock=first.clock.monotonic)
            # Each first call pushes (through the throttle) before subscribe returns.
            self._unsubscribes = [h.subscribe(self._on_change) for h in self._handles]
            first.call_later(HEARTBEAT, self._beat)
        supersede(self)  # a re-run of its cell closes it (see OperationWidget), once ours is live

    @property
    def handles(self) -> list[AsyncTracked]:
        """The engine handles shown, one per row."""
        return list(self._handles)

    def __str__(self) -> str:
        """One line per operation, in the one text form ("name  state  42%  1m 12s")."""
        return "\n".join(str(h) for h in self._handles)

    def __repr__(self) -> str:
        return f"<OperationsList {len(self._handles)} operations: {self.summary}>"

    def snapshot_html(self) -> str:
        """The rows as static HTML (escaped, no script): what a saved notebook shows."""
        return list_html([(h.operation.state.value, str(h)) for h in self._handles])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_snapshot(super()._repr_mimebundle_(**kwargs), str(self), self.snapshot_html())

    def _ipython_display_(self) -> None:
        """Shown with a display id, so that the saved output's snapshot can be rewritten as the
        operations end while the kernel lives."""
        self._displayed = publish(self._repr_mimebundle_(), self._display_id) or self._displayed

    def _refresh_if_ended(self) -> None:
        """Once every row has ended, rewrite the saved output's snapshot. Not row by row: a
        front-end re-renders the live view on each rewrite (JupyterLab does), which would close
        an open "Cancel all running?" while others still run."""
        ended = sum(1 for h in self._handles if h.operation.done or not h.polling)
        if self._displayed and not self._closed and ended == len(self._handles) and ended != self._ended:
            self._ended = ended
            refresh(self._display_id, self._repr_mimebundle_)

    # -- on the engine thread -----------------------------------------------------------------

    def _on_change(self, _op: Any) -> None:
        self._push()
        self._refresh_if_ended()

    def _push(self) -> None:
        first = self._handles[0]  # one thread sends: the first handle's; a call from another hops over
        first.call_soon(lambda: self._throttle.run(self._send_state, first.call_later))

    def _beat(self) -> None:
        """While anything runs and is polled: refresh elapsed/ETA (the front-end's sign of life)."""
        if self._closed or not any(h.polling for h in self._handles):
            return
        self._push()
        self._handles[0].call_later(HEARTBEAT, self._beat)

    def _row(self, i: int, h: AsyncTracked) -> dict[str, Any]:
        op = h.operation
        poll_error, stopped = poll_status(op.done, h.polling, h.last_error)
        state = view_state(
            op, elapsed=h.elapsed, eta=h.eta, eta_is_estimate=h.eta_is_estimate,
            cancelling=i in self._cancelling or h.cancel_requested, can_cancel=h.can_cancel, polling=h.polling,
            poll_error=poll_error, stopped=stopped, cancel_error=self._cancel_errors.get(i, ""),
        )
        return {key: state[key] for key in LIST_ROW_KEYS}

    def _send_state(self) -> None:
        if self._closed:
            return
        rows = [self._row(i, h) for i, h in enumerate(self._handles)]
        running = [r for r in rows if r["state"] == "running" and not r["stopped"]]
        with self.hold_sync():  # one message
            self.rows = rows
            self.summary = list_summary(rows)
            self.cancellable = sum(bool(r["can_cancel"]) for r in running)
            self.not_cancellable = len(running) - self.cancellable

    def _cancel_running(self) -> None:
        for i, h in enumerate(self._handles):
            op = h.operation
            if op.done or not h.polling or not h.can_cancel or i in self._cancelling or h.cancel_requested:
                continue
            self._cancelling.add(i)
            self._cancel_errors.pop(i, None)
            h.request_cancel().add_done_callback(functools.partial(self._cancel_sent, i))
        self._push()

    def _cancel_sent(self, i: int, future: Future[None]) -> None:
        self._handles[0].call_soon(lambda: self._cancel_done(i, future))  # from the handle's loop to ours

    def _cancel_done(self, i: int, future: Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self._cancelling.discard(i)
            self._cancel_errors[i] = f"Cancel failed: {exc}"
        self._push()

    # -- from the browser or the kernel (any thread) --------------------------------------------

    def _on_front_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "cancel_all":
            self.cancel_running()
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind == "on_screen":
            self._on_screen(str(content.get("view")), content.get("value") is True)

    def _on_screen(self, view: str, visible: bool) -> None:
        """A view of the list came into sight or left it: while any is in sight, its operations
        are polled at the watched cadence."""
        on = self._sightings.report(view, visible)
        if not self._closed:
            for h in self._handles:
                h.set_on_screen(on)

    def cancel_running(self) -> None:
        """Ask the server to cancel every running operation it can cancel (once each); what the
        confirmed "Cancel all running" does."""
        if self._handles:
            self._handles[0].call_soon(self._cancel_running)

    def close(self) -> None:
        self._closed = True
        # None: __init__ failed before it subscribed (Widget.__del__ closes a half-built list too).
        unsubscribes = getattr(self, "_unsubscribes", None)
        if unsubscribes is not None:
            for unsubscribe, h, owned in zip(unsubscribes, self._handles, self._owned, strict=False):
                unsubscribe()
                if owned:  # a handle it was given is its giver's to close
                    h.close()
        self._unsubscribes = []
        super().close()


def watch_all(
    targets: Iterable[Target], client: Operations | None = None, *, poll_interval: float | None = None,
    notify: bool = False,
) -> OperationsList:
    """One live list widget over many operations, one aligned row each; names and Operations are
    tracked concurrently (with ``client``, else the shared default client). ``notify=True``: one
    notification for each operation that ends while the list is shown."""
    targets = list(targets)
    todo = [x for x in targets if not isinstance(x, AsyncTracked)]
    if isinstance(client, AsyncOperations):
        raise TypeError("with AsyncOperations, use `await client.watch_all(names)`")
    for x in todo:
        if not isinstance(x, (str, Operation)):
            raise TypeError(f"expected operation names, Operations or tracked handles, got {type(x).__name__}")
    tracked = iter((client or default_client()).track_all(todo, poll_interval=poll_interval) if todo else [])
    # The handles tracked here are the list's own, closed with it; those given stay their giver's.
    return OperationsList([x if isinstance(x, AsyncTracked) else next(tracked) for x in targets],
                          close_handles=[not isinstance(x, AsyncTracked) for x in targets], notify=notify)
