"""A saved or converted notebook still shows where each operation ended: the quickstart executed
in a kernel (nbclient, as `jupyter nbconvert --execute` runs it) and exported to HTML shows each
widget's last state as text, escapes server text, holds no key, and stays small."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "notebooks" / "quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Server text with markup in it, built so that the cell's own source never holds it whole.
HOSTILE = '<scr" + "ipt>alert(1)</scr" + "ipt><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, list[list[str]]]:
    nb = nbformat.read(QUICKSTART, as_version=4)
    assert "ops.close()" in "".join(nb.cells[-1].source)
    # Before the last cell: a failed batch whose error message is markup (the XSS fixture).
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(
        f'bad = emu.create("batch", duration=1, outcome="failure", error_message="{HOSTILE}")\n'
        "ops.wait(bad, timeout=60)\nops.watch(bad)"))
    # After it: what the kernel's widgets say at the end (the client is closed: nothing changes).
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, ipywidgets\nfrom ops_widgets.widgets import OperationsList, OperationWidget\n"
        "live = list(ipywidgets.widgets.widget._instances.values())\n"
        "print(json.dumps([[w.name, w.operation.state.value] for w in live if isinstance(w, OperationWidget)]"
        " + [[h.name, h.operation.state.value] for w in live if isinstance(w, OperationsList) for h in w.handles]))"))
    # Widget state is not stored (JupyterLab's default when saving): outputs speak for themselves.
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(tmp_path_factory.mktemp("run"))}})
    client.execute()
    final = json.loads(nb.cells[-1].outputs[0]["text"])
    nb.cells.pop()  # the check cell is the test's, not the notebook's
    return nb, final


def widget_outputs(nb: nbformat.NotebookNode) -> list[dict[str, str]]:
    return [o["data"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if WIDGET_VIEW in o.get("data", {})]


def without_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    plain = copy.deepcopy(nb)
    for cell in plain.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
    return plain


@pytest.mark.timeout(200)
def test_converted_html_shows_where_each_widget_ended(
        executed: tuple[nbformat.NotebookNode, list[list[str]]]) -> None:
    nb, final = executed
    outputs = widget_outputs(nb)
    assert len(outputs) >= 4 and len(final) >= 8  # single widgets, and watch_all's rows
    assert all("text/html" in d and "text/plain" in d for d in outputs)
    html, _ = HTMLExporter().from_notebook_node(nb)
    # Each widget's last state, as text: "name  state" begins its line in a snapshot.
    for name, state in final:
        assert f"{name}  {state}" in html, (name, state)
    states = {state for _, state in final}
    assert {"succeeded", "cancelled", "failed"} <= states
    # Server text is escaped: the markup is there as text, never as a tag.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    # No key anywhere: not in the outputs, the file, nor the page.
    assert "emulator-key" not in html and "emulator-key" not in nbformat.writes(nb)
    # Small: the snapshots weigh little next to the rest of the page (with no JS or CSS of ours).
    plain, _ = HTMLExporter().from_notebook_node(without_widgets(nb))
    assets = sum(len((ROOT / "js" / f).read_text()) for f in ("widgets.js", "widgets.css"))
    assert len(html) <= 1.5 * len(plain) + assets, (len(html), len(plain))
    assert "opw-render" not in html and "export default" not in html  # the widgets' JS is not in it
