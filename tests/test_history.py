"""The local history: every tracked operation in a SQLite file that outlives the kernel; resume()
after a restart (a Jupyter kernel killed with SIGKILL); two processes at once; a corrupt or locked
file; the typical durations it teaches the adaptive schedule (on a virtual clock)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import ops_widgets as ow
from ops_widgets import Operation, State
from ops_widgets._frame import COLUMNS
from ops_widgets._history import FILENAME, Recorder, Store, default_path, service_key
from ops_widgets._schedule import Adaptive, Durations
from ops_widgets.emulator import Emulator

KEY = "history-secret-key-0123456789"
VEO = "veo-3.0-generate-001"


def db_path() -> Path:
    return Path(os.environ["OPS_WIDGETS_HOME"]) / FILENAME


def db_bytes() -> bytes:
    """The database and its WAL and shared-memory files, as they lie on disk."""
    path = db_path()
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def rows(**where: Any) -> list[sqlite3.Row]:
    """The rows of this test's history file."""
    conn = sqlite3.connect(db_path())
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM operations" + (" WHERE " + " AND ".join(f"{k} = ?" for k in where) if where else "")
        return conn.execute(sql, tuple(where.values())).fetchall()
    finally:
        conn.close()


def simulate(body: Any, seed: int = 5, **emu_kw: Any) -> Any:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed, api_key=KEY, **emu_kw)
    return clock.run(body(emu, clock))


# -- what is recorded --------------------------------------------------------------------------

def test_every_tracked_operation_is_recorded_with_its_last_snapshot_and_no_key() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock) -> pd.DataFrame:
        names = [emu.create("video", duration=60, model=VEO), emu.create("batch", duration=90),
                 emu.create("tuning", duration=120, outcome="failure"),
                 emu.create("video", duration=30, model=VEO, outcome="filtered")]
        running = emu.create("batch", duration=10_000)
        async with emu.aclient() as ops:
            handles = await ops.track_all([*names, running])
            await asyncio.gather(*(h.wait() for h in handles[:-1]))
            waited = emu.create("import", duration=5)
            await ops.wait(waited, poll_interval=1)  # a wait() is tracking too
            untracked = emu.create("video", duration=5)
            await ops.get(untracked)  # a plain get is not
            handles[-1].close()  # nothing polls now: virtual time stands still while history() reads
            frame = await ops.history()
        assert set(frame.index) == {*names, running, waited}
        return frame

    frame = simulate(body)
    # Typed like to_dataframe's, then service, first/last seen and vanished.
    assert list(frame.columns) == [*COLUMNS, "service", "first_seen", "last_seen", "vanished"]
    assert frame["state"].dtype == "category" and frame["progress"].dtype == "Float64"
    assert str(frame["first_seen"].dtype) == "datetime64[ns, UTC]" and frame["vanished"].dtype == bool
    assert (frame["first_seen"] <= frame["last_seen"]).all() and not frame["vanished"].any()
    assert set(frame["service"]) == {"gemini:emulator.invalid/v1beta"}
    states = frame["state"].value_counts()
    assert states["succeeded"] == 3 and states["failed"] == 1 and states["filtered"] == 1
    assert states["running"] == 1
    assert frame["duration"].dtype == "timedelta64[ns]"
    assert (frame["duration"] > pd.Timedelta(0)).all()  # the import has no times: as seen to run
    # The stored snapshot is the service's JSON; the key appears nowhere in the file.
    row = rows(state="failed")[0]
    assert json.loads(row["snapshot"])["error"]["code"] == 13
    assert row["kind"] == "tuning" and row["duration"] == pytest.approx(120)
    assert rows(kind="video", state="succeeded")[0]["model"] == f"models/{VEO}"
    on_disk = db_bytes()
    assert KEY.encode() not in on_disk and b"key=" not in on_disk


