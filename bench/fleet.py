"""Fleet benchmark: 10,000 operations tracked at once against the emulator over loopback.

    python bench/fleet.py [--n 10000] [--seconds 5] [--concurrency 16]

The emulator runs in its own process (so it does not share our GIL) and answers every request
after 20-50 ms, so concurrency matters. In one run it measures, for the same concurrency cap:
- a raw httpx loop: N GETs in flight at most, round-robin over the names (the floor);
- the engine: every operation tracked (one poller each, polling as fast as the caps allow),
  its sustained polls per second (counted by an httpx transport that wraps the default one, so
  only public API is used), the event-loop lag p99 while it runs, and the memory each
  tracked operation costs;
- the raw loop at higher concurrency (32, 64, 128) against the ideal concurrency / latency, to see
  whether httpx's pool slows down above ~32 in flight (httpx issue 3215).
It prints figures and ratios measured in this run; it asserts nothing.
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history (bench/history.py measures it).
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import asyncio
import gc
import multiprocessing
import os
import socket
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops_widgets import AsyncOperations, Operation  # noqa: E402

LATENCY = (0.02, 0.05)
KEY = "bench-key"


def _serve(port: int, n: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    from ops_widgets.emulator import Emulator

    emu = Emulator.start(port, api_key=KEY, latency=LATENCY, random_seed=1)
    for _ in range(n):
        emu.create("batch", duration=10**7)  # running for the whole benchmark
    ready.set()
    while True:
        time.sleep(3600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def list_names(base_url: str) -> list[Operation]:
    async with AsyncOperations(KEY, base_url=base_url) as ops:
        return await ops.list_all(page_size=1000)


async def raw_loop(base_url: str, names: list[str], concurrency: int, seconds: float, clients: int = 1) -> float:
    """GETs per second with at most `concurrency` in flight: bare httpx, json.loads, nothing else.

    ``clients`` > 1 splits the same concurrency over that many pools, to tell a slow pool from
    a slow server.
    """
    per = concurrency // clients
    limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
    pools = [httpx.AsyncClient(limits=limits, headers={"x-goog-api-key": KEY}) for _ in range(clients)]
    count = 0
    stop = time.perf_counter() + seconds

    async def worker(http: httpx.AsyncClient, offset: int) -> None:
        nonlocal count
        i = offset
        while time.perf_counter() < stop:
            r = await http.get(f"{base_url}/v1beta/{names[i % len(names)]}")
            r.json()
            count += 1
            i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(pools[k % clients], k) for k in range(per * clients)))
    rate = count / (time.perf_counter() - start)
    for http in pools:
        await http.aclose()
    return rate


class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, counting the responses it returns: the engine's polls."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self.count += 1
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# poll_interval must be > 0: the smallest wish, so every poller polls as fast as the caps allow.
AS_FAST_AS_ALLOWED = 1e-6


async def engine_run(base_url: str, ops_list: list[Operation], concurrency: int, seconds: float) -> dict[str, float]:
    counter = CountingTransport()
    client = AsyncOperations(KEY, base_url=base_url, poll_concurrency=concurrency, poll_rate=None,
                             transport=counter)
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # Tracking from Operations already in hand costs no request: the listing is the first snapshot.
    # One track() at a time, as before the redesign, so the figure stays comparable: with an
    # Operation in hand track() never yields, so this counts the poller, schedule and handle
    # before any poller has run. track_all() (gather) would also count the 10,000 poller tasks
    # already started and their timers: about 4.2 KB per operation (4.5 KB before the redesign).
    handles = [await client.track(op, poll_interval=AS_FAST_AS_ALLOWED) for op in ops_list]
    per_op = (tracemalloc.get_traced_memory()[0] - base) / len(handles)
    tracemalloc.stop()
    tick = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(1.0)  # warm up: every poller has entered the queue
    before = counter.count
    lags.clear()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (counter.count - before) / (time.perf_counter() - start)
    running = False
    await tick
    lag_p99 = statistics.quantiles(lags, n=100)[98] if len(lags) > 2 else float("nan")
    errors = sum(h.last_error is not None for h in handles)
    await client.aclose()
    return {"rate": rate, "lag_p99_ms": 1000 * lag_p99, "bytes_per_op": per_op, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, args.n, ready), daemon=True)
    server.start()
    if not ready.wait(120):
        raise SystemExit("the emulator did not start")
    base_url = f"http://127.0.0.1:{port}"
    try:
        ops_list = asyncio.run(list_names(base_url))
        names = [op.name for op in ops_list]
        print(f"fleet: {len(names)} operations, server latency {LATENCY[0]*1000:.0f}-{LATENCY[1]*1000:.0f} ms, "
              f"{args.seconds:g} s per measurement, {os.cpu_count()} cores")
        c = args.concurrency
        raw = asyncio.run(raw_loop(base_url, names, c, args.seconds))
        eng = asyncio.run(engine_run(base_url, ops_list, c, args.seconds))
        ideal = c / sum(LATENCY) * 2
        print(f"\nconcurrency cap {c}; ideal {ideal:.0f} req/s (cap / mean latency)")
        print(f"  raw httpx loop        {raw:8.1f} polls/s")
        print(f"  engine, {len(names)} tracked {eng['rate']:8.1f} polls/s   ratio to raw {eng['rate'] / raw:.2f}"
              "   (target >= 0.80)")
        print(f"  engine loop lag p99   {eng['lag_p99_ms']:8.1f} ms          (target < 50 ms)")
        print(f"  memory per tracked op {eng['bytes_per_op']:8.0f} bytes       (target < 5120; "
              "the first snapshot was already in hand)")
        print(f"  pollers with errors   {eng['errors']:8d}")
        print("\nhttpx pool at higher concurrency (raw loop), against the ideal:")
        for k, pools in ((16, 1), (32, 1), (64, 1), (64, 4), (128, 1), (128, 8)):
            r = asyncio.run(raw_loop(base_url, names, k, args.seconds / 2, pools))
            print(f"  {k:4d} in flight, {pools} pool{'s' if pools > 1 else ' '} {r:8.1f} req/s   "
                  f"{r / (k / sum(LATENCY) * 2):.2f} of ideal")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
