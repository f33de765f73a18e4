"""The fleet of bench/polling.py run through the real engine: a default client (rate cap, list
sweeps, everything) against the in-process emulator, on a virtual clock.

    python bench/engine_fleet.py [--n 10000] [--seed 1] [--spread 1800] [--listable | --all-listable]
                                 [--poll-rate R]

Each operation is created at its start time and tracked from the create call's answer (an
Operation in hand, as a user who made it has), by `track()`; its detection delay is when a
subscriber first sees it done minus when the emulator finishes it. Requests are every HTTP request
the client sends, plus one per operation for the create call's answer (bench/polling.py counts a
poll at creation for every schedule). The same fleet's fixed 10 s loop and google-api-core's
default polling are computed by bench/polling.py's simulation, in the same run.

The floor lines: imports report no progress and cannot be listed (as the real service's file
search imports), so seeing them done within 10 s takes a poll at most every 10 s; those lines
count what that costs any schedule, before the cap is shared with the other kinds.

``--listable``: tuning jobs become Gemini batches (same durations, one listable collection), so two
thirds of the fleet are listable; the issue's goal there is at most 1/100 of the fixed loop's
requests. ``--all-listable``: the imports become batches too (same durations), so the whole fleet
is listable: what sweeps do where nothing is left to GET. ``--spread 0``: every operation starts at
once (the anchors' fleet). ``--poll-rate``: another rate cap than the default 10/s (what a higher
cap would buy). Virtual time, but real CPU: 10,000 operations take about half a minute (4 minutes
with --listable). It asserts nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")  # made-up operations stay out of the history

import argparse
import asyncio
import collections
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polling  # noqa: E402  (bench/ is the script's folder, first on sys.path)
from emulated import Emulated  # noqa: E402

import ops_widgets as ow  # noqa: E402


def engine_run(ops: list[polling.Op], spread: float, kinds: dict[str, str], seed: int,
               poll_rate: float | None = None) -> tuple[list[float], int]:
    """The detection delay of each of ``ops``, in order, and the requests sent in all (the engine's
    requests are not told apart per operation). ``kinds``: the emulator's kind for each fleet kind."""
    emulated = Emulated(seed)
    clock, emu = emulated.clock, emulated.emu
    delays = [0.0] * len(ops)
    scale = spread / polling.START_WINDOW

    async def main() -> None:
        rate: dict[str, Any] = {} if poll_rate is None else {"poll_rate": poll_rate}
        async with ow.AsyncOperations(**emulated.options(), **rate) as client:

            async def one(i: int, op: polling.Op) -> None:
                await asyncio.sleep(op.start * scale)
                name = emu.create(kinds[op.kind], duration=op.duration)
                end = clock.monotonic() + op.duration
                body = emu.get_operation(name)
                assert body is not None
                handle = await client.track(ow.Operation.from_api_response(body))
                seen = asyncio.get_running_loop().create_future()

                def on_change(snapshot: ow.Operation) -> None:
                    if snapshot.done and not seen.done():
                        seen.set_result(clock.monotonic())

                handle.subscribe(on_change)
                delays[i] = await seen - end
                handle.close()

            await asyncio.gather(*(one(i, op) for i, op in enumerate(ops)))

    clock.run(main())
    return delays, emulated.requests + len(ops)  # and a create answer each


