"""Videos of done Veo operations: the emulator serves a real clip, download_video() fetches it
through the client (the key in its header only, never to another host, never in a URL) with a
size cap, and says in words why there is no video when there is none."""

from __future__ import annotations

import base64
import http.server
import logging
import struct
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import ops_widgets as ow
from ops_widgets.emulator import Emulator

KEY = "AIzaSy-VIDEO-SECRET-0123456789-abc"
CLIP = Path(ow.__file__).parent / "emulator" / "veo_sample.mp4"
BASE = "https://generativelanguage.googleapis.com"


def boxes(data: bytes) -> dict[bytes, bytes]:
    """An MP4's top-level boxes by type (ISO BMFF: 4-byte size, 4-byte type, payload)."""
    out, at = {}, 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        assert size >= 8 and at + size <= len(data), "a box runs past the end: not an MP4"
        out[kind] = data[at + 8:at + size]
        at += size
    return out


class Recording(httpx.AsyncBaseTransport):
    """Sees every request (URL and key header) on its way to ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((str(request.url), request.headers.get("x-goog-api-key")))
        return await self.inner.handle_async_request(request)


def on_emulator(body: Callable[[Emulator, ow.AsyncOperations, Recording], Awaitable[None]]) -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, api_key=KEY)
    app: Any = emu.app
    recording = Recording(httpx.ASGITransport(app=app))

    async def main() -> None:
        async with emu.aclient(transport=recording) as ops:
            await body(emu, ops, recording)

    clock.run(main())


def test_the_shipped_clip_is_a_small_real_mp4_that_browsers_play() -> None:
    data = CLIP.read_bytes()
    found = boxes(data)
    assert found[b"ftyp"][:4] == b"isom" and b"mdat" in found and len(data) < 20_000
    assert b"vp09" in found[b"moov"]  # VP9: every Chromium plays it (Debian's has no H.264)
    assert list(found).index(b"moov") < list(found).index(b"mdat")  # faststart: plays before it is whole


def test_the_emulator_serves_the_clip_at_the_uri_of_a_finished_veo_operation() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, rec: Recording) -> None:
        name = emu.create("video", duration=60)
        emu.complete(name)
        (uri,) = (await ops.get(name)).video_uris
        async with httpx.AsyncClient(transport=rec.inner) as http:
            served = await http.get(uri, headers={"x-goog-api-key": KEY})
            refused = await http.get(uri)
        assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
        assert served.content == CLIP.read_bytes()
        assert refused.status_code == 403  # the download needs the key as the API does

    on_emulator(body)


def test_download_video_sends_the_key_in_the_header_only() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, rec: Recording) -> None:
        name = emu.create("video", duration=60)
        emu.complete(name)
        data = await ops.download_video(name)
        done = await ops.get(name)
        assert await ops.download_video(done) == data  # an Operation in hand costs no GET
        assert data == CLIP.read_bytes()
        downloads = [(url, key) for url, key in rec.sent if ":download" in url]
        assert len(downloads) == 2 and all(key == KEY for _, key in rec.sent)
        assert all(KEY not in url and "key=" not in url for url, _ in rec.sent)

    on_emulator(body)


def test_a_handle_and_the_blocking_client_download_the_same_video() -> None:
    with Emulator.start(api_key=KEY) as emu:
        ops = emu.client()
        name = emu.create("video", duration=60)
        emu.complete(name)
        job = ops.track(name)
        assert job.operation.succeeded
        assert job.download_video() == ops.download_video(name) == CLIP.read_bytes()
        with pytest.raises(ow.UnsupportedError, match="there is no video 1"):
            job.download_video(1)
        ops.close()


@pytest.mark.parametrize(("make", "message"), [
    (lambda emu: emu.create("video", duration=3600), "still running; wait for it"),
    (lambda emu: emu.create("video", duration=1, outcome="failure"), "failed .13 Video generation failed"),
    (lambda emu: emu.create("video", duration=1, outcome="filtered"), "the safety checks withheld it"),
    (lambda emu: emu.create("tuning", duration=1), "its response holds no video"),
])
def test_no_video_says_why_and_downloads_nothing(make: Callable[[Emulator], str], message: str) -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, rec: Recording) -> None:
        name = make(emu)
        if "running" not in message:
            emu.complete(name)
        with pytest.raises(ow.UnsupportedError, match=message):
            await ops.download_video(name)
        assert [url for url, _ in rec.sent if ":download" in url] == []

    on_emulator(body)


def veo(uri: str) -> ow.Operation:
    return ow.Operation.from_api_response({
        "name": "models/veo-3.0-generate-001/operations/abc123", "done": True,
        "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}})


def scripted(routes: dict[str, httpx.Response], rec: list[tuple[str, str | None]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        rec.append((str(request.url), request.headers.get("x-goog-api-key")))
        return routes[str(request.url)]

    return httpx.MockTransport(handle)


async def download(routes: dict[str, httpx.Response], op: ow.Operation, **kw: Any) -> tuple[
        bytes | BaseException, list[tuple[str, str | None]]]:
    sent: list[tuple[str, str | None]] = []
    async with ow.AsyncOperations(KEY, transport=scripted(routes, sent), max_retries=0, history=False) as ops:
        try:
            return await ops.download_video(op, **kw), sent
        except ow.OpsError as exc:
            return exc, sent


FILE = f"{BASE}/v1beta/files/abc:download?alt=media"
SIGNED = "https://storage.example.com/videos/abc.mp4?X-Goog-Signature=deadbeef"


async def test_a_redirect_to_another_host_is_followed_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: ours, httpx's and httpcore's records
    routes = {FILE: httpx.Response(302, headers={"location": SIGNED}), SIGNED: httpx.Response(200, content=b"clip")}
    data, sent = await download(routes, veo(FILE))
    assert data == b"clip" and sent == [(FILE, KEY), (SIGNED, None)]
    # The signed URL's query is a credential: no log line has it, httpx's own included.
    lines = [r.getMessage() for r in caplog.records]
    assert any("storage.example.com/videos/abc.mp4" in line for line in lines)
    assert not [line for line in lines if "deadbeef" in line]


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """A service on loopback whose every answer is a redirect to a signed URL."""

    location = ""

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        self.send_response(302)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass


@pytest.mark.parametrize("path", ["videos/abc.mp4", "videos/it's \"abc\".mp4", "videos/it's.mp4"])
async def test_httpcore_debug_lines_show_no_signed_query_of_a_redirect(
        path: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore logs every answer's headers at DEBUG, the keyed hop's Location (a signed URL) too:
    over a real connection, none of its lines has the query, whichever quotes its repr uses."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(_Redirecting, "location", f"http://storage.example.com/{path}?X-Goog-Signature=deadbeef")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        async with ow.AsyncOperations(KEY, base_url=base, max_retries=0, history=False) as ops:
            with pytest.raises(ow.TransportError, match="not https"):
                await ops.download_video(veo(f"{base}/v1beta/files/abc:download?alt=media"))
    finally:
        server.shutdown()
        server.server_close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("httpcore") and "storage.example.com/videos/" in r.getMessage()
               for r in caplog.records)  # the line is there, without its query
    assert not [line for line in lines if "deadbeef" in line]


async def test_a_redirect_on_the_service_keeps_the_key_and_one_to_plain_http_is_refused() -> None:
    moved = f"{BASE}/download/v1beta/files/abc:download?alt=media"
    routes = {FILE: httpx.Response(307, headers={"location": "/download/v1beta/files/abc:download?alt=media"}),
              moved: httpx.Response(200, content=b"clip")}
    data, sent = await download(routes, veo(FILE))
    assert data == b"clip" and sent == [(FILE, KEY), (moved, KEY)]
    insecure = "http://storage.example.com/abc.mp4?sig=s3cr3t"
    error, sent = await download({FILE: httpx.Response(302, headers={"location": insecure})}, veo(FILE))
    assert isinstance(error, ow.TransportError) and "not https" in str(error)
    assert "s3cr3t" not in str(error) and len(sent) == 1  # a signed URL's query is a credential too


async def test_endless_redirects_end() -> None:
    error, sent = await download({FILE: httpx.Response(302, headers={"location": FILE})}, veo(FILE))
    assert isinstance(error, ow.TransportError) and "more than 5 redirects" in str(error) and len(sent) == 6


async def test_a_uri_off_the_service_or_in_cloud_storage_is_never_fetched() -> None:
    for uri, said in [("https://evil.example.com/x.mp4", "not on https://generativelanguage"),
                      (f"{BASE}.evil.example.com/x", "not on"),
                      ("http://generativelanguage.googleapis.com/x", "not on"),
                      ("gs://bucket/out/sample_0.mp4", "Cloud Storage"), ("javascript:alert(1)", "not on")]:
        error, sent = await download({}, veo(uri))
        assert isinstance(error, ow.UnsupportedError) and said in str(error) and sent == [], uri


async def test_the_cap_stops_a_big_video_before_or_while_reading_it() -> None:
    announced = httpx.Response(200, headers={"content-length": "5000000"}, content=b"x" * 5_000_000)
    error, _ = await download({FILE: announced}, veo(FILE), max_bytes=1_000_000)
    assert isinstance(error, ow.TooLargeError) and error.size == 5_000_000 and error.limit == 1_000_000
    assert "5.0 MB is more than the 1.0 MB allowed" in str(error)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 300_000

    unannounced = httpx.Response(200, content=chunks())
    error, _ = await download({FILE: unannounced}, veo(FILE), max_bytes=1_000_000)
    assert isinstance(error, ow.TooLargeError) and error.size is None
    data, _ = await download({FILE: httpx.Response(200, content=b"x" * 1000)}, veo(FILE), max_bytes=1000)
    assert data == b"x" * 1000  # exactly at the cap is fine


async def test_an_error_answer_is_typed_and_names_no_key() -> None:
    body = b'{"error": {"code": 403, "message": "key AIzaSy-VIDEO-SECRET-0123456789-abc denied", "status": "X"}}'
    error, _ = await download({FILE: httpx.Response(403, content=body)}, veo(FILE))
    assert isinstance(error, ow.PermissionDeniedError) and KEY not in str(error)


async def test_vertex_inline_videos_come_from_the_response_and_bad_arguments_fail_first() -> None:
    op = ow.Operation.from_api_response({
        "name": "projects/p/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/o1",
        "done": True, "response": {"videos": [{"bytesBase64Encoded": base64.b64encode(b"inline clip").decode(),
                                                "mimeType": "video/mp4"}]}}, vertex=True)
    data, sent = await download({}, op)
    assert data == b"inline clip" and sent == []
    error, _ = await download({}, op, max_bytes=4)
    assert isinstance(error, ow.TooLargeError)
    async with ow.AsyncOperations(KEY, history=False) as ops:
        for bad in ({"index": -1}, {"index": True}, {"max_bytes": 0}):
            with pytest.raises(ValueError):
                await ops.download_video(op, **bad)


def test_what_the_page_is_told_of_a_video() -> None:
    from ops_widgets.widgets._media import video_count, video_file, video_message

    done = veo(FILE)
    assert video_count(done) == 1 and video_file(done, 0, CLIP.read_bytes()) == ("video/mp4", "abc123-1.mp4")
    assert video_file(done, 2, b"\x1aE\xdf\xa3 webm") == ("video/webm", "abc123-3.webm")
    assert video_message(done, 0, None, "") == {"type": "video_file", "index": 0, "count": 1,
                                                "error": "the video could not be fetched"}
    running = ow.Operation.from_api_response({"name": "models/veo-3.0-generate-001/operations/abc123"})
    filtered = ow.Operation.from_api_response({"name": "models/veo/operations/x", "done": True, "response": {
        "generateVideoResponse": {"raiMediaFilteredCount": 1}}})
    assert video_count(running) == video_count(filtered) == 0
