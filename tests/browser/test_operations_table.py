"""OperationsTable end to end: 10,000 emulated operations in JupyterLab, filtered, selected and
cancelled in bulk from the browser, checked on the emulator.

The emulator's clock is frozen after seeding: no operation ends on its own during the test, so
"exactly the running ones were cancelled" can be checked exactly, while a cancel still ends an
operation (at that frozen instant) as on a real server.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from conftest import NotebookPage
    from playwright.sync_api import Locator

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

COUNT = 10_000
PAGE_SIZE = 50  # the table's default rows per page


@dataclass
class Seeded:
    emu: Emulator
    names: list[str]  # every operation the emulator holds


@pytest.fixture(scope="module")
def seeded(emu: Emulator) -> Iterator[Seeded]:
    """An emulator of this module's own, seeded with COUNT operations, its clock then frozen.
    Same key as the session one, so the notebook can read it from OPS_EMU_KEY."""
    from ops_widgets.emulator import Emulator

    frozen = time.time()  # nothing finishes by itself: "exactly those" can be checked exactly
    with Emulator.start(random_seed=11, api_key=emu.api_key, clock=lambda: frozen) as e:
        yield Seeded(e, e.seed(COUNT, kinds=("video", "tuning", "batch")))  # what a key can list


def server_states(emu: Emulator, names: list[str]) -> dict[str, str]:
    """Every operation's state as the emulator answers it: running, succeeded, failed, cancelled."""
    out: dict[str, str] = {}
    for name in names:
        op = emu.get_operation(name)
        assert op is not None, f"{name} is gone from the emulator"
        if not op.get("done"):
            out[name] = "running"
        elif "error" in op:
            out[name] = "cancelled" if op["error"]["code"] == 1 else "failed"
        else:
            out[name] = "succeeded"
    return out


def table_cell(base_url: str) -> str:
    return (
        "import os\n"
        "from ops_widgets import Operations, OperationsTable\n"
        f'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url={base_url!r})\n'
        "df = ops.list_dataframe(page_size=1000, progress=False)\n"
        "table = OperationsTable(df, ops)\n"
        "table"
    )


# The visible rows, as the DOM shows them.
_ROWS_JS = """(root) => Array.from(root.querySelectorAll('tr.opt-row')).map(r => ({
    name: r.dataset.name, state: r.dataset.state, selected: r.dataset.selected,
    id: (r.querySelector('.opt-id') || {}).textContent,
    kind: (r.querySelector('.opt-kind-cell') || {}).textContent}))"""


def rows(table: Locator) -> list[dict[str, Any]]:
    return list(table.evaluate(_ROWS_JS))


def wait_rows(table: Locator, condition_js: str, timeout_ms: float = 30_000) -> list[dict[str, Any]]:
    """Until the visible rows satisfy `condition_js` (a JS expression over `rows`); returns them."""
    table.page.wait_for_function(
        f"(root) => {{ const rows = ({_ROWS_JS})(root); return rows.length > 0 && ({condition_js}); }}",
        arg=table.element_handle(), timeout=timeout_ms, polling=100)
    return rows(table)


