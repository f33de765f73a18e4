"""Both widgets in every state, in JupyterLab's light and dark themes: every text node's computed
colour against what is behind it (WCAG AA: at least 4.5:1), and the pictures the README shows.

One notebook holds the gallery: an OperationWidget per state (running with and without progress,
the inline cancel confirmation, cancelling, succeeded, failed, cancelled, filtered, stopped), an
OperationsTable of the same operations with its confirmation bar open, and watch_all's list of
them with its "Cancel all running" confirmation open.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from conftest import NotebookPage

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

AA = 4.5

# Every visible text node of the widgets under `outputs`, its colour composited over the backgrounds behind it
# (alpha and color-mix() included: Chromium computes those to rgb()/color(srgb ...)), and the
# placeholder of every input. Returns one entry per text: {text, where, ratio, fg, bg}.
CONTRAST_JS = """(outputs) => {
  const parse = (c) => {
    let m = /^rgba?\\(([^)]*)\\)$/.exec(c);
    if (m) {
      const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = /^color\\(srgb ([^)]*)\\)$/.exec(c);
    if (m) {
      const p = m[1].split(/[\\s\\/]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    throw new Error('unparsed colour ' + c);
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const lin = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  };
  const ratio = (a, b) => {
    const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const background = (node) => {
    const chain = [];
    for (let e = node; e; e = e.parentElement) chain.push(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain.reverse()) {
      const s = getComputedStyle(e);
      if (s.backgroundImage !== 'none') throw new Error('text over an image: ' + e.className);
      bg = over(parse(s.backgroundColor), bg);
    }
    return bg;
  };
  const opacity = (node) => {
    let o = 1;
    for (let e = node; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const where = (e) => (e.className || e.tagName).toString() + (e.closest('[data-state]') ?
      ' [' + e.closest('[data-state]').dataset.state + ']' : '');
  const out = [];
  const measure = (e, text, colour) => {
    const bg = background(e);
    const fg = parse(colour);
    fg[3] *= opacity(e);
    const shown = over(fg, bg);
    out.push({text: text.slice(0, 60), where: where(e), ratio: Math.round(ratio(shown, bg) * 100) / 100,
              fg: shown.slice(0, 3).map(Math.round), bg: bg.slice(0, 3).map(Math.round)});
  };
  for (const root of outputs.flatMap((o) => Array.from(o.querySelectorAll('.opw, .opt, .opl')))) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let t = walk.nextNode(); t; t = walk.nextNode()) {
      const e = t.parentElement;
      if (!t.textContent.trim() || !e.checkVisibility({checkOpacity: true, visibilityProperty: true})) continue;
      measure(e, t.textContent.trim(), getComputedStyle(e).color);
    }
    for (const input of root.querySelectorAll('input[placeholder]')) {
      if (input.checkVisibility() && !input.value) {
        measure(input, input.placeholder, getComputedStyle(input, '::placeholder').color);
      }
    }
  }
  return out;
}"""


def gallery_cells(emu: Emulator, names: dict[str, str]) -> list[str]:
    setup = (
        "import os\n"
        "from ipywidgets import VBox\n"
        "from ops_widgets import Operations, OperationsTable\n"
        # Many retries: a cancel held up by the test's injected 503s stays "cancelling".
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"], max_retries=30)\n'
        f"names = {json.dumps(names)}\n"
        'widgets = [ops.watch(n, poll_interval=1) for k, n in names.items() if k != "stopped"]\n'
        'spare = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
        'widgets.append(spare.watch(names["stopped"]))\n'
        "spare.close()  # nothing polls that one any more\n"
        "VBox(widgets)"
    )
    table = "table = OperationsTable([ops.get(n) for n in names.values()], ops)\ntable"
    listed = "ops.watch_all(names.values())"
    return [setup, table, listed]


def make_operations(emu: Emulator) -> dict[str, str]:
    names = {
        "running": emu.create("tuning", duration=900),
        "no progress": emu.create("video", duration=900),
        "confirm": emu.create("batch", duration=900),
        "cancelling": emu.create("batch", duration=900),
        "succeeded": emu.create("tuning", duration=0.5),
        "failed": emu.create("batch", duration=0.5, outcome="failure",
                             error_message="The input file could not be read. Check its format and try again."),
        "cancelled": emu.create("batch", duration=900),
        "filtered": emu.create("video", duration=0.5, outcome="filtered"),
        "stopped": emu.create("batch", duration=900),
    }
    with emu.client() as client:
        client.cancel(names["cancelled"])
    return names


def set_theme(nb: NotebookPage, theme: str) -> None:
    probe = "() => getComputedStyle(document.body).getPropertyValue('--jp-layout-color1').trim()"
    before = nb.page.evaluate(probe)
    nb.page.evaluate(f"() => {{ window.jupyterapp.commands.execute('apputils:change-theme', {{theme: {theme!r}}}); }}")
    nb.page.wait_for_function(f"(before) => ({probe})() !== before", arg=before, timeout=30_000)
    nb.page.wait_for_timeout(500)  # the theme's stylesheet settles (transitions on colours)


def check_contrast(nb: NotebookPage, theme: str) -> list[dict[str, Any]]:
    roots = [nb.output(i).element_handle() for i in range(3)]
    measured = list(nb.page.evaluate(CONTRAST_JS, roots))
    nb.write_artifact(f"contrast-{theme}.json", json.dumps(measured, indent=1))
    # Every state's badge, the inline confirmation and the table's bar are among what was measured.
    seen = {m["where"] for m in measured}
    for part in ("opw-confirm-text", "opt-confirm-text", "opw-error-message", "opw-note", "opt-search",
                 "opl-summary", "opl-time"):
        assert any(part in w for w in seen), f"{part} was not measured in {theme}"
    for state in ("running", "cancelling", "succeeded", "failed", "cancelled", "filtered"):
        assert any(w.startswith("opw-badge") and f"[{state}]" in w for w in seen), (theme, state)
    low = [m for m in measured if m["ratio"] < AA]
    assert not low, f"{len(low)} texts under {AA}:1 in {theme}: {low[:8]}"
    return measured


def test_every_state_reads_in_both_themes(lab_page: NotebookPage, emu: Emulator) -> None:
    names = make_operations(emu)
    nb = lab_page
    nb.open(nb.server.write_notebook("gallery.ipynb", gallery_cells(emu, names)))
    nb.run_all()
    nb.wait_all_ran(timeout=90)
    gallery = nb.output(0)
    widgets = gallery.locator(".opw")
    expect(widgets).to_have_count(len(names), timeout=30_000)

    def widget(key: str) -> Any:
        return gallery.locator(f".opw[data-op-id='{names[key].rsplit('/', 1)[1]}']")

    for key in ("running", "no progress", "confirm", "cancelling"):
        expect(widget(key)).to_have_attribute("data-live", "true", timeout=30_000)
    for key in ("succeeded", "failed", "cancelled", "filtered"):
        expect(widget(key)).to_have_attribute("data-state", key, timeout=30_000)
        expect(widget(key).locator(".opw-cancel")).to_be_hidden()
    expect(widget("succeeded").locator(".opw-time")).to_have_text(re_start("took "))
    expect(widget("cancelled").locator(".opw-time")).to_have_text(re_start("cancelled after "))
    expect(widget("failed").locator(".opw-time")).to_have_text(re_start("failed after "))
    expect(widget("failed").locator(".opw-error")).to_have_attribute("title", re_start("INTERNAL ("))
    expect(widget("cancelled").locator(".opw-error")).to_be_hidden()  # no "Operation was cancelled." echo
    expect(widget("stopped").locator(".opw-badge")).to_have_text("stopped", timeout=10_000)
    expect(widget("stopped").locator(".opw-cancel")).to_be_disabled()
    expect(widget("no progress").locator(".opw-cancel")).to_be_hidden()  # the service cannot cancel Veo

    # Copy name: the full name lands on the clipboard.
    nb.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = widget("succeeded").locator(".opw-copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert nb.page.evaluate("() => navigator.clipboard.readText()") == names["succeeded"]
    expect(copy).to_have_text("Copy name", timeout=5_000)

    # The cancel held up on the server: the widget says "Cancelling…" and counts no ETA down.
    emu.fail_for(600, status=503, path=":cancel")
    try:
        cancelling = widget("cancelling")
        cancelling.locator(".opw-cancel").click()
        cancelling.locator(".opw-confirm-yes").click()
        expect(cancelling).to_have_attribute("data-state", "cancelling", timeout=10_000)
        expect(cancelling.locator(".opw-cancel")).to_have_text("Cancelling…")
        expect(cancelling.locator(".opw-cancel")).to_be_disabled()
        assert "left" not in (cancelling.locator(".opw-time").text_content() or "")
        # And one left asking: the confirmation, inline.
        widget("confirm").locator(".opw-cancel").click()
        expect(widget("confirm").locator(".opw-confirm")).to_be_visible()

        table = nb.output(1).locator(".opt")
        expect(table).to_have_attribute("data-live", "true", timeout=30_000)
        table.locator(".opt-select-all").click()
        expect(table).to_have_attribute("data-selected", str(len(names)), timeout=10_000)
        table.locator(".opt-cancel").click()
        expect(table.locator(".opt-confirm-bar")).to_be_visible()

        listed = nb.output(2).locator(".opl")
        expect(listed).to_have_attribute("data-live", "true", timeout=30_000)
        listed.locator(".opl-cancel-all").click()
        expect(listed.locator(".opl-confirm")).to_be_visible()

        for theme, suffix in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
            if suffix == "dark":
                set_theme(nb, theme)
            check_contrast(nb, suffix)
            nb.screenshot(f"lab-states-{suffix}", cell_index=0, readme=f"states_{suffix}.png")
            nb.screenshot(f"lab-table-states-{suffix}", element=table, readme=f"table_{suffix}.png")
            nb.screenshot(f"lab-list-states-{suffix}", cell_index=2, readme=f"list_{suffix}.png")
        set_theme(nb, "JupyterLab Light")
    finally:
        emu.clear_faults()


def re_start(prefix: str) -> Any:
    import re

    return re.compile("^" + re.escape(prefix))
