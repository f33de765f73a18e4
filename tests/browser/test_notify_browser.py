"""Notifications when an operation ends, end to end in JupyterLab: `watch(name, notify=True)`,
`watch_all(..., notify=True)` and the bell.

The browser's Notification is a stub that records what it is given (headless Chromium shows none,
and a test cannot grant the permission prompt); document.visibilityState is stubbed "hidden" for the
browser's path. JupyterLab's path is observed twice: the "apputils:notify" calls (recorded by
wrapping the exposed app's command registry) and the toasts JupyterLab draws from them.
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

XSS = '<img src=x onerror="window.__xss=1;alert(1)">'
RUNS = 20  # emulated (here real) seconds an operation runs: long enough to be shown running first

# Before any page script: a Notification that records, with the permission given, and optionally
# a page that reads as hidden (another tab in front).
STUBS_JS = """([permission, hidden]) => {
  window.__notes = [];
  window.__asked = 0;
  class RecordingNotification {
    constructor(title, options) {
      window.__notes.push({title, body: (options || {}).body, tag: (options || {}).tag});
    }
    static requestPermission() {
      window.__asked += 1;
      RecordingNotification.permission = 'granted';
      return Promise.resolve('granted');
    }
  }
  RecordingNotification.permission = permission;
  Object.defineProperty(window, 'Notification', {value: RecordingNotification, configurable: true, writable: true});
  if (hidden) {
    Object.defineProperty(Document.prototype, 'visibilityState', {get: () => 'hidden', configurable: true});
    Object.defineProperty(Document.prototype, 'hidden', {get: () => true, configurable: true});
  }
}"""

# After JupyterLab has started: every "apputils:notify" call, and the text of every toast drawn.
RECORD_LAB_JS = """() => {
  const commands = window.jupyterapp.commands;
  const execute = commands.execute.bind(commands);
  window.__labNotes = [];
  commands.execute = (id, args) => {
    if (id === 'apputils:notify') window.__labNotes.push(args);
    return execute(id, args);
  };
  window.__toasts = [];
  const seen = new WeakSet();
  new MutationObserver(() => {
    for (const m of document.querySelectorAll('.jp-toast-message')) {
      if (seen.has(m)) continue;
      seen.add(m);
      window.__toasts.push({text: m.textContent, images: m.querySelectorAll('img').length});
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def stub(nb: NotebookPage, permission: str, hidden: bool) -> list[str]:
    """Installs the stubs for every page load; returns the list of dialogs (alert()s) opened."""
    nb.page.add_init_script(f"({STUBS_JS})({json.dumps([permission, hidden])})")
    dialogs: list[str] = []
    nb.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return dialogs


def setup_cell(extra: str) -> str:
    return (
        "import os\n"
        "from IPython.display import display\n"
        "from ops_widgets import Operations\n"
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n' + extra
    )


def op_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


def widget(nb: NotebookPage, name: str) -> Any:
    return nb.page.locator(f".opw[data-op-id='{op_id(name)}']")


def notes(nb: NotebookPage, key: str) -> list[dict[str, Any]]:
    return list(nb.page.evaluate(f"() => window.{key} || []"))


def assert_no_script_ran(nb: NotebookPage, dialogs: list[str]) -> None:
    assert nb.page.evaluate("() => window.__xss") is None
    assert nb.page.locator('img[src="x"]').count() == 0
    assert dialogs == []


def test_hidden_page_gets_one_browser_notification_per_ended_operation(lab_page: NotebookPage,
                                                                      emu: Emulator) -> None:
    done_before = emu.create("tuning", duration=0.1)  # ended before it is shown: never told
    ops = {
        "succeeded": emu.create("tuning", duration=RUNS),
        "failed": emu.create("batch", duration=RUNS, outcome="failure", error_message=XSS),
        "cancelled": emu.create("batch", duration=600),
        "filtered": emu.create("video", duration=RUNS, outcome="filtered"),
        "listed": emu.create("tuning", duration=RUNS),
    }
    quiet = emu.create("tuning", duration=RUNS)  # notify off: never told
    nb = lab_page
    dialogs = stub(nb, "granted", hidden=True)
    cells = [
        setup_cell(f"ops.watch({done_before!r}, poll_interval=0.5, notify=True)"),
        # Two views of one model: told once.
        f"w = ops.watch({ops['succeeded']!r}, poll_interval=0.5, notify=True)\ndisplay(w)\ndisplay(w)",
        f"ops.watch({ops['failed']!r}, poll_interval=0.5, notify=True)",
        f"ops.watch({ops['cancelled']!r}, poll_interval=0.5, notify=True)",
        f"ops.watch({ops['filtered']!r}, poll_interval=0.5, notify=True)",
        f"ops.watch({quiet!r}, poll_interval=0.5)",
        # A list over one operation a widget above already tells of, and one of its own: once each.
        f"ops.watch_all([{ops['succeeded']!r}, {ops['listed']!r}], poll_interval=0.5, notify=True)",
    ]
    nb.open(nb.server.write_notebook("notify-hidden.ipynb", cells))
    nb.run_all()
    nb.wait_all_ran()
    for name in [*ops.values(), quiet]:
        expect(widget(nb, name).or_(nb.page.locator(f".opl-row[data-op-id='{op_id(name)}']")).first
               ).to_have_attribute("data-state", "running", timeout=30_000)
    expect(widget(nb, done_before)).to_have_attribute("data-state", "succeeded", timeout=30_000)
    with emu.client() as client:
        client.cancel(ops["cancelled"])

    for key in ("succeeded", "failed", "cancelled", "filtered"):
        expect(widget(nb, ops[key]).first).to_have_attribute("data-state", key, timeout=60_000)
    expect(widget(nb, quiet)).to_have_attribute("data-state", "succeeded", timeout=60_000)
    box = nb.output(6).locator(".opl")
    expect(box.locator(".opl-summary")).to_have_text("2/2 done", timeout=60_000)
    nb.page.wait_for_function("() => window.__notes.length >= 5", timeout=10_000)
    nb.page.wait_for_timeout(2000)  # long enough for a second notification of any of them to show up

    got = notes(nb, "__notes")
    nb.write_artifact("notify-hidden-notes.json", json.dumps(got, indent=1))
    by_tag = {n["tag"]: n for n in got}
    assert sorted(n["tag"] for n in got) == sorted(f"ops_widgets:{n}" for n in ops.values()), got
    titles = {key: by_tag[f"ops_widgets:{ops[key]}"]["title"] for key in ops}
    assert titles == {"succeeded": "Tuning finished", "failed": "Batch failed", "cancelled": "Batch cancelled",
                      "filtered": "Video withheld by safety filters", "listed": "Tuning finished"}
    failed = by_tag[f"ops_widgets:{ops['failed']}"]["body"]
    assert re.fullmatch(rf"{op_id(ops['failed'])} failed after \d+s: " + re.escape(XSS), failed), failed
    assert re.fullmatch(rf"{op_id(ops['cancelled'])} was cancelled after \d+s\.",
                        by_tag[f"ops_widgets:{ops['cancelled']}"]["body"])
    assert notes(nb, "__labNotes") == []  # hidden: the browser's, not JupyterLab's
    assert nb.page.evaluate("() => window.__asked") == 0  # granted already: nothing asked
    # The bell is gone once an operation has ended: nothing is left to tell.
    expect(widget(nb, ops["succeeded"]).first.locator(".opw-bell")).to_be_hidden()
    expect(box.locator(".opw-bell")).to_be_hidden()
    assert_no_script_ran(nb, dialogs)


def test_visible_page_gets_jupyterlabs_notification_and_the_bell_turns_it_on(lab_page: NotebookPage,
                                                                              emu: Emulator) -> None:
    succeeded = emu.create("tuning", duration=RUNS)
    failed = emu.create("batch", duration=RUNS, outcome="failure", error_message=XSS)
    belled = emu.create("tuning", duration=RUNS)  # notify off until its bell is clicked
    long_on, long_off = emu.create("batch", duration=900), emu.create("batch", duration=900)  # for the pictures
    nb = lab_page
    dialogs = stub(nb, "default", hidden=False)
    cells = [
        setup_cell(f"ops.watch({succeeded!r}, poll_interval=0.5, notify=True)"),
        f"ops.watch({failed!r}, poll_interval=0.5, notify=True)",
        f"ops.watch({belled!r}, poll_interval=0.5)",
        f"ops.watch({long_on!r}, notify=True)",
        f"ops.watch({long_off!r})",
    ]
    nb.open(nb.server.write_notebook("notify-visible.ipynb", cells))
    nb.page.evaluate(RECORD_LAB_JS)
    nb.run_all()
    nb.wait_all_ran()

    bell = widget(nb, belled).locator(".opw-bell")
    expect(widget(nb, belled)).to_have_attribute("data-live", "true", timeout=30_000)
    expect(widget(nb, belled)).to_have_attribute("data-state", "running")
    expect(bell).to_have_attribute("aria-pressed", "false")
    expect(bell).to_have_attribute("aria-label", "Notify me when this tuning ends")
    bell.click()
    expect(bell).to_have_attribute("aria-pressed", "true")
    assert nb.page.evaluate("() => window.__asked") == 1  # the click asked the browser, once
    expect(widget(nb, long_on).locator(".opw-bell")).to_have_attribute("aria-pressed", "true", timeout=30_000)

    for theme, suffix in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        set_theme(nb, theme)
        for name in (long_on, long_off):
            ratio = bell_contrast(nb, name)
            assert ratio >= 4.5, (suffix, name, ratio)
        nb.screenshot(f"notify-bell-{suffix}", cell_index=3)
        nb.screenshot(f"notify-bell-off-{suffix}", cell_index=4)
    set_theme(nb, "JupyterLab Light")

    for name, state in ((succeeded, "succeeded"), (failed, "failed"), (belled, "succeeded")):
        expect(widget(nb, name)).to_have_attribute("data-state", state, timeout=60_000)
    nb.page.wait_for_function("() => window.__labNotes.length >= 3", timeout=10_000)
    nb.page.wait_for_timeout(2000)  # long enough for a second notification of any of them to show up
    calls = notes(nb, "__labNotes")
    nb.write_artifact("notify-visible-notes.json", json.dumps(calls, indent=1))
    messages = sorted(c["message"] for c in calls)
    assert len(calls) == 3, calls
    assert [c["type"] for c in sorted(calls, key=lambda c: c["message"])] == ["error", "success", "success"]
    assert messages[0] == f"Batch failed\n{op_id(failed)} failed after " + messages[0].split(" after ", 1)[1]
    assert messages[0].endswith(": " + XSS)
    assert {m.split("\n")[1].split(" ")[0] for m in messages[1:]} == {op_id(succeeded), op_id(belled)}
    assert notes(nb, "__notes") == []  # visible, with JupyterLab's at hand: not the browser's
    # JupyterLab drew them as toasts, the server's text as text.
    nb.page.wait_for_function("() => window.__toasts.some(t => t.text.startsWith('Batch failed'))", timeout=10_000)
    toasts = notes(nb, "__toasts")
    failure = [t for t in toasts if t["text"].startswith("Batch failed")]
    assert len(failure) == 1 and failure[0]["images"] == 0 and "<img src=x" in failure[0]["text"], toasts
    # The failure's toast: it stays until read (a success's closes after 10 s, maybe mid-screenshot).
    nb.screenshot("notify-toast", element=nb.page.locator(".Toastify__toast", has_text="Batch failed").first)
    assert_no_script_ran(nb, dialogs)


def set_theme(nb: NotebookPage, theme: str) -> None:
    probe = "() => getComputedStyle(document.body).getPropertyValue('--jp-layout-color1').trim()"
    want = "light" if "Light" in theme else "dark"
    current = nb.page.evaluate("() => document.body.dataset.jpThemeLight")
    if (current == "true") == (want == "light"):
        return
    before = nb.page.evaluate(probe)
    nb.page.evaluate(f"() => {{ window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {theme!r}}}); }}")
    nb.page.wait_for_function(f"(before) => ({probe})() !== before", arg=before, timeout=30_000)
    nb.page.wait_for_timeout(500)  # the theme's stylesheet settles (transitions on colours)


def bell_contrast(nb: NotebookPage, name: str) -> float:
    """The bell's stroke colour against its button's background (both opaque rgb here)."""
    return float(widget(nb, name).locator(".opw-bell").evaluate("""(b) => {
        const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = (c) => {
          const lin = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
          return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
        };
        const fg = lum(rgb(getComputedStyle(b.querySelector('path')).stroke));
        const bg = lum(rgb(getComputedStyle(b).backgroundColor));
        return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    }"""))


def test_notebook7_hidden_page_gets_one_browser_notification(notebook7_page: NotebookPage, emu: Emulator) -> None:
    """Notebook 7 too: a failure is told once, through the browser's Notification on a hidden page,
    its server text as text."""
    failed = emu.create("batch", duration=600, outcome="failure", error_message=XSS)
    nb = notebook7_page
    dialogs = stub(nb, "granted", hidden=True)
    nb.open(nb.server.write_notebook("nb7-notify.ipynb",
                                     [setup_cell(f"ops.watch({failed!r}, poll_interval=0.5, notify=True)")]))
    nb.run_all()
    shown = widget(nb, failed)
    expect(shown).to_have_attribute("data-state", "running", timeout=30_000)
    emu.complete(failed)
    expect(shown).to_have_attribute("data-state", "failed", timeout=30_000)
    nb.page.wait_for_function("() => window.__notes.length >= 1", timeout=10_000)
    nb.page.wait_for_timeout(2000)  # long enough for a second notification to show up
    got = notes(nb, "__notes")
    assert [(n["title"], n["tag"]) for n in got] == [("Batch failed", f"ops_widgets:{failed}")], got
    assert got[0]["body"].endswith(f": {XSS}"), got
    assert_no_script_ran(nb, dialogs)
