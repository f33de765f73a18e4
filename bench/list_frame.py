"""Listing benchmark: every operation into a DataFrame, ours against a same-frame floor and api-core.

    python bench/list_frame.py [--n 100000] [--repeat 3] [--profile]

Needs, besides the project: pip install "google-api-core[grpc]" google-auth google-ai-generativelanguage
(api-core's operations_v1 imports grpc even for REST; without these the api-core rows say FAILED).

The emulator runs in its own process (so it does not share our GIL), seeded with n operations
twice over: a "mixed" set (every kind the emulator has) and a "video" set (video operations only;
see below why). Every listing uses pageSize=1000, the largest, and each measurement runs in a fresh
interpreter so that one run's imports and garbage count against no other; the runs are
interleaved (every method once, in a rotating order, then again), and the goals are read on the
medians. Per data set:
- ours: the blocking facade, Operations(...).list_dataframe(page_size=1000, progress=False);
- floor (the same-frame floor): one blocking httpx.Client following nextPageToken on this thread,
  json.loads of each body, and each page laid out at once by the same checks and frame builder
  ours uses (read_list_page, FrameBuilder): the least work that gives the same frame, so
  ours/floor is what our client, engine thread and streaming cost on top;
- normalize: the same loop, the operations collected in one list, then one pandas.json_normalize:
  the least work that gives a DataFrame at all (another frame: every field a column, no types);
- api-core: google-api-core's REST operations client (AbstractOperationsClient over
  OperationsRestTransport, key in x-goog-api-key) iterating the pager's pages, each protobuf
  Operation back to a dict with MessageToDict, then one pandas.json_normalize.
api-core parses each page strictly into protobuf (json_format.Parse, unknown fields refused), so
every metadata/response Any must name a message type it knows and match it field for field. We
register the Gemini types that google-ai-generativelanguage ships (as a GAPIC user would have);
even so only video operations parse (batch and import types are not in it, tuning metadata carries
createTime/updateTime its proto lacks, and a generic operation's metadata has no @type), which is
why the video set exists: it is where api-core's cost can be measured at all. The mixed set's
api-core run is still attempted and its error shown. (api-core's key does reach the emulator as
x-goog-api-key: that ParseError comes after an HTTP 200.)
Client CPU (all threads of the measuring process) and the emulator's CPU are printed beside wall
time: on a shared 2-core machine they say what wall time alone cannot. Peak memory is each run's
peak RSS above its RSS after imports (Linux: VmHWM reset through /proc/self/clear_refs).
It prints figures and ratios measured in this run; it asserts nothing and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    import pandas as pd

KEY = "bench-key"
PAGE_SIZE = 1000
DATASETS: dict[str, tuple[str, ...]] = {
    "mixed": ("video", "tuning", "batch", "import", "upload"),
    "video": ("video",),
}
METHODS = ("ours", "floor", "normalize", "api-core")
# api-core's defaults follow google/longrunning/operations.proto ("/v1/{name=operations/**}" and
# so on); an override replaces the whole rule, so the version prefix goes in the URI too. All three
# list the top level of v1, the version that binds one (v1beta has no top-level list).
HTTP_OPTIONS: dict[str, list[dict[str, str]]] = {
    "google.longrunning.Operations.ListOperations": [{"method": "get", "uri": "/v1/{name=operations}"}],
    "google.longrunning.Operations.GetOperation": [{"method": "get", "uri": "/v1/{name=**}"}],
}
# Issue 14, acceptance 3: ours within 1.1x of the same-frame floor in wall time, client CPU and peak
# memory, and api-core's pager at least 3x slower than ours (medians of interleaved runs).
TARGETS = {"time": 1.1, "cpu": 1.1, "api_core": 3.0, "memory": 1.1}


# -- the emulator, in its own process --------------------------------------------------------

def _serve(n: int, conn: Connection) -> None:
    from ops_widgets.emulator import Emulator

    emulators, ports = [], {}
    for name, kinds in DATASETS.items():
        emu = Emulator.start(0, api_key=KEY, random_seed=1)
        emu.seed(n, kinds=kinds)
        emulators.append(emu)  # keep them alive: their servers are daemon threads
        ports[name] = emu.port
    conn.send(ports)
    while True:
        time.sleep(3600)


# -- one measurement, in a fresh interpreter -------------------------------------------------

def _ours(url: str) -> pd.DataFrame:
    from ops_widgets import Operations

    with Operations(api_key=KEY, base_url=url, api_version="v1") as ops:
        return ops.list_dataframe(page_size=PAGE_SIZE, progress=False)


def _floor(url: str) -> pd.DataFrame:
    import httpx

    from ops_widgets._frame import FrameBuilder
    from ops_widgets._types import read_list_page

    builder = FrameBuilder()
    params = {"pageSize": str(PAGE_SIZE)}
    with httpx.Client(headers={"x-goog-api-key": KEY}, timeout=60.0) as http:
        while True:
            resp = http.get(f"{url}/v1/operations", params=params)
            resp.raise_for_status()
            page = read_list_page(json.loads(resp.content))
            builder.add(page.operations)
            if page.next_page_token is None:
                break
            params["pageToken"] = page.next_page_token
    return builder.build()


def _normalize(url: str) -> pd.DataFrame:
    import httpx
    import pandas as pd

    rows: list[dict[str, Any]] = []
    params = {"pageSize": str(PAGE_SIZE)}
    with httpx.Client(headers={"x-goog-api-key": KEY}, timeout=60.0) as http:
        while True:
            resp = http.get(f"{url}/v1/operations", params=params)
            resp.raise_for_status()
            body = json.loads(resp.content)
            rows.extend(body.get("operations", ()))
            token = body.get("nextPageToken")
            if not token:
                break
            params["pageToken"] = token
    return pd.json_normalize(rows)


def _api_core(url: str) -> pd.DataFrame:
    import google.auth.api_key
    import pandas as pd
    from google.api_core.operations_v1 import AbstractOperationsClient, OperationsRestTransport
    from google.protobuf.json_format import MessageToDict

    transport = OperationsRestTransport(
        host=url,  # "http://127.0.0.1:PORT": a scheme in host wins over url_scheme
        credentials=google.auth.api_key.Credentials(KEY),  # sends x-goog-api-key
        path_prefix="v1",
        http_options=HTTP_OPTIONS,
    )
    client = AbstractOperationsClient(transport=transport)
    rows: list[dict[str, Any]] = []
    # No close(): the REST transport's close() raises NotImplementedError in api-core 2.x; the
    # process ends right after.
    for page in client.list_operations(name="operations", filter_="", page_size=PAGE_SIZE).pages:
        rows.extend(MessageToDict(op) for op in page.operations)
    return pd.json_normalize(rows)


RUNNERS: dict[str, Callable[[str], pd.DataFrame]] = {
    "ours": _ours, "floor": _floor, "normalize": _normalize, "api-core": _api_core}


def _imports(method: str) -> None:
    """Everything a method imports, loaded before the baseline: we measure listing, not imports."""
    modules = ["httpx", "pandas", "ops_widgets"]
    if method == "api-core":
        # google.ai.generativelanguage_v1beta: the Gemini GAPIC's types, registered in protobuf's
        # default pool; without them api-core cannot parse a single Gemini operation (every
        # metadata/response is an Any of these).
        modules += ["google.auth.api_key", "google.api_core.operations_v1", "google.ai.generativelanguage_v1beta"]
    for module in modules:
        importlib.import_module(module)


def _proc_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _memory_baseline() -> tuple[int, bool]:
    """(baseline KB, whether the peak counter was reset): Linux can reset VmHWM to the current RSS,
    so the peak measured afterwards is this run's own; elsewhere, ru_maxrss so far is the base."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        rss = _proc_kb("VmRSS")
        if rss is not None:
            return rss, True
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False


