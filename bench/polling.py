"""Polling schedules compared on a simulated fleet of long-running operations, in virtual time.

    python bench/polling.py [--n 10000] [--seed 1] [--no-shortcuts]

Simulates ``n`` operations (equal thirds of video, tuning and import, started at random over the
first 30 virtual minutes) and, for each schedule, counts the requests each operation costs and the
detection delay (first poll that sees it done minus its finish). The adaptive schedule runs as one
discrete-event simulation over all operations, so its shared ``Durations`` learns from operations
that finished earlier, as in a process tracking many of them. No sleeps, no network.

Schedules that do not share state between operations are computed per operation (in closed form
where exact); ``--no-shortcuts`` runs them through the same event heap instead, to check that.
A measurement, not a test: the exit code is 0 whether or not the targets are met.
``run(n, seed)`` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from ops_widgets import _schedule
except ImportError:  # run from a checkout without installing: the repo root is our parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ops_widgets import _schedule

__all__ = ["KINDS", "Op", "make_ops", "run", "main"]

KINDS = ("video", "tuning", "import")
PROGRESS_KINDS = ("tuning", "import")
START_WINDOW = 30 * 60.0  # operations are created over the first 30 virtual minutes
IMPORT_SEGMENTS = 8  # pieces of an import's piecewise-linear progress curve

# -- the fleet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation: when it was created, how long it runs, and how it reports progress."""

    kind: str
    start: float  # virtual seconds; its createTime
    duration: float  # seconds from creation to done
    seed: int  # its own random stream, so per-operation jitter does not depend on event order
    setup: float = 0.0  # tuning: seconds at 0% before steps start
    total_steps: int = 0  # tuning
    drift: float = 0.0  # tuning: rate goes from (1 - drift) to (1 + drift) over its life
    knots: tuple[float, ...] = ()  # import: cumulative fraction done at equal time slices


def make_ops(n: int, seed: int) -> list[Op]:
    rng = random.Random(seed)
    ops: list[Op] = []
    for i in range(n):
        kind = KINDS[i % 3]
        start = rng.uniform(0.0, START_WINDOW)
        op_seed = rng.getrandbits(64)
        if kind == "video":
            ops.append(Op(kind, start, rng.uniform(60.0, 360.0), op_seed))
        elif kind == "tuning":
            d = rng.uniform(600.0, 3 * 3600.0)
            ops.append(
                Op(
                    kind,
                    start,
                    d,
                    op_seed,
                    setup=d * rng.uniform(0.01, 0.05),
                    total_steps=rng.randint(50, 2000),
                    drift=rng.uniform(-0.1, 0.1),
                )
            )
        else:
            # Rate noise per slice rather than noise per reading: real percent counters rise
            # monotonically, and a dip would look like a restart to any rate estimator.
            weights = [1.0 + rng.uniform(-0.2, 0.2) for _ in range(IMPORT_SEGMENTS)]
            total, acc, knots = sum(weights), 0.0, [0.0]
            for w in weights:
                acc += w / total
                knots.append(acc)
            knots[-1] = 1.0
            ops.append(Op(kind, start, rng.uniform(5.0, 120.0), op_seed, knots=tuple(knots)))
    return ops


def progress(op: Op, elapsed: float) -> float | None:
    """Percent done as a poll at ``elapsed`` (< duration) would report it; None if not reported."""
    if op.kind == "tuning":
        if elapsed < op.setup:
            return 0.0
        u = (elapsed - op.setup) / (op.duration - op.setup)
        f = u + op.drift * u * (u - 1.0)  # integral of the drifting rate; f(1) == 1
        # Whole steps: below 100% until done, since f < 1 for u < 1.
        return 100.0 * math.floor(op.total_steps * f) / op.total_steps
    if op.kind == "import":
        x = elapsed / op.duration * IMPORT_SEGMENTS
        k = min(int(x), IMPORT_SEGMENTS - 1)
        frac = op.knots[k] + (op.knots[k + 1] - op.knots[k]) * (x - k)
        return float(min(99, math.floor(100.0 * frac)))  # whole percent, 100 only when done
    return None


# -- schedules --------------------------------------------------------------------------------

Poller = Callable[[float, float | None], float]  # (elapsed, progress) -> delay to next poll
OnDone = Callable[[Op, float], None]  # (op, elapsed when first seen done)


