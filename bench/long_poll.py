"""Vertex AI's :wait long-polls against the adaptive GET schedule (virtual clock, in-process).

    python bench/long_poll.py [--n 100] [--seed 1]

``n`` generic Vertex AI operations (durations spread evenly over 30 s-5 min, then over 5-60 min),
all tracked at once by one client until each is seen done (``as_completed``), in three runs on the
same emulator settings:
- "GET (no :wait)": the emulator serves no :wait (``vertex_wait=False``): the adaptive schedule
  and list sweeps, the baseline;
- ":wait, default": long-polls with the default poll_concurrency (16: 14 long-polls at once, the
  rest on the adaptive schedule until a slot frees);
- ":wait, concurrency N": poll_concurrency large enough for every operation to long-poll.
It prints requests per operation (each name's GETs and :waits, the rest spread over all) and
the detection delay (seen done minus done, emulated seconds), with ratios against the baseline.
It asserts nothing.
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history.
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ops_widgets as ow  # noqa: E402
from ops_widgets.emulator import Emulator  # noqa: E402


def run(durations: list[float], *, wait: bool, concurrency: int, seed: int) -> tuple[list[float], list[float]]:
    """(requests per operation, detection delays) of one client tracking every operation."""
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed, vertex_wait=wait)
    done_at = {emu.create("generic", service="vertex", duration=d): d for d in durations}
    seen: dict[str, float] = {}

    async def flow() -> None:
        async with emu.aclient(vertexai=True, poll_concurrency=concurrency) as ops:
            async for op in ops.as_completed(done_at):
                seen[op.name] = clock.monotonic()

    clock.run(flow())
    stats = emu.stats()
    by_name = stats["by_name"]  # each name's GETs and :waits (routed ones)
    # Everything else (list pages, a :wait answered 404 where none is served), spread over all.
    shared = stats["total"] - stats["by_route"].get("POST /token", 0) - sum(by_name.get(n, 0) for n in done_at)
    requests = [by_name.get(name, 0) + shared / len(done_at) for name in done_at]
    # (Epoch seconds in floats: seen a rounding error "before" it was done counts as no delay.)
    delays = [max(0.0, seen[name] - done) for name, done in done_at.items()]
    return requests, delays


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    n, big = args.n, args.n + args.n // 7 + 1
    began = time.perf_counter()
    for low, high in ((30.0, 300.0), (300.0, 3600.0)):
        durations = [low + (high - low) * i / max(1, n - 1) for i in range(n)]
        print(f"\n{n} generic Vertex AI operations of {low:g}-{high:g} s, tracked at once (seed {args.seed})")
        print(f"{'run':24} {'requests/op mean':>17} {'max':>6} {'delay p50':>10} {'p95':>7} {'max':>7}")
        baseline: tuple[float, float] | None = None
        for label, wait, concurrency in (("GET (no :wait)", False, big), (":wait, default (16)", True, 16),
                                         (f":wait, concurrency {big}", True, big)):
            requests, delays = run(durations, wait=wait, concurrency=concurrency, seed=args.seed)
            mean, p50 = statistics.fmean(requests), quantile(delays, 0.5)
            print(f"{label:24} {mean:17.2f} {max(requests):6.1f} {p50:10.2f} {quantile(delays, 0.95):7.2f} "
                  f"{max(delays):7.2f}")
            if baseline is None:
                baseline = (mean, p50)
            else:
                print(f"{'':24} requests x{mean / baseline[0]:.2f} of the GET run; "
                      f"p50 delay {p50:.2f} s vs {baseline[1]:.2f} s")
        print(f"{'':24} (a long-poll every 60 s: {statistics.fmean(d / 60 for d in durations) + 1:.2f} "
              "requests/op with its first snapshot)")
    print(f"\nsimulated in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
