"""OperationsTable: many operations as a table widget, with paging, sorting, filters, selection,
bulk cancel/delete, and live state for the running rows on screen.

Only the visible page travels to the browser; the frame stays in Python. Filters and sorting are
traits (state); selection and actions are messages. Running rows on screen are tracked through
the engine (one shared poller each) and updated in place, at most ten times a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import anywidget
import pandas as pd
import traitlets as t

from .. import _loop
from .._engine import _Handle
from .._frame import to_dataframe
from .._types import Operation
from ._operation import _STATIC
from ._table_view import SORTABLE, matching, page_rows
from ._view import Throttle

if TYPE_CHECKING:
    from .._sync import Operations

__all__ = ["OperationsTable"]

logger = logging.getLogger("ops_widgets")

Source = Union[pd.DataFrame, Iterable[Operation]]


class OperationsTable(anywidget.AnyWidget):  # type: ignore[misc]
    """A table of operations: ``OperationsTable(frame_or_operations, client=None)``.

    ``client`` (an Operations) is used for Cancel/Delete selected and for live updates of the
    running rows on screen; without one, ``Operations()`` from GEMINI_API_KEY is tried when first
    needed. ``table.filtered`` and ``table.selected`` give the matching rows as DataFrames.
    """

    _esm = _STATIC / "widgets.js"
    _css = _STATIC / "widgets.css"
    _view = t.Unicode("table").tag(sync=True)  # which view of the shared module renders it

    rows = t.List(t.Dict(), help="The visible page only").tag(sync=True)
    total = t.Int(0, help="Rows in the table").tag(sync=True)
    matching = t.Int(0, help="Rows that pass the filters").tag(sync=True)
    page = t.Int(0, help="0-based page").tag(sync=True)
    page_size = t.Int(50, help="Rows per page").tag(sync=True)
    sort_by = t.Unicode("create_time", help="Column to sort by").tag(sync=True)
    sort_desc = t.Bool(True).tag(sync=True)
    state_filter = t.List(t.Unicode(), help="States to show; empty shows all").tag(sync=True)
    kind_filter = t.List(t.Unicode(), help="Kinds to show; empty shows all").tag(sync=True)
    search = t.Unicode("", help="Text to find in names and error messages").tag(sync=True)
    kinds = t.List(t.Unicode(), help="Kinds present, for the filter").tag(sync=True)
    selected_count = t.Int(0).tag(sync=True)
    busy = t.Bool(False, help="A bulk action is running").tag(sync=True)
    message = t.Unicode("", help="Outcome of the last action").tag(sync=True)

    def __init__(self, frame_or_operations: Source, client: Operations | None = None, **kwargs: Any) -> None:
        from .._client import AsyncOperations

        if isinstance(client, AsyncOperations):
            raise TypeError("OperationsTable needs a blocking Operations client (it acts from the engine thread)")
        frame = (
            frame_or_operations.copy()  # ours to update in place as operations change
            if isinstance(frame_or_operations, pd.DataFrame)
            else to_dataframe(list(frame_or_operations))
        )
        super().__init__(**kwargs)
        self._frame = frame
        self._client = client
        self._lock = threading.RLock()
        self._order: pd.Index = frame.index
        self._selected: set[str] = set()
        self._cancelling: set[str] = set()
        self._live: dict[str, tuple[_Handle, Callable[[], None]]] = {}
        self._wanted: set[str] = set()
        self._throttle = Throttle(0.1)
        self.outcomes: pd.DataFrame | None = None  # of the last bulk action: name, ok, error
        with self.hold_sync():
            self.total = len(frame)
            self.kinds = sorted({str(k) for k in frame["kind"].dropna().unique()})
        self.observe(self._refilter, names=["state_filter", "kind_filter", "search", "sort_by", "sort_desc"])
        self.observe(self._repage, names=["page", "page_size"])
        self.on_msg(self._on_front_message)
        self._refilter()

    def __repr__(self) -> str:
        return (f"<OperationsTable {self.total:,} operations, {self.matching:,} matching, "
                f"{self.selected_count:,} selected>")

    # -- what Python users read -------------------------------------------------------------

    @property
    def frame(self) -> pd.DataFrame:
        """Every row, as updated live (a copy)."""
        with self._lock:
            return self._frame.copy()

    @property
    def filtered(self) -> pd.DataFrame:
        """The rows that pass the filters, in display order."""
        with self._lock:
            return self._frame.loc[self._order]

    @property
    def selected(self) -> pd.DataFrame:
        """The selected rows."""
        with self._lock:
            return self._frame[self._frame.index.isin(list(self._selected))]

    # -- filters, sorting, paging (observers: the kernel thread) -----------------------------

    @t.validate("sort_by")
    def _valid_sort(self, proposal: Any) -> str:
        if proposal["value"] not in SORTABLE:
            raise t.TraitError(f"cannot sort by {proposal['value']!r}; choose one of {', '.join(SORTABLE)}")
        return str(proposal["value"])

    def _refilter(self, _change: Any = None) -> None:
        with self._lock:
            self._order = matching(
                self._frame, states=self.state_filter, kinds=self.kind_filter, search=self.search,
                sort_by=self.sort_by, descending=self.sort_desc,
            )
        with self.hold_sync():
            self.matching = len(self._order)
            if self.page != 0:
                self.page = 0  # which calls _repage
            else:
                self._repage()

    def _repage(self, _change: Any = None) -> None:
        with self._lock:
            size = max(1, self.page_size)
            last = max(0, (len(self._order) - 1) // size)
            if self.page > last:
                self.page = last
                return
            names = list(self._order[self.page * size:(self.page + 1) * size])
            rows = page_rows(self._frame, names, selected=self._selected, cancelling=self._cancelling)
            running = {r["name"] for r in rows if r["state"] in ("running", "cancelling")}
        with self.hold_sync():
            self.rows = rows
            self.selected_count = len(self._selected)
        self._follow(running)

    # -- live rows ------------------------------------------------------------------------------

    def _follow(self, names: set[str]) -> None:
        """Track the running rows on screen, and only those."""
        with self._lock:
            self._wanted = names
            for name in [n for n in self._live if n not in names]:
                handle, unsubscribe = self._live.pop(name)
                unsubscribe()
                handle.close()
            missing = names - self._live.keys()
        client = self._client_or_none() if missing else None
        if client is None:
            return
        for name in missing:
            future = asyncio.run_coroutine_threadsafe(client._async.track(name), _loop.engine_loop())
            future.add_done_callback(lambda f, name=name: self._tracked(name, f))

    def _tracked(self, name: str, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            logger.debug("cannot follow %s: %s", name, None if future.cancelled() else future.exception())
            return
        handle = future.result()
        with self._lock:
            if name not in self._wanted or name in self._live:
                handle.close()
                return
            if name in self._cancelling:
                handle._poller.on_loop(handle._poller.expect_cancel)
            self._live[name] = (handle, handle.subscribe(lambda op: self._on_live(op)))

    def _on_live(self, op: Operation) -> None:
        with self._lock:
            if op.name not in self._frame.index:
                return
            f, name = self._frame, op.name
            f.at[name, "state"] = op.state.value
            f.at[name, "done"] = op.done
            f.at[name, "progress"] = pd.NA if op.progress is None else op.progress
            if op.failed and op.error is not None:
                f.at[name, "error_code"] = op.error.code
                f.at[name, "error_message"] = op.error.message
            if op.update_time is not None:
                f.at[name, "update_time"] = pd.Timestamp(op.update_time)
            created = f.at[name, "create_time"]
            if not pd.isna(created):  # done: how long it took; running: so far
                end = f.at[name, "update_time"] if op.done else pd.Timestamp.now(tz="UTC")
                f.at[name, "duration"] = end - created if not pd.isna(end) else pd.NaT
            if op.done:
                self._cancelling.discard(name)
        self._throttle.run(self._repage, _loop.engine_loop())

    # -- selection and actions (messages from the browser) ---------------------------------

    def _on_front_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            self.send({"type": "pong"})  # the front-end disables actions when nobody answers
            return
        with self._lock:
            if kind == "select":
                names = {str(n) for n in content.get("names", [])} & set(self._frame.index)
                if content.get("selected"):
                    self._selected |= names
                else:
                    self._selected -= names
            elif kind == "select_matching":
                self._selected |= set(self._order)
            elif kind == "clear_selection":
                self._selected.clear()
        if kind == "action" and content.get("action") in ("cancel", "delete"):
            self.run_action(str(content["action"]))
        else:
            self._repage()

    def run_action(self, action: str) -> None:
        """Cancel or delete every selected operation (what the confirmed buttons do)."""
        if action not in ("cancel", "delete"):
            raise ValueError(f"unknown action {action!r}")
        if self.busy:
            return
        with self._lock:
            names = [n for n in self._frame.index if n in self._selected]
        if not names:
            self.message = "Nothing is selected."
            return
        client = self._client_or_none()
        if client is None:
            self.message = "No client: pass client=Operations(...) to act on operations."
            return
        with self.hold_sync():
            self.busy = True
            self.message = f"{'Cancelling' if action == 'cancel' else 'Deleting'} {len(names):,} operations…"
        many = client._async.cancel_many if action == "cancel" else client._async.delete_many
        future = asyncio.run_coroutine_threadsafe(many(names, concurrency=16), _loop.engine_loop())
        future.add_done_callback(lambda f: self._action_done(action, f))

    def _action_done(self, action: str, future: Future[pd.DataFrame]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None or future.cancelled():
            with self.hold_sync():
                self.busy = False
                self.message = f"The {action} failed: {exc}"
            return
        outcomes = future.result()
        self.outcomes = outcomes
        ok = [str(n) for n in outcomes["name"][outcomes["ok"]]]
        failed = outcomes[~outcomes["ok"]]
        with self._lock:
            self._selected -= set(ok)
            if action == "cancel":
                running = set(self._frame.index[self._frame["state"] == "running"])
                self._cancelling |= set(ok) & running
                for name in ok:  # tracked rows: poll soon to see it confirmed
                    if name in self._live:
                        poller = self._live[name][0]._poller
                        poller.on_loop(poller.expect_cancel)
            else:
                self._frame = self._frame.drop(index=ok)
                self._order = self._order[~self._order.isin(ok)]
        text = f"Cancel sent for {len(ok):,} operations." if action == "cancel" else f"{len(ok):,} operations deleted."
        if len(failed):
            text += f" {len(failed):,} failed, e.g. {failed['name'].iloc[0]}: {failed['error'].iloc[0]}"
        with self.hold_sync():
            self.busy = False
            self.message = text
            self.total = len(self._frame)
            self.matching = len(self._order)
            self._repage()

    def _client_or_none(self) -> Operations | None:
        if self._client is None:
            from .._exceptions import AuthenticationError
            from .._sync import Operations

            try:
                self._client = Operations()
            except AuthenticationError:
                return None
        return self._client

    def close(self) -> None:
        with self._lock:
            for handle, unsubscribe in self._live.values():
                unsubscribe()
                handle.close()
            self._live.clear()
            self._wanted = set()
        super().close()
