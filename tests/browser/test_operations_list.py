"""watch_all end to end: one OperationsList in JupyterLab, its rows aligned, its summary, and a
confirmed "Cancel all running" checked on the emulator."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from conftest import NotebookPage

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser


def test_watch_all_one_row_each_and_cancel_all_running(lab_page: NotebookPage, emu: Emulator) -> None:
    batches = [emu.create("batch", duration=900) for _ in range(2)]
    video = emu.create("video", duration=900)  # running, and the service cannot cancel it
    tuned = emu.create("tuning", duration=0.5)
    failed = emu.create("batch", duration=0.5, outcome="failure", error_message="The input file could not be read.")
    names = [*batches, video, tuned, failed]
    cell = (
        "import os\n"
        "from ops_widgets import Operations\n"
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
        f"ops.watch_all({names!r}, poll_interval=0.5)"
    )
    nb = lab_page
    nb.open(nb.server.write_notebook("list.ipynb", [cell]))
    nb.run_all()
    nb.wait_all_ran()

    box = nb.output(0).locator(".opl")
    expect(box).to_have_count(1, timeout=30_000)  # one widget, not a container of five
    expect(box).to_have_attribute("data-live", "true", timeout=30_000)
    rows = box.locator(".opl-row")
    expect(rows).to_have_count(len(names))
    assert [r.rsplit("/", 1)[1] for r in names] == rows.evaluate_all("rs => rs.map(r => r.dataset.opId)")
    expect(box.locator(".opl-summary")).to_have_text(
        re.compile(r"^2/5 done · 1 failed · ETA ~?\S+$"), timeout=30_000)
    # One grid: every row's bar starts at the same x, and so does every badge.
    lefts = box.evaluate("""(b) => ['.opl-bar', '.opl-badge'].map(s =>
        Array.from(b.querySelectorAll(s)).map(e => Math.round(e.getBoundingClientRect().left)))""")
    assert all(len(set(xs)) == 1 for xs in lefts), lefts
    expect(box.locator(".opl-row[data-state=failed] .opl-note")).to_have_text("The input file could not be read.")
    nb.screenshot("lab-list-before")

    cancel_all = box.locator(".opl-cancel-all")
    expect(cancel_all).to_have_text("Cancel all running (2)")
    cancel_all.click()
    confirm = box.locator(".opl-confirm")
    expect(confirm).to_contain_text("Cancel 2 running operations on the server? "
                                    "(1 running cannot be cancelled by the service)")
    confirm.locator(".opw-confirm-no").click()  # nothing sent
    expect(confirm).to_be_hidden()
    assert all(not (emu.get_operation(n) or {}).get("done") for n in batches)
    cancel_all.click()
    confirm.locator(".opw-confirm-yes").click()
    expect(box.locator(".opl-summary")).to_have_text(re.compile(r"^4/5 done · 1 failed · 2 cancelled"),
                                                     timeout=30_000)
    expect(cancel_all).to_be_hidden()  # nothing left it could cancel
    for name in batches:
        op = emu.get_operation(name)
        assert op is not None and op["error"]["code"] == 1, op
    assert not (emu.get_operation(video) or {}).get("done")
    nb.screenshot("lab-list-after")
