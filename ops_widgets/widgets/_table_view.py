"""What the table shows: filtering, sorting and one page of rows. Pure functions over a frame."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._view import display_state, shown_error

__all__ = ["SORTABLE", "TableIndex", "page_rows"]

# Columns the table shows and can sort by (the frame's own names).
SORTABLE = ("id", "kind", "state", "progress", "create_time", "duration", "error_message", "name")


class TableIndex:
    """What a table keeps beside its frame so that a filter, sort or search round trip over
    100,000 rows does no per-row Python: each sort key's order (sorted once, then the filters
    pick from it), and the names and error messages upper-cased into one UTF-8 buffer that a
    search scans with numpy. A row changed in place says so (``changed``); a frame with other
    rows gets a new index."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._orders: dict[tuple[str, bool], np.ndarray[Any, np.dtype[np.intp]]] = {}
        self._text: tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]] | None = None

    def changed(self, columns: Collection[str]) -> None:
        """Values of ``columns`` changed in place (a live row): what was derived from them goes."""
        for key in [k for k in self._orders if (k[0] if k[0] != "name" else "") in columns]:
            del self._orders[key]
        if "error_message" in columns:
            self._text = None

    def order(self, sort_by: str, descending: bool) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Row positions in display order for this sort: NA last, ties in frame order."""
        key = (sort_by, descending)
        order = self._orders.get(key)
        if order is None:
            frame = self.frame
            if sort_by == "name":
                keys = frame.index.to_series()
            elif sort_by in frame.columns:
                keys = frame[sort_by]
            else:
                raise ValueError(f"cannot sort by {sort_by!r}; choose one of {', '.join(SORTABLE)}")
            if isinstance(keys.dtype, pd.CategoricalDtype):
                keys = keys.astype("string")  # alphabetical, like every other column
            order = self._orders[key] = _sorted_positions(keys, descending)
        return order

    def search(self, text: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Rows whose name or error message holds ``text``, in any case (as str.upper() reads
        both): a match must lie inside one string, never across two."""
        buffer, starts = self._searchable()
        needle = np.frombuffer(text.upper().encode("utf-8", "surrogatepass"), dtype=np.uint8)
        found = np.zeros(len(self.frame), dtype=bool)
        m = len(needle)
        if m == 0 or m > len(buffer):
            found[:] = m == 0
            return found
        # Substring search in UTF-8 bytes is exact for valid UTF-8 (no code point's bytes start
        # inside another's): candidates for the first byte, narrowed by each next byte.
        at = np.flatnonzero(buffer[: len(buffer) - m + 1] == needle[0])
        for k in range(1, m):
            if not len(at):
                break
            at = at[buffer[at + k] == needle[k]]
        first = np.searchsorted(starts, at, side="right") - 1
        last = np.searchsorted(starts, at + (m - 1), side="right") - 1
        found[first[first == last] // 2] = True  # strings 2i and 2i+1 are row i's name and error
        return found

    def _searchable(self) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]:
        if self._text is None:
            def plain(values: pd.Series) -> list[str]:  # vectorised: no per-row Python
                texts: list[str] = values.astype("string").fillna("").tolist()
                return texts

            texts = [""] * (2 * len(self.frame))
            texts[0::2] = plain(self.frame.index.to_series())
            texts[1::2] = plain(self.frame["error_message"])
            # One join, one upper(), one encode: C loops over the whole text, not one per string.
            # NUL separates the strings (a search never holds one): its positions, found after
            # upper() (which may lengthen a string: "ß" is "SS"), give each string's start.
            joined = "\x00".join(texts)
            if joined.count("\x00") != len(texts) - 1:
                texts = [t.replace("\x00", " ") for t in texts]  # server text with a NUL in it: rare
                joined = "\x00".join(texts)
            buffer = np.frombuffer(joined.upper().encode("utf-8", "surrogatepass"), dtype=np.uint8)
            starts = np.empty(len(texts) + 1, dtype=np.int64)
            starts[0] = 0
            starts[1:-1] = np.flatnonzero(buffer == 0) + 1
            starts[-1] = len(buffer) + 1
            self._text = (buffer, starts)
        return self._text

    def matching(
        self,
        *,
        states: Collection[str] = (),
        kinds: Collection[str] = (),
        search: str = "",
        sort_by: str = "create_time",
        descending: bool = True,
        cancelling: Collection[str] = (),
    ) -> pd.Index:
        """The names that pass the filters, in display order (empty filters let everything through).

        The state filter sees what the rows show: a running operation with a cancel sent reads
        "cancelling", so it leaves a "running" filter at once (and joins "cancelled" once confirmed).
        """
        frame = self.frame
        order = self.order(sort_by, descending)
        mask = np.ones(len(frame), dtype=bool)
        if states:
            state = frame["state"]
            shown = state.isin([s for s in states if s != "cancelling"]).to_numpy(dtype=bool)
            if cancelling:
                sent = frame.index.isin(list(cancelling)) & (state == "running").to_numpy(dtype=bool)
                shown = np.where(sent, "cancelling" in states, shown)
            mask &= shown
        if kinds:
            mask &= frame["kind"].isin(list(kinds)).fillna(False).to_numpy(dtype=bool)
        text = search.strip()
        if text:
            mask &= self.search(text)
        names: pd.Index = frame.index[order[mask[order]]]
        return names