@dataclass
class Schedule:
    """One schedule under test, and the cheapest exact way to simulate it."""

    name: str
    # Builds the poller of one operation; None means the schedule is not simulated (the oracle).
    poller: Callable[[Op], Poller] | None
    # Closed form (requests, delay) per operation, exact for schedules without shared state.
    exact: Callable[[Op], tuple[int, float]] | None = None
    # Per-operation delay iterator for schedules without shared state but no closed form.
    delays: Callable[[Op], Iterator[float]] | None = None
    on_done: OnDone | None = None
    rate: float | None = None  # requests per second for the whole fleet (the client's cap); None: no cap


def _from_iterator(it: Iterator[float]) -> Poller:
    nxt = it.__next__
    return lambda _elapsed, _progress: nxt()


def _fixed_exact(interval: float) -> Callable[[Op], tuple[int, float]]:
    def exact(op: Op) -> tuple[int, float]:
        k = max(1, math.ceil(op.duration / interval))  # polls at 0, iv, ..., k*iv >= duration
        return k + 1, k * interval - op.duration

    return exact


def _table_exact(delays: Callable[[], Iterator[float]], horizon: float) -> Callable[[Op], tuple[int, float]]:
    """Exact for deterministic delays: poll times summed in the loop's order, then bisected."""
    times, t, it = [0.0], 0.0, delays()
    while t < horizon:
        t += next(it)
        times.append(t)

    def exact(op: Op) -> tuple[int, float]:
        j = bisect.bisect_left(times, op.duration)  # first poll at or after the finish
        return j + 1, times[j] - op.duration

    return exact


def schedules(ops: list[Op], rate: float = 10.0) -> list[Schedule]:
    horizon = max(op.duration for op in ops) + 1.0

    def nojit() -> Iterator[float]:
        return _schedule.backoff(1.0, 30.0, 2.0, jitter=False)

    def jittered(op: Op) -> Iterator[float]:
        return _schedule.backoff(1.0, 20.0, 1.5, jitter=True, rand=random.Random(op.seed).random)

    def adaptive_run() -> tuple[Callable[[Op], Poller], OnDone]:
        """The adaptive schedule of one process: a Durations shared by all its operations (learnt
        as they finish), and the poller and on-done hook of each."""
        durations = _schedule.Durations()
        live: dict[int, _schedule.Adaptive] = {}

        def adaptive(op: Op) -> Poller:
            a = live[id(op)] = _schedule.Adaptive(op.kind, durations)

            def poll(elapsed: float, prog: float | None) -> float:
                a.observe(elapsed, prog)
                return a.next_delay()

            return poll

        def learn(op: Op, elapsed: float) -> None:
            # As the engine does: the reported duration where the metadata has update/create times
            # (tuning, imports), else what the polls saw (video reports nothing). None: already
            # done when its first poll went out (a late one, behind a rate cap).
            a = live.pop(id(op), None)
            if a is not None:
                a.finished(elapsed, op.duration if op.kind != "video" else None)

        return adaptive, learn

    adaptive, learn = adaptive_run()
    adaptive_capped, learn_capped = adaptive_run()  # the capped run learns on its own, as another process

    return [
        Schedule("fixed 10 s", lambda op: _from_iterator(_schedule.fixed(10.0)), exact=_fixed_exact(10.0)),
        Schedule("fixed 5 s", lambda op: _from_iterator(_schedule.fixed(5.0)), exact=_fixed_exact(5.0)),
        Schedule(
            "backoff 1 x2 max 30",
            lambda op: _from_iterator(nojit()),
            exact=_table_exact(nojit, horizon),
        ),
        Schedule(
            "api-core 1 x1.5 max 20 jit",
            lambda op: _from_iterator(jittered(op)),
            delays=jittered,
        ),
        Schedule("oracle", None, exact=lambda op: (1, 0.0)),
        Schedule("ours (adaptive)", adaptive, on_done=learn),
        Schedule(f"ours, {rate:g}/s cap", adaptive_capped, on_done=learn_capped, rate=rate),
    ]


# -- simulation -------------------------------------------------------------------------------


def simulate(ops: list[Op], sched: Schedule, shortcuts: bool = True) -> tuple[list[int], list[float]]:
    """Requests and detection delay per operation under one schedule."""
    n = len(ops)
    if sched.poller is None or (shortcuts and sched.exact is not None):
        assert sched.exact is not None
        pairs = [sched.exact(op) for op in ops]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if shortcuts and sched.delays is not None:
        # No shared state: each operation alone gives what the heap would, without its cost.
        reqs, delays = [0] * n, [0.0] * n
        for i, op in enumerate(ops):
            d, e, k = op.duration, 0.0, 1
            nxt = sched.delays(op).__next__
            while e < d:
                e += nxt()
                k += 1
            reqs[i], delays[i] = k, e - d
        return reqs, delays
    return _event_loop(ops, sched)


