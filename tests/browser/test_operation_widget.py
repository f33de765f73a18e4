"""OperationWidget end to end: real JupyterLab / Notebook 7, headless Chromium, the emulator.

Each scenario writes its own notebook (no outputs), runs it like a user and reads the widget's
data-* attributes. Waits are conditions with generous timeouts, never fixed sleeps.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from conftest import NotebookPage

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1">'


def watch_cell(name: str, poll_interval: float = 0.5) -> str:
    """One cell that builds a client from the server's environment and displays a watched op."""
    return (
        "import os\n"
        "from ops_widgets import Operations\n"
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
        f"ops.watch({name!r}, poll_interval={poll_interval})"
    )


def op_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


# The widget of code cell `cell` and what it shows; null while it is not rendered yet.
_SNAPSHOT_JS = """(cell) => {
    const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[cell];
    const w = c && c.querySelector('.opw');
    if (!w) return null;
    const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
                         .map(p => (p.textContent || '').trim());
    return {state: w.dataset.state, progress: w.dataset.progress, live: w.dataset.live,
            badge: (w.querySelector('.opw-badge') || {}).textContent, prompts};
}"""


def snapshot(nb: NotebookPage, cell: int = 0) -> dict[str, Any]:
    snap = nb.page.evaluate(_SNAPSHOT_JS, cell)
    assert snap is not None, "the widget is not rendered"
    return dict(snap)


def wait_progress(nb: NotebookPage, cell: int = 0, above: float = -1.0, while_cell_runs: int | None = None,
                  timeout_ms: float = 30_000) -> dict[str, Any]:
    """Until the widget reports a progress above `above`; with `while_cell_runs`, it returns as
    soon as that cell stops running, so the caller can tell "advanced" from "ran out of time"."""
    handle = nb.page.wait_for_function(
        f"""([cell, above, running]) => {{
            const s = ({_SNAPSHOT_JS})(cell);
            if (!s) return false;
            if (running !== null && s.prompts[running] !== '[*]:') return s;
            return s.progress !== '' && s.progress !== undefined && parseFloat(s.progress) > above ? s : false;
        }}""",
        arg=[cell, above, while_cell_runs],
        timeout=timeout_ms,
        polling=100,
    )
    return dict(handle.json_value())


def record_history(nb: NotebookPage, cell: int = 0) -> None:
    """Record every distinct (state, badge, live, progress) the widget shows, from now on: a state
    that lasts a few milliseconds (a fast server's "cancelling") is still seen. Each entry also
    has `t` (ms since recording began) and the cells' prompts at that moment, so a check can be
    limited to "while that cell ran". The elapsed clock ticks every second, so entries keep coming."""
    nb.page.evaluate(
        """(cell) => {
            const out = document.querySelectorAll('.jp-Notebook .jp-Cell')[cell].querySelector('.jp-OutputArea');
            const t0 = performance.now();
            window.__opwHistory = [];
            let lastKey = '';
            const note = () => {
                const w = out.querySelector('.opw');
                if (!w) return;
                const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
                                     .map(p => (p.textContent || '').trim());
                const h = {state: w.dataset.state, badge: w.querySelector('.opw-badge').textContent,
                           live: w.dataset.live, progress: w.dataset.progress, prompts};
                const key = JSON.stringify(h);
                if (key === lastKey) return;
                lastKey = key;
                window.__opwHistory.push({...h, t: Math.round(performance.now() - t0)});
            };
            note();
            new MutationObserver(note).observe(out, {subtree: true, attributes: true, childList: true,
                                                     characterData: true});
            setInterval(note, 200);  // prompts change outside the widget: look at them too
            window.__opwNote = note;  // and once more when the history is read
        }""",
        cell,
    )


def history(nb: NotebookPage) -> list[dict[str, Any]]:
    return list(nb.page.evaluate("() => { window.__opwNote?.(); return window.__opwHistory || []; }"))


def save_history(nb: NotebookPage, name: str) -> None:
    nb.write_artifact(f"{name}-history.json", json.dumps(history(nb), indent=1))