def _child(method: str, url: str) -> dict[str, Any]:
    _imports(method)
    gc.collect()
    base_kb, reset = _memory_baseline()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        frame = RUNNERS[method](url)
    except Exception as exc:  # api-core's ParseError is the finding, not a crash of the bench
        return {"ok": False, "seconds": time.perf_counter() - start,
                "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu  # every thread of this process: ours converts on its engine thread
    peak_kb = (_proc_kb("VmHWM") if reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Outside the timing and after the peak: the names, to check every method listed the same set.
    # ours indexes by name; json_normalize leaves "name" a column.
    names = sorted(str(x) for x in (frame["name"] if "name" in frame.columns else frame.index))
    return {
        "ok": True,
        "seconds": seconds,
        "cpu": cpu,
        "rows": len(frame),
        "unique": len(set(names)),
        "digest": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
        "peak_mb": (peak_kb - base_kb) / 1024,
        "base_mb": base_kb / 1024,
        "columns": frame.shape[1],
    }


def _cpu_of(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def measure(method: str, url: str, server_pid: int) -> dict[str, Any]:
    # The server is idle between runs, so its CPU over a child's life is that listing's share:
    # the part every method pays alike, which wall time alone hides on a shared machine.
    before = _cpu_of(server_pid)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, "--url", url],
        capture_output=True, text=True, timeout=600,
    )
    after = _cpu_of(server_pid)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        return {"ok": False, "seconds": float("nan"), "error": f"child exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["server_cpu"] = None if before is None or after is None else after - before
    return result


# -- profile of ours (same code path, but on this thread so cProfile sees it) ------------------

def profile_ours(url: str, top: int = 25) -> None:
    import asyncio
    import cProfile
    import pstats

    from ops_widgets import AsyncOperations

    async def run() -> None:
        async with AsyncOperations(KEY, base_url=url, api_version="v1") as ops:
            await ops.list_dataframe(page_size=PAGE_SIZE, progress=False)

    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(run())
    prof.disable()
    print(f"\ncProfile of ours (AsyncOperations.list_dataframe in asyncio.run, mixed set), top {top} by tottime")
    pstats.Stats(prof, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(top)


# -- the report -------------------------------------------------------------------------------

def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _stats(runs: list[dict[str, Any]]) -> dict[str, float]:
    times = [r["seconds"] for r in runs]
    servers = [r["server_cpu"] for r in runs if r.get("server_cpu") is not None]
    return {
        "best": min(times),
        "median": statistics.median(times),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "server": statistics.median(servers) if servers else float("nan"),
        "peak": statistics.median(r["peak_mb"] for r in runs),
        "rows": runs[0]["rows"],
        "columns": runs[0]["columns"],
    }


def _table(dataset: str, by_method: dict[str, list[dict[str, Any]]], n: int) -> dict[str, dict[str, float]]:
    print(f"\n{dataset} set: {', '.join(DATASETS[dataset])}")
    print(f"  {'method':9} {'best s':>7} {'median s':>8} {'rows/s':>7} {'client cpu s':>12} {'server cpu s':>12} "
          f"{'peak MB':>7} {'rows':>7} {'cols':>4}  names")
    out: dict[str, dict[str, float]] = {}
    digests = {m: {r["digest"] for r in runs if r["ok"]} for m, runs in by_method.items()}
    for method, runs in by_method.items():
        good = [r for r in runs if r["ok"]]
        if not good:
            last: dict[str, Any] = runs[-1] if runs else {"seconds": float("nan"), "error": "not run"}
            error = last["error"].split(" Available Fields")[0]  # protobuf then lists every field
            print(f"  {method:9} FAILED after {last['seconds']:.2f} s: {error[:300]}")
            continue
        s = out[method] = _stats(good)
        names = "" if method == "floor" else (
            "same as floor" if len(digests[method]) == 1 and digests[method] == digests["floor"] else "DIFFER")
        print(f"  {method:9} {s['best']:7.2f} {s['median']:8.2f} {s['rows'] / s['best']:7.0f} {s['cpu']:12.2f} "
              f"{s['server']:12.2f} {s['peak']:7.0f} {s['rows']:7.0f} {s['columns']:4.0f}  {names}".rstrip())
    ours = [r for r in by_method["ours"] if r["ok"]]
    if ours:
        r, same = ours[0], bool(digests["floor"]) and digests["ours"] == digests["floor"]
        ok = r["rows"] == n and r["unique"] == n and same
        print(f"  check: ours has {r['rows']} rows ({r['unique']} distinct names), the same name set as the "
              f"floor: {'yes' if same else 'NO'}: {'ok' if ok else 'WRONG'}")
    return out


def report(results: dict[str, dict[str, list[dict[str, Any]]]], n: int) -> None:
    summary = {dataset: _table(dataset, by_method, n) for dataset, by_method in results.items()}
    print("  (best/median: wall time; client cpu: the median of the runs, all threads; server cpu: the "
          "emulator's (median),\n   the part every method pays; peak MB: median of the runs' peak RSS above "
          "the RSS after imports)")

    print("\nratios (this run, medians): wall | client cpu | peak memory   (wall best in brackets)")
    for dataset, sets in summary.items():
        for a, b in (("ours", "floor"), ("ours", "normalize"), ("api-core", "ours")):
            if a in sets and b in sets:
                x, y = sets[a], sets[b]
                print(f"  {dataset:5} {a + '/' + b:15} {x['median'] / y['median']:5.2f} | {x['cpu'] / y['cpu']:5.2f} | "
                      f"{x['peak'] / y['peak']:5.2f}   ({x['best'] / y['best']:4.2f})")

    print("\ngoals (issue 14, acceptance 3; medians of the interleaved runs, against the same-frame floor)")
    for dataset, sets in summary.items():
        if "ours" not in sets or "floor" not in sets:
            continue
        ours, floor = sets["ours"], sets["floor"]
        for label, key, target in (("wall time", "median", "time"), ("client cpu", "cpu", "cpu"),
                                   ("peak memory", "peak", "memory")):
            r, goal = ours[key] / floor[key], TARGETS[target]
            print(f"  {dataset:5} ours/floor {label:12} {r:5.2f} <= {goal:.1f}   {_verdict(r <= goal)}")
    where = "mixed" if "api-core" in summary.get("mixed", {}) else "video"
    sets = summary.get(where, {})
    if "api-core" in sets and "ours" in sets:
        r = sets["api-core"]["median"] / sets["ours"]["median"]
        note = "" if where == "mixed" else "   (api-core cannot parse the mixed set)"
        print(f"  {where:5} api-core/ours wall time  {r:5.2f} >= {TARGETS['api_core']:.1f}   "
              f"{_verdict(r >= TARGETS['api_core'])}{note}")
    else:
        print("  api-core/ours wall time: not measured, api-core listed neither set")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also cProfile ours on the mixed set")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.url)))
        return

    wall = time.perf_counter()
    # spawn: the server starts from a clean interpreter, not a copy of this one.
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(args.n, there), daemon=True)
    server.start()
    if not here.poll(300):
        raise SystemExit("the emulator did not start")
    ports: dict[str, int] = here.recv()
    server_pid = server.pid
    assert server_pid is not None  # started above
    seeded = time.perf_counter() - wall
    results: dict[str, dict[str, list[dict[str, Any]]]] = {d: {m: [] for m in METHODS} for d in DATASETS}
    try:
        print(f"list_frame: {args.n} operations per set, pageSize {PAGE_SIZE}, best/median of {args.repeat}, "
              f"each run in a fresh process; {os.cpu_count()} cores")
        print(f"  api-core {_version('google-api-core')}, protobuf {_version('protobuf')}, "
              f"google-ai-generativelanguage {_version('google-ai-generativelanguage')}, "
              f"pandas {_version('pandas')}, httpx {_version('httpx')}; emulator seeded in {seeded:.1f} s")
        for dataset, port in ports.items():
            url = f"http://127.0.0.1:{port}"
            for i in range(args.repeat):
                # Interleaved, in a rotating order, so drift on this noisy machine hits all alike.
                for method in METHODS[i % len(METHODS):] + METHODS[:i % len(METHODS)]:
                    runs = results[dataset][method]
                    if runs and not runs[-1]["ok"]:
                        continue  # a failure repeats identically: once is enough
                    runs.append(measure(method, url, server_pid))
        if args.profile:
            profile_ours(f"http://127.0.0.1:{ports['mixed']}")
    finally:
        server.terminate()
        server.join(5)

    report(results, args.n)
    print(f"\nwhole run {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