def _event_loop(ops: list[Op], sched: Schedule) -> tuple[list[int], list[float]]:
    """One discrete-event simulation: a heap of (virtual time of next poll, operation). With
    ``sched.rate``, requests go out at most that many a second, in the order they fall due, as
    the client's limiter sends them (a poll due while the turns are taken goes out late, and
    sees the operation as it is then)."""
    assert sched.poller is not None
    n = len(ops)
    reqs, delays = [0] * n, [0.0] * n
    # Elapsed is kept per operation and summed from delays, so a fixed 10 s schedule polls at
    # exact multiples of 10 (as in the closed form) rather than at start + t rounding noise.
    elapsed = [0.0] * n
    pollers: list[Poller | None] = [None] * n
    heap = [(op.start, i) for i, op in enumerate(ops)]  # everyone polls once at creation
    heapq.heapify(heap)
    pop, push, make, on_done = heapq.heappop, heapq.heappush, sched.poller, sched.on_done
    gap = 1.0 / sched.rate if sched.rate else 0.0
    turn = -math.inf  # when the limiter gives its next turn
    while heap:
        due, i = pop(heap)
        op, e = ops[i], elapsed[i]
        if gap:
            sent = max(due, turn)
            turn = sent + gap
            e = elapsed[i] = sent - op.start
        reqs[i] += 1
        if e >= op.duration:
            delays[i] = e - op.duration
            if on_done is not None:
                on_done(op, e)
            continue
        p = pollers[i]
        if p is None:
            p = pollers[i] = make(op)
        e += p(e, progress(op, e))
        elapsed[i] = e
        push(heap, (op.start + e, i))
    return reqs, delays


# -- figures ----------------------------------------------------------------------------------


def _pct(sorted_xs: list[float], q: float) -> float:
    """Percentile by linear interpolation between order statistics."""
    if not sorted_xs:
        return math.nan
    x = q * (len(sorted_xs) - 1)
    i = int(x)
    j = min(i + 1, len(sorted_xs) - 1)
    return sorted_xs[i] + (sorted_xs[j] - sorted_xs[i]) * (x - i)


def _summary(ops: list[Op], reqs: list[int], delays: list[float]) -> dict[str, Any]:
    groups: dict[str, list[int]] = {"all": list(range(len(ops)))}
    for k in KINDS:
        groups[k] = [i for i, op in enumerate(ops) if op.kind == k]
    groups["progress"] = [i for i, op in enumerate(ops) if op.kind in PROGRESS_KINDS]
    keys = ("requests", "requests_p50", "requests_p95", "requests_max", "delay_p50", "delay_p95")
    out: dict[str, dict[str, float]] = {k: {} for k in keys}
    for g, idx in groups.items():
        rs = sorted(reqs[i] for i in idx)
        ds = sorted(delays[i] for i in idx)
        out["requests"][g] = sum(rs) / len(rs) if rs else math.nan
        out["requests_p50"][g] = _pct(rs, 0.5)
        out["requests_p95"][g] = _pct(rs, 0.95)
        out["requests_max"][g] = float(rs[-1]) if rs else math.nan
        out["delay_p50"][g] = _pct(ds, 0.5)
        out["delay_p95"][g] = _pct(ds, 0.95)
    return out


