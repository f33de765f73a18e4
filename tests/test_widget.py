"""OperationWidget's Python side with a recorded comm: no browser, a real emulator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

import comm.base_comm
import ipywidgets
import pytest

import ops_widgets as ow
from ops_widgets import Operation, OperationWidget
from ops_widgets.widgets._view import Throttle, view_state


class RecordingComm(comm.base_comm.BaseComm):
    """Stands where the kernel's comm would be: records every message the widget sends."""

    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[tuple[float, str, dict[str, Any]]] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any) -> None:
        self.sent.append((time.monotonic(), msg_type, data or {}))

    def updates(self) -> list[dict[str, Any]]:
        return [d["state"] for _, kind, d in self.sent if kind == "comm_msg" and d.get("method") == "update"]

    def customs(self) -> list[dict[str, Any]]:
        return [d["content"] for _, kind, d in self.sent if kind == "comm_msg" and d.get("method") == "custom"]

    def from_front(self, content: dict[str, Any]) -> None:
        """What the browser sends on a click: a custom comm message."""
        self.handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


@pytest.fixture(autouse=True)
def recorded_comm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipywidgets.widgets.widget.comm, "create_comm", lambda **kw: RecordingComm(**kw))


def until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


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
    assert s["state"] == "cancelling" and s["kind"] == "video" and s["progress"] is None and s["eta_is_estimate"]
    done = op({"name": "models/veo-3.0-generate-001/operations/v", "done": True, "error": {"code": 1, "message": "Operation was cancelled."}})
    s = view_state(done, elapsed=6, eta=0, eta_is_estimate=False, cancelling=True)
    assert s["state"] == "cancelled" and s["eta"] is None and s["error_code"] == "CANCELLED (1)"


def test_view_state_failed_and_succeeded() -> None:
    failed = view_state(op({"name": "operations/f", "done": True, "error": {"code": 13, "message": "<b>boom</b>"}}),
                        elapsed=3, eta=None, eta_is_estimate=False)
    assert failed["state"] == "failed" and failed["error_code"] == "INTERNAL (13)"
    assert failed["error_message"] == "<b>boom</b>"  # verbatim: the front-end shows it as text
    video = view_state(op({"name": "models/veo/operations/v", "done": True, "response": {"generateVideoResponse": {
        "generatedSamples": [{"video": {"uri": "https://x/v.mp4"}}]}}}), elapsed=90, eta=0, eta_is_estimate=True)
    assert video["state"] == "succeeded" and video["result"] == [{"label": "video 1:", "text": "https://x/v.mp4", "href": "https://x/v.mp4"}]
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


# -- the widget, live -----------------------------------------------------------------------


ALLOWED = {
    "_anywidget_id", "_css", "_dom_classes", "_esm", "_model_module", "_model_module_version",
    "_model_name", "_view_count", "_view_module", "_view_module_version", "_view_name", "layout",
    "tabbable", "tooltip", "name", "op_id", "kind", "kind_label", "state", "progress", "elapsed", "eta",
    "eta_is_estimate", "error_code", "error_message", "result", "poll_error", "cancel_error", "compact",
    "_view",
}


def test_synced_state_is_an_allow_list_without_secrets(emu: Any) -> None:
    ops = emu.client()
    w = ops.watch(emu.create("tuning", duration=60), poll_interval=0.2)
    state = w.get_state()
    assert set(state) == ALLOWED
    assert emu.api_key not in json.dumps(state, default=str)
    assert emu.api_key not in repr(w)
    w.close()
    ops.close()


def test_one_message_per_poll_with_every_changed_trait(emu: Any) -> None:
    ops = emu.client()
    name = emu.create("tuning", duration=2.0)
    w = ops.watch(name, poll_interval=0.3)
    changes: list[Operation] = []
    w.tracked.subscribe(changes.append)
    w.tracked.wait(timeout=30)
    until(lambda: w.state == "succeeded")
    updates = w.comm.updates()
    # One update per poll that changed something (throttling only merges, at 0.3 s it never has to).
    assert len(changes) - 1 <= len(updates) <= len(changes) + 1
    running = [u for u in updates if u.get("state", "running") == "running" and "progress" in u]
    assert running and all({"progress", "elapsed"} <= set(u) for u in running)
    assert updates[-1]["state"] == "succeeded" and updates[-1]["progress"] == 100
    w.close()
    ops.close()


