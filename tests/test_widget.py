"""OperationWidget's Python side with a recorded comm: no browser, no sockets, no sleeps.

The emulator runs in-process on a VirtualClock in manual mode: time moves only when a test calls
``clock.advance(seconds)``, which returns once the engine thread is idle at the new time. So every
poll and every state message happens at a known virtual instant, and a test looks at the widget
between two instants instead of polling for a condition on real time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import comm.base_comm
import httpx
import ipywidgets
import pytest
from recorder import Recorder

import ops_widgets as ow
import ops_widgets.widgets._operation as widget_module
from ops_widgets import Operation, OperationWidget
from ops_widgets._loop import stop_thread
from ops_widgets.emulator import Emulator
from ops_widgets.widgets._operation import HEARTBEAT
from ops_widgets.widgets._view import Throttle, view_state

EPS = 1e-6


class Sent(NamedTuple):
    at: float  # the test's clock (virtual) when the widget sent it
    thread: int  # threading.get_ident() of the sender
    kind: str
    data: dict[str, Any]
    buffers: tuple[bytes, ...] = ()  # binary buffers sent with it (a video's bytes)


class RecordingComm(comm.base_comm.BaseComm):
    """Stands where the kernel's comm would be: records every message the widget sends."""

    def __init__(self, now: Callable[[], float], **kwargs: Any) -> None:
        self.now = now
        self.sent: list[Sent] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:
        self.sent.append(Sent(self.now(), threading.get_ident(), msg_type, data or {},
                              tuple(bytes(b) for b in buffers or ())))

    def update_msgs(self) -> list[Sent]:
        return [m for m in self.sent if m.kind == "comm_msg" and m.data.get("method") == "update"]

    def updates(self) -> list[dict[str, Any]]:
        return [m.data["state"] for m in self.update_msgs()]

    def customs(self) -> list[dict[str, Any]]:
        return [m.data["content"] for m in self.sent if m.kind == "comm_msg" and m.data.get("method") == "custom"]

    def from_front(self, content: dict[str, Any]) -> None:
        """What the browser sends on a click: a custom comm message."""
        self.handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


class Comms:
    """The clock new RecordingComms read: real time unless a test's fixture sets its virtual clock."""

    now: Callable[[], float] = time.monotonic


@pytest.fixture(autouse=True)
def recorded_comm(monkeypatch: pytest.MonkeyPatch) -> Comms:
    comms = Comms()
    monkeypatch.setattr(ipywidgets.widgets.widget.comm, "create_comm", lambda **kw: RecordingComm(comms.now, **kw))
    return comms


class Sim:
    """A manual VirtualClock, the emulator in-process on it, and blocking clients of it (whose
    engine thread runs the virtual loop). ``ops`` is the test's client; ``client()`` makes more."""

    def __init__(self, clock: ow.VirtualClock, emu: Emulator) -> None:
        self.clock, self.emu = clock, emu
        self.rec = Recorder(emu, clock)
        self._clients: list[ow.Operations] = []
        self._pool: ThreadPoolExecutor | None = None
        self.ops = self.client()

    def client(self, **kw: Any) -> ow.Operations:
        """An Operations on the emulator and this clock, its requests recorded; closed at teardown.

        No rate cap unless asked for: time stands still between advance() calls, so a first GET
        queued behind the cap's spacing would wait for a step the test thread, blocked in
        watch(), never takes."""
        app: Any = self.rec
        kw.setdefault("poll_rate", None)
        ops = ow.Operations(api_key=self.emu.api_key, base_url=self.emu.base_url, clock=self.clock,
                            transport=httpx.ASGITransport(app=app), **kw)
        self._clients.append(ops)
        return ops

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def advance_until(self, done: Callable[[], bool], step: float = 1.0, limit: float = 3600.0) -> None:
        """Move time ``step`` at a time until ``done()`` (another thread's outcome, say)."""
        start = self.clock.monotonic()
        while not done():
            assert self.clock.monotonic() - start < limit, f"not done after {limit:g} virtual seconds"
            self.advance(step)

    def in_thread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Future[Any], threading.Event]:
        """Start a blocking call with an ``on_progress`` on another thread (a notebook cell); the
        event is set by its first on_progress call, so the test knows that the call has reached
        the engine before it moves time."""
        started = threading.Event()
        callback = kw.pop("on_progress")

        def on_progress(op: Operation) -> None:
            started.set()
            callback(op)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(2, thread_name_prefix="cell")
        return self._pool.submit(fn, *args, on_progress=on_progress, **kw), started

    def close(self) -> None:
        try:
            for ops in self._clients:
                ops.close()  # a wait still blocked in a cell (a failed test) ends with an error
            if self._pool is not None:
                self._pool.shutdown()
        finally:
            stop_thread(self.clock)


