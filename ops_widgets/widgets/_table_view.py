"""What the table shows: filtering, sorting and one page of rows. Pure functions over a frame."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd

from ._view import display_state, shown_error

__all__ = ["SORTABLE", "matching", "page_rows"]

# Columns the table shows and can sort by (the frame's own names).
SORTABLE = ("id", "kind", "state", "progress", "create_time", "duration", "error_message", "name")


def matching(
    frame: pd.DataFrame,
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
    mask = pd.Series(True, index=frame.index)
    if states:
        shown = frame["state"].astype("string")
        if cancelling:
            sent = frame.index.isin(list(cancelling)) & (shown == "running").fillna(False).to_numpy(dtype=bool)
            shown = shown.mask(sent, "cancelling")
        mask &= shown.isin(list(states)).fillna(False).to_numpy()
    if kinds:
        mask &= frame["kind"].isin(list(kinds)).fillna(False).to_numpy()
    text = search.strip()
    if text:
        in_name = frame.index.to_series().str.contains(text, case=False, regex=False).fillna(False)
        in_error = frame["error_message"].str.contains(text, case=False, regex=False).fillna(False)
        mask &= (in_name | in_error).to_numpy()
    view = frame[mask.to_numpy()]
    if sort_by == "name":
        keys = view.index.to_series()
    elif sort_by in frame.columns:
        keys = view[sort_by]
    else:
        raise ValueError(f"cannot sort by {sort_by!r}; choose one of {', '.join(SORTABLE)}")
    if isinstance(keys.dtype, pd.CategoricalDtype):
        keys = keys.astype("string")  # alphabetical, like every other column
    order = keys.reset_index(drop=True).sort_values(ascending=not descending, na_position="last", kind="stable")
    names: pd.Index = view.index[order.index.to_numpy()]  # indexing an Index is typed Any
    return names


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
    part = frame.loc[list(names)]
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