def test_bulk_cancel_of_running_operations(lab_page: NotebookPage, seeded: Seeded) -> None:
    table_emu, all_names = seeded.emu, seeded.names
    before = server_states(table_emu, all_names)
    running = {n for n, s in before.items() if s == "running"}
    assert len(before) == COUNT and 0.2 * COUNT < len(running) < 0.4 * COUNT, len(running)
    # The Gemini API cancels batches only: of the running ones, those are what a cancel touches.
    batches = {n for n in running if n.startswith("batches/")}
    others = len(running) - len(batches)
    assert batches and others

    nb = lab_page
    nb.open(nb.server.write_notebook("table.ipynb", [table_cell(table_emu.base_url)]))
    nb.run_all()
    nb.wait_all_ran(timeout=90)
    table = nb.cell(0).locator(".opt").first
    expect(table).to_have_attribute("data-total", str(COUNT), timeout=30_000)
    expect(table.locator("tr.opt-row")).to_have_count(PAGE_SIZE)
    # Actions stay disabled until the kernel has answered the table's ping.
    expect(table).to_have_attribute("data-live", "true", timeout=30_000)
    expect(table).to_have_attribute("data-matching", str(COUNT))

    # Sorted by id the page is a fair sample (newest first shows only just-started ones): mixed
    # states and kinds, which also makes the better picture.
    ids = sorted(n.rsplit("/", 1)[1] for n in all_names)
    # Sorting from the keyboard: Tab to the header's button, Enter; aria-sort says how it is sorted.
    header = table.locator("th[data-column=id]")
    expect(table.locator("th[data-column=create_time]")).to_have_attribute("aria-sort", "descending")
    header.locator("button").focus()
    nb.page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "ascending", timeout=10_000)
    expect(header).to_have_attribute("data-sort", "asc")
    expect(table.locator("th[data-column=create_time]")).to_have_attribute("aria-sort", "none")
    shown = wait_rows(table, f"rows[0].id === {ids[0]!r}")
    unnamed = table.evaluate("""(root) => Array.from(root.querySelectorAll('input, button')).filter(c => {
        if (!c.checkVisibility()) return false;  // the confirmation's buttons are named when it opens
        const name = c.getAttribute('aria-label') || (c.tagName === 'BUTTON' && c.textContent.trim())
                     || (c.closest('label') && c.closest('label').textContent.trim());
        return !name;
    }).map(c => c.outerHTML)""")
    assert not unnamed, f"controls with no accessible name: {unnamed[:3]}"
    created = table.locator("tr.opt-row td.opt-time").first
    expect(created).to_have_text(re.compile(r"ago$|^just now$"))
    expect(created).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    assert [r["id"] for r in shown] == ids[:PAGE_SIZE]
    assert len({before[r["name"]] for r in shown}) == 4, "expected every state on the first page"
    nb.page.evaluate("() => document.activeElement.blur()")  # no focus ring in the picture
    nb.screenshot("lab-table-before", element=table, readme="operations_table.png")

    # Search round trip: names of one video model (no seeded error message mentions it).
    term = "veo-3.0-fast"
    search = table.locator("input.opt-search")
    search.fill(term)
    expect(table).to_have_attribute("data-matching", str(sum(term in n for n in all_names)), timeout=10_000)
    assert all(term in r["name"] for r in rows(table))
    search.fill("")
    expect(table).to_have_attribute("data-matching", str(COUNT), timeout=10_000)

    # Kind filter round trip: tuning operations are the ones under tunedModels/.
    tuning = table.locator("input.opt-kind[value=tuning]")
    tuning.check()
    expect(table).to_have_attribute(
        "data-matching", str(sum(n.startswith("tunedModels/") for n in all_names)), timeout=10_000)
    wait_rows(table, "rows.every(r => r.kind === 'tuning')")
    tuning.uncheck()
    expect(table).to_have_attribute("data-matching", str(COUNT), timeout=10_000)

    # Only the running ones.
    table.locator("input.opt-state[value=running]").check()
    expect(table).to_have_attribute("data-matching", str(len(running)), timeout=10_000)
    shown = wait_rows(table, f"rows.length === {PAGE_SIZE} && rows.every(r => r.state === 'running')")
    assert {r["name"] for r in shown} <= running

    table.locator(".opt-select-all").click()
    expect(table).to_have_attribute("data-selected", str(len(running)), timeout=10_000)
    assert table.get_attribute("data-selected") == table.get_attribute("data-matching")
    wait_rows(table, "rows.every(r => r.selected === 'true')")

    table.locator(".opt-cancel").click()
    confirm_bar = table.locator(".opt-confirm-bar")
    expect(confirm_bar).to_be_visible()
    count_text = f"{len(batches):,}"  # the front-end formats counts en-US: 3,012
    expect(confirm_bar.locator(".opt-confirm-text")).to_contain_text(f"Cancel {count_text} selected")
    expect(confirm_bar.locator(".opt-confirm-text")).to_contain_text(
        f"({others:,} selected cannot be cancelled by the service)")
    expect(table.locator(".opt-confirm")).to_have_text(f"Yes, cancel {count_text}")
    nb.screenshot("lab-table-confirm", element=table)

    table.locator(".opt-confirm").click()
    expect(confirm_bar).to_be_hidden()
    expect(table.locator(".opt-message")).to_have_text(
        re.compile(rf"^Cancel sent for {re.escape(count_text)} operations\. {others:,} selected the service "
                   r"cannot cancel were left alone\.$"), timeout=60_000)
    expect(table).to_have_attribute("data-busy", "false")

    # On the server: exactly the selected running operations are cancelled, nothing else changed.
    after = server_states(table_emu, all_names)
    changed = {n for n in all_names if after[n] != before[n]}
    assert changed == batches, (
        f"{len(changed - batches)} changed that were not running batches, {len(batches - changed)} not cancelled")
    assert all(after[n] == "cancelled" for n in changed)

    # The filter is applied again: the cancelled batches left "running" at once, the count with them.
    expect(table).to_have_attribute("data-matching", str(others), timeout=30_000)
    wait_rows(table, f"rows.length === {PAGE_SIZE} && rows.every(r => r.kind !== 'batch' && r.state === 'running')")
    # What was cancelled leaves the selection; what the service cannot cancel stays selected.
    expect(table).to_have_attribute("data-selected", str(others))
    nb.screenshot("lab-table-after", element=table)

    # Another filter: the message about the last action goes; the rows on screen are tracked live,
    # so the cancelled batches there show as cancelled once their poll confirms it.
    table.locator("input.opt-state[value=running]").uncheck()
    expect(table.locator(".opt-message")).to_be_hidden(timeout=10_000)
    expect(table).to_have_attribute("data-matching", str(COUNT), timeout=10_000)
    wait_rows(table, "rows.some(r => r.kind === 'batch') && rows.every(r => r.kind !== 'batch' || "
                     "!['running', 'cancelling'].includes(r.state))")


