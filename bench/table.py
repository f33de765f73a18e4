"""Table benchmark: the Python side of OperationsTable's round trips on 100,000 rows, with its kept
index ("after") against the table as main had it ("before", the baseline, kept in this file: every
refilter made a new index, so each call sorted all rows again with pandas and, for a search,
upper-cased and encoded every name and error message one by one).

    python bench/table.py [--n 100000] [--repeat 7]

The frame is a real listing: an in-process emulator seeded with n operations of every kind the
Gemini API lists (30% running, 10% failed), read with list_dataframe. Each figure is one round
trip as the browser causes it: a trait set from "the front-end", through the observers, the
filter, the page of rows and the state sent (to ipywidgets' dummy comm: no kernel here). What the
browser and the wire add is measured by tests/browser/test_operations_table.py.

Round trips, each measured on both tables in one run, interleaved (before, after, then after,
before, ...), min and median over the repeats:
- open: OperationsTable(frame), first page sorted newest first;
- filter: the state filter set to "running" and back, while sorted by a text column (error_message);
- sort <column>: a click on the column's header, for every sortable column, twice (the second
  click of a column: "after" has its order already);
- search: a word of the error messages, then a name fragment, then cleared.
Then memory: ten re-runs of a cell making a table of the same frame, as the kernel sees them
(before: every table kept, each with a deep copy of the frame, as ipywidgets and anywidget kept
them; after: each run closes the table of the run before), traced with tracemalloc.

The goal beside each figure is ours: the Python side of a round trip well inside issue 14's
200 ms browser round trip (p95), at most 50 ms; open within 1 s (all of it). It prints figures and
ratios measured in this run; it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ops_widgets import OperationsTable  # noqa: E402
from ops_widgets.widgets import _lifetime  # noqa: E402
from ops_widgets.widgets._table_view import SORTABLE, TableIndex  # noqa: E402

GOAL_ROUND_TRIP = 0.050  # seconds of Python per round trip
GOAL_OPEN = 1.0


class MainIndex(TableIndex):
    """The index as main had it before this change (its sort and search buffer, copied here to
    stay the baseline): pandas' stable sort per key, one Python pass per string for the buffer."""

    def order(self, sort_by: str, descending: bool) -> Any:
        key = (sort_by, descending)
        if key not in self._orders:
            keys = self.frame.index.to_series() if sort_by == "name" else self.frame[sort_by]
            if isinstance(keys.dtype, pd.CategoricalDtype):
                keys = keys.astype("string")
            ordered = keys.reset_index(drop=True).sort_values(ascending=not descending, na_position="last",
                                                              kind="stable")
            self._orders[key] = ordered.index.to_numpy(dtype=np.intp)
        return self._orders[key]

    def _searchable(self) -> Any:
        if self._text is None:
            names = self.frame.index.astype(object).tolist()
            errors = self.frame["error_message"].astype(object).tolist()
            texts: list[str] = []
            for name, error in zip(names, errors, strict=True):
                texts.append(str(name).upper())
                texts.append(error.upper() if isinstance(error, str) else "")
            encoded = [x.encode("utf-8", "surrogatepass") for x in texts]
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            starts = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum(lengths, out=starts[1:])
            self._text = (np.frombuffer(b"".join(encoded), dtype=np.uint8), starts)
        return self._text


class RebuildingTable(OperationsTable):
    """The baseline, the table as main had it: the same widget, but every refilter starts from a
    new index of main's kind (every sort and the search buffer made again)."""

    def _reorder(self) -> None:
        with self._lock:
            self._index = MainIndex(self._frame)
            super()._reorder()