def run(n: int = 10_000, seed: int = 1, *, shortcuts: bool = True, rate: float = 10.0) -> dict[str, Any]:
    """All figures of one run: per schedule, the ratios of ours to the baselines, the targets."""
    ops = make_ops(n, seed)
    results: dict[str, dict[str, Any]] = {}
    for sched in schedules(ops, rate):
        t0 = time.perf_counter()
        reqs, delays = simulate(ops, sched, shortcuts)
        results[sched.name] = _summary(ops, reqs, delays)
        results[sched.name]["seconds"] = time.perf_counter() - t0
    ours, f10, oracle = results["ours (adaptive)"], results["fixed 10 s"], results["oracle"]
    vs_oracle = {g: ours["requests"][g] / oracle["requests"][g] for g in PROGRESS_KINDS + ("progress",)}
    ratios = {
        "requests_vs_fixed10": ours["requests"]["all"] / f10["requests"]["all"],
        "p50_delay_ours": ours["delay_p50"]["all"],
        "p50_delay_fixed10": f10["delay_p50"]["all"],
        "requests_vs_oracle": vs_oracle,
    }
    targets = {
        "a": {
            "what": "ours' requests <= 1/3 of fixed 10 s's, overall",
            "value": ours["requests"]["all"],
            "limit": f10["requests"]["all"] / 3,
        },
        "b": {
            "what": "ours' overall p50 delay <= fixed 10 s's p50",
            "value": ours["delay_p50"]["all"],
            "limit": f10["delay_p50"]["all"],
        },
        "c": {
            "what": "ours' requests within 3x of the oracle's, ops reporting progress",
            "value": ours["requests"]["progress"],
            "limit": 3 * oracle["requests"]["progress"],
        },
    }
    capped = results[f"ours, {rate:g}/s cap"]
    targets.update({
        "d": {"what": f"capped ({rate:g}/s, the default client): requests <= 1/20 of fixed 10 s's",
              "value": capped["requests"]["all"], "limit": f10["requests"]["all"] / 20},
        "e": {"what": f"capped ({rate:g}/s): p50 delay <= 5 s", "value": capped["delay_p50"]["all"], "limit": 5.0},
        "f": {"what": f"capped ({rate:g}/s): p95 delay <= 10 s", "value": capped["delay_p95"]["all"], "limit": 10.0},
    })
    for t in targets.values():
        t["met"] = t["value"] <= t["limit"]
    counts = {k: sum(op.kind == k for op in ops) for k in KINDS}
    return {"n": n, "seed": seed, "counts": counts, "schedules": results, "ratios": ratios, "targets": targets}


def report(fig: dict[str, Any]) -> str:
    cols = ("all",) + KINDS
    names = list(fig["schedules"])
    w = max(len(s) for s in names) + 2
    c = fig["counts"]
    lines = [
        f"Polling schedules on {fig['n']} simulated operations (seed {fig['seed']}), virtual time",
        f"  video {c['video']} (60-360 s, no progress), tuning {c['tuning']} (600 s-3 h, steps),"
        f" import {c['import']} (5-120 s, percent)",
        "",
        "requests per operation (mean)",
        "schedule".ljust(w) + "".join(k.rjust(9) for k in cols),
    ]
    for s in names:
        r = fig["schedules"][s]["requests"]
        lines.append(s.ljust(w) + "".join(f"{r[k]:9.2f}" for k in cols))
    lines += ["", "detection delay, seconds: p50 / p95", "schedule".ljust(w) + "".join(k.rjust(17) for k in cols)]
    for s in names:
        f = fig["schedules"][s]
        lines.append(s.ljust(w) + "".join(f"{f['delay_p50'][k]:9.1f} /{f['delay_p95'][k]:6.1f}" for k in cols))
    # Means hide a heavy tail (the adaptive schedule's longest videos), so show its spread.
    lines += ["", "requests per operation: p50 / p95 / max", "schedule".ljust(w) + "".join(k.rjust(21) for k in cols)]
    for s in names:
        f = fig["schedules"][s]
        lines.append(
            s.ljust(w)
            + "".join(
                f"{f['requests_p50'][k]:9.0f} /{f['requests_p95'][k]:5.0f} /{f['requests_max'][k]:5.0f}"
                for k in cols
            )
        )
    r = fig["ratios"]
    vo = r["requests_vs_oracle"]
    lines += [
        "",
        "ratios (this run)",
        f"  ours vs fixed 10 s: requests x{r['requests_vs_fixed10']:.3f};"
        f" p50 delay {r['p50_delay_ours']:.1f} s vs {r['p50_delay_fixed10']:.1f} s"
        f" ({r['p50_delay_ours'] - r['p50_delay_fixed10']:+.1f} s)",
        f"  ours vs oracle requests: tuning x{vo['tuning']:.2f}, import x{vo['import']:.2f},"
        f" tuning+import x{vo['progress']:.2f}",
        "",
        "targets",
    ]
    for key, t in fig["targets"].items():
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"  ({key}) {t['what']:<66} {t['value']:8.2f} <= {t['limit']:8.2f}   {verdict}")
    secs = sum(f["seconds"] for f in fig["schedules"].values())
    lines += ["", f"simulated in {secs:.1f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="operations (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-shortcuts", action="store_true", help="run every schedule through the event heap")
    ap.add_argument("--rate", type=float, default=10.0, help="the capped run's requests per second (default 10, "
                    "the client's default poll_rate)")
    args = ap.parse_args(argv)
    if args.n < 3:
        ap.error("--n must be at least 3 (one operation per kind)")
    print(report(run(args.n, args.seed, shortcuts=not args.no_shortcuts, rate=args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
