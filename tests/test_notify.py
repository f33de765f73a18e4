"""Notifications when an operation ends: the notify trait's plumbing (Python, recorded comm, virtual
clock) and the front-end's pure decisions (run in node): whom to tell, once, and what it says.

The browser side (JupyterLab's notification, the browser's Notification, the bell) is tested in
tests/browser/test_notify_browser.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_widget import Comms, Sim, recorded_comm, sim  # noqa: F401  (the fixtures are reused)

import ops_widgets as ow
from ops_widgets import AsyncOperations, Operations, OperationWidget
from ops_widgets.emulator import Emulator
from ops_widgets.widgets import OperationsList, watch_all

JS = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")


def front_sets(widget: Any, **state: Any) -> None:
    """What the browser sends when a view sets a trait (the bell): a comm "update" message."""
    widget.comm.handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                            "buffers": []})


# -- the trait and its parameters ------------------------------------------------------------------


def test_notify_is_off_unless_asked_for_and_synced_when_it_is(sim: Sim) -> None:
    name = sim.emu.create("tuning", duration=60)
    quiet = sim.ops.watch(name)
    loud = sim.ops.watch(name, notify=True)
    assert quiet.notify is False and quiet.get_state()["notify"] is False
    assert loud.notify is True and loud.get_state()["notify"] is True
    # The flag goes to the front-end with the rest of the first state: it is the front-end that tells.
    opened = [m.data for m in loud.comm.sent if m.kind == "comm_open"]
    assert opened and opened[0]["state"]["notify"] is True
    assert OperationWidget(loud.tracked, notify=True).notify is True
    for w in (quiet, loud):
        w.close()


def test_watch_all_passes_notify_to_its_list(sim: Sim) -> None:
    names = [sim.emu.create("tuning", duration=60), sim.emu.create("video", duration=60)]
    assert sim.ops.watch_all(names).notify is False
    box = sim.ops.watch_all(names, notify=True)
    assert isinstance(box, OperationsList) and box.notify is True and box.get_state()["notify"] is True
    assert watch_all(box.handles, notify=True).notify is True
    assert OperationsList([], notify=True).notify is True
    box.close()


def test_the_bell_sets_the_python_trait_and_polls_carry_no_notify(sim: Sim) -> None:
    w = sim.ops.watch(sim.emu.create("tuning", duration=20), poll_interval=0.5)
    seen: list[bool] = []
    w.observe(lambda change: seen.append(change["new"]), names="notify")
    front_sets(w, notify=True)  # the bell, clicked on
    assert w.notify is True and seen == [True]
    front_sets(w, notify=False)  # and off again
    assert w.notify is False and seen == [True, False]
    sim.advance_until(lambda: w.state == "succeeded", step=2)
    # The kernel never echoes or resets it: what the bell chose stays the front-end's to act on.
    assert all("notify" not in u for u in w.comm.updates())
    w.close()


def test_async_watch_and_watch_all_take_notify(recorded_comm: Comms) -> None:
    clock = ow.VirtualClock()
    recorded_comm.now = clock.monotonic
    emu = Emulator.in_process(clock, random_seed=5)

    async def body() -> None:
        async with emu.aclient() as ops:
            w = await ops.watch(emu.create("tuning", duration=30), notify=True)
            box = await ops.watch_all([emu.create("video", duration=60)], notify=True)
            try:
                assert w.notify is True and box.notify is True
            finally:
                w.close()
                box.close()

    clock.run(body())


def test_notify_is_keyword_only_and_the_same_on_both_clients() -> None:
    for method in ("watch", "watch_all"):
        for cls in (Operations, AsyncOperations):
            param = inspect.signature(getattr(cls, method)).parameters["notify"]
            assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is False, (cls, method)
    assert asyncio.iscoroutinefunction(AsyncOperations.watch)
    assert "notify=True" in (Operations.watch.__doc__ or "")  # the blocking twin says it too


# -- the front-end's decisions, run in node ------------------------------------------------------------


def run_js(body: str) -> Any:
    """Runs `body` (which ends by printing JSON) with widgets.js's exports in scope."""
    script = (
        f"import {{ endsToTell, finishNote }} from {json.dumps((JS / 'widgets.js').as_uri())};\n"
        "const out = (x) => process.stdout.write(JSON.stringify(x));\n" + body
    )
    done = subprocess.run([str(NODE), "--input-type=module", "-e", script], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Each step: [view, notify on?, state]; views "a" and "b" are two views (say a re-render) on one page.
TELL_JS = """
const seen = new Map();
const views = {a: new Map(), b: new Map(), c: new Map()};
const steps = JSON.parse(process.argv[1]);
out(steps.map(([view, on, state]) =>
    endsToTell([{name: "batches/x", state}], seen, on, views[view]).length));
"""


def tells(steps: list[tuple[str, bool, str]]) -> list[int]:
    script = TELL_JS.replace("process.argv[1]", json.dumps(json.dumps(steps)))
    return list(run_js(script))


@needs_node
def test_told_once_when_seen_running_then_ended() -> None:
    assert tells([("a", True, "running"), ("a", True, "running"), ("a", True, "failed"),
                  ("a", True, "failed")]) == [0, 0, 1, 0]
    # A second view of the same model (or a second widget of the same operation): still once.
    assert tells([("a", True, "running"), ("b", True, "running"), ("a", True, "succeeded"),
                  ("b", True, "succeeded")]) == [0, 0, 1, 0]


@needs_node
def test_never_told_of_what_had_ended_when_first_shown() -> None:
    # A reopened notebook, or a widget made after the end: nothing, however often it renders.
    assert tells([("a", True, "succeeded"), ("b", True, "succeeded"), ("a", True, "cancelled")]) == [0, 0, 0]


@needs_node
def test_a_re_render_as_it_ends_tells_once() -> None:
    # JupyterLab re-renders an output when its operation ends: the old view may be gone before it
    # saw the end; the new view, first showing it ended, tells (nobody else did).
    assert tells([("a", True, "running"), ("b", True, "succeeded"), ("c", True, "succeeded")]) == [0, 1, 0]
    # The old view saw the end with the bell off: the new view tells nothing either.
    assert tells([("a", True, "running"), ("a", False, "failed"), ("b", True, "failed")]) == [0, 0, 0]


@needs_node
def test_turning_the_bell_on_after_the_end_tells_nothing() -> None:
    assert tells([("a", False, "running"), ("a", False, "succeeded"), ("a", True, "succeeded")]) == [0, 0, 0]
    # Cancelling is still running: the end is the cancel confirmed.
    assert tells([("a", True, "cancelling"), ("a", True, "cancelled")]) == [0, 1]


@needs_node
def test_each_ending_reads_differently_as_plain_text() -> None:
    xss = '<img src=x onerror="alert(1)">'
    rows = [
        {"name": "batches/b1", "op_id": "b1", "kind_label": "batch", "state": "succeeded", "elapsed": 72},
        {"name": "batches/b2", "op_id": "b2", "kind_label": "batch", "state": "failed", "elapsed": 2,
         "error_message": xss},
        {"name": "batches/b3", "op_id": "b3", "kind_label": "batch", "state": "cancelled", "elapsed": 40},
        {"name": "models/v/operations/v4", "op_id": "v4", "kind_label": "video", "state": "filtered"},
        {"name": "x/operations/o5", "op_id": "o5", "state": "failed", "error_message": "x" * 1000},
    ]
    notes = run_js(f"out({json.dumps(rows)}.map(finishNote));")
    assert [(n["type"], n["title"]) for n in notes] == [
        ("success", "Batch finished"), ("error", "Batch failed"), ("info", "Batch cancelled"),
        ("warning", "Video withheld by safety filters"), ("error", "Operation failed")]
    assert notes[0]["body"] == "b1 succeeded after 1m 12s."
    assert notes[1]["body"] == f"b2 failed after 2s: {xss}"  # the server's text, kept as text
    assert notes[2]["body"] == "b3 was cancelled after 40s."
    assert "safety filters withheld" in notes[3]["body"] and "after" not in notes[3]["body"]
    assert len(notes[4]["body"]) == 240 and notes[4]["body"].endswith("…")  # a long message is cut
