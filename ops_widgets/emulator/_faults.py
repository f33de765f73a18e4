"""Faults: how the emulator misbehaves on a bad day, as a proxy or an overloaded server would.

A frozen description (rates, a 429 storm, a seed); the app keeps the live state (its random
stream, what is left of the storm) and counts what it injected in ``stats()["faults"]``.

    Emulator.start(faults=Faults.mix(0.2, seed=1))          # 20 %: 5xx, HTML 502, drops, truncated
    emu.set_faults(Faults(storm_requests=50, seed=1))       # the next 50 API requests answer 429
    emu.clear_faults()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["AFTER", "BEFORE", "MIX", "MODES", "Faults"]

# One uniform draw per API request picks at most one of these, in this order (a rate each).
MODES = ("error", "html_error", "drop_before", "drop_after", "truncated", "slow_body")
BEFORE = frozenset({"error", "html_error", "drop_before"})  # the server never acts on the request
AFTER = frozenset({"drop_after", "truncated", "slow_body"})  # it acts; only the answer suffers
MIX = ("error", "html_error", "drop_before", "drop_after", "truncated")  # what Faults.mix shares out


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults injected into the emulator's API routes (never into its /_emulator/ admin routes).

    Rates are probabilities per request, 0..1, summing to at most 1: each request gets at most one.

    - ``error_rate``: 500 INTERNAL or 503 UNAVAILABLE with Google's JSON error body; not acted on.
    - ``html_error_rate``: a 502 HTML page, as a reverse proxy sends it; not acted on.
    - ``drop_before_rate``: the connection closes before the server acts, no byte answered.
    - ``drop_after_rate``: the server acts (a cancel or delete really happens), then the connection
      closes in the middle of the answer: status and headers arrive, the body stops half-way.
    - ``truncated_rate``: a 200 whose body is cut short, with a Content-Length that agrees, so only
      the JSON parse fails (applies to 200 answers only).
    - ``slow_body_rate``: the answer trickles in pieces over ``slow_body_seconds`` of the serving
      loop's time (virtual time in-process on a VirtualClock, real time over HTTP).
    - A 429 storm, starting when the faults are set: ``storm_requests`` (the next N API requests)
      and/or ``storm_seconds`` (emulator clock seconds); with both, it ends at the first limit.
      Each 429 is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo of ``storm_retry_delay`` seconds.
    - ``seed``: the random stream that picks faulty requests (None: different every run).
    """

    error_rate: float = 0.0
    html_error_rate: float = 0.0
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    truncated_rate: float = 0.0
    slow_body_rate: float = 0.0
    slow_body_seconds: float = 2.0
    storm_requests: int = 0
    storm_seconds: float = 0.0
    storm_retry_delay: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for mode in MODES:
            rate = getattr(self, f"{mode}_rate")
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"{mode}_rate must be a probability from 0 to 1, got {rate!r}")
        if sum(self.rates().values()) > 1.0 + 1e-9:
            raise ValueError(f"the fault rates add up to more than 1: {self.rates()}")
        for name in ("slow_body_seconds", "storm_seconds", "storm_retry_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if isinstance(self.storm_requests, bool) or not isinstance(self.storm_requests, int) or self.storm_requests < 0:
            raise ValueError(f"storm_requests must be an integer >= 0, got {self.storm_requests!r}")

    @classmethod
    def mix(cls, rate: float, **changes: Any) -> Faults:
        """``rate`` shared equally by 5xx, HTML 502, drops before and after, and truncated bodies;
        ``changes`` set any field (e.g. ``seed=1``, ``storm_requests=100``, or one mode's rate)."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a probability from 0 to 1, got {rate!r}")
        shares: dict[str, Any] = {f"{mode}_rate": rate / len(MIX) for mode in MIX}
        return cls(**{**shares, **changes})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        """From JSON (the admin route): unknown keys are a ValueError, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def rates(self) -> dict[str, float]:
        """Each mode's rate, by mode name."""
        return {mode: getattr(self, f"{mode}_rate") for mode in MODES}

    @property
    def random(self) -> bool:
        """Whether any request may be picked at random (any rate above 0)."""
        return any(self.rates().values())

    @property
    def storm(self) -> bool:
        return bool(self.storm_requests or self.storm_seconds)

    def choose(self, draw: float) -> str | None:
        """The mode a uniform draw in [0, 1) picks, or None for a healthy answer."""
        edge = 0.0
        for mode, rate in self.rates().items():
            edge += rate
            if draw < edge:
                return mode
        return None
