"""The API key never reaches a URL, a repr, a log record or an exception message."""

from __future__ import annotations

import asyncio
import logging

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
        emu.fail_next(1, status=503)  # one retry, logged
        ops.get(name)
        failures: list[BaseException] = []
        wrong = ow.Operations("wrong-key", base_url=emu.base_url)
        for call in (
            lambda: ops.get("operations/missing"),
            lambda: ops.delete("batches/missing"),
            lambda: ops.delete(name),  # UnsupportedError: the service deletes batches only
            lambda: ops.get("bad name"),
            lambda: wrong.get(name),
            lambda: ops.wait(emu.create("video", duration=3600), poll_interval=0.05, timeout=0.1),
            lambda: (emu.fail_next(2, status=429, retry_delay=0.01), ops.get(name)),
        ):
            with pytest.raises(ow.OpsError) as info:
                call()
            failures.append(info.value)
        ops.close()
        wrong.close()
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