@pytest.fixture()
def sim(recorded_comm: Comms) -> Iterator[Sim]:
    clock = ow.VirtualClock(auto=False)
    recorded_comm.now = clock.monotonic  # message times in virtual time
    s = Sim(clock, Emulator.in_process(clock, random_seed=3))
    try:
        yield s
    finally:
        s.close()


# -- traits per state (pure) ---------------------------------------------------------------


def op(data: dict[str, Any]) -> Operation:
    return Operation.from_api_response(data)


def test_view_state_running_tuning() -> None:
    s = view_state(op({"name": "tunedModels/t/operations/o", "metadata": {"completedSteps": 3, "totalSteps": 12}}),
                   elapsed=61.26, eta=183.4, eta_is_estimate=False)
    assert s["state"] == "running" and s["kind"] == "tuning" and s["op_id"] == "o"
    assert s["progress"] == 25.0 and s["elapsed"] == 61.3 and s["eta"] == 183.4 and not s["eta_is_estimate"]
    assert s["error_code"] == s["error_message"] == "" and s["result"] == []


def test_view_state_cancelling_until_confirmed() -> None:
    running = op({"name": "models/veo-3.0-generate-001/operations/v"})
    s = view_state(running, elapsed=5, eta=100, eta_is_estimate=True, cancelling=True)
    assert s["state"] == "cancelling" and s["kind"] == "video" and s["progress"] is None
    assert s["eta"] is None and not s["eta_is_estimate"]  # the ETA stops while it is being cancelled
    done = op({"name": "models/veo-3.0-generate-001/operations/v", "done": True,
               "error": {"code": 1, "message": "Operation was cancelled."}})
    s = view_state(done, elapsed=6, eta=0, eta_is_estimate=False, cancelling=True)
    assert s["state"] == "cancelled" and s["eta"] is None and s["error_code"] == "CANCELLED (1)"


def test_view_state_while_cancelling_or_stopped_has_no_eta() -> None:
    running = op({"name": "batches/b"})
    assert view_state(running, elapsed=5, eta=100, eta_is_estimate=True)["eta"] == 100
    for s in (view_state(running, elapsed=5, eta=100, eta_is_estimate=True, cancelling=True),
              view_state(running, elapsed=5, eta=100, eta_is_estimate=True, stopped="the client was closed",
                         poll_error="Polling keeps failing, still trying: 503")):
        assert s["eta"] is None and not s["eta_is_estimate"]
    s = view_state(running, elapsed=5, eta=None, eta_is_estimate=False, stopped="gone", poll_error="still trying")
    assert s["stopped"] == "gone" and s["poll_error"] == ""  # "still trying" only while something tries
    done = op({"name": "batches/b", "done": True, "response": {}})
    assert view_state(done, elapsed=5, eta=0, eta_is_estimate=False, stopped="gone")["stopped"] == ""


