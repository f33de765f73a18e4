"""Freshness that follows attention, judged on screen: the bar of a watched job moves at least
every few seconds; scrolled out of view, the emulator sees the sparse background schedule."""

from __future__ import annotations

import re
import time

import pytest
from conftest import NotebookPage
from playwright.sync_api import expect

from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

PERCENT = re.compile(r"^~?\d+(\.\d)?%$")
SPACER = "from IPython.display import HTML\nHTML('<div style=\"height:6000px\">below</div>')"


def gets(emu: Emulator, name: str) -> int:
    return int(emu.stats()["by_name"].get(name, 0))


def test_a_watched_bar_moves_and_one_out_of_view_is_polled_sparsely(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("tuning", duration=60)
    cell = (
        "import os\n"
        "from ops_widgets import Operations\n"
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
        f"ops.watch({name!r})"  # no poll_interval: the adaptive schedule, and attention
    )
    nb = lab_page
    nb.open(nb.server.write_notebook("attention.ipynb", [cell, SPACER]))
    nb.run_all()
    nb.wait_all_ran()
    widget = nb.output(0).locator(".opw")
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    pct = widget.locator(".opw-pct")
    expect(pct).to_have_text(PERCENT, timeout=30_000)

    # In sight: the text under the bar changes at least every 5 s (polls every ~5 % of the
    # expected length, and the bar moves on between them at the measured rate).
    seen: list[tuple[float, str]] = []
    before = gets(emu, name)
    end = time.monotonic() + 12
    while time.monotonic() < end:
        text = pct.text_content() or ""
        if not seen or seen[-1][1] != text:
            seen.append((time.monotonic(), text))
        time.sleep(0.25)
    seen.append((time.monotonic(), ""))
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)]
    assert max(gaps) <= 5.5, seen
    assert gets(emu, name) - before >= 3  # every ~3 s: 5 % of a minute
    nb.screenshot("attention-watched")

    # Out of sight: scrolled far below, the sparse schedule (with progress reported, it looks
    # again around halfway to the expected end, many seconds away).
    nb.page.evaluate("""() => {
        for (const s of document.querySelectorAll('.jp-WindowedPanel-outer, .jp-Notebook'))
            s.scrollTop = s.scrollHeight;
    }""")
    expect(widget).not_to_be_in_viewport(timeout=10_000)
    time.sleep(2)  # the view's message reaches the kernel; a poll already due goes out
    before = gets(emu, name)
    time.sleep(12)
    assert gets(emu, name) - before <= 1
