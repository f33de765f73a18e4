"""The notebooks run top to bottom against the embedded emulator, and are committed clean."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
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
    assert "without encryption" not in proc.stderr  # the kernel's channels are encrypted (CurveZMQ)


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


@pytest.mark.timeout(150)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_demo_prints_one_line_that_opens_a_scratch_copy_of_the_notebook(stop: signal.Signals) -> None:
    """`ops-widgets demo` as a user on a machine with no browser sees it: one line, with the URL
    of the notebook itself (not the Launcher), served from a scratch copy (the clone's file is
    never opened), JupyterLab's news toast turned off; Ctrl-C or kill stop it and its server."""
    clone_file = Path(__file__).parent.parent / "notebooks" / "quickstart.ipynb"
    before = hashlib.sha256(clone_file.read_bytes()).hexdigest()
    env = {**os.environ, "BROWSER": "true"}  # a browser that opens nothing
    proc = subprocess.Popen([sys.executable, "-m", "ops_widgets", "demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"ops-widgets demo: open (http://127\.0\.0\.1:\d+/lab/tree/quickstart\.ipynb\?token=\S+)"
                             r"  \(a scratch copy in (\S+); Ctrl-C stops\)\n", line)
        assert match, line
        url, scratch = match.groups()
        assert Path(scratch, "quickstart.ipynb").is_file() and Path(scratch) != clone_file.parent
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "@jupyterlab/apputils-extension:announcements" in page.text
        config = re.search(r'"disabledExtensions": (\[[^]]*\])', page.text)
        assert config and "@jupyterlab/apputils-extension:announcements" in json.loads(config.group(1))
        server = json.loads(next(Path(scratch, "runtime").glob("jpserver-*.json")).read_text())["pid"]
        os.killpg(proc.pid, stop)  # Ctrl-C at the terminal, or kill
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == "" and err == ""  # nothing but that one line
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)  # the server is gone too
    assert "without encryption" not in Path(scratch, "jupyterlab.log").read_text()
    assert hashlib.sha256(clone_file.read_bytes()).hexdigest() == before