def test_operations_polled_by_list_sweeps_are_recorded_too() -> None:
    """600 batches tracked at once are polled by list pages, not GETs: each still gets its row,
    first and last seen, and its true final state; the untracked ones on those pages get none."""

    async def body(emu: Emulator, clock: ow.VirtualClock) -> None:
        untracked = [emu.create("batch", duration=3600) for _ in range(5)]
        names = [emu.create("batch", duration=600 + i % 900, outcome="failure" if i % 7 == 0 else "success")
                 for i in range(600)]
        async with emu.aclient() as ops:
            handles = await ops.track_all(names)
            await asyncio.gather(*(h.wait() for h in handles))
            frame = await ops.history()
        assert emu.stats()["by_route"].get("GET /v1beta/batches", 0) > 0  # swept
        assert set(frame.index) == set(names) and not set(untracked) & set(frame.index)
        truth = [Operation.from_api_response(emu.get_operation(n)).state.value for n in names]
        assert list(frame.loc[names, "state"]) == truth
        assert (frame["last_seen"] > frame["first_seen"]).all()

    simulate(body)


def test_a_key_the_server_echoes_back_is_cut_out_of_the_stored_snapshot(emu: Emulator) -> None:
    """The service is not trusted: a body that carries the client's own key is stored without it."""
    with emu.client() as ops:
        fake = Operation.from_api_response({"name": emu.create("batch", duration=3600),
                                            "metadata": {"note": f"x-goog-api-key: {emu.api_key}", "q": "key=1"}})
        ops.track(fake).close()
        ops.history()
    (row,) = rows()
    assert emu.api_key not in row["snapshot"] and "<redacted>" in row["snapshot"]