def test_no_more_than_ten_updates_a_second(emu: Any) -> None:
    ops = emu.client(poll_rate=None)
    name = emu.create("tuning", duration=1.5)
    w = ops.watch(name, poll_interval=0.001)  # the poller sees a change every few ms
    polls: list[Operation] = []
    w.tracked.subscribe(polls.append)
    w.tracked.wait(timeout=30)
    until(lambda: w.state == "succeeded")
    times = [ts for ts, kind, d in w.comm.sent if kind == "comm_msg" and d.get("method") == "update"]
    assert len(polls) > 3 * len(times)  # many more changes than messages...
    for i in range(len(times)):
        assert len([x for x in times[i:] if x - times[i] < 1.0]) <= 11  # ...and <= 10 in any second
    assert w.comm.updates()[-1]["state"] == "succeeded"  # the trailing send carried the last change
    w.close()
    ops.close()


def test_cancel_message_path(emu: Any) -> None:
    ops = emu.client()
    name = emu.create("video", duration=3600)
    w = ops.watch(name)
    emu.reset_stats()
    for _ in range(3):
        w.comm.from_front({"type": "cancel"})  # three clicks
    until(lambda: w.state in ("cancelling", "cancelled"))
    until(lambda: w.state == "cancelled")
    assert emu.get_operation(name)["error"]["code"] == 1
    assert emu.stats()["by_route"].get("POST /v1beta/{name}:cancel") == 1
    states = [u["state"] for u in w.comm.updates() if "state" in u]
    assert states[-2:] == ["cancelling", "cancelled"]
    w.close()
    ops.close()


def test_a_failed_cancel_shows_its_error(emu: Any) -> None:
    ops = emu.client(max_retries=0)
    name = emu.create("video", duration=3600)
    w = ops.watch(name)
    emu.fail_next(1, status=403, path=":cancel")
    w.comm.from_front({"type": "cancel"})
    until(lambda: w.cancel_error != "")
    assert "Cancel failed" in w.cancel_error and "403" in w.cancel_error and w.state == "running"
    assert emu.get_operation(name).get("done") is not True
    w.close()
    ops.close()


def test_ping_gets_a_pong(emu: Any) -> None:
    ops = emu.client()
    w = ops.watch(emu.create("video", duration=60))
    w.comm.from_front({"type": "ping"})
    assert {"type": "pong"} in w.comm.customs()
    w.close()
    ops.close()


def test_updates_arrive_while_the_calling_thread_blocks(emu: Any) -> None:
    """A cell in time.sleep: the engine thread still pushes state."""
    ops = emu.client()
    w = ops.watch(emu.create("tuning", duration=1.0), poll_interval=0.1)
    before = len(w.comm.updates())
    time.sleep(1.5)  # blocks this thread, like a running cell
    assert len(w.comm.updates()) > before + 3 and w.state == "succeeded"
    w.close()
    ops.close()


def test_widget_from_a_name_with_a_client_and_from_a_handle(emu: Any) -> None:
    ops = emu.client()
    name = emu.create("import", duration=60)
    a = OperationWidget(name, ops)
    b = OperationWidget(a.tracked)
    assert a.tracked._poller is b.tracked._poller and b.kind == "import"
    with pytest.raises(TypeError):
        OperationWidget(name, emu.aclient())
    with pytest.raises(TypeError):
        OperationWidget(42)  # type: ignore[arg-type]
    with pytest.raises(ow.AuthenticationError):
        OperationWidget(name)  # no client and no key in the environment: says how to get one
    a.close()
    b.close()
    ops.close()


def test_watch_all_is_a_compact_stack(emu: Any) -> None:
    ops = emu.client()
    names = [emu.create(k, duration=60) for k in ("video", "tuning", "batch")]
    box = ops.watch_all(names)
    assert isinstance(box, ipywidgets.VBox) and [c.name for c in box.children] == names
    assert all(c.compact for c in box.children)
    for c in box.children:
        c.close()
    ops.close()


async def test_async_watch(emu: Any) -> None:
    async with emu.aclient() as ops:
        w = await ops.watch(emu.create("tuning", duration=0.5), poll_interval=0.05)
        await w.tracked.wait(timeout=30)
        for _ in range(100):  # the trailing update runs on this loop: yield to it
            if w.state == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert w.state == "succeeded"
        box = await ops.watch_all([emu.create("video", duration=60)])
        assert len(box.children) == 1
        w.close()


def test_text_form_in_a_script(emu: Any) -> None:
    """No front-end: display() prints the one-line summary and nothing breaks."""
    code = (
        "import os\n"
        "from IPython.display import display\n"
        "from ops_widgets import Operations\n"
        "ops = Operations(os.environ['K'], base_url=os.environ['U'])\n"
        "w = ops.watch(os.environ['N'])\n"
        "display(w)\n"
        "print(repr(w))\n"
        "w.close(); ops.close()\n"
    )
    name = emu.create("tuning", duration=600)
    env = {"K": emu.api_key, "U": emu.base_url, "N": name, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(name in line and "running" in line for line in lines)
    assert emu.api_key not in proc.stdout + proc.stderr
