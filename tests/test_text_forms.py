"""One text form everywhere: str(op), str(tracked), repr(widget), watch_all's and the table's text,
the terminal's line and the widgets' static snapshots read "name  state  42%  1m 12s"; the
snapshots are escaped HTML with no script in them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

import ops_widgets as ow
from ops_widgets import Operation, OperationsTable, OperationWidget
from ops_widgets._text import format_duration, summary_line
from ops_widgets.emulator import Emulator
from ops_widgets.widgets._snapshot import list_html, operation_html
from ops_widgets.widgets._view import view_state

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
LINE = re.compile(r"^\S+  (running|succeeded|failed|cancelled|filtered)(  \d+%)?(  (\d+h \d\dm|\d+m \d\ds|\d+s))?$")


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = Emulator.start(speed=30, random_seed=11)
    try:
        yield e
    finally:
        e.stop()


def terminal_line(emu: Emulator, name: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(NO_COLOR="1", GEMINI_API_KEY=emu.api_key)
    r = subprocess.run([sys.executable, "-m", "ops_widgets", "--base-url", emu.base_url, "get", name],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def test_every_text_form_reads_the_same(emu: Emulator) -> None:
    """A finished operation (its duration comes from its own times, so every view agrees to the
    second): Operation, Tracked, the widget (str, repr, its bundle's text/plain and snapshot), a
    one-row watch_all, the table's row and the `ops-widgets get` line are one and the same."""
    emu.seed(40, running_fraction=0.0)
    with emu.client() as ops:
        ops_list = ops.list_all(parent="batches")
        ended = [op for op in ops_list if op.succeeded and op.progress is not None and op.run_seconds(0)]
        failed = [op for op in ops.list_all() if op.failed]
        for op in (ended[0], failed[0]):
            line = str(op)
            assert LINE.match(line), line
            assert line == summary_line(op, op.run_seconds(0)) and line.startswith(f"{op.name}  {op.state.value}")
            assert repr(op) == f"<Operation {line}>"
            tracked = ops.track(op.name)
            widget = OperationWidget(tracked)
            rows = ops.watch_all([op.name])
            table = OperationsTable([op], ops)
            try:
                assert str(tracked) == line and repr(tracked) == f"<Tracked {line}>"
                assert str(widget) == repr(widget) == line
                data = widget._repr_mimebundle_()[0]
                assert data["text/plain"] == line and line in data["text/html"]
                assert "application/vnd.jupyter.widget-view+json" in data
                assert str(rows) == line and rows._repr_mimebundle_()[0]["text/plain"] == line
                assert str(table).splitlines()[1:] == [line]
                assert terminal_line(emu, op.name) == line
            finally:
                widget.close()
                rows.close()
                table.wait_idle(30)
                table.close()
                tracked.close()


def test_durations_read_the_same_in_the_text_and_the_widget() -> None:
    assert [format_duration(s) for s in (7, 72, 3725)] == ["7s", "1m 12s", "1h 02m"]
    op = Operation.from_api_response({"name": "tunedModels/t/operations/o", "metadata": {"completedPercent": 42}})
    assert summary_line(op, 72.3) == "tunedModels/t/operations/o  running  42%  1m 12s"
    state = view_state(op, elapsed=72.3, eta=150, eta_is_estimate=False)
    html = operation_html(state, summary_line(op, 72.3))
    assert "1m 12s elapsed" in html and "2m 30s left" in html  # the widget's own words (js/widgets.js)


def test_a_table_and_a_list_have_text_forms(emu: Emulator) -> None:
    emu.seed(30)
    with emu.client() as ops:
        found = ops.list_all(parent="batches")
        table = OperationsTable(found, ops)
        try:
            text = str(table).splitlines()
            assert text[0] == f"OperationsTable {len(found):,} operations, {len(found):,} matching, 0 selected"
            assert len(text) == 1 + min(len(found), table.page_size) and all(LINE.match(t) for t in text[1:])
            data = table._repr_mimebundle_()[0]
            assert data["text/plain"] == str(table) and "<table" in data["text/html"]
            assert repr(table) == f"<{text[0]}>"
            assert "<script" not in data["text/html"]
        finally:
            table.wait_idle(30)  # its first looks at the running rows on the page
            table.close()


def hostile_operation() -> Operation:
    return Operation.from_api_response({
        "name": "batches/" + "x" * 8,
        "done": True,
        "error": {"code": 13, "message": HOSTILE},
        "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"},
    })


def test_snapshots_are_escaped_and_carry_no_script() -> None:
    op = hostile_operation()
    html = operation_html(view_state(op, elapsed=3, eta=None, eta_is_estimate=False), str(op))
    assert "<script" not in html and "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'data-state="failed"' in html and "#d32f2f" in html  # its state colour, inline
    # No video URI becomes a link, a javascript: one least of all: both are escaped text.
    video = Operation.from_api_response({
        "name": "models/veo/operations/v", "done": True,
        "response": {"generateVideoResponse": {"generatedSamples": [
            {"video": {"uri": "javascript:alert(1)"}}, {"video": {"uri": "https://example.com/v.mp4"}}]}},
    })
    html = operation_html(view_state(video, elapsed=None, eta=None, eta_is_estimate=False), str(video))
    assert "href" not in html and "javascript:alert(1)" in html and "https://example.com/v.mp4" in html
    rows = list_html([("failed", HOSTILE)])
    assert "<script" not in rows and "&lt;script&gt;" in rows


def test_display_in_a_kernel_refreshes_the_saved_snapshot_when_it_ends() -> None:
    """In IPython the widget is displayed with a display id; when its operation ends, that
    output's bundle (snapshot and text) is rewritten with an update_display message, at once and
    at the end of the cell then running."""
    from IPython.core.interactiveshell import InteractiveShell

    clock = ow.VirtualClock(auto=False)
    emu = Emulator.in_process(clock, random_seed=5)
    shell = InteractiveShell.instance()
    published: list[tuple[dict[str, object], bool]] = []
    pub = shell.display_pub
    original = pub.publish

    def record(data: dict[str, object], metadata: object = None, *, transient: object = None,
               update: bool = False, **kw: object) -> None:
        published.append(({**data, "transient": transient}, update))

    pub.publish = record  # type: ignore[method-assign]
    ops = emu.client()
    try:
        name = emu.create("tuning", duration=30)
        w = ops.watch(name, poll_interval=1)
        w._ipython_display_()
        ((first, update),) = published
        assert not update and "running" in str(first["text/plain"])
        display_id = first["transient"]
        clock.advance(31)
        assert w.operation.done
        assert [(d["transient"], u) for d, u in published[1:]] == [(display_id, True)]  # once
        assert str(published[-1][0]["text/plain"]).startswith(f"{name}  succeeded  100%")
        assert 'data-state="succeeded"' in str(published[-1][0]["text/html"])
        # Once more when the cell running now ends (what nbclient keeps if the first came between
        # two cells), then never again.
        shell.events.trigger("post_run_cell", None)
        shell.events.trigger("post_run_cell", None)
        assert [(d["transient"], u) for d, u in published[1:]] == [(display_id, True)] * 2
        w.close()
    finally:
        pub.publish = original  # type: ignore[method-assign]
        ops.close()
        InteractiveShell.clear_instance()