def _sorted_positions(keys: pd.Series, descending: bool) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Row positions ordered by ``keys``: NA last, ties in frame order (a stable sort), as
    ``Series.sort_values(kind="stable", na_position="last")`` orders them. Text is sorted by
    Python's own sort of the positions (stable both ways, adaptive to runs), 2 to 3 times
    faster than pandas' on 100,000 names."""
    values = keys.reset_index(drop=True)
    if isinstance(values.dtype, pd.StringDtype):
        missing = values.isna().to_numpy(dtype=bool)
        texts = values.to_numpy(dtype=object).tolist()
        present = sorted(np.flatnonzero(~missing).tolist(), key=texts.__getitem__, reverse=descending)
        ordered: np.ndarray[Any, np.dtype[np.intp]] = np.concatenate(
            [np.array(present, dtype=np.intp), np.flatnonzero(missing).astype(np.intp)])
        return ordered
    by = values.sort_values(ascending=not descending, na_position="last", kind="stable")
    positions: np.ndarray[Any, np.dtype[np.intp]] = by.index.to_numpy(dtype=np.intp)
    return positions


def _plain(value: Any) -> Any:
    """A JSON-able value: NA and NaN become None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def page_rows(
    frame: pd.DataFrame, names: Sequence[str], *, selected: Collection[str], cancelling: Collection[str]
) -> list[dict[str, Any]]:
    """The rows of one page, as plain JSON for the browser (only this page ever travels)."""
    if not len(names):
        return []
    # Only the columns a row shows: a listing has dozens (metadata.*), each costing per-row work.
    part = frame.loc[list(names), ["id", "kind", "state", "progress", "create_time", "duration", "error_message"]]
    rows = []
    for name, row in zip(part.index, part.itertuples(index=False), strict=True):
        state = display_state(str(row.state), name in cancelling)
        created = _plain(row.create_time)
        duration = _plain(row.duration)
        rows.append({
            "name": str(name),
            "id": str(row.id),
            "kind": str(row.kind),
            "state": state,
            "progress": _plain(row.progress),
            # ISO 8601 in UTC: the front-end shows "3m 05s ago", the UTC time on hover.
            "create_time": "" if created is None else _utc_iso(created),
            "duration": None if duration is None else round(duration.total_seconds(), 1),
            "error": shown_error(str(row.state), _plain(row.error_message) or ""),
            "selected": name in selected,
        })
    return rows


def _utc_iso(t: pd.Timestamp) -> str:
    utc = t.tz_convert("UTC") if t.tzinfo is not None else t
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}Z"
