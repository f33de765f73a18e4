"""Progress and times read from operation metadata. Pure functions, no I/O.

Services disagree on where progress lives; this module is the one place that knows them all.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from collections.abc import Mapping
from typing import Any

__all__ = ["parse_time", "progress_from_metadata", "times_from_metadata"]

# Percent fields in the order they are tried: the names users' code already expects first,
# then the real services' (tuning's completedPercent, Vertex imports' progressPercentage).
_PERCENT_KEYS = ("progress", "progressPercent", "completionPercentage", "completedPercent")


def _number(value: Any) -> float | None:
    """A JSON number, or an int64/double sent as a string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _ratio(done: Any, total: Any) -> float | None:
    # proto3 JSON omits zero, so a missing count beside a known total means 0.
    d, t = (0.0 if done is None else _number(done)), _number(total)
    if d is None or t is None or t <= 0:
        return None
    return 100.0 * d / t


def _clamp(p: float) -> float:
    return min(100.0, max(0.0, p))


def progress_from_metadata(metadata: Mapping[str, Any]) -> float | None:
    """Percent complete (0..100) as the metadata reports it, or None if it says nothing."""
    for key in _PERCENT_KEYS:
        p = _number(metadata.get(key))
        if p is not None:
            return _clamp(p)
    steps = _ratio(metadata.get("completedSteps"), metadata.get("totalSteps"))
    if steps is not None:
        return _clamp(steps)
    p = _number(metadata.get("progressPercentage"))
    if p is not None:
        return _clamp(p)
    stats = metadata.get("batchStats")
    if isinstance(stats, Mapping):
        finished = (_number(stats.get("successfulRequestCount")) or 0.0) + (
            _number(stats.get("failedRequestCount")) or 0.0
        )
        ratio = _ratio(finished, stats.get("requestCount"))
        if ratio is not None:
            return _clamp(ratio)
    return None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (as protobuf JSON writes it, up to nanoseconds) or None."""
    if not isinstance(value, str):
        return None
    m = _RFC3339.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
        )
    except ValueError:
        return None


def times_from_metadata(metadata: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(create_time, update_time) from metadata, or from Vertex's metadata.genericMetadata."""
    sources = [metadata]
    generic = metadata.get("genericMetadata")
    if isinstance(generic, Mapping):
        sources.append(generic)
    create = update = None
    for src in sources:
        create = create or parse_time(src.get("createTime"))
        update = update or parse_time(src.get("updateTime"))
    return create, update