def listing(n: int) -> pd.DataFrame:
    from ops_widgets.emulator import Emulator

    with Emulator.start(random_seed=7) as emu:
        emu.seed(n, kinds=("video", "tuning", "batch"))
        with emu.client() as ops:
            frame: pd.DataFrame = ops.list_dataframe(page_size=1000, progress=False)
    return frame


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def round_trips(cls: type[OperationsTable], frame: pd.DataFrame, name_part: str) -> dict[str, float]:
    """One pass of every round trip on a new table of class ``cls``: seconds each."""
    out: dict[str, float] = {}
    box: list[OperationsTable] = []
    out["open"] = timed(lambda: box.append(cls(frame)))
    table = box[0]
    table.sort_by = "error_message"
    out["filter"] = timed(lambda: setattr(table, "state_filter", ["running"]))
    out["filter (back)"] = timed(lambda: setattr(table, "state_filter", []))
    for click in ("sort", "sort again"):
        for column in SORTABLE:
            if column == table.sort_by:
                table.sort_desc = not table.sort_desc  # a click on the sorted column flips it
                out[f"{click} {column}"] = timed(lambda: setattr(table, "sort_desc", not table.sort_desc))
            else:
                out[f"{click} {column}"] = timed(lambda c=column: setattr(table, "sort_by", c))  # type: ignore[misc]
    out["search word"] = timed(lambda: setattr(table, "search", "internal"))
    out["search name"] = timed(lambda: setattr(table, "search", name_part))
    out["search cleared"] = timed(lambda: setattr(table, "search", ""))
    table.close()
    return out


@contextmanager
def cell(runs: Iterator[int]) -> Iterator[None]:
    """Tables made inside are made by run next(runs) of one notebook cell."""
    real = _lifetime.current_cell_run
    number = next(runs)
    _lifetime.current_cell_run = lambda: ("bench-cell", f"run-{number}")
    try:
        yield
    finally:
        _lifetime.current_cell_run = real


def rerun_memory(frame: pd.DataFrame, *, keep_all: bool) -> tuple[float, float]:
    """MB traced after one run of the cell and after ten (above what was traced before)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept: list[OperationsTable] = []
    runs = iter(range(10**9))
    after: list[float] = []
    for _ in range(10):
        if keep_all:  # what ipywidgets' registry and anywidget's signal held: every table, with its copy
            kept.append(OperationsTable(frame.copy()))
        else:
            with cell(runs):
                table = OperationsTable(frame)  # noqa: F841  (the notebook's variable, rebound)
        gc.collect()
        after.append((tracemalloc.get_traced_memory()[0] - base) / 1e6)
    tracemalloc.stop()
    for t in kept:
        t.close()
    if not keep_all:
        table.close()
    return after[0], after[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    frame = listing(args.n)
    print(f"OperationsTable round trips, Python side, on {len(frame):,} rows "
          f"(listed in {time.perf_counter() - t0:.1f} s); {args.repeat} interleaved repeats")
    name_part = str(frame.index[len(frame) // 2]).rsplit("/", 1)[1][:6]
    methods: dict[str, type[OperationsTable]] = {"before": RebuildingTable, "after": OperationsTable}
    times: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for r in range(args.repeat):
        order = list(methods) if r % 2 == 0 else list(methods)[::-1]
        for m in order:
            gc.collect()
            for key, seconds in round_trips(methods[m], frame, name_part).items():
                times[m].setdefault(key, []).append(seconds)

    print(f"\n{'round trip':<28}{'before min/med ms':>20}{'after min/med ms':>20}{'after/before':>14}"
          f"{'goal':>10}  met")
    worst = 0.0
    for key in times["after"]:
        b, a = times["before"][key], times["after"][key]
        bmed, amed = statistics.median(b), statistics.median(a)
        goal = GOAL_OPEN if key == "open" else GOAL_ROUND_TRIP
        if key != "open":
            worst = max(worst, max(a))
        print(f"{key:<28}{min(b) * 1e3:>9.1f} /{bmed * 1e3:>8.1f}{min(a) * 1e3:>10.1f} /{amed * 1e3:>8.1f}"
              f"{amed / bmed:>13.2f}x{goal * 1e3:>8.0f}ms  {'yes' if amed <= goal else 'NO'}")
    print(f"\nslowest single round trip after (any but open): {worst * 1e3:.1f} ms "
          f"(goal {GOAL_ROUND_TRIP * 1e3:.0f} ms: {'met' if worst <= GOAL_ROUND_TRIP else 'NOT met'})")

    print("\nten re-runs of a cell that makes a table (tracemalloc, MB above the start)")
    for label, keep_all in (("before: every table kept", True), ("after: a re-run closes the last", False)):
        one, ten = rerun_memory(frame, keep_all=keep_all)
        print(f"  {label:<34} one run {one:7.1f}  ten runs {ten:7.1f}  growth {ten - one:7.1f}"
              f"   goal growth <= 5 MB: {'met' if ten - one <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
