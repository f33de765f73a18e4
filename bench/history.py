"""History benchmark: what recording every tracked operation costs the engine, and what the
typical durations it learns buy the first runs of a new kernel.

    python bench/history.py [--n 2000]

1. Cost: ``--n`` operations (video, tuning, batch, import in turn, minutes to an hour) tracked to
   the end by one client on a virtual clock, against the emulator in-process; wall time with the
   history on, divided by the same run with it off; off and on alternate ``--repeat`` times (each
   on a fresh OPS_WIDGETS_HOME, so nothing is learnt between runs) and the best of each counts.
2. Gain: a "previous kernel" runs 5 videos of one model (90 s each) with the history on; then a
   new client tracks 50 more of that model, once with the history (its learnt typical duration)
   and once without (the built-in prior of videos, 45-400 s): the first run's first ETA,
   detection delay (seen done minus done) and requests, then the means over the 50 (the client
   learns in-process as well, so both converge).

It prints figures and ratios; it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from typing import Any

import ops_widgets as ow
from ops_widgets.emulator import Emulator

KINDS = ("video", "tuning", "batch", "import")
VEO = "veo-3.0-generate-001"


def cost(n: int, history: bool) -> tuple[float, int]:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=1)

    async def body() -> int:
        names = [emu.create(KINDS[i % 4], duration=60 + (i * 37) % 3600) for i in range(n)]
        async with emu.aclient(history=history, poll_rate=None, poll_concurrency=64) as ops:
            handles = await ops.track_all(names)
            await asyncio.gather(*(h.wait() for h in handles))
            return len(await ops.history()) if history else 0

    start = time.perf_counter()
    rows = clock.run(body())
    return time.perf_counter() - start, rows


def gain(history: bool) -> dict[str, float]:
    random.seed(1)  # the engine's jitter: the same for both runs
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=2)

    async def body() -> dict[str, float]:
        async with emu.aclient() as ops:  # the previous kernel
            await asyncio.gather(*(ops.wait(emu.create("video", duration=90, model=VEO), poll_interval=5)
                                   for _ in range(5)))
        async with emu.aclient(history=history) as ops:
            etas, lates, polls = [], [], []
            for i in range(50):
                name = emu.create("video", duration=80 + i % 21, model=VEO)
                start = clock.monotonic()
                before = emu.stats()["by_name"].get(name, 0)
                handle = await ops.track(name)
                etas.append(handle.eta or 0.0)
                await handle.wait()
                lates.append(clock.monotonic() - start - (80 + i % 21))
                polls.append(emu.stats()["by_name"].get(name, 0) - before)
        return {"ETA #1": etas[0], "delay #1": lates[0], "requests #1": polls[0],
                "first ETA": statistics.mean(etas), "requests": statistics.mean(polls),
                "delay p50": statistics.median(lates), "delay max": max(lates)}

    return clock.run(body())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="operations tracked in the cost run (default: 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="cost runs of each (default: 3)")
    args = parser.parse_args()
    times: dict[bool, list[float]] = {False: [], True: []}
    rows = 0
    for _ in range(args.repeat):
        for history in (False, True):
            with tempfile.TemporaryDirectory() as home:
                os.environ["OPS_WIDGETS_HOME"] = home
                took, written = cost(args.n, history)
                times[history].append(took)
                rows = max(rows, written)
    off, on = min(times[False]), min(times[True])
    print(f"1. cost: {args.n} operations tracked to the end on a virtual clock (best of {args.repeat})")
    print(f"   history off {off:6.2f} s   on {on:6.2f} s   ratio on/off {on / off:.2f}   rows written {rows}")
    results: dict[str, Any] = {}
    for history in (False, True):
        with tempfile.TemporaryDirectory() as home:
            os.environ["OPS_WIDGETS_HOME"] = home
            results["learnt" if history else "prior"] = gain(history)
    print("2. gain: 50 videos of one model (80-100 s) in a new kernel, after 5 runs of 90 s in an earlier one")
    print(f"   {'':8}" + "".join(f"{k:>12}" for k in results["prior"]))
    for label, figures in results.items():
        print(f"   {label:8}" + "".join(f"{v:12.1f}" for v in figures.values()))
    p, learnt = results["prior"], results["learnt"]
    print(f"   ratios learnt/prior: requests {learnt['requests'] / p['requests']:.2f}, "
          f"delay p50 {learnt['delay p50'] / max(p['delay p50'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
