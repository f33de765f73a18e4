"""OperationsTable end to end: 10,000 emulated operations in JupyterLab, filtered, selected and
cancelled in bulk from the browser, checked on the emulator.

The emulator's clock is frozen after seeding: no operation ends on its own during the test, so
"exactly the running ones were cancelled" can be checked exactly, while a cancel still ends an
operation (at that frozen instant) as on a real server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
