"""Batch results benchmark: peak memory while batch_results() reads a 100,000-line responses file,
against the memory of one 10,000-line chunk parsed (the naive way: its lines json.loads'ed and held).

    python bench/batch_results.py [--n 100000] [--chunk 10000]

The emulator runs in its own process (uvicorn over loopback, so the file really streams and its
making counts against nothing here); tracemalloc measures this process only. The baseline is the
memory held by ``[json.loads(line) for line in <chunk> lines of the same file]``, the bytes of those
lines not counted. The figure: tracemalloc's peak over the whole batch_results() call (the GET,
the streamed download, the parse 10,000 lines at a time, the DataFrame built) divided by that
baseline; the aim is below 2. It prints figures and the ratio; it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import subprocess
import sys
import time
import tracemalloc

import httpx

import ops_widgets as ow

KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    code = f"from ops_widgets.emulator import serve_forever; serve_forever({port}, api_key={KEY!r}, random_seed=1)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1)
            return proc
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the emulator did not start") from None
            time.sleep(0.1)


def make_batch(base: str, requests: int) -> str:
    r = httpx.post(f"{base}/_emulator/operations", json={"kind": "batch", "duration": 0, "requests": requests})
    name: str = r.json()["name"]
    return name


def chunk_parsed(base: str, name: str, lines: int) -> int:
    """Bytes held by `lines` lines of the batch's responses file, parsed and kept."""
    file_id = name.removeprefix("batches/")
    body = httpx.get(f"{base}/download/v1beta/files/batch-{file_id}:download", params={"alt": "media"},
                     headers={"x-goog-api-key": KEY}, timeout=60).content
    raw = body.splitlines()[:lines]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    parsed = [json.loads(line) for line in raw]
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(parsed) == lines
    return held


async def read(base: str, name: str) -> tuple[int, int, int, float]:
    async with ow.AsyncOperations(KEY, base_url=base, timeout=120) as ops:
        await ops.get(name)  # connection and imports warm, outside the measure
        gc.collect()
        tracemalloc.start()
        started = time.perf_counter()
        frame = await ops.batch_results(name)
        elapsed = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return len(frame), peak, current, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    args = parser.parse_args()
    port = free_port()
    proc = start_emulator(port)
    base = f"http://127.0.0.1:{port}"
    try:
        import pandas  # noqa: F401  (imported before measuring: its import is not the reader's memory)

        small = make_batch(base, args.chunk)
        big = make_batch(base, args.n)
        baseline = chunk_parsed(base, small, args.chunk)
        rows, peak, kept, elapsed = asyncio.run(read(base, big))
    finally:
        proc.terminate()
        proc.wait(10)
    mib = 1024 * 1024
    print(f"Batch results: a {args.n:,}-line responses file, streamed from the emulator (own process)")
    print(f"  one {args.chunk:,}-line chunk parsed and held (baseline) {baseline / mib:8.1f} MiB")
    print(f"  batch_results(): {rows:,} rows in {elapsed:.1f} s (under tracemalloc)")
    print(f"    peak while reading                        {peak / mib:8.1f} MiB")
    print(f"    held after (the DataFrame, mostly)        {kept / mib:8.1f} MiB")
    print(f"  ratio peak / baseline                       {peak / baseline:8.2f}  (aim: below 2)")


if __name__ == "__main__":
    main()