def test_view_state_error_in_plain_words_code_apart() -> None:
    """The message is the text; the code name goes to a tooltip; a cancel's stock message, which
    only repeats the badge, is left out (a cancel with something to say keeps it)."""
    def shown(error: dict[str, Any]) -> tuple[str, str]:
        s = view_state(op({"name": "batches/b", "done": True, "error": error}), elapsed=1, eta=None,
                       eta_is_estimate=False)
        return s["error_message"], s["error_code"]

    assert shown({"code": 1, "message": "Operation was cancelled."}) == ("", "CANCELLED (1)")
    assert shown({"code": 1, "message": "The operation has been canceled"}) == ("", "CANCELLED (1)")
    assert shown({"code": 1, "message": "Cancelled: quota exceeded"}) == ("Cancelled: quota exceeded", "CANCELLED (1)")
    assert shown({"code": 3, "message": "Bad prompt."}) == ("Bad prompt.", "INVALID_ARGUMENT (3)")


def test_view_state_failed_and_succeeded() -> None:
    failed = view_state(op({"name": "operations/f", "done": True, "error": {"code": 13, "message": "<b>boom</b>"}}),
                        elapsed=3, eta=None, eta_is_estimate=False)
    assert failed["state"] == "failed" and failed["error_code"] == "INTERNAL (13)"
    assert failed["error_message"] == "<b>boom</b>"  # verbatim: the front-end shows it as text
    video = view_state(op({"name": "models/veo/operations/v", "done": True, "response": {"generateVideoResponse": {
        "generatedSamples": [{"video": {"uri": "https://x/v.mp4"}}]}}}), elapsed=90, eta=0, eta_is_estimate=True)
    assert video["state"] == "succeeded"
    assert video["result"] == [{"label": "video 1:", "text": "https://x/v.mp4"}]
    filtered = view_state(op({"name": "models/veo/operations/v", "done": True, "response": {"generateVideoResponse": {
        "raiMediaFilteredCount": 1}}}), elapsed=90, eta=0, eta_is_estimate=True)
    assert "safety" in filtered["result"][0]["text"]


def test_throttle() -> None:
    now = [0.0]
    th = Throttle(0.1, clock=lambda: now[0])
    assert th.delay() == 0
    now[0] = 0.04
    assert th.delay() == pytest.approx(0.06)
    now[0] = 0.1
    assert th.delay() == 0


# -- the widget, live on a virtual clock ---------------------------------------------------------


ALLOWED = {
    "_anywidget_id", "_css", "_dom_classes", "_esm", "_model_module", "_model_module_version",
    "_model_name", "_view_count", "_view_module", "_view_module_version", "_view_name", "layout",
    "tabbable", "tooltip", "name", "op_id", "kind", "kind_label", "state", "progress", "elapsed", "eta",
    "eta_is_estimate", "error_code", "error_message", "result", "poll_error", "cancel_error", "compact",
    "can_cancel", "polling", "stopped", "progress_rate", "video_count", "notify",
    "_view",
}


def test_synced_state_is_an_allow_list_without_secrets(sim: Sim) -> None:
    w = sim.ops.watch(sim.emu.create("tuning", duration=60), poll_interval=0.2)
    sim.advance(30)  # mid-way: progress, elapsed and ETA all set
    state = w.get_state()
    assert set(state) == ALLOWED and w.state == "running" and 0 < (w.progress or 0) < 100
    sent = json.dumps([m.data for m in w.comm.sent], default=str)
    assert sim.emu.api_key not in json.dumps(state, default=str) + sent
    assert sim.emu.api_key not in repr(w)
    w.close()


def test_one_message_per_poll_with_every_changed_trait(sim: Sim) -> None:
    name = sim.emu.create("tuning", duration=2.0)
    w = sim.ops.watch(name, poll_interval=0.3)
    changes: list[Operation] = []
    w.tracked.subscribe(changes.append)
    sim.advance(3)
    assert w.tracked.operation.done and w.state == "succeeded"
    updates = w.comm.updates()
    # One update per poll that changed something (throttling only merges, at 0.3 s it never has to);
    # the first update is the widget's own first push, made before this test subscribed.
    polls = [t for t in sim.rec.gets(name) if t > 0]
    assert len(changes) == 1 + len(polls) and len(updates) == len(changes)
    assert [m.at for m in w.comm.update_msgs()[1:]] == pytest.approx(polls)  # each one as its poll came in
    running = [u for u in updates if u.get("state", "running") == "running" and "progress" in u]
    assert running and all({"progress", "elapsed"} <= set(u) for u in running)
    assert updates[-1]["state"] == "succeeded" and updates[-1]["progress"] == 100
    w.close()


