"""Soak: operations of every kind tracked to the end through faults, in virtual time.

    python bench/soak.py [--n 1000] [--fault-rate 0.2] [--seed 1]

``n`` operations of each kind (video, tuning, batch, import, upload) are created with
``emu.create`` over the first 30 virtual minutes, with realistic durations and outcomes (about
10 % fail, 5 % of videos are filtered, a fifth of the batches are cancelled by the client while
they run), and each is tracked by one client (``track()`` then ``wait()``), with the client's
default settings. The emulator runs in-process on a VirtualClock (hours of operations in seconds),
injecting ``--fault-rate`` faults shared by 500/503, HTML 502 pages, drops before and after the
server acted and truncated 200 bodies, plus 2 % slow bodies (5 s), and a 429 storm of one
virtual minute (RetryInfo 1 s) ten minutes in.

It prints what matters when the network misbehaves:
- lost: a track() or wait() that raised (by exception), or a cancel the client could not send;
- wrong: a final state (or final JSON) other than the emulator's own truth;
- stuck: an operation the emulator says is done, still not seen done by its handle after a margin;
- requests per operation (as the emulator counted them), the faults it injected;
- detection delay (seen done minus done), p50/p95, for operations that ran their course;
- the process RSS before and after.
A measurement, not a test: the exit code is 0 whatever it finds. ``run(n, seed)`` returns a dict.
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history (bench/history.py measures it).
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import asyncio
import logging
import random
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

try:
    from ops_widgets import AsyncOperations, Operation, State, VirtualClock, WaitTimeout
except ImportError:  # run from a checkout without installing: the repo root is our parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ops_widgets import AsyncOperations, Operation, State, VirtualClock, WaitTimeout
from ops_widgets.emulator import Emulator, Faults

__all__ = ["run", "main"]

KINDS = ("video", "tuning", "batch", "import", "upload")
# Emulated durations per kind, seconds (as the emulator's own defaults): lo, hi.
DURATIONS = {"video": (60, 360), "tuning": (600, 10800), "batch": (60, 3600), "import": (5, 120), "upload": (3, 60)}
START_WINDOW = 30 * 60.0  # operations are created over the first 30 virtual minutes
STORM_AT, STORM_SECONDS, STORM_RETRY = 10 * 60.0, 60.0, 1.0
CANCEL_SHARE = 0.2  # of the batches: the only kind the Gemini API can cancel
# The adaptive schedule polls at least hourly (its ceiling) and failing polls back off to 60 s at
# most: an operation not seen done this long after its end is stuck.
MARGIN = 3600.0 + 5 * 60.0


@dataclass
class Tracked:
    """One operation of the soak, and what became of it."""

    name: str
    kind: str
    created: float  # emulator (virtual wall) time
    end: float  # when the emulator finishes it, unless cancelled
    cancel_at: float | None = None  # virtual seconds after creation
    cancelled: bool = False  # the client's cancel went out (or at least was tried)
    seen_done: float | None = None  # when wait() returned
    final: Operation | None = None
    lost: str | None = None  # what raised
    stuck: str | None = None  # not seen done in time: whether it still polled, and its last error


def _shape(exc: BaseException) -> str:
    """An exception as a category: its type and message, names and numbers taken out."""
    text = re.sub(r"(batches|models|tunedModels|fileSearchStores)/\S+", "<name>", str(exc))
    text = re.sub(r"received \d+ bytes, expected \d+", "received N bytes, expected M", text)
    text = re.sub(r"(is not JSON): .*", r"\1: '...'", text)
    return f"{type(exc).__name__}: {text[:160]}"


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc), else its peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Count(logging.Handler):
    """Counts what ops_widgets logs (warnings: "polling X keeps failing"), instead of printing it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.levels: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1


def run(n: int = 1000, seed: int = 1, fault_rate: float = 0.2) -> dict[str, Any]:
    logger = logging.getLogger("ops_widgets")
    counting = _Count()
    logger.addHandler(counting)
    logger.propagate = False
    try:
        return _run(n, seed, fault_rate) | {"logged": dict(counting.levels)}
    finally:
        logger.removeHandler(counting)
        logger.propagate = True


