"""Polling schedules: pure generators of delays, in seconds. No clocks, no sleeps.

The caller owns the clock; :func:`clip_to_deadline` is the one rule for deadlines:
never sleep past the deadline, and poll once more when it is reached.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "LEARNT_SPREAD", "PRIORS", "Adaptive", "Durations", "Estimate", "Key", "backoff", "clip_to_deadline", "fixed",
]


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


# -- adaptive polling -------------------------------------------------------------------------

# Typical durations in seconds, (low, high), per kind: the built-in priors. Veo takes 1-6 minutes,
# tuning 10 minutes to hours, file imports seconds to minutes, batches up to a day.
PRIORS: dict[str, tuple[float, float]] = {
    "video": (45.0, 400.0),
    "tuning": (300.0, 4 * 3600.0),
    "import": (3.0, 180.0),
    "batch": (60.0, 24 * 3600.0),
    "other": (5.0, 3600.0),
}


Key: TypeAlias = "tuple[str, str | None]"  # (kind, model); model None: the kind as a whole

# How far either side of a learnt typical duration its prior spreads at least (a factor): runs of one
# model vary, and a prior that is too narrow would poll late for a slow run.
LEARNT_SPREAD = 1.6


class Durations:
    """What durations of each kind of operation look like: priors refined by durations seen.

    Each kind is a sorted sample: ``prior_weight`` log-spaced pseudo-observations across its
    prior range, plus up to ``max_observed`` real durations seen in this process. The CDF is
    piecewise linear through the sample, so estimates move smoothly as evidence arrives.
    ``scale`` multiplies the built-in priors (the emulator runs faster than real life).

    ``learnt`` maps (kind, model) to the durations in seconds of its recent runs, learnt
    elsewhere (the local history of finished runs, from earlier processes): that kind and
    model's prior is then the range those runs span, around their median (at least
    LEARNT_SPREAD either side of it), instead of the kind's wide built-in one, so that the first
    ETA and the first polls of a run are as good as the last ones of the previous kernel. Every method
    takes an optional ``model``; durations seen in this process count for the model when it has
    some, else for the kind as a whole.
    """

    def __init__(
        self,
        priors: dict[str, tuple[float, float]] | None = None,
        *,
        prior_weight: int = 16,
        max_observed: int = 256,
        scale: float = 1.0,
        learnt: Mapping[Key, Sequence[float]] | None = None,
    ) -> None:
        self._priors = dict(PRIORS if priors is None else priors)
        self._prior_weight = prior_weight
        self._max_observed = max_observed
        self._scale = scale
        self._learnt: dict[Key, tuple[float, float, float]] = {}  # (median, low, high)
        self._observed: dict[Key, list[float]] = {}
        self._cache: dict[Key, list[float]] = {}
        self.learn(learnt or {})

    @property
    def scale(self) -> float:
        """How much shorter than real life everything runs (1.0: real life)."""
        return self._scale

    def learn(self, runs: Mapping[Key, Sequence[float]]) -> None:
        """Take the durations (seconds) of recent runs per (kind, model) as those keys' priors."""
        for key, seconds in runs.items():
            good = [float(x) for x in seconds if x > 0 and math.isfinite(x)]
            if good:
                median = statistics.median(good)
                low = min(median / LEARNT_SPREAD, min(good) / 1.25)
                high = max(median * LEARNT_SPREAD, max(good) * 1.25)
                self._learnt[key] = (median, low, high)
        self._cache.clear()

    def learnt(self, kind: str, model: str | None = None) -> float | None:
        """The typical (median) duration learnt for (kind, model), if any."""
        known = self._learnt.get((kind, model))
        return None if known is None else known[0]

    def observe(self, kind: str, duration: float, model: str | None = None) -> None:
        if not (duration > 0 and math.isfinite(duration)):
            return
        for key in {(kind, None), (kind, model)}:
            seen = self._observed.setdefault(key, [])
            seen.append(duration)
            if len(seen) > self._max_observed:
                del seen[0]  # the oldest: behaviour drifts (a model gets faster), follow it
            self._cache.pop(key, None)

    def sample(self, kind: str, model: str | None = None) -> list[float]:
        key = (kind, model)
        cached = self._cache.get(key)
        if cached is None:
            known = self._learnt.get(key)
            if known is not None:
                _, lo, hi = known  # already in this client's seconds: no scale
            else:
                lo, hi = self._priors.get(kind, self._priors.get("other", (5.0, 3600.0)))
                lo, hi = lo * self._scale, hi * self._scale
            n = self._prior_weight
            prior = [lo * (hi / lo) ** ((i + 0.5) / n) for i in range(n)]
            seen = self._observed.get(key) or self._observed.get((kind, None), [])
            cached = self._cache[key] = sorted(prior + seen)
        return cached

    def cdf(self, kind: str, t: float, model: str | None = None) -> float:
        xs = self.sample(kind, model)
        n = len(xs)
        # Points (x_i, (i + .5) / n), extended to 0 at 0.8 x_0 and to 1 at 1.25 x_last.
        if t <= xs[0]:
            lo = 0.8 * xs[0]
            return 0.0 if t <= lo else 0.5 / n * (t - lo) / (xs[0] - lo)
        if t >= xs[-1]:
            hi = 1.25 * xs[-1]
            return 1.0 if t >= hi else 1 - 0.5 / n * (hi - t) / (hi - xs[-1])
        i = bisect.bisect_right(xs, t) - 1
        x0, x1 = xs[i], xs[i + 1]
        frac = 0.0 if x1 == x0 else (t - x0) / (x1 - x0)
        return (i + 0.5 + frac) / n

    def quantile(self, kind: str, q: float, model: str | None = None) -> float:
        """The inverse of cdf: the least t with cdf(t) >= q, read off the same piecewise-linear
        curve (closed form: every poller's every plan asks, thousands of times a second)."""
        xs = self.sample(kind, model)
        n = len(xs)
        lo, hi = 0.8 * xs[0], 1.25 * xs[-1]
        if q <= 0:
            return lo
        if q >= 1:
            return hi
        if q < 0.5 / n:
            return lo + q * n / 0.5 * (xs[0] - lo)
        if q > 1 - 0.5 / n:
            return xs[-1] + (q - (1 - 0.5 / n)) * n / 0.5 * (hi - xs[-1])
        position = q * n - 0.5
        i = min(int(position), n - 2) if n > 1 else 0
        if n == 1:
            return xs[0]
        return xs[i] + (position - i) * (xs[i + 1] - xs[i])