def assert_stayed_live(entries: list[dict[str, Any]]) -> None:
    """The widget never looked dead: "unknown" only before the first sign of life, then "true";
    never "not live"; and "running" read as such while it ran."""
    assert entries, "no history was recorded"
    lives = [h["live"] for h in entries]
    assert "true" in lives, f"never live: {entries[-1]}"
    after_first = lives[lives.index("true"):]
    bad = [h for h in entries if h["live"] == "false" or h["badge"] == "stopped"]
    assert not bad and set(after_first) == {"true"}, f"looked dead at times: {bad[:3] or entries}"
    assert all(h["badge"] == "running" for h in entries if h["state"] == "running")


# --- JupyterLab -----------------------------------------------------------------------------

def test_progress_advances_while_kernel_idle(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("tuning", duration=20)
    nb = lab_page
    nb.open(nb.server.write_notebook("idle.ipynb", [watch_cell(name)]))
    nb.run_all()
    nb.wait_all_ran()

    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-op-id", op_id(name), timeout=30_000)
    first = wait_progress(nb)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in first["prompts"]), first
    later = wait_progress(nb, above=float(first["progress"]))
    # No cell ran in between: the updates come from the widget's own polling.
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in later["prompts"]), later
    assert later["state"] == "running"
    nb.screenshot("lab-idle-running", readme="operation_widget.png")

    expect(widget).to_have_attribute("data-state", "succeeded", timeout=60_000)
    expect(widget.locator(".opw-badge")).to_have_text("succeeded")
    nb.screenshot("lab-idle-succeeded")


def test_rerunning_the_watch_cell_leaves_one_live_widget(lab_page: NotebookPage, emu: Emulator) -> None:
    """Run all twice, as a user re-runs a notebook: the watch cell's second run closes the widget
    its first run made (JupyterLab names the cell in each run), so the kernel holds one open
    widget, and the one the cell shows now goes on advancing."""
    name = emu.create("tuning", duration=30)
    count = ("import ipywidgets\nfrom ops_widgets import OperationWidget\n"
             "print(sum(isinstance(w, OperationWidget) for w in list(ipywidgets.widgets.widget._instances.values())))")
    nb = lab_page
    nb.open(nb.server.write_notebook("rerun.ipynb", [watch_cell(name), count]))
    for _ in range(2):
        nb.run_all()
        nb.wait_all_ran()
        assert nb.output(1).inner_text().strip() == "1"
    first = wait_progress(nb)
    assert nb.page.locator(".jp-Notebook .jp-Cell").first.locator(".opw").count() == 1
    later = wait_progress(nb, above=float(first["progress"]))
    assert later["state"] == "running" and later["live"] == "true", later
    nb.raise_on_cell_error()


