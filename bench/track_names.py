"""Tracking by name at fleet scale: `track_all` of many names against the emulator over loopback,
with the default client settings, beside a raw httpx baseline capped at the same concurrency.

    python bench/track_names.py [--n 10000] [--n-unlistable 1000] [--runs 3]

The emulator runs in its own process (not sharing our GIL) and answers after 20-50 ms. Measured,
in interleaved repeated runs (min and median printed):
- listable names (batches): `AsyncOperations().track_all(names)` until every handle has its first
  snapshot (list sweeps read them from pages), against a raw httpx loop that GETs every name with
  16 in flight (the same cap as the client's default poll_concurrency), in the same run;
- unlistable names (file search imports): the same, where every first snapshot is a GET through
  the limiter (10 per second by default): goal n / poll_rate + 10 s;
- the event-loop lag p99 during tracking (a ticker task every 10 ms);
- memory per tracked operation (tracemalloc, after the pollers have run for a few seconds).
It prints figures beside the issue's goals; it asserts nothing.
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history (bench/history.py measures it).
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet import free_port  # noqa: E402  (bench/ is the script's folder, first on sys.path)

from ops_widgets import AsyncOperations  # noqa: E402

LATENCY = (0.02, 0.05)
KEY = "bench-key"


def _serve(port: int, n: int, n_unlistable: int, conn: Any) -> None:
    from ops_widgets.emulator import Emulator

    emu = Emulator.start(port, api_key=KEY, latency=LATENCY, random_seed=1)
    listable = [emu.create("batch", duration=10**7) for _ in range(n)]
    unlistable = [emu.create("import", duration=10**7) for _ in range(n_unlistable)]
    conn.send((listable, unlistable))
    while True:
        time.sleep(3600)


async def raw(base_url: str, names: list[str], concurrency: int = 16) -> float:
    """Every name GET once, `concurrency` in flight, one pool of that size: the floor."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    start = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, headers={"x-goog-api-key": KEY}) as http:
        queue = iter(names)

        async def worker() -> None:
            for name in queue:
                r = await http.get(f"{base_url}/v1beta/{name}")
                r.raise_for_status()
                r.json()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def ours(base_url: str, names: list[str], measure_memory: bool = False) -> dict[str, float]:
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    tick = asyncio.ensure_future(ticker())
    if measure_memory:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    async with AsyncOperations(KEY, base_url=base_url) as ops:
        handles = await ops.track_all(names)
        took = time.perf_counter() - start
        assert all(h.operation.name == n for h, n in zip(handles, names, strict=True))
        per_op = 0.0
        if measure_memory:
            await asyncio.sleep(5)  # the pollers run (and sweep) a while
            gc.collect()
            per_op = (tracemalloc.get_traced_memory()[0] - base) / len(names)
            tracemalloc.stop()
        stop.set()
        await tick
        for h in handles:
            h.close()
    lags.sort()
    return {"seconds": took, "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "bytes_per_op": per_op}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="listable names (batches)")
    parser.add_argument("--n-unlistable", type=int, default=1_000, help="unlistable names (imports)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    port = free_port()
    here, there = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(port, args.n, args.n_unlistable, there), daemon=True)
    server.start()
    listable, unlistable = here.recv()
    base_url = f"http://127.0.0.1:{port}"
    try:
        rows: dict[str, list[float]] = {"raw": [], "ours": [], "lag": []}
        for run in range(args.runs):  # interleaved: a noisy moment hits both
            order = ("raw", "ours") if run % 2 == 0 else ("ours", "raw")
            for which in order:
                if which == "raw":
                    rows["raw"].append(asyncio.run(raw(base_url, listable)))
                else:
                    r = asyncio.run(ours(base_url, listable))
                    rows["ours"].append(r["seconds"])
                    rows["lag"].append(r["lag_p99_ms"])
        mem = asyncio.run(ours(base_url, listable, measure_memory=True))
        slow = asyncio.run(ours(base_url, unlistable))
    finally:
        server.kill()

    def fig(xs: list[float]) -> str:
        return f"min {min(xs):6.2f}  median {statistics.median(xs):6.2f}"

    ratio = statistics.median(rows["ours"]) / statistics.median(rows["raw"])
    print(f"{args.n:,} listable names (batches), default client, {args.runs} interleaved runs")
    print(f"  track_all first snapshots  {fig(rows['ours'])} s   goal: <= 30 s and <= 1.5x raw")
    print(f"  raw httpx, 16 in flight    {fig(rows['raw'])} s")
    print(f"  ours / raw (medians)       {ratio:6.2f}x")
    print(f"  event-loop lag p99         {fig(rows['lag'])} ms  goal: < 50 ms")
    print(f"  memory per tracked op      {mem['bytes_per_op'] / 1024:6.2f} KB (pollers run 5 s)  goal: < 5 KB")
    goal = args.n_unlistable / 10 + 10
    print(f"{args.n_unlistable:,} unlistable names (file search imports): every first snapshot a GET")
    print(f"  track_all first snapshots  {slow['seconds']:6.2f} s   goal: <= {goal:g} s (n / poll_rate + 10)")
    print(f"  event-loop lag p99         {slow['lag_p99_ms']:6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
