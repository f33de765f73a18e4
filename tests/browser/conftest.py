"""Fixtures for the end-to-end browser tests: an emulator, Jupyter servers, headless Chromium.

Run them on their own (Playwright's sync API keeps an event loop running in the test thread):
    python -m pytest -m browser tests/browser
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:  # imported lazily below so that `pytest -m 'not browser'` never needs Playwright
    from playwright.sync_api import Browser, Locator, Page

    from ops_widgets.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
# Pictures the README and notebooks show; rewritten only when OPS_WIDGETS_UPDATE_SCREENSHOT=1.
README_IMAGES = REPO / "notebooks" / "images"
CHROMIUM = os.environ.get("OPS_WIDGETS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ServerKind = Literal["lab", "notebook"]

# Tracebacks shown in cell outputs (stderr text that is an exception, not a mere warning).
_TRACEBACKS_JS = """() => Array.from(document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
    .map(o => o.textContent || '').filter(t => t.includes('Traceback (most recent call last)'))"""

# Every code cell shows "[n]:" once it ran; "[*]:" while it runs or waits, "[ ]:" before.
_PROMPTS_JS = """() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
                          .map(p => (p.textContent || '').trim())"""


# --- pytest plumbing ------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    # Keep each phase's report on the item so the page fixture can screenshot a failed test.
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    # Only this run's screenshots and logs: a stale FAILED picture would mislead.
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


# --- the emulator ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    """One emulator in the test process at real-time speed; notebooks reach it over loopback."""
    from ops_widgets.emulator import Emulator

    with Emulator.start(random_seed=3) as e:
        yield e


# --- Jupyter servers ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc. Kernels run in sessions of their own, so killing
    the server's process group misses them; this finds them by parentage instead."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # the command name may contain spaces
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class JupyterServer:
    """A JupyterLab or Notebook 7 server of our own, with its REST API and notebook files."""

    kind: ServerKind
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    _kernel_ids_seen: set[str] = field(default_factory=set)

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict[str, Any]]:
        return list(self.api("kernels"))

    def kernel_id(self, path: str) -> str:
        """The id of the kernel behind the notebook at `path` (its session's)."""
        ids = [s["kernel"]["id"] for s in self.api("sessions") if s["path"] == path]
        if not ids:
            raise AssertionError(f"no session for {path}")
        return str(ids[0])

    def shutdown_kernel(self, kernel_id: str) -> None:
        """Stop one kernel as another client would (DELETE /api/kernels/{id}); the page is not told first."""
        self.api(f"kernels/{kernel_id}", method="DELETE")

    def shutdown_kernels(self) -> None:
        """Stop every kernel, so a sleeping or polling kernel never outlives its scenario."""
        for kernel in self.kernels():
            try:
                self.api(f"kernels/{kernel['id']}", method="DELETE")
            except urllib.error.HTTPError:
                pass  # already gone

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """A notebook of code cells with no outputs; returns its path relative to the root."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nbformat.write(nb, str(self.root / name))
        return name

    def page_url(self, path: str) -> str:
        # ?reset drops any restored layout, so only this notebook opens.
        route = "lab/tree" if self.kind == "lab" else "notebooks"
        return f"{self.url}/{route}/{path}?reset&token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            self.shutdown_kernels()
        except (OSError, urllib.error.URLError):
            pass
        below = _descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        for pid in below:  # anything the server started and left behind, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _write_settings(settings_dir: Path) -> None:
    def put(plugin: str, values: dict[str, Any]) -> None:
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    # Without windowing every cell renders, off-screen ones included, so locators find them.
    put("@jupyterlab/notebook-extension/tracker", {"windowingMode": "none"})
    # No "fetch news?" toast over the cells.
    put("@jupyterlab/apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})


def _start_server(kind: ServerKind, emu: Emulator, tmp: Path) -> JupyterServer:
    root, settings, workspaces, runtime = (tmp / d for d in ("root", "settings", "workspaces", "runtime"))
    for d in (root, settings, workspaces, runtime):
        d.mkdir(parents=True, exist_ok=True)
    _write_settings(settings)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "ANYWIDGET_HMR")}
    env.update(
        OPS_EMU_URL=emu.base_url, OPS_EMU_KEY=emu.api_key,  # kernels inherit these
        JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
        JUPYTER_RUNTIME_DIR=str(runtime), PYTHONUNBUFFERED="1",
    )
    app = "LabApp" if kind == "lab" else "JupyterNotebookApp"
    log_path = _artifact(f"jupyter-{kind}.log")
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probing and binding
        port, token = _free_port(), secrets.token_hex(16)
        cmd = [
            sys.executable, "-m", "jupyterlab" if kind == "lab" else "notebook",
            "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--{app}.user_settings_dir={settings}", f"--{app}.workspaces_dir={workspaces}",
        ]
        if kind == "lab":
            cmd += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        log = log_path.open("ab")
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        server = JupyterServer(kind, f"http://127.0.0.1:{port}", token, root, proc, log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                server.api("status")
                return server
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)  # polling for the server to listen
        last_error = server.log_tail()
        server.stop()
    raise RuntimeError(f"{kind} server did not start; last log lines:\n{last_error}")


@pytest.fixture(scope="module")
def lab(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = _start_server("lab", emu, tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notebook7(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = _start_server("notebook", emu, tmp_path_factory.mktemp("nb7"))
    yield server
    server.stop()


# --- the browser ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (bash tests/run.sh does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context per test; console errors and, on failure, a full-page screenshot
    land in test-artifacts/browser/."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=2)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    yield pg
    name = request.node.name.replace("/", "_")
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed:
        try:
            pg.screenshot(path=str(_artifact(f"{name}-FAILED-page.png")), full_page=True)
        except Exception as exc:  # a crashed page must not hide the test's own failure
            console.append(f"[harness] failure screenshot not taken: {exc}")
    _artifact(f"{name}-console.log").write_text("\n".join(console) + "\n")
    context.close()


class NotebookPage:
    """One notebook opened in a server's UI, with the waits the scenarios share."""

    def __init__(self, page: Page, server: JupyterServer) -> None:
        self.page, self.server = page, server

    def open(self, path: str) -> None:
        from playwright.sync_api import expect

        self.page.goto(self.server.page_url(path))
        expect(self.page.locator(".jp-Notebook .jp-CodeCell").first).to_be_attached(timeout=60_000)
        # Run only once the kernel is connected and idle, or "run all" may find no kernel.
        self._wait(lambda: any(s["path"] == path and s["kernel"]["execution_state"] == "idle"
                               for s in self.server.api("sessions")), 60, "the kernel never became idle")
        if self.server.kind == "lab":
            self.page.wait_for_function(
                "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=60_000)
        else:
            expect(self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first
                   ).to_be_attached(timeout=60_000)

    def run_all(self) -> None:
        if self.server.kind == "lab":
            # Not returning the promise: Playwright would otherwise wait for every cell to finish.
            self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        else:  # Notebook 7 exposes no jupyterapp: go through the menu bar as a user does
            self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            self.page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    def prompts(self) -> list[str]:
        return list(self.page.evaluate(_PROMPTS_JS))

    def wait_cell_running(self, index: int, timeout: float = 30) -> None:
        self._wait(lambda: self.prompts()[index] == "[*]:", timeout, f"cell {index} never showed [*]")

    def wait_all_ran(self, timeout: float = 60) -> None:
        """Until every code cell shows "[n]:" and the server says the kernels are idle: the
        page and /api/kernels can briefly disagree, so both are checked together."""
        import re

        def done() -> bool:
            prompts = self.prompts()
            return (bool(prompts) and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
                    and all(k["execution_state"] == "idle" for k in self.server.kernels()))

        self._wait(done, timeout, "cells still running or kernel busy")

    def cell(self, index: int) -> Locator:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def widget(self, cell_index: int = 0) -> Locator:
        return self.cell(cell_index).locator(".opw").first

    def output(self, cell_index: int = 0) -> Locator:
        return self.cell(cell_index).locator(".jp-OutputArea").first

    def screenshot(self, name: str, cell_index: int = 0, readme: str | None = None,
                   element: Locator | None = None) -> Path:
        """An element screenshot (the cell's output unless `element` is given), saved as a test
        artifact and, when `readme` names a file and OPS_WIDGETS_UPDATE_SCREENSHOT=1, as that
        picture in notebooks/images/."""
        target = element if element is not None else self.output(cell_index)
        target.scroll_into_view_if_needed()
        path = _artifact(f"{name}.png")
        target.screenshot(path=str(path), animations="disabled")
        if readme and os.environ.get("OPS_WIDGETS_UPDATE_SCREENSHOT") == "1":
            README_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, README_IMAGES / readme)
        return path

    def write_artifact(self, name: str, text: str) -> Path:
        path = _artifact(name)
        path.write_text(text)
        return path

    def raise_on_cell_error(self) -> None:
        """Fail at once, with the traceback, when a cell raised: no point waiting for a widget then."""
        tracebacks = self.page.evaluate(_TRACEBACKS_JS)
        if tracebacks:
            raise AssertionError("a cell raised:\n" + tracebacks[0][-3000:])

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.raise_on_cell_error()
            try:
                if condition():
                    return
            except (OSError, urllib.error.URLError, IndexError, KeyError):
                pass  # not there yet (no session, fewer cells rendered): poll again
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout:.0f} s; prompts {self._safe_prompts()}")
            self.page.wait_for_timeout(250)  # polling interval; keeps Playwright's loop serviced

    def _safe_prompts(self) -> list[str]:
        try:
            return self.prompts()
        except Exception:
            return []


@pytest.fixture()
def lab_page(page: Page, lab: JupyterServer) -> Iterator[NotebookPage]:
    yield NotebookPage(page, lab)
    lab.shutdown_kernels()


@pytest.fixture()
def notebook7_page(page: Page, notebook7: JupyterServer) -> Iterator[NotebookPage]:
    yield NotebookPage(page, notebook7)
    notebook7.shutdown_kernels()