def test_the_service_key_has_no_credential_in_it() -> None:
    assert service_key("gemini", "https://generativelanguage.googleapis.com", "v1beta") == \
        "gemini:generativelanguage.googleapis.com/v1beta"
    key = service_key("gemini", "http://user:pw@127.0.0.1:8123/proxy/?key=abc#x", "v1")
    assert key == "gemini:127.0.0.1:8123/proxy/v1" and "pw" not in key and "abc" not in key
    assert service_key("vertex", "https://us-central1-aiplatform.googleapis.com", "v1", project="p",
                       location="us-central1").endswith("/v1/projects/p/locations/us-central1")


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_history_can_be_turned_off(emu: Emulator, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "environment":
        monkeypatch.setenv("OPS_WIDGETS_HISTORY", "0")
    with emu.client(**({"history": False} if how == "argument" else {})) as ops:
        assert ops.wait(emu.create("batch", duration=0.1), poll_interval=0.05).succeeded
        with pytest.raises(ow.UnsupportedError, match="no history"):
            ops.history()
        with pytest.raises(ow.UnsupportedError):
            ops.resume()
    assert not db_path().exists()


@pytest.mark.parametrize("writes", ["one write", "a write each"])
def test_a_run_with_no_times_of_its_own_is_timed_from_its_sightings(tmp_path: Path, writes: str) -> None:
    """A Veo operation reports no times: it ran from its first sighting until halfway between
    the last poll that saw it running and the first that saw it done, however the writes fell."""
    store = Store(tmp_path / FILENAME)
    recorder = Recorder(store, "svc", secrets=[], clock=ow.VirtualClock())
    name = "models/veo-x/operations/a"
    running = Operation.from_api_response({"name": name})
    done = Operation.from_api_response({"name": name, "done": True, "response": {}})
    for when, op in ((0, running), (80, running), (90, done), (95, done)):
        store.put(recorder, op, 1000.0 + when)
        if writes == "a write each":
            assert store.flush()
    assert store.flush()
    (row,) = rows_of(tmp_path / FILENAME)
    assert row["duration"] == 85 and row["first_seen"] == 1000 and row["last_seen"] == 1095
    assert store.runs("svc") == {}  # one run is not enough to learn from
    for i, took in enumerate((40, 20)):  # two more, seen running until they were seen done
        other = f"models/veo-x/operations/b{i}"
        for when, body in ((0, {}), (took, {}), (took, {"done": True})):
            store.put(recorder, Operation.from_api_response({"name": other, **body}), 2000.0 + when)
    assert store.flush()
    assert store.runs("svc") == {("video", "models/veo-x"): [40, 20, 85]}  # the most recent first


def rows_of(path: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM operations").fetchall()
    finally:
        conn.close()


# -- resume ---------------------------------------------------------------------------------

def test_resume_skips_and_marks_what_the_service_no_longer_has() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock) -> None:
        keep, gone = emu.create("batch", duration=600), emu.create("batch", duration=600)
        finished = emu.create("batch", duration=1)
        async with emu.aclient() as ops:
            for name in (keep, gone, finished):
                (await ops.track(name)).close()
            await ops.wait(finished, poll_interval=1)
            await ops.delete(gone)
        async with emu.aclient() as ops:  # as a new kernel would
            handles = await ops.track_unfinished()
            assert [h.name for h in handles] == [keep]
            assert (await handles[0].wait()).succeeded
            frame = await ops.history()
            assert frame.loc[gone, "vanished"] and frame.loc[gone, "state"] == "running"
            assert not frame.loc[keep, "vanished"] and frame.loc[keep, "state"] == "succeeded"
            gets = emu.stats()["total"]
            assert await ops.track_unfinished() == []  # nothing left, and the vanished one is not asked for
            assert emu.stats()["total"] == gets

    simulate(body)


KERNEL_CODE = """
import json, os
from ops_widgets import Operations
ops = Operations(base_url={base_url!r})
handles = ops.track_all(json.loads({names!r}))
print("tracking", len(handles), flush=True)
"""

RESUME_CODE = """
import json, sys, time
from ops_widgets import Operations
ops = Operations(base_url=sys.argv[1])
shown = ops.resume(poll_interval=0.2)  # the emulator runs its videos in seconds, not minutes
deadline = time.monotonic() + 60
while not all(r["state"] not in ("running", "cancelling") for r in shown.rows) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({r["name"]: r["state"] for r in shown.rows}))
"""


def _kill_kernel_while_tracking(make: Callable[[], list[str]], base_url: str, env: dict[str, str]) -> list[str]:
    """A Jupyter kernel (started by nbclient, in a subprocess) tracks the operations ``make()``
    creates once it is up, and is killed with SIGKILL as soon as the history holds all of them."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, kernel_name="python3", timeout=60)
    with client.setup_kernel(env=env):  # leaving it cleans up after the dead kernel
        names = make()
        nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CODE.format(base_url=base_url, names=json.dumps(names))))
        client.execute_cell(nb.cells[0], 0)
        assert f"tracking {len(names)}" in nb.cells[0].outputs[0]["text"]
        deadline = time.monotonic() + 30
        while len(_names_in_history(names)) < len(names):  # written within milliseconds
            assert time.monotonic() < deadline
            time.sleep(0.02)
        kernel = client.km.provisioner.process  # type: ignore[union-attr]
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(timeout=30)
    return names


def _names_in_history(names: list[str]) -> set[str]:
    if not db_path().exists():
        return set()
    try:
        return {r["name"] for r in rows()} & set(names)
    except sqlite3.OperationalError:  # made a moment ago: no table yet
        return set()


@pytest.mark.timeout(180)
def test_a_new_kernel_resumes_what_a_killed_one_was_tracking() -> None:
    """Acceptance: 20 operations tracked in a kernel that is SIGKILLed; a new process's
    ops.resume() shows all 20 finish with the service's true final states."""
    with Emulator.start(api_key=KEY, random_seed=3) as emu:
        plan = ([("video", "success")] * 5 + [("video", "filtered")] * 3 + [("tuning", "failure")] * 3
                + [("batch", "success")] * 4 + [("batch", "cancel")] * 3 + [("tuning", "success")] * 2)

        def make() -> list[str]:  # once the kernel is up: they run for some seconds from now
            return [emu.create(kind, duration=3600 if outcome == "cancel" else 6.0 + i * 0.2,
                               outcome="success" if outcome == "cancel" else outcome)
                    for i, (kind, outcome) in enumerate(plan)]

        env = {**os.environ, "GEMINI_API_KEY": emu.api_key}
        names = _kill_kernel_while_tracking(make, emu.base_url, env)
        assert all(not r["done"] for r in rows())  # killed mid-tracking
        with plain_client(emu) as ops:  # the service goes on: some batches are cancelled meanwhile
            for name, (_, outcome) in zip(names, plan, strict=True):
                if outcome == "cancel":
                    ops.cancel(name)
        resumed = subprocess.run([sys.executable, "-c", RESUME_CODE, emu.base_url], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        seen = json.loads(resumed.stdout.strip().splitlines()[-1])
        truth = {n: Operation.from_api_response(emu.get_operation(n)).state.value for n in names}
        assert seen == truth
        assert {State(s) for s in truth.values()} == {State.SUCCEEDED, State.FILTERED, State.FAILED,
                                                      State.CANCELLED}
        assert {r["name"]: r["state"] for r in rows()} == truth
        on_disk = db_bytes()
        assert KEY.encode() not in on_disk and b"key=" not in on_disk


def plain_client(emu: Emulator) -> ow.Operations:
    """The test's own client: it keeps no history."""
    return ow.Operations(api_key=emu.api_key, base_url=emu.base_url, history=False)


TRACK_CODE = """
import sys
from ops_widgets import Operations
# The videos last 0.7 s, where a real one takes minutes: on the real time scale the first poll
# after the first snapshot would come about 50 s later. Scaled, the whole run takes seconds.
ops = Operations(base_url=sys.argv[1], time_scale=30)
names = sys.argv[2:]
for h in ops.track_all(names):
    h.wait()
"""


@pytest.mark.timeout(120)
def test_two_processes_tracking_at_once_lose_no_row(emu: Emulator) -> None:
    mine = [[emu.create("batch", duration=0.5 + i * 0.01) for i in range(60)] for _ in range(2)]
    shared = [emu.create("video", duration=0.7) for _ in range(10)]
    env = {**os.environ, "GEMINI_API_KEY": emu.api_key}
    procs = [subprocess.Popen([sys.executable, "-c", TRACK_CODE, emu.base_url, *names, *shared], env=env,
                              stderr=subprocess.PIPE, text=True) for names in mine]
    for proc in procs:
        _, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err[-3000:]
    found = {r["name"]: r for r in rows()}
    assert set(found) == {*mine[0], *mine[1], *shared}
    assert all(r["state"] == "succeeded" and r["done"] for r in found.values())


# -- a file that cannot be used -------------------------------------------------------------

def test_a_corrupt_file_warns_once_and_tracking_goes_on(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    db_path().parent.mkdir(parents=True, exist_ok=True)
    db_path().write_bytes(b"this is not a database, just garbage\x00\xff" * 200)
    with caplog.at_level(logging.WARNING, logger="ops_widgets"), emu.client() as ops:
        names = [emu.create("batch", duration=0.2) for _ in range(3)]
        assert all(h.wait(timeout=30).succeeded for h in ops.track_all(names))
        assert len(ops.history()) == 0
    warnings = [r for r in caplog.records if "history" in r.getMessage()]
    assert len(warnings) == 1 and "cannot be used" in warnings[0].getMessage()


def test_a_locked_file_warns_and_is_written_once_released(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    with emu.client() as ops:
        ops.track(emu.create("batch", duration=3600)).close()
        ops.history()  # the file exists, in WAL mode
    blocker = sqlite3.connect(db_path(), isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
        with caplog.at_level(logging.WARNING, logger="ops_widgets"), emu.client() as ops:
            name = emu.create("batch", duration=0.2)
            assert ops.track(name).wait(timeout=30).succeeded  # tracking goes on
            deadline = time.monotonic() + 30
            while not any("locked" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            blocker.execute("COMMIT")
            frame = ops.history()  # waits for the writer, which gets through now
        assert frame.loc[name, "state"] == "succeeded"
        assert len([r for r in caplog.records if "locked" in r.getMessage()]) == 1
    finally:
        blocker.close()


# -- typical durations learnt from the history ------------------------------------------------

def test_after_a_few_finished_runs_the_next_first_eta_comes_from_the_history() -> None:
    """Acceptance: on a virtual clock, three finished 30 s runs of a model; a new client (as in a
    new kernel) gives the next run of that model a first ETA of about 30 s, where the built-in
    prior alone says over two minutes; and it sees the run done sooner."""

    async def body(emu: Emulator, clock: ow.VirtualClock) -> None:
        async with emu.aclient() as ops:
            for _ in range(3):
                await ops.wait(emu.create("video", duration=30, model=VEO), poll_interval=5)
        first: dict[bool, tuple[float | None, bool]] = {}
        late: dict[bool, float] = {}
        for history in (False, True):
            async with emu.aclient(history=history) as ops:
                name = emu.create("video", duration=30, model=VEO)
                start = clock.monotonic()
                handle = await ops.track(name)
                first[history] = (handle.eta, handle.eta_is_estimate)
                assert (await handle.wait()).succeeded
                late[history] = clock.monotonic() - start - 30
        learnt, prior = first[True], first[False]
        assert learnt[1] and learnt[0] == pytest.approx(30, rel=0.1)
        assert prior[0] is not None and prior[0] > 100
        assert late[True] < late[False]

    simulate(body)


def test_learnt_typical_durations_are_per_kind_and_model() -> None:
    d = Durations(learnt={("video", "models/a"): [30.0, 31.0, 29.0], ("video", "models/b"): [300.0] * 3})
    for model, typical in (("models/a", 30), ("models/b", 300)):
        a = Adaptive("video", d, model=model)
        a.observe(0, None)
        assert a.estimate().eta == pytest.approx(typical, rel=0.05)
        assert d.learnt("video", model) == typical
    other = Adaptive("video", d, model="models/c")  # nothing learnt: the kind's prior
    other.observe(0, None)
    assert other.estimate().eta == pytest.approx(Adaptive("video", Durations()).estimate().eta)


def test_runs_that_vary_widely_give_a_prior_as_wide_as_they_are() -> None:
    """Runs of 60 s to an hour must not teach "about 10 minutes, give or take a little": the
    first polls stay early enough for the short ones and the prior reaches the long ones."""
    d = Durations(learnt={("batch", None): [60.0, 600.0, 3600.0]})
    assert d.cdf("batch", 55) > 0 and d.cdf("batch", 3600) < 0.99
    a = Adaptive("batch", d)
    a.observe(0, None)
    assert a.next_delay() < 120  # a prior of 600 s give or take 1.6x would first look after 6 minutes


# -- the terminal ---------------------------------------------------------------------------

def cli(emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEMINI_API_KEY": emu.api_key, "NO_COLOR": "1", "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "ops_widgets", "--base-url", emu.base_url, *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_history_and_resume_in_the_terminal(emu: Emulator) -> None:
    done, running = emu.create("batch", duration=0.1), emu.create("batch", duration=1.5)
    time.sleep(0.2)
    with emu.client() as ops:
        for name in (done, running):
            ops.track(name).close()
        ops.history()
    table = cli(emu, "history")
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert "succeeded" in lines[done] and "running" in lines[running]
    as_json = json.loads(cli(emu, "history", "--json").stdout)
    assert {o["name"]: o["state"] for o in as_json} == {done: "succeeded", running: "running"}
    assert all({"first_seen", "last_seen", "duration", "vanished"} <= o.keys() for o in as_json)
    resumed = cli(emu, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert running in resumed.stdout and "succeeded" in resumed.stdout.splitlines()[-1]
    assert done not in resumed.stdout
    again = cli(emu, "resume")
    assert again.returncode == 0 and "nothing to resume" in again.stderr


def test_the_suite_never_writes_into_the_user_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    assert default_path().is_relative_to(tmp_path_factory.getbasetemp())