def import_floor(ops: list[polling.Op], spread: float, late_share: float) -> tuple[float, float]:
    """What ANY schedule pays to see the imports done within 10 s, all but ``late_share`` of them:
    they report no progress and cannot be listed (as the real service), so from the shortest
    duration on, a poll at most every 10 s; the cheapest gap to leave is the first (every import
    pays for an early poll). The polls per import (mean), and the busiest minute's polls per
    second. A floor for imports alone: the cap is shared with everything else."""
    imports = [op for op in ops if op.kind == "import"]
    lo, hi = min(op.duration for op in imports), max(op.duration for op in imports)  # their range
    first = lo + 10.0 + late_share * (hi - lo)
    per_minute: collections.Counter[int] = collections.Counter()
    total = 0
    for op in imports:
        start = op.start * spread / polling.START_WINDOW
        t = first
        while True:
            per_minute[int((start + t) // 60)] += 1
            total += 1
            if t >= op.duration:
                break
            t += 10.0
    return total / len(imports), max(per_minute.values()) / 60


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[round(q * (len(xs) - 1))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--spread", type=float, default=polling.START_WINDOW, help="seconds the starts spread over")
    listable = parser.add_mutually_exclusive_group()
    listable.add_argument("--listable", action="store_true", help="tuning jobs become batches (listable)")
    listable.add_argument("--all-listable", action="store_true", help="tuning jobs and imports become batches")
    parser.add_argument("--poll-rate", type=float, default=None,
                        help="the client's rate cap, requests/s (default: the client's default, 10)")
    args = parser.parse_args(argv)
    ops = polling.make_ops(args.n, args.seed)
    listed = args.listable or args.all_listable
    kinds = {"video": "video", "tuning": "batch" if listed else "tuning",
             "import": "batch" if args.all_listable else "import"}
    groups = {"all": list(range(len(ops)))}
    for kind, shown in kinds.items():
        label = f"{shown} ({kind})" if shown != kind else kind
        groups[label] = [i for i, op in enumerate(ops) if op.kind == kind]

    rows: dict[str, tuple[float, dict[str, tuple[float, float]]]] = {}
    baselines = {s.name: s for s in polling.schedules(ops)}
    for name in ("fixed 10 s", "api-core 1 x1.5 max 20 jit"):  # per operation: starts do not matter
        reqs, delays = polling.simulate(ops, baselines[name])
        rows[name] = (statistics.fmean(reqs),
                      {g: (_pct([delays[i] for i in idx], 0.5), _pct([delays[i] for i in idx], 0.95))
                       for g, idx in groups.items()})
    started = time.perf_counter()
    delays, total = engine_run(ops, args.spread, kinds, args.seed, args.poll_rate)
    took = time.perf_counter() - started
    label = "ours: the engine, " + ("default client" if args.poll_rate is None else f"cap {args.poll_rate:g}/s")
    rows[label] = (
        total / len(ops),
        {g: (_pct([delays[i] for i in idx], 0.5), _pct([delays[i] for i in idx], 0.95)) for g, idx in groups.items()})

    fleet = ", ".join(g for g in groups if g != "all") + ("; all listable" if args.all_listable else
                                                           "; two thirds listable" if args.listable else "")
    print(f"{args.n:,} operations (thirds: {fleet}), starts over {args.spread:g} s, seed {args.seed}")
    print(f"{'':36}{'requests/op':>12}  " + "  ".join(f"{g + ' p50/p95 s':>20}" for g in groups))
    for name, (reqs_per_op, by_group) in rows.items():
        cells = "  ".join(f"{p50:9.1f} / {p95:6.1f}   " for p50, p95 in by_group.values())
        print(f"{name:36}{reqs_per_op:12.2f}  {cells}")
    ours, fixed = rows[label], rows["fixed 10 s"]
    ratio = fixed[0] / ours[0]
    goal = 100 if listed else 20
    p50, p95 = ours[1]["all"]
    print(f"goals: requests <= 1/{goal} of fixed 10 s's: 1/{ratio:.0f} {'met' if ratio >= goal else 'NOT met'}; "
          f"delay p50 <= 5 s: {p50:.1f} {'met' if p50 <= 5 else 'NOT met'}; "
          f"p95 <= 10 s: {p95:.1f} {'met' if p95 <= 10 else 'NOT met'}")
    for late in (0.0, 0.15) if kinds["import"] == "import" else ():  # listable imports have no such floor
        each, busiest = import_floor(ops, args.spread, late)
        print(f"floor, imports alone: seeing {1 - late:.0%} of them done within 10 s takes any schedule >= {each:.1f} "
              f"polls each, {busiest:.1f}/s in the busiest minute (the default cap: 10/s for everything)")
    print(f"(the engine's run took {took:.0f} s of real time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
