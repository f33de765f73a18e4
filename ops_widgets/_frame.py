"""Operations as a pandas DataFrame: typed columns, one row per operation, indexed by name.

The decisions (state, kind, progress, where a time is and how it reads, the error, the model)
are the Operation model's rules, functions over OperationFields (ops_widgets._types and
_progress) that Operation's properties call too; this module only lays them out in columns, from
Operations or straight from the checked page dicts (RawOperation: a listing builds no Operation per
row). The time columns hold exactly Operation.create_time / update_time (NaT where those are
None), converted once per column.
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._progress import progress_from_metadata, time_from_metadata
from ._types import Operation, OperationFields, State, id_of, is_failed, kind_of, model_of, state_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "FrameBuilder", "ListingProgress", "to_dataframe"]

COLUMNS = [
    "id", "kind", "state", "done", "progress", "create_time", "update_time", "duration",
    "error_code", "error_message", "parent", "model",
]
# The state categories, in State's order: running, succeeded, failed, cancelled, filtered.
STATES = [s.value for s in State]
_STATE_VALUES = {s: s.value for s in State}  # an Enum's .value is a descriptor call: once per row counts


def _utc_column(times: list[datetime | None]) -> pd.Series:
    """Aware datetimes (any offsets) and None as one datetime64[ns, UTC] column, NaT for None.

    A time the Operation read but nanoseconds cannot hold (before 1677-09-21 or after
    2262-04-11, e.g. "0001-01-01T00:00:00Z") is NaT too, rather than an error.
    """
    import pandas as pd

    col = pd.to_datetime(pd.Series(times, dtype=object), utc=True, errors="coerce")
    # pandas 3 keeps such values at microsecond resolution (years 1 to 9999); ns would raise.
    lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    out: pd.Series = col.where((col >= lo) & (col <= hi)).astype("datetime64[ns, UTC]")
    return out


def _span(end: pd.Series, start: pd.Series) -> pd.Series:
    """end - start as timedelta64[ns]; NaT where either is NaT or the span does not fit in
    nanoseconds (a createTime in 1678 is a valid time; 348 years is not a valid span)."""
    import numpy as np
    import pandas as pd

    e = end.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    s = start.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    fits = end.notna().to_numpy() & start.notna().to_numpy()
    fits &= np.abs(e.astype(np.float64) - s.astype(np.float64)) < 2.0**62
    ns = e - np.where(fits, s, e)  # rows that do not fit subtract nothing: no int64 overflow
    out: pd.Series = pd.Series(ns.astype("timedelta64[ns]"), index=end.index).where(fits)
    return out


def _parent(name: str) -> str:
    """The collection an operation lives in: "models/veo-3.0", "tunedModels/t", "operations"."""
    head, sep, _ = name.rpartition("/operations/")
    if sep:
        return head
    return name.rsplit("/", 1)[0]  # "batches/x" -> "batches", "operations/x" -> "operations"


_LEAVES = frozenset({str, int, float, bool, list, type(None)})  # JSON's non-objects


class _Sparse:
    """One metadata path's values and the rows that have them: columns, not a dict per row (100,000
    dicts kept to the end of a listing are memory, and work for every collection the GC makes)."""

    __slots__ = ("rows", "values")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.values: list[Any] = []


def _flatten(value: Mapping[str, Any], prefix: str, row: int, out: dict[str, _Sparse]) -> None:
    for key, item in value.items():
        path = f"{prefix}.{key}"
        # The exact type first: the abc check of Mapping costs more than the rest of the row.
        if item and (type(item) is dict or (type(item) not in _LEAVES and isinstance(item, Mapping))):
            _flatten(item, path, row, out)
            continue
        col = out.get(path)
        if col is None:
            col = out[path] = _Sparse()
        elif col.rows and col.rows[-1] == row:  # {"a.b": 1, "a": {"b": 2}}: one path twice, the last wins
            col.values[-1] = item
            continue
        col.rows.append(row)
        col.values.append(item)


class FrameBuilder:
    """Collects operations column by column (pages can be dropped once added), then builds."""

    def __init__(self, *, flatten_metadata: bool = True) -> None:
        self.flatten_metadata = flatten_metadata
        self._cols: dict[str, list[Any]] = {c: [] for c in ("name", *COLUMNS)}
        self._meta: dict[str, _Sparse] = {}
        self.count = 0

    def add(self, operations: Iterable[OperationFields]) -> None:
        """Lay out Operations, or RawOperations (read_list_page's: no Operation is built)."""
        c = self._cols
        # Bound appends: this loop runs once per row of a 100,000-row listing.
        names, ids, kinds, states = c["name"].append, c["id"].append, c["kind"].append, c["state"].append
        state_value = _STATE_VALUES.__getitem__
        dones, progresses = c["done"].append, c["progress"].append
        creates, updates = c["create_time"].append, c["update_time"].append
        codes, messages = c["error_code"].append, c["error_message"].append
        parents, models = c["parent"].append, c["model"].append
        meta = self._meta if self.flatten_metadata else None
        row = self.count
        for op in operations:
            name, md = op.name, op.metadata
            err = op.error if is_failed(op) else None
            kind = kind_of(name, md)
            names(name)
            ids(id_of(name))
            kinds(kind)
            states(state_value(state_of(op)))
            dones(op.done)
            progresses(progress_from_metadata(md))
            creates(time_from_metadata(md, "createTime"))
            updates(time_from_metadata(md, "updateTime"))
            codes(None if err is None else err.code)
            messages(None if err is None else err.message)
            parents(_parent(name))
            models(model_of(name, md) if kind == "video" else None)  # the column is videos' model
            if meta is not None and md:
                _flatten(md, "metadata", row, meta)
            row += 1
        self.count = row

    def build(self, now: datetime | None = None) -> pd.DataFrame:
        import pandas as pd

        c = self._cols
        create, update = _utc_column(c["create_time"]), _utc_column(c["update_time"])
        done = pd.Series(c["done"], dtype=bool)
        now_ts = pd.Timestamp(now or datetime.now(timezone.utc))
        # Done: how long it took; running: how long it has run so far.
        duration = _span(update.where(done, now_ts), create)
        frame: pd.DataFrame = pd.DataFrame(
            {
                "id": pd.array(c["id"], dtype="string"),
                "kind": pd.array(c["kind"], dtype="string"),
                "state": pd.Categorical(c["state"], categories=STATES),
                "done": done.array,
                "progress": pd.array(c["progress"], dtype="Float64"),
                "create_time": create.array,
                "update_time": update.array,
                "duration": duration.array,
                "error_code": pd.array(c["error_code"], dtype="Int64"),
                "error_message": pd.array(c["error_message"], dtype="string"),
                "parent": pd.array(c["parent"], dtype="string"),
                "model": pd.array(c["model"], dtype="string"),
            },
            index=pd.Index(c["name"], dtype="string", name="name"),
        )
        if self.flatten_metadata and self._meta:
            # Each path's values where its rows are, NaN in the others (as a frame of per-row dicts
            # reads), its dtype inferred from its values as pandas infers a column of them.
            meta = pd.DataFrame(
                {path: _sparse_column(self._meta[path], frame.index) for path in sorted(self._meta)},
                index=frame.index,
            )
            frame = pd.concat([frame, meta], axis=1)
        return frame


def _sparse_column(col: _Sparse, index: pd.Index) -> pd.Series:
    import numpy as np
    import pandas as pd

    values = np.empty(len(col.values), dtype=object)
    values[:] = col.values  # element by element: a list value stays one value, not a row of an array
    full = np.full(len(index), np.nan, dtype=object)
    full[col.rows] = values
    out: pd.Series = pd.Series(full, index=index).infer_objects()
    return out


def to_dataframe(operations: Iterable[Operation], *, flatten_metadata: bool = True) -> pd.DataFrame:
    """One row per operation, indexed by name, with typed columns (see COLUMNS), then the
    metadata flattened as "metadata.<path>" columns when ``flatten_metadata``."""
    builder = FrameBuilder(flatten_metadata=flatten_metadata)
    builder.add(operations)
    return builder.build()


class ListingProgress:
    """"listed N operations (P pages)" while a listing runs, gone when it is done (as tqdm's
    ``leave=False``): in a notebook, an output that empties itself at the end (so the saved
    notebook keeps nothing of it); on a terminal, a line redrawn in place and then erased; into a
    file or a pipe, plain lines, at most one every LINE_EVERY seconds, and the last one."""

    LINE_EVERY = 2.0  # seconds between two plain lines
    REDRAW_EVERY = 0.1  # seconds between two redraws in place (a notebook output, a terminal)

    def __init__(self, enabled: bool = True, stream: Any = None) -> None:
        self._display_id: str | None = None
        self._stream: Any = None
        self._tty = False
        self._shown_at = -math.inf
        self._shown = ""
        if not enabled:
            return
        if _in_kernel():
            self._display_id = uuid.uuid4().hex
            self._display("listing operations…", update=False)
            return
        self._stream = sys.stderr if stream is None else stream
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty and isatty())

    def _display(self, text: str, *, update: bool = True) -> None:
        from IPython.display import display

        display({"text/plain": text}, raw=True, display_id=self._display_id, update=update)

    def update(self, count: int, pages: int, *, last: bool = False) -> None:
        text = f"listed {count:,} operations ({pages} page{'s' if pages != 1 else ''})"
        now = time.monotonic()
        every = self.REDRAW_EVERY if self._display_id is not None or self._tty else self.LINE_EVERY
        if (not last and now - self._shown_at < every) or text == self._shown:
            return
        self._shown_at, self._shown = now, text
        if self._display_id is not None:
            self._display(text)
        elif self._stream is not None:
            self._stream.write(f"\r{text}\x1b[K" if self._tty else f"{text}\n")
            self._stream.flush()

    def close(self, count: int, pages: int) -> None:
        if self._display_id is not None:
            self._display("")  # nothing stays in the notebook
        elif self._tty:
            self._stream.write("\r\x1b[K")  # the line goes, as tqdm(leave=False) does
            self._stream.flush()
        else:
            self.update(count, pages, last=True)  # into a file: where it ended


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None