# -- 100,000 rows: round trip times and the memory of re-runs (recorded, not asserted) -----------

BIG = 100_000
TIMINGS = "table-100k-timings.txt"
# The pause in typing a search waits for, as the front-end sets it (one number, read from there).
_JS = Path(__file__).resolve().parents[2] / "js" / "widgets.js"
SEARCH_PAUSE_MS = int(re.search(r"const SEARCH_PAUSE_MS = (\d+);", _JS.read_text())[1])  # type: ignore[index]

# Clicks (or types) in the page and resolves with the milliseconds until the table shows rows
# from the kernel that differ from those before (its matching count or first page of names):
# what a person waits for. Rejects if the rows never change.
_ROUND_TRIP_JS = """async (root, [action, arg, timeoutMs]) => {
    const shown = () => root.dataset.matching + '|' +
        Array.from(root.querySelectorAll('tr.opt-row')).map(r => r.dataset.name).join(',');
    const before = shown();
    return await new Promise((resolve, reject) => {
        let t0 = 0;
        const timer = setTimeout(() => {
            observer.disconnect();
            reject(new Error('no new rows: ' + action + ' ' + arg));
        }, timeoutMs);
        const observer = new MutationObserver(() => {
            if (root.querySelector('tr.opt-row') && shown() !== before) {
                observer.disconnect(); clearTimeout(timer); resolve(performance.now() - t0);
            }
        });
        observer.observe(root, {subtree: true, childList: true, attributes: true});
        t0 = performance.now();
        if (action === 'click') root.querySelector(arg).click();
        else {
            const box = root.querySelector('input.opt-search');
            box.value = arg;
            box.dispatchEvent(new Event('input', {bubbles: true}));
        }
    });
}"""

# Runs one cell (as Shift+Enter does, without moving on) and resolves with the milliseconds until
# a new table in its output shows its rows: the cell's own run, the comm, the first render.
_OPEN_JS = """async ([index, total, timeoutMs]) => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    const cell = panel.content.widgets[index].node;
    cell.querySelectorAll('.opt').forEach(t => t.dataset.stale = 'true');
    const ready = () => Array.from(cell.querySelectorAll('.opt')).some(t =>
        t.dataset.stale !== 'true' && t.dataset.total === String(total) && t.querySelector('tr.opt-row'));
    return await new Promise((resolve, reject) => {
        let t0 = 0;
        const timer = setTimeout(() => {
            observer.disconnect();
            reject(new Error('the table never showed'));
        }, timeoutMs);
        const observer = new MutationObserver(() => {
            if (ready()) { observer.disconnect(); clearTimeout(timer); resolve(performance.now() - t0); }
        });
        observer.observe(cell, {subtree: true, childList: true, attributes: true});
        panel.content.activeCellIndex = index;
        t0 = performance.now();
        app.commands.execute('notebook:run-cell');
    });
}"""

_PROBE = (
    "import gc, json, ipywidgets\n"
    "from ops_widgets import OperationsTable\n"
    "gc.collect()\n"
    "rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024\n"
    "print(json.dumps({'rss_mb': rss, 'open_tables': sum(isinstance(w, OperationsTable)\n"
    "                  for w in ipywidgets.widgets.widget._instances.values())}))"
)