def test_progress_advances_while_another_cell_sleeps(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("tuning", duration=20)
    nb = lab_page
    nb.open(nb.server.write_notebook("busy.ipynb", [watch_cell(name), "import time; time.sleep(12)"]))
    nb.run_all()
    nb.wait_cell_running(1)
    expect(nb.widget(0)).to_be_attached(timeout=30_000)
    record_history(nb)

    first = wait_progress(nb, while_cell_runs=1)
    assert first["prompts"][1] == "[*]:", f"cell 2 ended before any progress showed: {first}"
    later = wait_progress(nb, above=float(first["progress"]), while_cell_runs=1)
    assert later["prompts"][1] == "[*]:", f"no progress while cell 2 slept: {first} then {later}"
    assert float(later["progress"]) > float(first["progress"])
    # A blocked kernel answers no ping: the widget must still count the updates as life.
    assert (later["live"], later["badge"]) == ("true", "running"), later
    nb.screenshot("lab-busy-running")
    nb.wait_all_ran()
    save_history(nb, "lab-busy")
    while_sleeping = [h for h in history(nb) if h["prompts"][1] == "[*]:"]
    assert_stayed_live(while_sleeping)
    assert any(float(h["progress"] or 0) > float(first["progress"]) for h in while_sleeping)


def test_cancel(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("batch", duration=600)  # the Gemini API cancels batches only
    video = emu.create("video", duration=600)
    nb = lab_page
    nb.open(nb.server.write_notebook("cancel.ipynb", [watch_cell(name), watch_cell(video)]))
    nb.run_all()
    nb.wait_all_ran()

    widget = nb.widget(0)
    button = widget.locator(".opw-cancel")
    # The button only works once the kernel has answered the widget's ping.
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    expect(widget).to_have_attribute("data-state", "running")
    expect(button).to_be_enabled()
    # A running Veo operation: the service has no cancel for it, so no Cancel button at all.
    video_widget = nb.widget(1)
    expect(video_widget).to_have_attribute("data-live", "true", timeout=30_000)
    expect(video_widget).to_have_attribute("data-state", "running")
    expect(video_widget.locator(".opw-cancel")).to_be_hidden()
    nb.screenshot("lab-cancel-before")

    record_history(nb)
    button.click()
    # A deliberate cancel: the widget asks first, inline; "Keep it running" sends nothing.
    confirm = widget.locator(".opw-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Cancel this batch on the server?")
    expect(button).to_be_disabled()
    confirm.locator(".opw-confirm-no").click()
    expect(confirm).to_be_hidden()
    expect(button).to_be_enabled()
    button.click()
    confirm.locator(".opw-confirm-yes").click()
    # "cancelling" may last only until the next poll: read it from the recorded history.
    nb.page.wait_for_function(
        "() => (window.__opwHistory || []).some(h => h.badge === 'cancelling')", timeout=5_000)
    expect(widget).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(widget.locator(".opw-badge")).to_have_text("cancelled")
    expect(button).to_be_hidden()  # done: a result, not a control
    expect(widget.locator(".opw-time")).to_have_text(re.compile(r"^cancelled after \S+$"))
    op = emu.get_operation(name)
    assert op is not None and op["error"]["code"] == 1, op
    save_history(nb, "lab-cancel")
    nb.screenshot("lab-cancel-after")


def test_heartbeat_keeps_widget_live_while_cell_blocks(lab_page: NotebookPage, emu: Emulator) -> None:
    # Veo reports no progress: while cell 2 blocks, the 10 s heartbeat is the only sign of life.
    name = emu.create("video", duration=600)
    nb = lab_page
    nb.open(nb.server.write_notebook("heartbeat.ipynb", [watch_cell(name), "import time; time.sleep(40)"]))
    nb.run_all()
    nb.wait_cell_running(1)
    expect(nb.widget(0)).to_be_attached(timeout=30_000)
    record_history(nb)
    nb.wait_all_ran(timeout=90)
    save_history(nb, "lab-heartbeat")
    entries = history(nb)
    while_sleeping = [h for h in entries if h["prompts"][1] == "[*]:"]
    # Entries are changes only (each state lasts until the next), noted within 0.2 s: the sleep
    # outlasted SILENCE_MS (35 s) with no pong.
    woke = next(h for h in entries if h["prompts"][1] != "[*]:")
    assert woke["t"] > 36_000, woke
    assert_stayed_live(while_sleeping)


def test_kernel_gone(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("batch", duration=600)  # a kind the service can cancel: the button starts enabled
    nb = lab_page
    path = nb.server.write_notebook("gone.ipynb", [watch_cell(name)])
    nb.open(path)
    nb.run_all()
    nb.wait_all_ran()

    widget = nb.widget(0)
    cancel = widget.locator(".opw-cancel")
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    expect(cancel).to_be_enabled()
    record_history(nb)
    view = widget.element_handle()
    # As another client would: JupyterLab is not told first (it notices, and says "No Kernel").
    nb.server.shutdown_kernel(nb.server.kernel_id(path))

    # JupyterLab keeps the output: the same widget stays, and must stop looking live.
    expect(widget).to_have_attribute("data-live", "false", timeout=60_000)
    expect(widget.locator(".opw-badge")).to_have_text("stopped")
    expect(cancel).to_be_disabled()
    expect(widget.locator(".opw-note")).to_contain_text("Stopped: no kernel answers")
    assert "left" not in (widget.locator(".opw-time").text_content() or "")  # no countdown
    expect(widget).to_have_attribute("data-state", "running")  # the last state known, not a guess
    assert view.evaluate("w => w.isConnected && w.dataset.live === 'false'"), "the view was replaced"
    assert nb.output(0).locator(".opw").count() == 1
    save_history(nb, "lab-kernel-gone")
    nb.screenshot("lab-kernel-gone")
    op = emu.get_operation(name)
    assert op is not None and not op.get("done"), "the kernel's end must not cancel the operation"


def test_error_message_is_text_not_html(lab_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("video", duration=0.5, outcome="failure", error_message=XSS)
    nb = lab_page
    nb.open(nb.server.write_notebook("xss.ipynb", [watch_cell(name)]))
    nb.run_all()
    nb.wait_all_ran()

    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-state", "failed", timeout=30_000)
    expect(widget.locator(".opw-error-message")).to_have_text(XSS)
    assert widget.locator(".opw-error-message").text_content() == XSS  # exact, not normalised
    expect(widget.locator(".opw-error")).to_have_attribute("title", re.compile(r"\(\d+\)$"))  # the code, on hover
    expect(widget.locator(".opw-cancel")).to_be_hidden()
    assert widget.locator("img").count() == 0
    assert nb.page.locator('img[src="x"]').count() == 0
    nb.screenshot("lab-xss-failed")
    assert nb.page.evaluate("() => window.__xss") is None


def check_stopped_after_close(nb: NotebookPage, emu: Emulator, prefix: str) -> None:
    """The quickstart's last cell closes the client: within 10 s of that cell ending, its widgets
    say "stopped" and why, freeze their clock, count no ETA down and disable Cancel."""
    name = emu.create("batch", duration=600)  # cancellable: its button is there, and must be disabled
    cells = [watch_cell(name), "import time; time.sleep(3)\nops.close()"]
    nb.open(nb.server.write_notebook(f"{prefix}-closed.ipynb", cells))
    nb.run_all()
    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    expect(widget.locator(".opw-cancel")).to_be_enabled()
    nb._wait(lambda: re.fullmatch(r"\[\d+\]:", nb.prompts()[1]) is not None, 30, "ops.close() never ran")
    expect(widget.locator(".opw-badge")).to_have_text("stopped", timeout=10_000)
    expect(widget).to_have_attribute("data-polling", "false")
    expect(widget.locator(".opw-cancel")).to_be_disabled()
    expect(widget.locator(".opw-note")).to_contain_text("Stopped: the client was closed")
    clock = widget.locator(".opw-time")
    frozen = clock.text_content() or ""
    assert "left" not in frozen and "unknown" not in frozen and "clock stopped" in frozen, frozen
    nb.page.wait_for_timeout(2500)  # the ticker runs every second: a frozen clock shows the same text
    assert clock.text_content() == frozen
    nb.screenshot(f"{prefix}-stopped")


def test_after_the_client_closes_the_widget_says_stopped(lab_page: NotebookPage, emu: Emulator) -> None:
    check_stopped_after_close(lab_page, emu, "lab")


def test_notebook7_cancel_asks_first_inline(notebook7_page: NotebookPage, emu: Emulator) -> None:
    """A deliberate cancel in Notebook 7 too: the click asks inline; "Keep it running" sends nothing;
    "Yes, cancel it" does, once, and the widget ends as a result with no Cancel button."""
    name = emu.create("batch", duration=600)
    nb = notebook7_page
    nb.open(nb.server.write_notebook("nb7-cancel.ipynb", [watch_cell(name)]))
    nb.run_all()
    widget = nb.widget(0)
    button = widget.locator(".opw-cancel")
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    expect(button).to_be_enabled()
    button.click()
    confirm = widget.locator(".opw-confirm")
    expect(confirm).to_contain_text("Cancel this batch on the server? It cannot be resumed.")
    expect(confirm.locator(".opw-confirm-no")).to_be_focused()  # the safe choice has the focus
    nb.screenshot("notebook7-cancel-confirm")
    nb.page.keyboard.press("Enter")  # "Keep it running", from the keyboard
    expect(confirm).to_be_hidden()
    assert not (emu.get_operation(name) or {}).get("done"), "keeping it running sent a cancel"
    button.click()
    confirm.locator(".opw-confirm-yes").click()
    expect(widget).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(button).to_be_hidden()
    op = emu.get_operation(name)
    assert op is not None and op["error"]["code"] == 1, op


def test_notebook7_after_the_client_closes_the_widget_says_stopped(notebook7_page: NotebookPage,
                                                                   emu: Emulator) -> None:
    check_stopped_after_close(notebook7_page, emu, "notebook7")


def test_a_filtered_video_says_so_with_its_reasons(lab_page: NotebookPage, emu: Emulator) -> None:
    """Done, no error, no video: not "succeeded" (people paid twice for that), but "filtered",
    with the service's reasons as text."""
    name = emu.create("video", duration=0.5, outcome="filtered")
    nb = lab_page
    nb.open(nb.server.write_notebook("filtered.ipynb", [watch_cell(name)]))
    nb.run_all()
    nb.wait_all_ran()

    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-state", "filtered", timeout=30_000)
    expect(widget.locator(".opw-badge")).to_have_text("filtered")
    expect(widget.locator(".opw-result")).to_contain_text("may violate our usage guidelines")
    assert widget.locator(".opw-result a").count() == 0  # nothing to open or download
    expect(widget.locator(".opw-cancel")).to_be_hidden()
    nb.screenshot("lab-filtered")
    badge = "() => getComputedStyle(document.querySelector('.opw-badge')).backgroundColor"
    light = nb.page.evaluate(badge)
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                     "{theme: 'JupyterLab Dark'}); }")
    nb.page.wait_for_function(f"(before) => ({badge})() !== before", arg=light, timeout=30_000)
    nb.screenshot("lab-filtered-dark")  # its own colour, readable in both themes
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                     "{theme: 'JupyterLab Light'}); }")


# --- Notebook 7 -----------------------------------------------------------------------------

def test_notebook7_widget_advances(notebook7_page: NotebookPage, emu: Emulator) -> None:
    name = emu.create("tuning", duration=20)
    nb = notebook7_page
    nb.open(nb.server.write_notebook("nb7.ipynb", [watch_cell(name)]))
    nb.run_all()  # through the Run menu: Notebook 7 has no window.jupyterapp
    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-op-id", op_id(name), timeout=30_000)
    nb.wait_all_ran()
    first = wait_progress(nb)
    later = wait_progress(nb, above=float(first["progress"]))
    assert later["state"] == "running"
    nb.screenshot("notebook7-running")



def test_follows_the_dark_theme(lab_page: NotebookPage, emu: Emulator) -> None:
    """Colours come from JupyterLab's theme variables: switching to the dark theme restyles it."""
    name = emu.create("tuning", duration=600)
    nb = lab_page
    nb.open(nb.server.write_notebook("theme.ipynb", [watch_cell(name)]))
    nb.run_all()
    nb.wait_all_ran()
    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-live", "true", timeout=30_000)
    colours = """() => {
        const w = document.querySelector('.opw');
        const theme = getComputedStyle(document.body);
        return {card: getComputedStyle(w).backgroundColor, text: getComputedStyle(w).color,
                layout: theme.getPropertyValue('--jp-layout-color1').trim()};
    }"""
    light = nb.page.evaluate(colours)
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                     "{theme: 'JupyterLab Dark'}); }")
    nb.page.wait_for_function(
        "(before) => getComputedStyle(document.querySelector('.opw')).backgroundColor !== before",
        arg=light["card"], timeout=30_000,
    )
    dark = nb.page.evaluate(colours)
    assert dark["layout"] != light["layout"]  # the theme really changed...
    assert dark["card"] != light["card"] and dark["text"] != light["text"]  # ...and the widget with it
    nb.screenshot("lab-dark-theme")
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                     "{theme: 'JupyterLab Light'}); }")
