"""Event-loop lag while Google credentials refresh, in real time (issue 10, acceptance 2).

    python bench/vertex_auth.py [--n 200] [--seconds 6] [--lifetime 1] [--network-ms 100]

A served emulator (loopback HTTP) and one AsyncOperations with a service account of it, whose
tokens live ``--lifetime`` seconds, so that a refresh (a JWT signed with RSA, then POST /token
through google-auth's own requests transport) comes every half lifetime. ``--n`` Vertex
operations (RAG imports and Veo videos, each polled on its own) are tracked, a poll a second
each, for ``--seconds``, while a ticker task on the same
loop sleeps 5 ms again and again and records how late it wakes: the loop's lag.

Each token request is made ``--network-ms`` slower (a sleep in the refresh, on the thread
that refreshes), as Google's token endpoint is over the internet. Three runs, in the same process, one after the other:
- ours: the refresh in a worker thread (asyncio.to_thread), as the client does it;
- blocking: the same refresh on the loop's own thread (what calling google-auth's blocking
  refresh from a coroutine costs), the baseline that shows what the worker thread saves;
- no refresh: tokens that live an hour (one refresh at the start, left out), the lag of the
  polling alone on this machine.
Lag is reported for the ticks that overlap a refresh and for the others; the goal is under 50 ms
during refreshes. A measurement, not a test: the exit code is 0 whatever it finds.
``run(...)`` returns the figures as a dict.
"""

from __future__ import annotations

import os

# Made-up operations stay out of the user's local history.
os.environ.setdefault("OPS_WIDGETS_HISTORY", "0")

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from google.oauth2 import service_account

try:
    from ops_widgets import _auth
except ImportError:  # run from a checkout without installing: the repo root is our parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ops_widgets import _auth
from ops_widgets.emulator import Emulator

__all__ = ["GOAL_MS", "main", "run"]

GOAL_MS = 50.0
TICK = 0.005  # seconds the ticker sleeps each time
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class _Timed(service_account.Credentials):  # type: ignore[misc]
    """Service-account credentials that note when each refresh ran (perf_counter seconds), and
    whose token request takes ``network`` seconds more: the emulator answers on loopback in a
    millisecond, Google's token endpoint over the internet in tens of milliseconds."""

    windows: list[tuple[float, float]] = []
    network = 0.0

    def refresh(self, request: Any) -> None:
        began = time.perf_counter()
        try:
            time.sleep(_Timed.network)  # blocks the thread the refresh runs on, as a socket would
            super().refresh(request)
        finally:
            _Timed.windows.append((began, time.perf_counter()))


async def _on_the_loop(func: Any, /, *args: Any) -> Any:
    """asyncio.to_thread's stand-in for the blocking baseline: runs ``func`` right here."""
    return func(*args)


async def _measure(emu: Emulator, n: int, seconds: float, lifetime: float, network: float) -> dict[str, Any]:
    _Timed.network = network
    info = emu.vertex_key_info(lifetime=lifetime)
    creds = _Timed.from_service_account_info(info, scopes=[SCOPE])
    # RAG imports (each in a corpus of its own) and Veo videos (fetchPredictOperation) are polled
    # one by one, not by a sweep of their location's list: n requests a second.
    names = [emu.create(("import", "video")[i % 2], service="vertex", duration=10**6) for i in range(n)]
    _Timed.windows = []
    ticks: list[tuple[float, float]] = []  # (slept from, woke at)
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            await asyncio.sleep(TICK)
            ticks.append((began, time.perf_counter()))

    async with emu.aclient(vertexai=True, credentials=creds, poll_rate=None, history=False) as ops:
        await ops.get(names[0])  # the first token, before the clock starts
        first = len(_Timed.windows)
        handles = await ops.track_all(names, poll_interval=1.0)
        task = asyncio.create_task(ticker())
        await asyncio.sleep(seconds)
        stop.set()
        await task
        for h in handles:
            h.close()
    windows = _Timed.windows[first:]

    def during(tick: tuple[float, float]) -> bool:
        return any(tick[0] < end and start < tick[1] for start, end in windows)

    lags = {True: [], False: []}  # type: dict[bool, list[float]]
    for tick in ticks:
        lags[during(tick)].append(1000 * (tick[1] - tick[0] - TICK))
    return {"refreshes": len(windows), "ticks": len(ticks),
            "refresh_ms": statistics.median([1000 * (e - s) for s, e in windows]) if windows else 0.0,
            "during": _figures(lags[True]), "outside": _figures(lags[False])}


def _figures(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(lags)
    return {"n": len(lags), "p50": ordered[len(lags) // 2], "p99": ordered[min(len(lags) - 1, int(0.99 * len(lags)))],
            "max": ordered[-1]}


def run(n: int = 200, seconds: float = 6.0, lifetime: float = 1.0, network: float = 0.1) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with Emulator.start(random_seed=1) as emu:
        out["ours"] = asyncio.run(_measure(emu, n, seconds, lifetime, network))
        real = _auth.asyncio.to_thread
        _auth.asyncio.to_thread = _on_the_loop  # type: ignore[assignment]
        try:
            out["blocking"] = asyncio.run(_measure(emu, n, seconds, lifetime, network))
        finally:
            _auth.asyncio.to_thread = real
        out["no refresh"] = asyncio.run(_measure(emu, n, seconds, 3600.0, network))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="operations tracked (default 200)")
    parser.add_argument("--seconds", type=float, default=6.0, help="real seconds per run (default 6)")
    parser.add_argument("--lifetime", type=float, default=1.0, help="token lifetime, seconds (default 1)")
    parser.add_argument("--network-ms", type=float, default=100.0,
                        help="added to each token request, as the internet would (default 100)")
    args = parser.parse_args()
    figures = run(args.n, args.seconds, args.lifetime, args.network_ms / 1000)
    print(f"Loop lag while Google credentials refresh: {args.n} Vertex operations polled once a second, "
          f"tokens of {args.lifetime:g} s, token requests {args.network_ms:g} ms slower than loopback, "
          f"{args.seconds:g} s per run, ticker every {1000 * TICK:g} ms")
    print(f"{'run':<12}{'refreshes':>10}{'refresh ms':>11}   {'lag during refreshes, ms':<28}"
          f"{'lag otherwise, ms':<26}")
    print(f"{'':<12}{'':>10}{'(median)':>11}   {'p50 / p99 / max (ticks)':<28}{'p50 / p99 / max (ticks)':<26}")
    for name, f in figures.items():
        d, o = f["during"], f["outside"]
        print(f"{name:<12}{f['refreshes']:>10}{f['refresh_ms']:>11.1f}   "
              f"{d['p50']:5.1f} / {d['p99']:5.1f} / {d['max']:5.1f} ({d['n']:>4})   "
              f"{o['p50']:5.1f} / {o['p99']:5.1f} / {o['max']:5.1f} ({o['n']:>4})")
    ours, blocking, floor = figures["ours"], figures["blocking"], figures["no refresh"]
    worst = ours["during"]["max"]
    print(f"\nworst lag during a refresh: {worst:.1f} ms (goal < {GOAL_MS:g} ms: "
          f"{'met' if worst < GOAL_MS else 'NOT met'})")
    if blocking["during"]["max"] > 0:
        print(f"ratio ours / blocking, worst lag during refreshes: {worst / blocking['during']['max']:.2f}")
    if floor["outside"]["max"] > 0:
        print(f"ratio ours during refreshes / no refresh (polling alone), worst lag: "
              f"{worst / floor['outside']['max']:.2f}")


if __name__ == "__main__":
    main()