@dataclass(frozen=True)
class Estimate:
    """Seconds left, and whether they come from typical durations rather than reported progress."""

    eta: float | None
    from_priors: bool


class Adaptive:
    """The default schedule: poll near the likely finish, sparsely before it.

    Pure: it is fed observations (elapsed seconds since the operation started, progress or None)
    and answers the next delay and the ETA. With reported progress it extrapolates the progress
    rate; without, it steps through the typical-duration distribution of the kind, so that each
    poll has about a ``step`` chance of being the one that sees it done.
    """

    def __init__(
        self,
        kind: str,
        durations: Durations,
        *,
        model: str | None = None,
        floor: float | None = None,
        ceiling: float | None = None,
        step: float = 0.07,
        approach: float = 0.2,
        precision: float = 0.03,
        tail: float = 0.03,
    ) -> None:
        self.kind = kind
        self.model = model
        self.durations = durations
        # Gaps shrink with the durations (an emulator at speed=300 is real life sped up): by
        # default at least 1 s and at most an hour of the service's own time apart.
        self.floor = 1.0 * durations.scale if floor is None else floor
        self.ceiling = 3600.0 * durations.scale if ceiling is None else ceiling
        self.step, self.approach, self.precision, self.tail = step, approach, precision, tail
        self._history: list[tuple[float, float]] = []  # (elapsed, progress), progress rising
        self._elapsed = 0.0
        self._running_elapsed: float | None = None  # the last time it was seen running
        self._progress: float | None = None
        self._finishes: list[float] = []  # predicted finish (elapsed seconds) after each rising sample
        # Progress counted in whole steps says only that the job is somewhere in a step: the
        # finish lies in a window (its width; 0 for progress read as it is). Aimed at its late
        # end, as a reading taken as exact would be, a poll lands late by up to a step: minutes
        # for a long job of a few dozen steps.
        self._window = 0.0

    def observe(self, elapsed: float, progress: float | None, step: float = 0.0) -> None:
        """A poll at ``elapsed`` saw ``progress`` (percent, or None), which moves ``step`` percent
        at a time (ops_widgets._progress.progress_step; 0: read it as exact)."""
        before, seen = self._running_elapsed, self._progress
        self._elapsed = max(elapsed, 0.0)
        self._running_elapsed = self._elapsed
        self._progress = progress
        if progress is None:
            return
        if self._history and progress < self._history[-1][1]:
            self._history.clear()  # progress went back (a restart): start the estimate afresh
            self._finishes.clear()
        if self._history and progress == self._history[-1][1]:
            return  # no news: keep the older sample, whose slope spans more time
        self._history.append((self._elapsed, progress))
        del self._history[:-4]
        rate = self._rate()
        if rate is None:
            return
        late = self._elapsed + (100.0 - progress) / rate  # the reading taken as exact
        early = late
        if step > 0:
            # Up to a step further than it reads; and at this reading only since the last poll
            # that read less. The finish lies between: aim at the middle.
            early = self._elapsed + (100.0 - min(100.0, progress + step)) / rate
            if before is not None and seen is not None and seen < progress:
                early = max(early, before + (100.0 - progress) / rate)
            early = min(early, late)
        self._window = late - early
        self._finishes.append((early + late) / 2)
        del self._finishes[:-3]

    def finished(self, elapsed: float, duration: float | None = None) -> None:
        """Seen done at ``elapsed``; teach the kind's durations what it took.

        ``duration`` is the operation's own (updateTime - createTime) when it has one; else the
        midpoint between the last poll that saw it running and this one, so that what is learnt
        is not biased late by our own poll times.
        """
        if duration is None:
            last = self._running_elapsed
            duration = elapsed if last is None else (last + elapsed) / 2
        self.durations.observe(self.kind, duration, self.model)

    def rate(self) -> float | None:
        """Percent per second at which progress rises now, or None when not known yet."""
        return self._rate() if self._progress is not None else None

    def watched_delay(self, low: float = 2.0, high: float = 15.0, share: float = 0.05) -> float:
        """The next delay while a person looks at it.

        With reported progress: about every ``share`` of the expected duration, between ``low``
        and ``high`` seconds, and not past the expected finish; with no rate yet (0 % early, or a
        single reading) soon again, growing with the time it has run, rather than extrapolating
        a slow start into hours. With no progress reported there is nothing to show between
        polls: the background schedule (dense near the likely finish) stands.
        """
        if self._progress is None:
            return self.next_delay()
        est = self.estimate()
        if est.from_priors or est.eta is None:
            delay = 0.1 * self._elapsed
        else:
            delay = min(share * (self._elapsed + est.eta), est.eta + self.floor / 2)
        scale = self.durations.scale
        return min(high * scale, max(low * scale, delay))

    def _rate(self) -> float | None:
        """Percent per second between the last two rising samples (or since the start).

        The latest slope, not a long average: real progress often sits at 0 while a job is
        queued, then rises steadily, and only the recent slope says when it will end.
        """
        h = self._history
        if len(h) >= 2 and h[-1][1] > h[-2][1] and h[-1][0] > h[-2][0]:
            return (h[-1][1] - h[-2][1]) / (h[-1][0] - h[-2][0])
        if h and h[-1][1] > 0 and h[-1][0] > 0:
            return h[-1][1] / h[-1][0]  # linear since it started: a first guess
        return None

    def estimate(self) -> Estimate:
        if self._progress is not None and self._finishes:
            return Estimate(max(0.0, self._finishes[-1] - self._elapsed), False)
        # No progress: the median of the durations still possible, minus what has passed.
        d = self.durations
        c = d.cdf(self.kind, self._elapsed, self.model)
        if c >= 0.999:
            return Estimate(None, True)  # ran past every duration we know: no honest guess
        median = d.quantile(self.kind, c + (1 - c) / 2, self.model)
        return Estimate(max(0.0, median - self._elapsed), True)

    def _confident(self, eta: float) -> bool:
        """The last two predictions of the finish agree, given how far off it still is; or the
        last slope spans enough progress (a fifth of the work) to be read without much error."""
        f, h = self._finishes, self._history
        if len(h) >= 2 and h[-1][1] - h[-2][1] >= 20:
            return True
        return len(f) >= 2 and abs(f[-1] - f[-2]) <= max(2 * self.floor, 0.1 * eta)

    def next_delay(self) -> float:
        return self.next_poll()[0]

    def next_poll(self) -> tuple[float, float]:
        """The next delay, and the slack: how much later that poll could go out at little cost
        (when requests queue behind a rate cap, the polls with slack wait for the others). A
        poll that re-reads the rate of a finish still far off has some; one that may see the
        finish has none."""
        est = self.estimate()
        e = self._elapsed
        slack = 0.0
        if not est.from_priors and est.eta is not None:
            confident = self._confident(est.eta)
            if est.eta <= 4 * self.floor or (confident and est.eta * self.precision < self.floor):
                delay = est.eta + self.floor / 2  # nearly there: just after the finish
                if est.eta == 0.0 and self._window > 0:
                    delay = max(delay, self._window / 4)  # past a window's middle: its rest in quarters
            elif confident:
                # Close in on the expected finish: look again `approach` of the way short of it.
                # A finish far off is read from a slope that may still bend (or from coarse
                # steps), so a poll aimed straight at it lands late; one near it re-reads the
                # rate where it counts, and each step costs one request.
                delay = est.eta * (1 - self.approach)
                slack = est.eta * self.approach / 2  # late by this, it still lands short of the finish
            else:
                # Look again halfway, and no later than the time already elapsed (a doubling
                # search), to learn the real rate before betting on it.
                delay = min(est.eta / 2, max(e, self.floor))
                slack = delay / 2
        else:
            d = self.durations
            c = d.cdf(self.kind, e, self.model)
            if c >= 0.999:
                delay = 0.25 * e  # overran every known duration: back off in proportion
            else:
                # A `step` chance of finishing before the next poll, but never more often than
                # a small fraction of the elapsed time (the tail of a long job is not urgent).
                delay = max(d.quantile(self.kind, c + self.step * (1 - c), self.model) - e, self.tail * e)
        delay = min(self.ceiling, max(self.floor, delay))
        return delay, min(slack, delay)
