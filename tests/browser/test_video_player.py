"""A finished Veo video plays inline in OperationWidget, in JupyterLab and headless Chromium.

The kernel downloads the emulator's clip through its client and sends the bytes as a binary
buffer; the page plays them from a blob: URL and saves them under a sensible name. The API key
shows up nowhere the page or the notebook can see: not in the DOM, not in any websocket frame,
not in the saved notebook (saved with its widget state, the harsher case).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect
from test_screen import AA, CONTRAST_JS, set_theme

import ops_widgets as ow

if TYPE_CHECKING:
    from conftest import NotebookPage

    from ops_widgets.emulator import Emulator

pytestmark = pytest.mark.browser

CLIP = (Path(ow.__file__).parent / "emulator" / "veo_sample.mp4").read_bytes()

# The widget's first video once it can play: the element's state, or null before.
_PLAYING_JS = """(root) => {
    const v = root.querySelector('.opw-video video');
    return v && v.readyState >= 1 ? {ready: v.readyState, src: v.src, width: v.videoWidth,
                                      height: v.videoHeight, duration: v.duration} : null;
}"""


def save_widget_state(settings: Path) -> None:
    """Turn on JupyterLab's "Save Widget State Automatically": the saved notebook then holds
    every widget's synced state, which must hold no key and no video either."""
    path = settings / "@jupyter-widgets" / "jupyterlab-manager" / "plugin.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"saveState": True}))