def test_no_more_than_ten_updates_a_second(sim: Sim) -> None:
    ops = sim.client(poll_rate=None)
    name = sim.emu.create("tuning", duration=1.5)
    w = ops.watch(name, poll_interval=0.01)  # the poller sees a change every 10 ms
    polls: list[Operation] = []
    w.tracked.subscribe(polls.append)
    sim.advance(2)
    assert w.tracked.operation.done and w.state == "succeeded"
    times = [m.at for m in w.comm.update_msgs()]
    assert len(polls) > 3 * len(times)  # many more changes than messages...
    for i in range(len(times)):
        assert len([x for x in times[i:] if x - times[i] < 1.0 - EPS]) <= 10  # ...and <= 10 in any second
    assert all(b - a >= 0.1 - EPS for a, b in zip(times, times[1:], strict=False))
    assert w.comm.updates()[-1]["state"] == "succeeded"  # the trailing send carried the last change
    w.close()


def test_heartbeat_refreshes_a_running_widget_and_stops_when_it_is_done(sim: Sim) -> None:
    """Veo reports no progress, so between polls nothing changes: every HEARTBEAT seconds the widget
    still sends elapsed/ETA (the front-end's sign of life); once nothing polls, it stops."""
    name = sim.emu.create("video", duration=3600)
    w = sim.ops.watch(name)
    for beat in (1, 2, 3):
        before = len(w.comm.sent)
        sim.advance(HEARTBEAT)
        new = [m for m in w.comm.sent[before:] if m.kind == "comm_msg"]
        assert [m.at for m in new] == [pytest.approx(beat * HEARTBEAT)]  # one message, at the beat
        assert new[0].data["state"]["elapsed"] == pytest.approx(beat * HEARTBEAT)
        assert w.state == "running" and w.progress is None
    sim.emu.complete(name)
    sim.advance_until(lambda: w.state == "succeeded", step=HEARTBEAT)
    count = len(w.comm.sent)
    sim.advance(10 * HEARTBEAT)
    assert len(w.comm.sent) == count  # done: no poller, no heartbeat
    w.close()


def test_cancel_message_path(sim: Sim) -> None:
    name = sim.emu.create("batch", duration=3600)  # the Gemini API cancels batches only
    w = sim.ops.watch(name)
    sim.emu.reset_stats()
    sim.advance(1)  # past the throttle's interval since the first state went out
    for _ in range(3):
        w.comm.from_front({"type": "cancel"})  # three clicks
    sim.clock.settle()  # no time passes: "cancelling" goes out, then the cancel, then a poll confirms it
    assert sim.emu.get_operation(name)["error"]["code"] == 1
    assert w.state == "cancelling"  # at once
    sim.advance(0.1)  # the throttle's interval: the confirmation goes out at its end
    assert w.state == "cancelled"
    sim.advance(60)
    assert sim.emu.stats()["by_route"].get("POST /v1beta/{name}:cancel") == 1
    states = [u["state"] for u in w.comm.updates() if "state" in u]
    assert states == ["cancelling", "cancelled"]
    w.close()


def test_no_cancel_where_the_service_has_none(sim: Sim) -> None:
    """A Veo operation on the Gemini API cannot be cancelled: the widget says so (can_cancel is
    false, so the front-end shows no enabled button) and a click sends nothing."""
    video = sim.ops.watch(sim.emu.create("video", duration=3600))
    batch = sim.ops.watch(sim.emu.create("batch", duration=3600))
    sim.clock.settle()
    assert video.can_cancel is False and batch.can_cancel is True
    sim.emu.reset_stats()
    video.comm.from_front({"type": "cancel"})
    sim.advance(1)
    assert video.state == "running" and video.cancel_error == ""
    assert sim.emu.stats()["by_route"].get("POST /v1beta/{name}:cancel") is None
    video.close()
    batch.close()


