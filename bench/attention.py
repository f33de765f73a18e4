"""Freshness that follows attention: the bar a person sees against the true progress, with and
without a view on screen, in virtual time against the in-process emulator.

    python bench/attention.py [--seed 1]

For a 60 s, a 10 min and a 3 h tuning job and a Veo job, each tracked alone from its start by a
default client: once with its view on screen the whole time (``set_on_screen(True)``, what the
widget does while it is in the viewport of a visible page), once with none. Every virtual second
it compares the bar (``handle.progress_now``: the last reading moved on at the measured rate, the
rule js/widgets.js draws by) with the emulator's own progress at that instant, and counts the
requests. Prints the bar's error (p50/p95/max, percentage points) and the requests, beside a fixed
10 s loop's (duration / 10). A measurement: the exit code is 0 whether or not the goals are met.
Goals (issue "live and honest"): on screen, p95 error < 5 points; off screen, the background
schedule unchanged (its fleet figure, 1/23 of a fixed 10 s loop's requests, is bench/polling.py's).
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history (bench/history.py measures it).
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import asyncio
import statistics
from typing import Any

from emulated import Emulated  # bench/ is the script's folder, first on sys.path

import ops_widgets as ow
from ops_widgets import Operation

JOBS = [("tuning", 60.0), ("tuning", 600.0), ("tuning", 3 * 3600.0), ("video", 300.0)]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one(kind: str, duration: float, on_screen: bool, seed: int) -> dict[str, Any]:
    emulated = Emulated(seed)
    clock, emu = emulated.clock, emulated.emu

    async def body() -> list[float]:
        errors: list[float] = []
        async with ow.AsyncOperations(**emulated.options()) as ops:
            h = await ops.track(emu.create(kind, duration=duration))
            h.set_on_screen(on_screen)
            while not h.operation.done:
                await asyncio.sleep(1.0)
                truth = Operation.from_api_response(emu.get_operation(h.name))
                if truth.done:
                    break
                shown, real = h.progress_now, truth.progress
                if shown is not None and real is not None:
                    errors.append(abs(shown - real))
            await h.wait()
        return errors

    errors = clock.run(body())
    return {"errors": errors, "requests": emulated.requests - 1}  # the create is not polling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"{'job':<16} {'view':<10} {'bar error p50/p95/max (points)':<32} {'requests':>8} {'fixed 10 s':>10}")
    for kind, duration in JOBS:
        for on_screen in (True, False):
            r = one(kind, duration, on_screen, args.seed)
            e = r["errors"]
            err = (f"{statistics.median(e):5.1f} / {quantile(e, 0.95):5.1f} / {max(e):5.1f}" if e
                   else "(no progress reported)")
            label = f"{kind} {duration / 60:g} min"
            print(f"{label:<16} {'on screen' if on_screen else 'none':<10} {err:<32} {r['requests']:>8} "
                  f"{duration / 10:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
