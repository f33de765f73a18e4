"""The notebooks run top to bottom against the embedded emulator, and are committed clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_or_widget_state(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.timeout(300)
def test_demo_command_executes_the_quickstart() -> None:
    """What `python -m ops_widgets demo --execute` does for a new user: run it all, exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "ops_widgets", "demo", "--execute"],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "all " in out and "code cells ran" in out
    assert "tuned model: tunedModels/" in out  # waited to the end, with progress lines before it
    assert "100.0%" in out
    assert "-> cancelled" in out and "deleted: 404" in out


@pytest.mark.timeout(300)
def test_explore_notebook_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ops_widgets", "demo", "--execute", "--notebook", "explore.ipynb"],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "OperationsTable 3,000 operations" in out and "code cells ran" in out
    assert "internal error" in out.lower() and "Empty DataFrame" not in out