def test_a_widget_whose_client_closed_does_not_pretend(sim: Sim) -> None:
    """ops.close() (a quickstart's last cell): the widget of a running operation says nothing
    polls it any more (polling False, the reason shown), instead of looking live."""
    ops = sim.client()
    w = ops.watch(sim.emu.create("batch", duration=3600))
    sim.advance(5)
    assert w.polling is True and w.state == "running"
    ops.close()
    sim.advance(1)
    assert w.polling is False and w.state == "running"
    assert "closed" in w.stopped and w.poll_error == ""  # stopped, with the reason; nothing "still trying"
    assert w.eta is None and not w.eta_is_estimate  # no countdown of a wait nobody watches
    count = len(w.comm.sent)
    sim.advance(600)
    assert len(w.comm.sent) == count  # no heartbeat from nothing
    w.close()


def test_a_permanent_poll_error_stops_the_widget_with_its_reason(sim: Sim) -> None:
    """A 404 (deleted meanwhile) is not retried: the widget says stopped, why, and sends nothing more."""
    ops = sim.client(max_retries=0)
    w = ops.watch(sim.emu.create("batch", duration=3600), poll_interval=1)
    sim.advance(2)
    sim.emu.fail_next(1, status=404)
    sim.advance(5)
    assert w.polling is False and w.state == "running" and w.eta is None
    assert "404" in w.stopped or "not found" in w.stopped.lower(), w.stopped
    count = len(w.comm.sent)
    w.comm.from_front({"type": "cancel"})  # nothing polls it: a cancel could never be confirmed
    sim.advance(600)
    assert len(w.comm.sent) == count and w.state == "running"
    w.close()


def test_a_cancel_has_no_eta_until_confirmed(sim: Sim) -> None:
    name = sim.emu.create("batch", duration=3600)
    w = sim.ops.watch(name)
    sim.advance(30.5)  # away from the heartbeat at 30, so "cancelling" goes out at once
    assert w.eta is not None
    sim.emu.fail_next(1, status=503, path=":cancel")  # the first try fails; the retry goes through
    w.comm.from_front({"type": "cancel"})
    sim.clock.settle()
    assert w.state == "cancelling" and w.eta is None and not w.eta_is_estimate
    sim.advance_until(lambda: w.state == "cancelled", step=0.5)
    assert w.eta is None
    w.close()


def test_a_failed_cancel_shows_its_error(sim: Sim) -> None:
    ops = sim.client(max_retries=0)
    name = sim.emu.create("batch", duration=3600)
    w = ops.watch(name)
    sim.emu.fail_next(1, status=403, path=":cancel")
    w.comm.from_front({"type": "cancel"})
    sim.advance(0.1)  # the failure shows after the throttle's interval (it follows "cancelling")
    assert "Cancel failed" in w.cancel_error and "403" in w.cancel_error and w.state == "running"
    assert sim.emu.get_operation(name).get("done") is not True
    sim.advance(60)
    assert w.state == "running" and "403" in w.cancel_error  # polling goes on; the error stays shown
    w.close()


def test_ping_gets_a_pong(sim: Sim) -> None:
    w = sim.ops.watch(sim.emu.create("video", duration=60))
    w.comm.from_front({"type": "ping"})
    assert {"type": "pong"} in w.comm.customs()
    w.close()


def test_updates_arrive_while_the_calling_thread_blocks(sim: Sim) -> None:
    """A cell that blocks (here the test thread, inside advance(), waiting on a condition): the
    engine thread alone pushes state, every message of it."""
    w = sim.ops.watch(sim.emu.create("tuning", duration=1.0), poll_interval=0.1)
    before = len(w.comm.sent)
    sim.advance(1.5)  # blocks this thread, like a running cell, while 1.5 s go by
    later = [m for m in w.comm.sent[before:] if m.kind == "comm_msg"]
    assert len(later) > 3 and w.state == "succeeded"
    assert len({m.thread for m in later}) == 1 and later[0].thread != threading.get_ident()
    w.close()


