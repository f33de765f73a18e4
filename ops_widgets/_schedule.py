"""Polling schedules: pure generators of delays, in seconds. No clocks, no sleeps.

The caller owns the clock; :func:`clip_to_deadline` is the one rule for deadlines:
never sleep past the deadline, and poll once more when it is reached.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Iterator

__all__ = ["backoff", "clip_to_deadline", "fixed"]


def fixed(interval: float) -> Iterator[float]:
    """The same delay forever."""
    if interval < 0:
        raise ValueError(f"poll_interval must be >= 0, got {interval!r}")
    return itertools.repeat(float(interval))


def backoff(
    initial: float,
    maximum: float,
    multiplier: float,
    *,
    jitter: bool = True,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Exponential delays capped at ``maximum``; with full jitter each is uniform in [0, cap).

    Full jitter (rather than +-10%) spreads many waiters apart, so a notebook that waits on a
    hundred operations does not poll them all in the same instant.
    """
    if initial < 0 or maximum < 0:
        raise ValueError("delays must be >= 0")
    if multiplier < 1:
        raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
    cap = min(float(initial), float(maximum))
    while True:
        yield cap * rand() if jitter else cap
        cap = min(cap * multiplier, float(maximum))


def clip_to_deadline(delay: float, now: float, deadline: float | None) -> float | None:
    """The delay to sleep before the next poll, or None when the deadline has passed."""
    if deadline is None:
        return delay
    remaining = deadline - now
    if remaining <= 0:
        return None
    return min(delay, remaining)
