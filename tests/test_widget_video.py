"""OperationWidget plays a finished video: when a view asks, the kernel downloads it through
the client (once, however many views ask) and sends the bytes as a binary buffer of a custom
message, never in the synced state; what goes wrong is sent as text and polling goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_widget import ALLOWED, Sent, Sim, recorded_comm, sim  # noqa: F401  (the fixtures are reused)

import ops_widgets as ow
from ops_widgets.widgets import _operation

CLIP = (Path(ow.__file__).parent / "emulator" / "veo_sample.mp4").read_bytes()


def videos(sent: list[Sent]) -> list[Sent]:
    return [m for m in sent if m.kind == "comm_msg" and m.data.get("method") == "custom"
            and m.data["content"].get("type") == "video_file"]


def downloads(sim: Sim) -> list[str]:
    return [path for _, _, path, _ in sim.rec.log if path.endswith(":download")]


def test_a_finished_video_is_sent_as_a_buffer_once_per_video(sim: Sim) -> None:
    name = sim.emu.create("video", duration=60)
    w = sim.ops.watch(name)
    sim.advance(1)
    assert downloads(sim) == [] and videos(w.comm.sent) == []  # nothing is fetched before it is asked for
    sim.emu.complete(name)
    sim.advance(400)  # polled to the end
    assert w.state == "succeeded" and w.video_count == 1 and downloads(sim) == []  # only a view asks
    for _ in range(2):  # two views of the widget
        w.comm.from_front({"type": "video_request", "index": 0})
        sim.clock.settle()
    sent = videos(w.comm.sent)
    op_id = name.rsplit("/", 1)[1]
    assert [m.data["content"] for m in sent] == [
        {"type": "video_file", "index": 0, "count": 1, "mime": "video/mp4", "filename": f"{op_id}-1.mp4",
         "size": len(CLIP)}] * 2
    assert [m.buffers for m in sent] == [(CLIP,)] * 2
    assert len(downloads(sim)) == 1  # one download, shared
    state = w.get_state()
    assert set(state) == ALLOWED  # a count, not the bytes: they are never saved with the notebook
    texts = json.dumps(state, default=str) + json.dumps([m.data for m in w.comm.sent], default=str)
    assert sim.emu.api_key not in texts and "ftyp" not in texts
    w.close()


def test_a_video_too_big_for_the_page_says_so(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_operation, "INLINE_VIDEO_MAX", 1000)
    name = sim.emu.create("video", duration=60)
    sim.emu.complete(name)
    w = sim.ops.watch(name)
    w.comm.from_front({"type": "video_request", "index": 0})
    sim.clock.settle()
    (sent,) = videos(w.comm.sent)
    assert sent.buffers == () and "too big to play here" in sent.data["content"]["error"]
    assert "ops.download_video(name, max_bytes=...)" in sent.data["content"]["error"]
    w.close()


def test_a_failed_download_is_text_on_the_page_and_polling_goes_on(sim: Sim) -> None:
    name = sim.emu.create("video", duration=120)
    w = sim.ops.watch(name)
    sim.advance(1)
    w.comm.from_front({"type": "video_request", "index": 0})  # asked too early (an old page, say)
    sim.clock.settle()
    (sent,) = videos(w.comm.sent)
    assert sent.data["content"]["count"] == 0 and "still running" in sent.data["content"]["error"]
    sim.emu.complete(name)
    sim.advance(400)
    assert w.state == "succeeded"  # the poller did not notice
    w.comm.from_front({"type": "video_request", "index": 0})  # asked again: fetched this time
    sim.clock.settle()
    assert videos(w.comm.sent)[-1].buffers == (CLIP,)
    w.close()


def test_a_request_that_is_not_ours_is_ignored(sim: Sim) -> None:
    name = sim.emu.create("video", duration=60)
    sim.emu.complete(name)
    w = sim.ops.watch(name)
    for index in (None, "0", -1, True, 1.0, 10**9):
        w.comm.from_front({"type": "video_request", "index": index})
    sim.clock.settle()
    assert videos(w.comm.sent) == [] and downloads(sim) == []
    w.comm.from_front({"type": "video_request", "index": 3})  # a video it does not have: said as text
    sim.clock.settle()
    assert "there is no video 3" in videos(w.comm.sent)[0].data["content"]["error"]
    w.close()
