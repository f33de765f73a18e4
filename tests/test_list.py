"""OperationsList (what watch_all shows) with a recorded comm on a virtual clock, and its summary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_widget import EPS, Sim, recorded_comm, sim  # noqa: F401  (the fixtures are reused)

from ops_widgets.widgets import OperationsList
from ops_widgets.widgets._operation import HEARTBEAT
from ops_widgets.widgets._view import list_summary

CANCEL = "POST /v1beta/{name}:cancel"


def row(state: str, eta: float | None = None, estimate: bool = False, stopped: str = "") -> dict[str, Any]:
    return {"state": state, "eta": eta, "eta_is_estimate": estimate, "stopped": stopped}


def test_summary_line() -> None:
    assert list_summary([]) == "0/0 done"
    rows = [row("succeeded"), row("failed"), row("running", 240), row("running", 30), row("cancelled")]
    assert list_summary(rows) == "3/5 done · 1 failed · 1 cancelled · ETA 4m 00s"
    # Side by side: the longest ETA; a guess from typical durations says so; one unknown makes it unknown.
    assert list_summary([row("running", 60, estimate=True), row("running", 5)]) == "0/2 done · ETA ~1m 00s"
    assert list_summary([row("running", 60), row("running")]) == "0/2 done · ETA unknown"
    # Nothing counts down for what nobody polls or what is being cancelled.
    assert list_summary([row("running", stopped="the client was closed"), row("cancelling"), row("filtered")]) == (
        "1/3 done · 1 filtered · 1 stopped · 1 cancelling")


def test_watch_all_is_one_widget_with_a_row_per_operation(sim: Sim) -> None:
    names = [sim.emu.create(k, duration=60) for k in ("video", "tuning", "batch")]
    box = sim.ops.watch_all(names)
    assert isinstance(box, OperationsList) and box.get_state()["_view"] == "list"
    assert [r["name"] for r in box.rows] == names
    assert [r["kind_label"] for r in box.rows] == ["video", "tuning", "batch"]
    assert box.summary.startswith("0/3 done") and box.cancellable == 1 and box.not_cancellable == 2
    state = json.dumps(box.get_state(), default=str) + json.dumps([m.data for m in box.comm.sent], default=str)
    assert sim.emu.api_key not in state and sim.emu.api_key not in repr(box)
    sim.advance_until(lambda: all(r["state"] == "succeeded" for r in box.rows), step=30)
    assert box.summary == "3/3 done" and box.cancellable == 0
    box.close()


def test_every_change_is_one_message_at_most_ten_a_second(sim: Sim) -> None:
    ops = sim.client(poll_rate=None)
    box = ops.watch_all([sim.emu.create("tuning", duration=1.5) for _ in range(3)], poll_interval=0.01)
    sim.advance(2)
    assert box.summary == "3/3 done"
    msgs = box.comm.update_msgs()
    assert all("rows" in m.data["state"] for m in msgs[1:])  # rows, and the summary when it changed, together
    times = [m.at for m in msgs]
    assert all(b - a >= 0.1 - EPS for a, b in zip(times, times[1:], strict=False))
    box.close()


def test_cancel_all_running_cancels_what_the_service_can_once(sim: Sim) -> None:
    batches = [sim.emu.create("batch", duration=3600) for _ in range(3)]
    video = sim.emu.create("video", duration=3600)  # the Gemini API cannot cancel it
    done = sim.emu.create("batch", duration=0.01)
    sim.advance(1)
    box = sim.ops.watch_all([*batches, video, done])
    sim.advance(1)
    assert box.cancellable == 3 and box.not_cancellable == 1
    sim.emu.reset_stats()
    for _ in range(3):
        box.comm.from_front({"type": "cancel_all"})  # three clicks: one cancel each
    sim.advance_until(lambda: [r["state"] for r in box.rows[:3]] == ["cancelled"] * 3, step=0.5)
    assert sim.emu.stats()["by_route"].get(CANCEL) == 3
    assert box.rows[3]["state"] == "running" and box.rows[4]["state"] == "succeeded"
    assert "cancelling" in [u["rows"][0]["state"] for u in box.comm.updates() if "rows" in u]  # said at once
    assert box.summary.startswith("4/5 done · 3 cancelled · ETA ")  # the video runs on
    assert box.cancellable == 0 and box.not_cancellable == 1
    box.close()


def test_a_failed_cancel_says_so_on_its_row(sim: Sim) -> None:
    ops = sim.client(max_retries=0)
    box = ops.watch_all([sim.emu.create("batch", duration=3600)])
    sim.advance(1)
    sim.emu.fail_next(1, status=403, path=":cancel")
    box.cancel_running()
    sim.advance(1)
    assert box.rows[0]["state"] == "running" and "403" in box.rows[0]["cancel_error"] and box.cancellable == 1
    box.close()


def test_after_the_client_closes_the_rows_say_stopped(sim: Sim) -> None:
    ops = sim.client()
    box = ops.watch_all([sim.emu.create("batch", duration=3600), sim.emu.create("tuning", duration=0.5)])
    sim.advance_until(lambda: box.summary.startswith("1/2 done"), step=5)
    assert "ETA" in box.summary
    ops.close()
    sim.advance(1)
    first = box.rows[0]
    assert first["state"] == "running" and "closed" in first["stopped"] and first["eta"] is None
    assert box.summary == "1/2 done · 1 stopped" and box.cancellable == 0
    count = len(box.comm.sent)
    sim.advance(10 * HEARTBEAT)
    assert len(box.comm.sent) == count  # nothing polls: no heartbeat either
    box.close()


def test_heartbeat_while_running(sim: Sim) -> None:
    box = sim.ops.watch_all([sim.emu.create("video", duration=3600)])
    sim.advance(1)
    before = len(box.comm.update_msgs())
    sim.advance(3 * HEARTBEAT)
    beats = box.comm.update_msgs()[before:]
    assert [m.at for m in beats] == pytest.approx([HEARTBEAT, 2 * HEARTBEAT, 3 * HEARTBEAT])
    assert beats[-1].data["state"]["rows"][0]["elapsed"] == pytest.approx(3 * HEARTBEAT)
    box.close()


def test_an_empty_list() -> None:
    box = OperationsList([])
    assert box.rows == [] and box.summary == "0/0 done"
    box.close()