def test_widget_from_a_name_with_a_client_and_from_a_handle(sim: Sim) -> None:
    name = sim.emu.create("import", duration=60)
    a = OperationWidget(name, sim.ops)
    b = OperationWidget(a.tracked)
    assert a.tracked is b.tracked and b.kind == "import"
    with pytest.raises(TypeError):
        OperationWidget(name, sim.emu.aclient())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OperationWidget(42)  # type: ignore[arg-type]
    with pytest.raises(ow.AuthenticationError):
        OperationWidget(name)  # no client and no key in the environment: says how to get one
    a.close()
    b.close()


def test_a_widget_closes_the_handles_it_made_and_leaves_those_it_was_given(sim: Sim) -> None:
    """What a widget tracked itself (from a name, or watch()/watch_all()) it stops tracking when
    it closes; a handle it was given is its giver's, and goes on polling."""
    names = [sim.emu.create("tuning", duration=600) for _ in range(4)]
    given = sim.ops.track(names[0])
    widgets = [OperationWidget(given), OperationWidget(names[1], sim.ops), sim.ops.watch(names[2])]
    rows = ow.watch_all([given, names[3]], sim.ops)
    handles = [w.tracked for w in widgets] + rows.handles
    assert all(h.polling for h in handles)
    for w in [*widgets, rows]:
        w.close()
    sim.advance(1)  # a handle lets go on the engine's loop
    assert [h.polling for h in handles] == [True, False, False, True, False]
    from ops_widgets.widgets import OperationsList

    with pytest.raises(ValueError, match="2 flags for 1 handles"):
        OperationsList([given], close_handles=[True, False])
    given.close()
    sim.advance(1)
    assert not given.polling