@pytest.fixture(scope="module")
def seeded_big(emu: Emulator) -> Iterator[Seeded]:
    """BIG operations, the clock frozen (as `seeded`)."""
    from ops_widgets.emulator import Emulator

    frozen = time.time()
    with Emulator.start(random_seed=12, api_key=emu.api_key, clock=lambda: frozen) as e:
        yield Seeded(e, e.seed(BIG, kinds=("video", "tuning", "batch")))


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def test_table_of_100k_round_trips_and_reruns(lab_page: NotebookPage, seeded_big: Seeded) -> None:
    """Issue 14, acceptance 4, measured: open, filter, sort (every column) and search round trips
    on 100,000 rows, and the kernel's and the page's memory after ten re-runs of the table cell.
    Figures go to test-artifacts/browser/table-100k-timings.txt and stdout; none is asserted (no
    timing assertions). What is asserted: the rows shown are right, and ten re-runs leave one
    table open in the kernel."""
    nb = lab_page
    cells = [
        "import os\nfrom ops_widgets import Operations, OperationsTable\n"
        f'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url={seeded_big.emu.base_url!r})\n'
        "df = ops.list_dataframe(page_size=1000, progress=False)",
        "table = OperationsTable(df, ops)\ntable",
        _PROBE,
    ]
    nb.open(nb.server.write_notebook("table100k.ipynb", cells))
    nb.run_all()
    nb.wait_all_ran(timeout=600)
    page = nb.page
    cdp = page.context.new_cdp_session(page)

    def probe() -> dict[str, int]:
        page.evaluate("() => { const app = window.jupyterapp; app.shell.currentWidget.content.activeCellIndex = 2;"
                      " app.commands.execute('notebook:run-cell'); }")
        nb.wait_all_ran(timeout=120)
        text = nb.cell(2).locator(".jp-OutputArea-output").last.inner_text()
        return dict(json.loads(text.strip().splitlines()[-1]))

    def heap_mb() -> float:
        cdp.send("HeapProfiler.collectGarbage")
        return float(cdp.send("Runtime.getHeapUsage")["usedSize"]) / 2**20

    first = probe()
    heap_first = heap_mb()
    opens: list[float] = []
    for _ in range(10):  # ten re-runs of the table cell
        opens.append(float(page.evaluate(_OPEN_JS, [1, BIG, 120_000])))
        nb.wait_all_ran(timeout=120)
    last = probe()
    heap_last = heap_mb()
    assert first["open_tables"] == 1 and last["open_tables"] == 1, (first, last)

    table = nb.cell(1).locator(".opt").first
    expect(table).to_have_attribute("data-live", "true", timeout=30_000)
    samples: dict[str, list[float]] = {}

    def trip(label: str, action: str, arg: str) -> None:
        samples.setdefault(label, []).append(float(table.evaluate(_ROUND_TRIP_JS, [action, arg, 30_000])))

    columns = ["id", "kind", "state", "progress", "create_time", "duration", "error_message"]
    searched = f"search (its {SEARCH_PAUSE_MS} ms typing pause included)"
    for _ in range(5):
        trip("filter", "click", "input.opt-state[value=running]")
        assert {r["state"] for r in rows(table)} == {"running"}
        trip("filter", "click", "input.opt-state[value=running]")
        for column in columns:
            trip(f"sort {column}", "click", f"th[data-column={column}] button")
        trip(searched, "search", "veo-3.0-fast")
        assert rows(table) and all("veo-3.0-fast" in r["name"] for r in rows(table))
        trip(searched, "search", "")
    sorts = [v for k, vs in samples.items() if k.startswith("sort ") for v in vs]
    typed = [v - SEARCH_PAUSE_MS for v in samples[searched]]
    nb.page.evaluate("() => document.activeElement.blur()")
    nb.screenshot("lab-table-100k", element=table)

    lines = [f"OperationsTable on {BIG:,} rows in JupyterLab, headless Chromium (ms; goal: open < 1000, "
             "round trips < 200 at p95; recorded, not asserted)",
             f"{'open (cell re-run to rows shown)':<44} p50 {statistics.median(opens):7.0f}  "
             f"p95 {_p95(opens):7.0f}  max {max(opens):7.0f}  n={len(opens)}"]
    for label, values in [*samples.items(), ("sort, every column", sorts), ("search, after the typing pause", typed)]:
        lines.append(f"{label:<44} p50 {statistics.median(values):7.0f}  p95 {_p95(values):7.0f}  "
                     f"max {max(values):7.0f}  n={len(values)}")
    lines.append(f"kernel RSS after one run {first['rss_mb']} MB, after ten re-runs {last['rss_mb']} MB "
                 f"(growth {last['rss_mb'] - first['rss_mb']} MB; goal within 5 MB)")
    lines.append(f"page JS heap after one run {heap_first:.1f} MB, after ten re-runs {heap_last:.1f} MB "
                 f"(growth {heap_last - heap_first:.1f} MB)")
    report = "\n".join(lines)
    nb.write_artifact(TIMINGS, report + "\n")
    print("\n" + report)