def test_a_finished_video_plays_inline_and_the_key_stays_in_the_kernel(lab_page: NotebookPage,
                                                                         emu: Emulator) -> None:
    nb = lab_page
    save_widget_state(nb.server.root.parent / "settings")
    frames: list[str | bytes] = []
    nb.page.on("websocket", lambda ws: (ws.on("framesent", lambda f: frames.append(f)),
                                        ws.on("framereceived", lambda f: frames.append(f))))
    name = emu.create("video", duration=600)
    broken = emu.create("video", duration=600)  # its download will fail
    op_id = name.rsplit("/", 1)[1]
    setup = (
        "import os\n"
        "from ops_widgets import Operations\n"
        'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
        f"ops.watch({name!r}, poll_interval=0.5)"
    )
    path = nb.server.write_notebook("video.ipynb", [setup, f"ops.watch({broken!r}, poll_interval=0.5)"])
    nb.open(path)
    nb.run_all()
    nb.wait_all_ran()
    widget, other = nb.widget(0), nb.widget(1)
    for w in (widget, other):
        expect(w).to_have_attribute("data-state", "running", timeout=30_000)
        expect(w).to_have_attribute("data-live", "true", timeout=30_000)
    expect(nb.page.locator(".opw-video")).to_have_count(0)  # nothing to play yet, nothing fetched

    # A download that fails is said as text in its widget; polling and the other widget go on.
    # Every try fails while this lasts: a view that asks again (JupyterLab re-renders an output
    # whose operation ends) tries the download again, as it should.
    emu.fail_next(10, status=404, path=":download")
    try:
        emu.complete(broken)
        failed = other.locator(".opw-video[data-state='error']")
        expect(failed).to_have_text(re.compile(r"^The video could not be fetched: 404 "), timeout=30_000)
    finally:
        emu.clear_faults()  # never left for another test
    expect(other).to_have_attribute("data-state", "succeeded")

    emu.complete(name)  # it finishes while on screen: the view asks then
    expect(widget).to_have_attribute("data-state", "succeeded", timeout=60_000)

    playing = nb.page.wait_for_function(_PLAYING_JS, arg=widget.element_handle(), timeout=30_000).json_value()
    assert playing["src"].startswith("blob:") and (playing["width"], playing["height"]) == (192, 108), playing
    assert 1.5 < playing["duration"] < 2.5, playing
    assert widget.locator(".opw-video").get_attribute("data-state") == "ready"
    save = widget.locator(".opw-video-save")
    expect(save).to_have_attribute("download", f"{op_id}-1.mp4")
    expect(widget.locator(".opw-video-label")).to_have_text("video 1 · 8 KB")
    with nb.page.expect_download() as download:
        save.click()
    assert download.value.suggested_filename == f"{op_id}-1.mp4"
    assert Path(download.value.path()).read_bytes() == CLIP

    # Both themes: look at it, and every text of it reads at 4.5:1 or more.
    for theme, suffix in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
        if suffix == "dark":
            set_theme(nb, theme)
        nb.page.evaluate("(root) => root.querySelector('video').pause()", widget.element_handle())
        measured = list(nb.page.evaluate(CONTRAST_JS, [nb.output(0).element_handle(), nb.output(1).element_handle()]))
        nb.write_artifact(f"video-contrast-{suffix}.json", json.dumps(measured, indent=1))
        for part in ("opw-video-label", "opw-video-save", "opw-video-error"):
            assert any(part in m["where"] for m in measured), part
        low = [m for m in measured if m["ratio"] < AA]
        assert not low, (suffix, low)
        nb.screenshot(f"lab-video-{suffix}", readme=f"video_{suffix}.png")
        nb.screenshot(f"lab-video-error-{suffix}", cell_index=1)
    set_theme(nb, "JupyterLab Light")

    # The key: nowhere in the page, nor in what went over the websocket; the clip did, as bytes.
    key = emu.api_key
    assert key not in nb.page.content()
    texts = [f for f in frames if isinstance(f, str)]
    binaries = [f for f in frames if isinstance(f, bytes)]
    assert texts and not [f for f in texts if key in f]
    assert not [f for f in binaries if key.encode() in f]
    assert any(CLIP in f for f in binaries), "the clip did not come as a binary frame"

    # Saved, with its widget state: still no key, and no video in it.
    nb.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    saved_path = nb.server.root / path
    nb._wait(lambda: "application/vnd.jupyter.widget-state+json" in saved_path.read_text(), 30,
             "the notebook was not saved with its widget state")
    saved = saved_path.read_text()
    nb.write_artifact("video-saved.ipynb", saved)
    assert key not in saved
    models = json.loads(saved)["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    ours: list[dict[str, Any]] = [m for m in models.values() if m["state"].get("name") == name]
    assert ours and ours[0]["state"]["video_count"] == 1 and ours[0]["state"]["state"] == "succeeded"
    assert not [m for m in models.values() if m.get("buffers")]  # no binary state at all
    assert base64.b64encode(CLIP[64:160]).decode() not in saved and "blob:http" not in saved
    assert os.path.getsize(saved_path) < 200_000


def test_notebook7_a_finished_video_plays_inline(notebook7_page: NotebookPage, emu: Emulator) -> None:
    """Notebook 7 too: the finished video plays from a blob: URL, and the key is not in the page."""
    name = emu.create("video", duration=600)
    nb = notebook7_page
    cell = ("import os\n"
            "from ops_widgets import Operations\n"
            'ops = Operations(api_key=os.environ["OPS_EMU_KEY"], base_url=os.environ["OPS_EMU_URL"])\n'
            f"ops.watch({name!r}, poll_interval=0.5)")
    nb.open(nb.server.write_notebook("nb7-video.ipynb", [cell]))
    nb.run_all()
    widget = nb.widget(0)
    expect(widget).to_have_attribute("data-state", "running", timeout=30_000)
    emu.complete(name)
    expect(widget).to_have_attribute("data-state", "succeeded", timeout=60_000)
    playing = nb.page.wait_for_function(_PLAYING_JS, arg=widget.element_handle(), timeout=30_000).json_value()
    assert playing["src"].startswith("blob:") and (playing["width"], playing["height"]) == (192, 108), playing
    expect(widget.locator(".opw-video-save")).to_have_attribute("download", f"{name.rsplit('/', 1)[1]}-1.mp4")
    assert emu.api_key not in nb.page.content()
    nb.screenshot("notebook7-video")