def test_a_rerun_of_the_cell_closes_the_widgets_its_last_run_made(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-running a watch cell closes the widget its last run made (ipywidgets and the comm would
    keep it, sending updates to views that went with the old outputs, and its videos): the new
    one follows the same poller on, and a handle the cell was given stays open."""
    from ops_widgets.widgets import _lifetime

    here = {"cell": ("cell-a", "run-1")}
    monkeypatch.setattr(_lifetime, "current_cell_run", lambda: here["cell"])
    name, other = sim.emu.create("tuning", duration=600), sim.emu.create("video", duration=600)
    given = sim.ops.track(other)
    first, first_list = sim.ops.watch(name), ow.watch_all([given], sim.ops)  # one run, two widgets
    here["cell"] = ("cell-a", "run-2")
    again, again_list = sim.ops.watch(name), ow.watch_all([given], sim.ops)
    assert first.comm is None and first_list.comm is None  # closed
    assert again.comm is not None and again_list.comm is not None
    sim.advance_until(lambda: again.state == "succeeded", step=10)  # followed to the end
    assert given.polling and again_list.rows[0]["state"] == "running"
    for w in (again, again_list):
        w.close()
    given.close()


def test_async_watch(recorded_comm: Comms) -> None:
    """AsyncOperations.watch: the widget lives on the caller's loop (here an auto VirtualClock's)."""
    clock = ow.VirtualClock()
    recorded_comm.now = clock.monotonic
    emu = Emulator.in_process(clock, random_seed=4)

    async def body() -> None:
        async with emu.aclient() as ops:
            w = await ops.watch(emu.create("tuning", duration=30), poll_interval=0.5)
            box = await ops.watch_all([emu.create("video", duration=60)])
            try:
                assert (await w.tracked.wait(timeout=60)).succeeded
                await asyncio.sleep(0.2)  # the trailing update runs on this loop: let time pass
                assert w.state == "succeeded" and w.comm.updates()[-1]["state"] == "succeeded"
                assert [r["kind_label"] for r in box.rows] == ["video"]
            finally:
                w.close()
                box.close()

    clock.run(body())


def test_text_form_in_a_script() -> None:
    """No front-end: display() prints the one-line summary and nothing breaks (in-process
    emulator, manual clock: the script needs no server and waits for nothing)."""
    code = (
        "import os\n"
        "from IPython.display import display\n"
        "import ops_widgets as ow\n"
        "from ops_widgets.emulator import Emulator\n"
        "emu = Emulator.in_process(ow.VirtualClock(auto=False), random_seed=8, api_key=os.environ['K'])\n"
        "ops = emu.client()\n"
        "w = ops.watch(emu.create('tuning', duration=600))\n"
        "display(w)\n"
        "print(repr(w))\n"
        "w.close(); ops.close()\n"
    )
    key = "key-that-must-not-be-printed"
    # The same seed names the same operation here (names come from the seeded generator).
    name = Emulator.in_process(ow.VirtualClock(), random_seed=8).create("tuning", duration=600)
    env = {"K": key, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(name in line and "running" in line for line in lines)
    assert key not in proc.stdout + proc.stderr


# -- one request stream per name, however many views and waits -------------------------------------


def test_wait_on_a_name_a_widget_already_shows(sim: Sim) -> None:
    """ops.wait() in a cell while a widget shows the same name: a poll at least every 2 s,
    on_progress after each of them, the last one done; an on_progress that raises ends that wait
    with its exception, and the widget goes on to the end."""
    clock, emu, ops, rec = sim.clock, sim.emu, sim.ops, sim.rec
    name = emu.create("tuning", duration=60)
    w = ops.watch(name)
    seen: list[tuple[float, Operation, int]] = []  # (time, snapshot, requests logged by then)

    waited, started = sim.in_thread(ops.wait, name, poll_interval=2, timeout=600,
                                    on_progress=lambda op: seen.append((clock.monotonic(), op, len(rec.log))))
    assert started.wait(5)  # at once: the widget's first snapshot answers the wait's first poll
    sim.advance_until(waited.done)
    final = waited.result()

    assert final.succeeded and seen[-1][1] == final and seen[-1][1].progress == 100
    times = [t for t, _, _ in seen]
    assert times[0] == 0 and len(seen) >= 60 / 2
    assert all(b - a <= 2 + EPS for a, b in zip(times, times[1:], strict=False))
    for t, _, logged in seen:  # each call came after a real GET of the name at its time
        assert any(abs(at - t) < EPS and method == "GET" and path.endswith(name)
                   for at, method, path, _ in rec.log[:logged])
    gets = rec.gets(name)
    assert len(set(gets)) == len(gets)  # one stream: never two requests for one instant
    sim.advance(1)
    assert w.state == "succeeded" and w.progress == 100

    # on_progress raises part-way: that wait ends with the KeyError; the widget goes on.
    name2 = emu.create("tuning", duration=60)
    w2 = ops.watch(name2)
    calls: list[Operation] = []

    def boom(op: Operation) -> None:
        calls.append(op)
        if (op.progress or 0) > 20:
            raise KeyError("callback bug")

    waited, started = sim.in_thread(ops.wait, name2, poll_interval=2, on_progress=boom)
    assert started.wait(5)
    sim.advance_until(waited.done)
    with pytest.raises(KeyError, match="callback bug"):
        waited.result()
    assert len(calls) > 2 and not calls[-1].done and (calls[-1].progress or 0) > 20
    assert w2.state == "running" and 20 < (w2.progress or 0) < 100 and w2.tracked.polling
    sim.advance_until(lambda: w2.state == "succeeded")
    assert w2.progress == 100 and w2.tracked.operation.succeeded
    w.close()
    w2.close()


def test_two_widgets_with_no_client_on_one_name_make_one_request_stream(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OperationWidget(name) with no client uses the one process-wide default client: two of them
    on one name send exactly what one widget alone sends (one first GET, one adaptive schedule)."""
    shared = sim.client()
    monkeypatch.setattr(widget_module, "_default", shared)  # what default_client() returns
    assert widget_module.default_client() is shared
    solo = sim.client()  # its own engine and learnt durations: one widget, nothing else
    name, alone = sim.emu.create("video", duration=120), sim.emu.create("video", duration=120)
    sim.emu.reset_stats()
    a, b = OperationWidget(name), OperationWidget(name)
    c = OperationWidget(alone, solo)
    sim.advance(300)
    assert a.state == b.state == c.state == "succeeded"
    by_name = sim.emu.stats()["by_name"]
    assert by_name[name] == by_name[alone]  # the pair costs what one widget costs
    assert sim.rec.gets(name) == sim.rec.gets(alone)  # at the same instants: one schedule
    assert 3 <= by_name[name] <= 30  # the first GET and an adaptive handful, not one per widget per second
    a.close()
    b.close()
    c.close()


