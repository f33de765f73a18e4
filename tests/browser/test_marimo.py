"""watch_all in marimo: OperationsList is a plain anywidget (no ipywidgets container, which marimo
does not render), so the same list shows, updates and cancels there. `marimo run` on a free port,
headless Chromium, the emulator."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

APP = '''import marimo

app = marimo.App()


@app.cell
def _():
    import os

    import marimo as mo

    from ops_widgets import Operations

    ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])
    listed = mo.ui.anywidget(ops.watch_all(os.environ["OPS_NAMES"].split(","), poll_interval=0.5))
    listed
    return


if __name__ == "__main__":
    app.run()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def marimo_app(emu: Emulator, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    pytest.importorskip("marimo")
    names = [emu.create("batch", duration=900), emu.create("tuning", duration=0.5)]
    app = tmp_path / "listed.py"
    app.write_text(APP)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(OPS_EMU_URL=emu.base_url, OPS_EMU_KEY=emu.api_key, OPS_NAMES=",".join(names))
    log = (tmp_path / "marimo.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marimo", "run", str(app), "--headless", "--no-token", "--host", "127.0.0.1",
         "--port", str(port), "--no-sandbox", "--no-check"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            break
        except (OSError, urllib.error.URLError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("marimo did not start:\n" + (tmp_path / "marimo.log").read_text()[-3000:]) from None
            time.sleep(0.2)  # polling for the server to listen
    try:
        yield url, names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_watch_all_in_marimo(page: Page, marimo_app: tuple[str, list[str]], emu: Emulator) -> None:
    url, (batch, tuned) = marimo_app
    page.goto(url)
    box = page.locator(".opl")  # inside marimo's shadow root: Playwright's CSS pierces it
    expect(box).to_have_count(1, timeout=60_000)
    expect(box.locator(".opl-row")).to_have_count(2)
    expect(box.locator(".opl-summary")).to_have_text(re.compile(r"^1/2 done · ETA "), timeout=30_000)
    expect(box).to_have_attribute("data-live", "true", timeout=30_000)  # its ping was answered
    progress = box.locator(f".opl-row[data-op-id='{batch.rsplit('/', 1)[1]}'] .opl-pct")
    first = progress.text_content()
    expect(progress).not_to_have_text(first or "", timeout=30_000)  # live updates from the engine thread
    box.locator(".opl-cancel-all").click()
    box.locator(".opl-confirm .opw-confirm-yes").click()
    expect(box.locator(".opl-summary")).to_have_text("2/2 done · 1 cancelled", timeout=30_000)
    op = emu.get_operation(batch)
    assert op is not None and op["error"]["code"] == 1, op
    box.screenshot(path=str(Path(__file__).resolve().parents[2] / "test-artifacts" / "browser" / "marimo-list.png"))