def _run(n: int, seed: int, fault_rate: float) -> dict[str, Any]:
    random.seed(seed)  # the client's jitter draws from the global stream: the same run every time
    clock = VirtualClock()
    faults = Faults.mix(fault_rate, seed=seed, slow_body_rate=0.02, slow_body_seconds=5.0)
    emu = Emulator.in_process(clock, random_seed=seed, faults=faults)
    rng = random.Random(seed)
    plan: list[tuple[float, str, float, str, float | None]] = []  # start, kind, duration, outcome, cancel
    for kind in KINDS:
        for _ in range(n):
            duration = rng.uniform(*DURATIONS[kind])
            r = rng.random()
            outcome = "failure" if r < 0.1 else "filtered" if kind == "video" and r < 0.15 else "success"
            cancel = rng.uniform(0.1, 0.9) * duration if kind == "batch" and rng.random() < CANCEL_SHARE else None
            plan.append((rng.uniform(0.0, START_WINDOW), kind, duration, outcome, cancel))
    plan.sort()
    records: list[Tracked] = []
    cancel_errors: Counter[str] = Counter()
    rss_before = rss_mb()
    real_start = time.perf_counter()

    async def follow(ops: AsyncOperations, rec: Tracked) -> None:
        try:
            handle = await ops.track(rec.name)
        except Exception as exc:  # noqa: BLE001 - a lost operation is what we count
            rec.lost = "track: " + _shape(exc)
            return
        canceller = None
        if rec.cancel_at is not None:
            async def cancel() -> None:
                await asyncio.sleep(rec.cancel_at or 0.0)
                rec.cancelled = True
                try:
                    await handle.cancel()
                except Exception as exc:  # noqa: BLE001
                    cancel_errors[_shape(exc)] += 1

            canceller = asyncio.ensure_future(cancel())
        try:
            rec.final = await handle.wait(timeout=max(1.0, rec.end + MARGIN - clock.time()))
            rec.seen_done = clock.time()
        except WaitTimeout:
            error = handle.last_error
            rec.stuck = (f"{rec.kind}, {'still polling' if handle.polling else 'polling stopped'}, last error: "
                         + (_shape(error) if error is not None else "none"))
            rec.final = handle.operation
        except Exception as exc:  # noqa: BLE001
            rec.lost = "wait: " + _shape(exc)
            rec.final = handle.operation
        finally:
            if canceller is not None and not canceller.done():
                canceller.cancel()
            handle.close()

    async def storm() -> None:
        await asyncio.sleep(STORM_AT)
        emu.set_faults(replace(faults, storm_seconds=STORM_SECONDS, storm_retry_delay=STORM_RETRY))

    async def soak() -> None:
        t0 = clock.time()
        storm_task = asyncio.ensure_future(storm())
        async with emu.aclient() as ops:
            tasks = []
            for start, kind, duration, outcome, cancel in plan:
                await asyncio.sleep(max(0.0, t0 + start - clock.time()))
                name = emu.create(kind, duration=duration, outcome=outcome)
                now = clock.time()
                rec = Tracked(name, kind, now, now + duration, cancel_at=cancel)
                records.append(rec)
                tasks.append(asyncio.ensure_future(follow(ops, rec)))
            await asyncio.gather(*tasks)
        await storm_task

    clock.run(soak())
    real = time.perf_counter() - real_start
    rss_after = rss_mb()

    lost = Counter(rec.lost for rec in records if rec.lost)
    wrong_state, wrong_json, stuck, delays = [], [], [], []
    for rec in records:
        truth = emu.get_operation(rec.name)
        assert truth is not None
        expected = Operation.from_api_response(truth)
        if rec.stuck and expected.done:
            stuck.append(rec.stuck)
        if rec.lost or rec.stuck or rec.final is None:
            continue
        if rec.final.state != expected.state:
            wrong_state.append(f"{rec.name}: {rec.final.state} vs {expected.state}")
        elif rec.final.raw != truth:
            wrong_json.append(rec.name)
        if rec.seen_done is not None and expected.state != State.CANCELLED:
            delays.append(rec.seen_done - rec.end)
    stats = emu.stats()
    q = statistics.quantiles(delays, n=100) if len(delays) > 1 else [float("nan")] * 99
    return {
        "n": len(records), "per_kind": n, "seed": seed, "fault_rate": fault_rate,
        "lost": sum(lost.values()), "lost_by": dict(lost), "cancel_errors": dict(cancel_errors),
        "cancels": sum(rec.cancelled for rec in records),
        "wrong_state": wrong_state, "wrong_json": wrong_json, "stuck": stuck,
        "requests": stats["total"], "requests_per_op": stats["total"] / len(records),
        "faults": stats["faults"], "by_status": stats["by_status"],
        "delay_p50": q[49], "delay_p95": q[94], "detected": len(delays),
        "virtual_hours": clock.monotonic() / 3600, "real_seconds": real,
        "rss_before_mb": rss_before, "rss_after_mb": rss_after,
        "records": records, "emulator": emu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="operations of each kind (default: 1000)")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of faulted requests (default: 0.2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    r = run(args.n, args.seed, args.fault_rate)
    print(f"Soak: {r['n']} operations ({r['per_kind']} of each of {', '.join(KINDS)}), seed {r['seed']}, "
          f"{r['fault_rate']:.0%} faults (500/503, HTML 502, drops before/after, truncated) + 2% slow bodies,\n"
          f"a 429 storm of {STORM_SECONDS:g} s at {STORM_AT / 60:g} min; {r['cancels']} batches cancelled by "
          f"the client; {r['virtual_hours']:.1f} virtual hours in {r['real_seconds']:.0f} s")
    print(f"\nlost                 {r['lost']}")
    for what, count in sorted(r["lost_by"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:6d}  {what}")
    print(f"wrong final state    {len(r['wrong_state'])}")
    for line in r["wrong_state"][:10]:
        print(f"          {line}")
    print(f"wrong final JSON     {len(r['wrong_json'])}   (right state, other body than the emulator's)")
    print(f"stuck                {len(r['stuck'])}   (done on the server, not seen done {MARGIN / 60:g} min later)")
    for what, count in Counter(r["stuck"]).most_common():
        print(f"  {count:6d}  {what}")
    print(f"cancel errors        {sum(r['cancel_errors'].values())}")
    for what, count in sorted(r["cancel_errors"].items(), key=lambda kv: -kv[1]):
        print(f"  {count:6d}  {what}")
    print(f"\nrequests per op      {r['requests_per_op']:.2f}   ({r['requests']} requests)")
    print("faults injected      " + ", ".join(f"{k} {v}" for k, v in sorted(r["faults"].items())))
    print("statuses answered    " + ", ".join(f"{k}: {v}" for k, v in sorted(r["by_status"].items())))
    print(f"detection delay      p50 {r['delay_p50']:.1f} s, p95 {r['delay_p95']:.1f} s   "
          f"({r['detected']} operations that ran their course)")
    print("logged by ops_widgets " + ", ".join(f"{k} {v}" for k, v in sorted(r["logged"].items())))
    print(f"RSS                  {r['rss_before_mb']:.0f} MB before, {r['rss_after_mb']:.0f} MB after")


if __name__ == "__main__":
    main()