def test_a_widget_on_screen_is_polled_at_the_watched_cadence(sim: Sim) -> None:
    """The front-end says when a view is in sight (per view): while any is, a 10-minute tuning
    job is polled about every 5 % of its length and the bar's rate is synced; when none is, the
    sparse schedule resumes."""
    name = sim.emu.create("tuning", duration=600)
    w = sim.ops.watch(name)
    sim.advance(60)
    w.comm.from_front({"type": "on_screen", "view": "a", "value": True})
    w.comm.from_front({"type": "on_screen", "view": "b", "value": True})
    sim.advance(1)
    start = len(sim.rec.gets(name))
    sim.advance(120)
    watched = len(sim.rec.gets(name)) - start
    assert watched >= 4 and w.progress_rate > 0  # every ~30 s (5 % of 600 s), not minutes apart
    w.comm.from_front({"type": "on_screen", "view": "a", "value": False})  # one view left: still in sight
    sim.advance(1)
    start = len(sim.rec.gets(name))
    sim.advance(120)
    assert len(sim.rec.gets(name)) - start >= 4
    w.comm.from_front({"type": "on_screen", "view": "b", "value": False})
    sim.advance(1)
    start = len(sim.rec.gets(name))
    sim.advance(120)
    assert len(sim.rec.gets(name)) - start <= 2  # none in sight: the background schedule
    w.close()


def test_a_closed_widget_is_freed(sim: Sim) -> None:
    """Nothing keeps a closed widget: not anywidget's file watch (manzt/anywidget#929, a lambda
    per instance on the class's FileContents.changed), not the engine. A notebook that makes
    widgets over and over (a cell re-run, a loop) must not keep every one it ever made."""
    import gc
    import weakref

    from ops_widgets.widgets import OperationsList

    name = sim.emu.create("tuning", duration=600)
    widget = OperationWidget(name, sim.ops)
    listed = OperationsList([sim.ops.track(name)])
    sim.advance(1)
    refs = [weakref.ref(widget), weakref.ref(listed)]
    widget.close()
    listed.close()
    del widget, listed
    sim.advance(30)  # a heartbeat booked before the close runs once more, sees it closed, stops
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_file_changes_still_reach_each_widget() -> None:
    """Hot reload (ANYWIDGET_HMR) still works with the weak file watch: a change to the JS or CSS
    file reaches every live widget's synced trait."""
    from ops_widgets import OperationsTable

    table = OperationsTable([Operation.from_api_response({"name": "operations/a", "done": True})])
    esm, css = OperationsTable._esm, OperationsTable._css  # the class's FileContents
    assert table._esm == str(esm) and "export default" in table._esm
    esm.changed.emit("export default {}")
    css.changed.emit(".opt {}")
    assert table._esm == "export default {}" and table._css == ".opt {}"
    assert table.comm.update_msgs()[-1].data["state"] == {"_css": ".opt {}"}  # sent to the front-end
    esm.changed.emit(str(esm))  # as the files are, for any widget still open
    css.changed.emit(str(css))
    table.close()
