"""The text form of an operation: one line, the same in str(op), str(tracked), repr(widget), the
terminal and the widgets' snapshots, and (as durations) on screen. Pure functions."""

from __future__ import annotations

import math

from ._types import Operation

__all__ = ["format_duration", "summary_line"]


# The widgets' JavaScript (formatDuration in js/widgets.js) mirrors this step for step, so repr()
# and the screen show the same text; tests/test_frontend.py runs both on the same inputs.
MAX_SECONDS = 2**53  # past this a JS number is no exact integer: its digits would drift from these


def format_duration(seconds: float | None) -> str:
    """"7s", "1m 12s", "1h 05m": rounded half up to whole seconds, negatives as 0, "" if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    # Half up, exactly like JS Math.round; round() goes half to even (2.5 -> 2), and floor(x + 0.5)
    # is one off at 0.49999999999999994. x - floor(x) is exact in floats.
    whole = math.floor(seconds)
    s = min(MAX_SECONDS, max(0, whole + (seconds - whole >= 0.5)))
    h, m, r = s // 3600, s % 3600 // 60, s % 60
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {r:02d}s" if m else f"{r}s"


def summary_line(op: Operation, elapsed: float | None = None) -> str:
    """"models/veo/operations/abc  running  42%  1m 12s": name, state, progress, time it ran."""
    line = op.summary()
    return line if elapsed is None else f"{line}  {format_duration(elapsed)}"
