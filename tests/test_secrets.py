"""The API key never reaches a URL, a repr, a log record or an exception message."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

import ops_widgets as ow
from ops_widgets.emulator import Emulator

KEY = "AIzaSy-SECRET-0123456789-abcdefXYZ"


def test_key_only_in_the_header(caplog: pytest.LogCaptureFixture) -> None:
    urls: list[str] = []
    headers: list[str] = []

    class Recording(httpx.AsyncHTTPTransport):  # sees the URL and headers of every request sent
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            urls.append(str(request.url))
            headers.append(request.headers.get("x-goog-api-key", ""))
            return await super().handle_async_request(request)

    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # root: ours, httpx's and httpcore's records
    with Emulator.start(api_key=KEY) as emu:
        texts += [repr(emu)]
        ops = emu.client(max_retries=1, transport=Recording())
        name = emu.create("tuning", duration=0.2)
        texts += [repr(ops), repr(vars(ops))]
        texts += [repr(vars(part)) for part in vars(ops).values() if hasattr(part, "__dict__")]
        op = ops.get(name)
        texts += [repr(op), op.summary()]
        ops.wait(name, poll_interval=0.05, on_progress=lambda o: texts.append(repr(o)))
        ops.list(parent="batches", page_size=2)
        ops.list_all(page_size=50, max_items=3)
        ops.cancel(emu.create("batch", duration=60))
        emu.complete(video := emu.create("video", duration=60))
        assert ops.download_video(video)[4:8] == b"ftyp"  # a video's download carries the key the same way
        emu.fail_next(1, status=503)  # one retry, logged
        ops.get(name)
        failures: list[BaseException] = []
        wrong = ow.Operations("wrong-key", base_url=emu.base_url)
        no_retry = emu.client(max_retries=0, transport=Recording())  # a 429 storm is waited out when retrying
        for call in (
            lambda: ops.get("operations/missing"),
            lambda: ops.delete("batches/missing"),
            lambda: ops.delete(name),  # UnsupportedError: the service deletes batches only
            lambda: ops.get("bad name"),
            lambda: wrong.get(name),
            lambda: ops.wait(emu.create("video", duration=3600), poll_interval=0.05, timeout=0.1),
            lambda: (emu.fail_next(1, status=429, retry_delay=0.01), no_retry.get(name)),
        ):
            with pytest.raises(ow.OpsError) as info:
                call()
            failures.append(info.value)
        ops.close()
        wrong.close()
        no_retry.close()
    for exc in failures:
        texts += [str(exc), repr(exc), repr(getattr(exc, "details", ""))]
    for record_ in caplog.records:
        texts += [record_.getMessage(), repr(record_.args)]
    texts += urls
    assert len(urls) >= 8 and all(h == KEY for h in headers)  # it was sent, in the header...
    assert len(caplog.records) > 10
    leaks = [t for t in texts if KEY in t]
    assert leaks == []  # ...and nowhere else
    assert all("key=" not in u for u in urls)


def test_key_absent_from_transport_errors() -> None:
    async def get() -> None:
        async with ow.AsyncOperations(KEY, base_url="http://127.0.0.1:9", max_retries=0) as ops:
            await ops.get("operations/x")

    with pytest.raises(ow.TransportError) as info:
        asyncio.run(get())
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_a_server_echoing_the_key_back_never_puts_it_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    """A proxy that writes the key into its error text: exceptions, details, logs and the engine's
    last_error (what a widget shows) carry "<redacted>" instead."""

    async def echoing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = dict(scope["headers"]).get(b"x-goog-api-key", b"").decode()
        body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": f"bad request from key {key}",
                          "details": [{"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": key}]}}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    texts: list[str] = []

    async def main() -> None:
        async with ow.AsyncOperations(KEY, base_url="http://proxy.invalid",
                                      transport=httpx.ASGITransport(app=echoing)) as ops:
            with pytest.raises(ow.BadRequestError) as info:
                await ops.get("batches/b1")
            texts.extend([str(info.value), repr(info.value), repr(info.value.details), repr(info.value.args)])
            assert "<redacted>" in str(info.value)

    caplog.set_level(logging.DEBUG)
    asyncio.run(main())
    texts += [r.getMessage() for r in caplog.records]
    assert [t for t in texts if KEY in t] == []


def test_a_retried_delete_that_finds_it_gone_counts_as_deleted() -> None:
    """The first DELETE deleted it but its answer was lost (a 503 here); the retry's 404 means
    the delete happened, not that it failed."""
    calls: list[str] = []

    async def flaky(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["method"])
        status = 503 if calls == ["DELETE"] else 404  # the first DELETE's answer is lost; then gone
        payload = json.dumps({"error": {"code": status, "message": "x", "status": "X"}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    async def main() -> None:
        async with ow.AsyncOperations(KEY, base_url="http://s.invalid", clock=clock,
                                      transport=httpx.ASGITransport(app=flaky)) as ops:
            assert await ops.delete("batches/b1") is None
            calls.append("then")
            with pytest.raises(ow.NotFoundError):  # a first answer of 404 is still "not found"
                await ops.delete("batches/b2")

    clock = ow.VirtualClock()
    clock.run(main())
