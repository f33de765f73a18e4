"""OperationsTable: many operations as a table widget, with paging, sorting, filters, selection,
bulk cancel/delete, and live state for the running rows on screen.

Only the visible page travels to the browser; the frame stays in Python. Filters and sorting are
traits (state); selection and actions are messages. Running rows on screen are tracked through
the engine (one shared poller each) and updated in place, at most ten times a second.

State changes come from the kernel's thread (filters), the engine thread (live rows) and worker
threads (bulk actions): every one of them, with its hold_sync, is made under the table's lock, so
no thread's batch of changes can swallow another's.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anywidget
import pandas as pd
import traitlets as t

from .._engine import AsyncTracked
from .._exceptions import AuthenticationError
from .._frame import to_dataframe
from .._text import format_duration
from .._types import Operation
from ._lifetime import supersede, watch_files_weakly
from ._operation import STATIC, default_client
from ._snapshot import table_html
from ._table_view import SORTABLE, TableIndex, page_rows
from ._view import Throttle

if TYPE_CHECKING:
    from .._sync import Operations

__all__ = ["OperationsTable"]

logger = logging.getLogger("ops_widgets")

Source = pd.DataFrame | Iterable[Operation]


class OperationsTable(anywidget.AnyWidget):
    """A table of operations: ``OperationsTable(frame_or_operations, client=None)``.

    ``client`` (an Operations) is used for Cancel/Delete selected and for live updates of the
    running rows on screen; without one, the widgets' shared default client (from GEMINI_API_KEY)
    is tried when first needed. ``table.filtered`` and ``table.selected`` give the matching rows as DataFrames.
    Re-running the notebook cell that made a table closes the table its last run made; ``close()``
    stops the live rows and lets go of the rows.
    """

    _esm = STATIC / "widgets.js"
    _css = STATIC / "widgets.css"
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
    cancellable_count = t.Int(0, help="Selected rows the service can cancel (Gemini API: batches)").tag(sync=True)
    deletable_count = t.Int(0, help="Selected rows the service can delete").tag(sync=True)
    busy = t.Bool(False, help="A bulk action is running").tag(sync=True)
    message = t.Unicode("", help="Outcome of the last action").tag(sync=True)

    def __init__(self, frame_or_operations: Source, client: Operations | None = None, **kwargs: Any) -> None:
        from .._client import AsyncOperations

        if isinstance(client, AsyncOperations):
            raise TypeError("OperationsTable needs a blocking Operations client (it acts from the engine thread)")
        # A re-run of the cell that made a table closes that table first: nothing else would
        # (ipywidgets and the comm keep every open widget), and its rows go before ours come.
        supersede(self)
        self._closed = False
        frame = (
            # Ours to update in place as operations change. Copy-on-write (pandas 3): the rows
            # are shared with the caller's frame until a live row writes to one of its columns.
            frame_or_operations.copy(deep=False)
            if isinstance(frame_or_operations, pd.DataFrame)
            else to_dataframe(list(frame_or_operations))
        )
        watch_files_weakly(self)  # or anywidget keeps every instance, closed or not
        super().__init__(**kwargs)
        self._frame = frame
        # Sort orders and the search buffer, kept across filter, sort and search changes: told
        # of live rows' changes (changed()), replaced when rows go (a delete).
        self._index = TableIndex(frame)
        self._client = client
        self._lock = threading.RLock()
        self._order: pd.Index = frame.index
        self._selected: set[str] = set()
        self._able_memo: dict[str, dict[str, bool]] = {}
        self._workers = 0
        self._idle = threading.Condition()
        self._cancelling: set[str] = set()
        self._live: dict[str, tuple[AsyncTracked, Callable[[], None]]] = {}
        self._wanted: set[str] = set()
        self._throttle = Throttle(0.1)
        self._stale_order = False  # a live row changed state since the filters were last applied
        self.outcomes: pd.DataFrame | None = None  # of the last bulk action: name, ok, error
        with self._lock, self.hold_sync():
            self.total = len(frame)
            self.kinds = sorted({str(k) for k in frame["kind"].dropna().unique()})
        self.observe(self._on_filter, names=["state_filter", "kind_filter", "search", "sort_by", "sort_desc"])
        self.observe(self._repage, names=["page", "page_size"])
        self.on_msg(self._on_front_message)
        self._refilter()

    def __repr__(self) -> str:
        return f"<{self._counts()}>"

    def _counts(self) -> str:
        if self._closed:
            return "OperationsTable (closed)"
        return (f"OperationsTable {self.total:,} operations, {self.matching:,} matching, "
                f"{self.selected_count:,} selected")

    def __str__(self) -> str:
        """Its counts, then the visible page in the one text form ("name  state  42%  1m 12s")."""
        lines = [self._counts()]
        for r in self.rows:
            progress = r.get("progress")
            parts = [r["name"], r["state"]]
            if progress is not None:
                parts.append(f"{progress:.0f}%")
            if r.get("duration") is not None:
                parts.append(format_duration(r["duration"]))
            lines.append("  ".join(parts))
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Beside the live view: the text form, and the visible page as static HTML for saved
        notebooks (GitHub, nbviewer, nbconvert without widget state)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = str(self)
            data["text/html"] = table_html(self._counts(), self.rows)
        return bundle

    # -- what Python users read -------------------------------------------------------------

    @property
    def frame(self) -> pd.DataFrame:
        """Every row, as updated live (a copy)."""
        with self._lock:
            frame: pd.DataFrame = self._frame.copy()
        return frame

    @property
    def filtered(self) -> pd.DataFrame:
        """The rows that pass the filters, in display order."""
        with self._lock:
            frame: pd.DataFrame = self._frame.loc[self._order]
        return frame

    @property
    def selected(self) -> pd.DataFrame:
        """The selected rows."""
        with self._lock:
            frame: pd.DataFrame = self._frame[self._frame.index.isin(list(self._selected))]
        return frame

    # -- filters, sorting, paging (observers: the kernel thread) -----------------------------

    @t.validate("sort_by")
    def _valid_sort(self, proposal: Any) -> str:
        if proposal["value"] not in SORTABLE:
            raise t.TraitError(f"cannot sort by {proposal['value']!r}; choose one of {', '.join(SORTABLE)}")
        return str(proposal["value"])

    def _on_filter(self, _change: Any) -> None:
        """A filter or the sort changed (a person did it): the last action's message is about
        rows that may not be shown any more, so it goes."""
        with self._lock, self.hold_sync():
            self.message = ""
            self._refilter()

    def _refilter(self) -> None:
        """Filters applied anew, from the first page."""
        with self._lock, self.hold_sync():
            self._reorder()
            if self.page != 0:
                self.page = 0  # which calls _repage
            else:
                self._repage()

    def _reorder(self) -> None:
        """Filters applied anew on the rows as they are now (states change: live rows, bulk
        actions), staying on the page shown; the caller repages."""
        with self._lock:
            self._order = self._index.matching(
                states=self.state_filter, kinds=self.kind_filter, search=self.search,
                sort_by=self.sort_by, descending=self.sort_desc, cancelling=self._cancelling,
            )
            self.matching = len(self._order)

    def _repage(self, _change: Any = None) -> None:
        with self._lock:
            size = max(1, self.page_size)
            last = max(0, (len(self._order) - 1) // size)
            if self.page > last:
                self.page = last
                return
            names = list(self._order[self.page * size:(self.page + 1) * size])
            rows = page_rows(self._frame, names, selected=self._selected, cancelling=self._cancelling)
            # Follow what is not done yet (a batch's own state may end before `done` does).
            running = {n for n, done in zip(names, self._frame.loc[names, "done"], strict=True) if not done}
            with self.hold_sync():
                self.rows = rows
                self.selected_count = len(self._selected)
                self.cancellable_count = len(self._able("cancel", self._selected))
                self.deletable_count = len(self._able("delete", self._selected))
        self._follow(running)

    # -- live rows ------------------------------------------------------------------------------

    def _follow(self, names: set[str]) -> None:
        """Track the running rows on screen, and only those."""
        with self._lock:
            if self._closed:
                return
            self._wanted = names
            for name in [n for n in self._live if n not in names]:
                handle, unsubscribe = self._live.pop(name)
                unsubscribe()
                handle.close()
            missing = names - self._live.keys()
        client = self._client_or_none() if missing else None
        if client is None:
            return
        # track() blocks on its first GETs: a worker does it, never the kernel or engine thread.
        self._start_worker(self._track, client, sorted(missing), name="ops-widgets-table-track")

    def _track(self, client: Operations, names: list[str]) -> None:
        for name in names:
            try:
                handle = client.track(name)
            except Exception as exc:  # deleted meanwhile, no access: the row just stays as listed
                logger.debug("cannot follow %s: %s", name, exc)
                continue
            with self._lock:
                wanted = name in self._wanted and name not in self._live
                if wanted:
                    self._live[name] = (handle, _nothing)  # claimed; subscribed just below
                    if name in self._cancelling:
                        handle.expect_cancel()
            if not wanted:
                handle.close()
                continue
            # Not under the lock: the first call runs on the engine thread, which takes it.
            unsubscribe = handle.subscribe(functools.partial(self._on_live, handle=handle))
            with self._lock:
                if self._live.get(name, (None,))[0] is handle:
                    self._live[name] = (handle, unsubscribe)
                    continue
            unsubscribe()  # scrolled away meanwhile

    def _on_live(self, op: Operation, *, handle: AsyncTracked) -> None:
        with self._lock:
            if op.name not in self._frame.index:
                return
            name = op.name
            moved = self._frame.at[name, "state"] != op.state.value or (op.done and name in self._cancelling)
            values: dict[str, Any] = {
                "state": op.state.value, "done": op.done,
                "progress": pd.NA if op.progress is None else op.progress,
            }
            if op.failed and op.error is not None:
                values["error_code"] = op.error.code
                values["error_message"] = op.error.message
            if op.update_time is not None:
                values["update_time"] = pd.Timestamp(op.update_time)
            # The engine's one rule for how long it has run; with no createTime (Veo) the table
            # says nothing rather than how long it has been watched.
            elapsed = handle.elapsed if op.create_time is not None else None
            values["duration"] = pd.NaT if elapsed is None else pd.Timedelta(seconds=elapsed)
            self._set_row(name, values)
            if op.done:
                self._cancelling.discard(name)
            elif handle.cancel_requested and name not in self._cancelling:
                self._cancelling.add(name)  # sent from elsewhere (a widget on the same client)
                moved = True
            self._stale_order = self._stale_order or bool(moved)
        self._throttle.run(self._relive, handle.call_later)

    def _set_row(self, name: str, values: dict[str, Any]) -> None:
        """One row's new values, in place; the index forgets only what was derived from the
        columns whose value really changed (a poll that changed nothing keeps every order)."""
        f, changed = self._frame, []
        for column, value in values.items():
            old = f.at[name, column]
            same = _missing(old) and _missing(value) if _missing(old) or _missing(value) else bool(old == value)
            if not same:
                f.at[name, column] = value
                changed.append(column)
        if changed:
            self._index.changed(changed)

    def _relive(self) -> None:
        """Live changes out to the browser; a row whose state changed may leave the filter."""
        with self._lock, self.hold_sync():
            if self._closed:
                return
            if self._stale_order:
                self._stale_order = False
                self._reorder()
            self._repage()

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
            selected = [n for n in self._frame.index if n in self._selected]
            names = self._able(action, selected)
        if not names:
            with self._lock:
                self.message = ("Nothing is selected." if not selected else
                                f"The service cannot {action} any of the {len(selected):,} selected operations.")
            return
        skipped = len(selected) - len(names)
        client = self._client_or_none()
        if client is None:
            with self._lock:
                self.message = "No client: pass client=Operations(...) to act on operations."
            return
        with self._lock, self.hold_sync():
            self.busy = True
            self.message = f"{'Cancelling' if action == 'cancel' else 'Deleting'} {len(names):,} operations…"
        many = client.cancel_many if action == "cancel" else client.delete_many

        def work() -> None:
            try:
                outcomes = many(names, concurrency=16)
            except Exception as exc:
                with self._lock, self.hold_sync():
                    self.busy = False
                    self.message = f"The {action} failed: {exc}"
                return
            self._action_done(action, outcomes, skipped)

        self._start_worker(work, name=f"ops-widgets-table-{action}")

    def _start_worker(self, fn: Callable[..., None], *args: Any, name: str) -> None:
        """Blocking work (first GETs, bulk actions) on a thread of its own, counted for wait_idle()."""
        def run() -> None:
            try:
                fn(*args)
            finally:
                with self._idle:
                    self._workers -= 1
                    self._idle.notify_all()

        with self._idle:
            self._workers += 1
        threading.Thread(target=run, daemon=True, name=name).start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no bulk action or first look at new running rows is under way (for
        scripts and tests); False if ``timeout`` (real seconds) ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._workers == 0, timeout)

    def _action_done(self, action: str, outcomes: pd.DataFrame, skipped: int = 0) -> None:
        self.outcomes = outcomes
        if self._closed:  # closed meanwhile: its rows are gone, the outcomes are all there is
            return
        ok = [str(n) for n in outcomes["name"][outcomes["ok"]]]
        failed = outcomes[~outcomes["ok"]]
        text = f"Cancel sent for {len(ok):,} operations." if action == "cancel" else f"{len(ok):,} operations deleted."
        if len(failed):
            text += f" {len(failed):,} failed, e.g. {failed['name'].iloc[0]}: {failed['error'].iloc[0]}"
        if skipped:
            text += f" {skipped:,} selected the service cannot {action} were left alone."
        with self._lock:
            self._selected -= set(ok)
            if action == "cancel":
                running = set(self._frame.index[self._frame["state"] == "running"])
                self._cancelling |= set(ok) & running
                for name in ok:  # tracked rows: poll soon to see it confirmed
                    if name in self._live:
                        self._live[name][0].expect_cancel()
            else:
                self._frame = self._frame.drop(index=ok)
                self._index = TableIndex(self._frame)  # other rows: orders and buffer anew
            with self.hold_sync():
                self.busy = False
                self.message = text
                self.total = len(self._frame)
                self._reorder()  # the filters again: cancelled rows leave "running" at once
                self._repage()

    def _able(self, action: str, names: Iterable[str]) -> list[str]:
        """The names the service can ``action`` (all of them when there is no client to ask)."""
        client = self._client_or_none()
        if client is None:
            return list(names)
        can = client.can_cancel if action == "cancel" else client.can_delete
        memo = self._able_memo.setdefault(action, {})
        out = []
        for name in names:
            ok = memo.get(name)
            if ok is None:
                ok = memo[name] = can(name)
            if ok:
                out.append(name)
        return out

    def _client_or_none(self) -> Operations | None:
        if self._client is None:
            try:
                self._client = default_client()
            except AuthenticationError:
                return None
        return self._client

    def close(self) -> None:
        """Stop following the running rows and let go of every row (a closed table holds an empty
        frame). Re-running the cell that made a table closes it: the new one replaces it."""
        with self._lock:
            self._closed = True
            for handle, unsubscribe in self._live.values():
                unsubscribe()
                handle.close()
            self._live.clear()
            self._wanted = set()
            # The shell's output history (Out[n], _) may keep this object: not its rows. A copy,
            # as a slice would still hold the full arrays.
            self._frame = self._frame.iloc[:0].copy()
            self._index = TableIndex(self._frame)
            self._order = self._frame.index
            self._selected.clear()
            self._cancelling.clear()
            self._able_memo.clear()
        super().close()
        self.rows = []  # after close(): nothing more is sent


def _nothing() -> None:
    pass


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)
