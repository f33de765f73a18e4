"""Progress and times read from operation metadata. Pure functions, no I/O.

Services disagree on where progress lives; this module is the one place that knows them all.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["as_number", "extrapolate", "parse_time", "progress_from_metadata", "time_from_metadata"]

# Percent fields in the order they are tried: the names users' code already expects first,
# then the real services' (tuning's completedPercent, Vertex imports' progressPercentage).
_PERCENT_KEYS = ("progress", "progressPercent", "completionPercentage", "completedPercent")


def as_number(value: Any) -> float | None:
    """A JSON number, or an int64/double sent as a string, as a finite float; None for anything
    else, including numbers no float can hold (JSON allows a 400-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        f = float(value)  # strips whitespace; raises OverflowError for an int beyond ~1e308
    except (ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _ratio(done: Any, total: Any) -> float | None:
    # proto3 JSON omits zero, so a missing count beside a known total means 0.
    d, t = (0.0 if done is None else as_number(done)), as_number(total)
    if d is None or t is None or t <= 0:
        return None
    return 100.0 * (d / t)  # may be inf (1e308 / 1e-3): the caller clamps it


def _clamp(p: float) -> float:
    return min(100.0, max(0.0, p))


def progress_from_metadata(metadata: Mapping[str, Any]) -> float | None:
    """Percent complete (0..100) as the metadata reports it, or None if it says nothing."""
    get = metadata.get
    for key in _PERCENT_KEYS:
        value = get(key)
        p = None if value is None else as_number(value)  # most are absent: skip the call (100,000 rows)
        if p is not None:
            return _clamp(p)
    total = get("totalSteps")
    steps = None if total is None else _ratio(get("completedSteps"), total)
    if steps is not None:
        return _clamp(steps)
    value = get("progressPercentage")
    p = None if value is None else as_number(value)
    if p is not None:
        return _clamp(p)
    stats = get("batchStats")
    if stats is not None and isinstance(stats, Mapping):
        finished = (as_number(stats.get("successfulRequestCount")) or 0.0) + (
            as_number(stats.get("failedRequestCount")) or 0.0
        )
        ratio = _ratio(finished, stats.get("requestCount"))
        if ratio is not None:
            return _clamp(ratio)
    stats = get("completionStats")
    return None if stats is None else _completion(stats)


def progress_step(metadata: Mapping[str, Any]) -> float:
    """How far, in percent, progress_from_metadata's reading moves at a time when the metadata
    counts whole things: 100 / totalSteps for a tuning job's steps, 100 / requestCount for a
    batch's requests, 100 / all of a Vertex job's completionStats; 0.0 where it does not say (the
    reading is taken as it is).

    A job 7 steps of 20 in is anywhere from 35 % to 40 % done: the adaptive schedule reads its
    finish as a window, not as the late end of it.
    """
    stats = _completion_counts(metadata.get("completionStats"))
    for total in (metadata.get("totalSteps"), _get(metadata.get("batchStats"), "requestCount"),
                  None if stats is None else stats[1]):
        count = None if total is None else as_number(total)
        if count is not None and count >= 1:
            return min(100.0, 100.0 / count)
    return 0.0


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _completion(stats: Any) -> float | None:
    """A Vertex job's completionStats: (successful + failed) of all, where the total is known, that
    is where incompleteCount is sent (-1 says it is unknown)."""
    counts = _completion_counts(stats)
    ratio = None if counts is None else _ratio(*counts)
    return None if ratio is None else _clamp(ratio)


def _completion_counts(stats: Any) -> tuple[float, float] | None:
    """(successful + failed, all) of a completionStats whose total is known; None otherwise."""
    if not isinstance(stats, Mapping) or stats.get("incompleteCount") is None:
        return None
    counts = [as_number(stats.get(k)) for k in ("successfulCount", "failedCount", "incompleteCount")]
    succeeded, failed, incomplete = (0.0 if c is None else c for c in counts)
    if counts[2] is None or incomplete < 0 or succeeded < 0 or failed < 0:
        return None
    return succeeded + failed, succeeded + failed + incomplete


# ASCII digits only: \d alone would also take "２０２４", which int() then reads as 2024.
_FROMISOFORMAT_Z = sys.version_info >= (3, 11)  # reads a trailing "Z" (3.10 does not)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$", re.ASCII)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (as protobuf JSON writes it, up to nanoseconds; kept to the
    microsecond) as an aware datetime, or None if it is not one.

    This is the one reading of createTime/updateTime: Operation.create_time and the DataFrame's
    create_time column both come from it.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    m = _RFC3339.match(value)
    if not m:
        return None
    frac, zone = m.groups()
    if value[11:13] > "23":
        return None  # newer Pythons' fromisoformat read 24:00 as the next midnight; RFC 3339 does not
    if not (_FROMISOFORMAT_Z and zone == "Z" and value[10] == "T" and (frac is None or len(frac) == 6)):
        # Spell it the way every supported Python's fromisoformat reads: 'T', 0 or 6 fraction
        # digits, a numeric offset. (Protobuf JSON writes the form above, which skips this.)
        if zone in ("Z", "z"):
            zone = "+00:00"
        elif zone[1:3] > "23" or zone[4:6] > "59":
            return None  # RFC 3339 offsets stop at 23:59 (timezone() raises from 24h on)
        fraction = "" if frac is None else "." + frac[:6].ljust(6, "0")
        value = f"{value[:10]}T{value[11:19]}{fraction}{zone}"
    # The shape is checked above, so fromisoformat only checks ranges; it is C, and several
    # times faster than int() on each part, which counts at 100,000 rows.
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # month 13, February 30, second 60, year 0
        return None


def time_from_metadata(metadata: Mapping[str, Any], key: str) -> datetime | None:
    """metadata[key] ("createTime", "updateTime"), else Vertex's metadata.genericMetadata[key],
    read with parse_time; None if neither holds a timestamp."""
    t = parse_time(metadata.get(key))
    if t is None:
        generic = metadata.get("genericMetadata")
        if generic is not None and isinstance(generic, Mapping):  # mostly absent: skip the abc check
            t = parse_time(generic.get(key))
    return t


def extrapolate(progress: float, rate: float | None, age: float) -> float:
    """What a bar shows ``age`` seconds after a reading of ``progress`` rising at ``rate``
    percent per second: the reading moved on, short of 100 (only the service says done).
    js/widgets.js draws the bar by the same rule."""
    if rate is None or not rate > 0 or not age > 0:
        return progress
    return max(progress, min(99.0, progress + rate * age))
