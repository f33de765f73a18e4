"""AsyncOperations against the emulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import ops_widgets as ow
from ops_widgets import AsyncOperations, Operation, State
from ops_widgets.emulator import Emulator


def on_virtual_clock(body: Callable[[Any, ow.VirtualClock], Awaitable[None]]) -> None:
    """Run ``body(emu, clock)`` against an in-process emulator on a virtual clock: retry and
    poll delays pass in no real time, and are read off the clock."""
    clock = ow.VirtualClock()
    clock.run(body(Emulator.in_process(clock, random_seed=3), clock))


async def test_get_each_kind_and_accepts_an_operation(emu: Any) -> None:
    async with emu.aclient() as ops:
        for kind in ("video", "tuning", "batch", "import", "upload"):
            name = emu.create(kind, duration=3600)
            op = await ops.get(name)
            assert op.name == name and op.running and op.state is State.RUNNING
            again = await ops.get(op)
            assert again.name == name
        tuning = await ops.get(emu.create("tuning", duration=3600))
        assert tuning.progress is not None and 0 <= tuning.progress < 100


async def test_list_pages_and_filters(fresh_emu: Any) -> None:
    names = [fresh_emu.create("video", duration=3600, model="veo-pager") for _ in range(120)]
    for name in names[:30]:
        fresh_emu.complete(name)
    async with fresh_emu.aclient() as ops:
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = await ops.list(parent="models/veo-pager", page_size=50, page_token=token)
            pages += 1
            seen += [o.name for o in page.operations]
            if not page.has_more_pages:
                break
            token = page.next_page_token
        assert pages == 3 and seen == names  # oldest first, no gap, no duplicate
        done = await ops.list_all(parent="models/veo-pager", filter="done=true", page_size=7)
        assert sorted(o.name for o in done) == sorted(names[:30]) and all(o.done for o in done)
        with pytest.raises(ow.UnsupportedError, match="top-level"):  # v1beta has none
            await ops.list(page_size=1000)
    async with fresh_emu.aclient(api_version="v1") as v1:
        top = await v1.list(page_size=1000)  # v1 does
        assert len(top.operations) == 120 and top.next_page_token is None


async def test_list_all_2500_and_max_items(fresh_emu: Any) -> None:
    names = fresh_emu.seed(2500)
    # What the service lets a key list: batches, and the operations of Veo models and tuned models
    # (file search imports and uploads are not listed anywhere).
    listable = {n for n in names if n.startswith(("batches/", "models/", "tunedModels/"))}
    async with fresh_emu.aclient() as ops:
        fresh_emu.reset_stats()
        everything = await ops.list_all(page_size=100)
        assert {o.name for o in everything} == listable and len(everything) == len(listable)
        routes = fresh_emu.stats()["by_route"]
        assert routes["GET /v1beta/models"] == 1 and routes["GET /v1beta/tunedModels"] == 1
        assert "GET /v1beta/operations" not in routes and routes["GET /v1beta/batches"] >= 1
        assert {o.state for o in everything} == set(State)  # mixed states, cancelled included
        assert len(await ops.list_all(page_size=100, max_items=250)) == 250
        assert len(await ops.list_all(max_items=7)) == 7


async def test_cancel_really_cancels_on_the_server(emu: Any) -> None:
    name = emu.create("batch", duration=3600)  # the Gemini API cancels batches only
    async with emu.aclient() as ops:
        assert await ops.cancel(name) is None
        server_side = emu.get_operation(name)
        assert server_side["done"] is True and server_side["error"]["code"] == 1
        op = await ops.get(name)
        assert op.cancelled and op.state is State.CANCELLED


async def test_cancel_and_delete_only_where_the_service_binds_them(emu: Any) -> None:
    """The Gemini API (v1beta) cancels and deletes batches only: anything else is refused with
    UnsupportedError before a request goes out; v1 also cancels tuning operations."""
    video, tuning, batch, imported = (emu.create(k, duration=3600) for k in ("video", "tuning", "batch", "import"))
    emu.reset_stats()
    async with emu.aclient() as ops:
        for call in (ops.cancel, ops.delete):
            for name in (video, tuning, imported):
                with pytest.raises(ow.UnsupportedError, match="batches"):
                    await call(name)
        assert emu.stats()["total"] == 0  # nothing was sent
        outcomes = await ops.cancel_many([video, batch])
        assert outcomes["ok"].tolist() == [False, True]
        assert outcomes["error"][0].startswith("UnsupportedError")
        assert emu.stats()["total"] == 1 and emu.get_operation(batch)["error"]["code"] == 1
        assert ops.can_cancel(batch) and not ops.can_cancel(video)
    async with emu.aclient(api_version="v1") as v1:
        assert v1.can_cancel(tuning)
        await v1.cancel(tuning)
    assert emu.get_operation(tuning)["error"]["code"] == 1


async def test_delete_then_not_found(emu: Any) -> None:
    name = emu.create("batch", duration=1)
    async with emu.aclient() as ops:
        await ops.delete(Operation.from_api_response({"name": name}))
        with pytest.raises(ow.NotFoundError) as info:
            await ops.get(name)
        assert info.value.status_code == 404 and info.value.status == "NOT_FOUND"
        with pytest.raises(ow.NotFoundError):
            await ops.delete(name)


async def test_wait_reports_progress_until_done(emu: Any) -> None:
    name = emu.create("tuning", duration=0.6)
    seen: list[Operation] = []
    async with emu.aclient() as ops:
        final = await ops.wait(name, poll_interval=0.05, timeout=30, on_progress=seen.append)
    assert final.succeeded and final.done
    assert seen[-1] == final and len(seen) >= 3  # after every poll, the last one included
    assert all(not o.done for o in seen[:-1])
    progress = [o.progress for o in seen]
    assert progress == sorted(progress)  # tuning progress only grows


async def test_wait_accepts_async_callbacks_and_backoff(emu: Any) -> None:
    name = emu.create("video", duration=0.3)
    calls: list[bool] = []

    async def on_progress(op: Operation) -> None:
        calls.append(op.done)

    async with emu.aclient() as ops:
        final = await ops.wait_with_backoff(name, initial_delay=0.02, max_delay=0.1, on_progress=on_progress)
    assert final.succeeded and final.video_uris and calls[-1] is True


def test_wait_on_a_virtual_clock_never_sleeps_past_the_deadline() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        name = emu.create("video", duration=10**6)
        polls: list[float] = []
        async with emu.aclient() as ops:
            with pytest.raises(ow.WaitTimeout) as info:
                await ops.wait(name, poll_interval=10, timeout=25,
                               on_progress=lambda op: polls.append(clock.monotonic()))
        assert polls == [0, 10, 20, 25]  # clipped to the deadline, and one more check at it
        assert isinstance(info.value, TimeoutError) and info.value.operation is not None
        assert name in str(info.value)
        assert emu.get_operation(name).get("done") is not True  # a timeout does not cancel

    on_virtual_clock(body)


def test_wait_backoff_delays_are_jittered_and_capped() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        name = emu.create("video", duration=10**6)
        polls: list[float] = []
        async with emu.aclient() as ops:
            with pytest.raises(ow.WaitTimeout):
                await ops.wait_with_backoff(name, initial_delay=1, max_delay=8, multiplier=2, timeout=20,
                                            on_progress=lambda op: polls.append(clock.monotonic()))
        gaps = [b - a for a, b in zip(polls, polls[1:], strict=False)]
        caps = [1, 2, 4, 8] + [8] * len(gaps)
        assert all(0 <= g <= cap + 1e-9 for g, cap in zip(gaps, caps, strict=False))  # full jitter under the cap
        assert polls[0] == 0 and polls[-1] == pytest.approx(20)

    on_virtual_clock(body)


async def test_wait_timeout_none_waits_until_done(emu: Any) -> None:
    name = emu.create("import", duration=0.2)
    async with emu.aclient() as ops:
        assert (await ops.wait(name, poll_interval=0.05, timeout=None)).done


async def test_invalid_names_send_nothing(emu: Any) -> None:
    async with emu.aclient() as ops:
        before = emu.stats()["total"]
        for bad in ["abc", "operations/../../v1/x", "operations/x?key=1", "", "models/veo"]:
            for call in (ops.get, ops.cancel, ops.delete, ops.wait):
                with pytest.raises(ow.InvalidNameError):
                    await call(bad)
        with pytest.raises(ow.InvalidNameError):
            await ops.list(parent="models/../x")
        assert emu.stats()["total"] == before


# -- errors -----------------------------------------------------------------------------


def test_no_key_at_all_says_how_to_get_one() -> None:
    with pytest.raises(ow.AuthenticationError) as info:
        AsyncOperations()
    assert "GEMINI_API_KEY" in str(info.value) and "emulator" in str(info.value)


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch, emu: Any) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", emu.api_key)
    name = emu.create("video", duration=60)

    async def get() -> Operation:
        async with AsyncOperations(base_url=emu.base_url) as ops:
            return await ops.get(name)

    assert asyncio.run(get()).name == name
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")  # GEMINI_API_KEY wins over GOOGLE_API_KEY
    with pytest.raises(ow.AuthenticationError):
        asyncio.run(get())


async def test_bad_key_is_authentication_error(emu: Any) -> None:
    name = emu.create("video", duration=60)
    async with AsyncOperations("not-the-key", base_url=emu.base_url) as ops:
        with pytest.raises(ow.AuthenticationError) as info:
            await ops.get(name)
    assert info.value.status_code == 400 and info.value.status == "INVALID_ARGUMENT"
    assert any(d.get("reason") == "API_KEY_INVALID" for d in info.value.details)


async def test_403(emu: Any) -> None:
    emu.fail_next(1, status=403)
    async with emu.aclient() as ops:
        with pytest.raises(ow.PermissionDeniedError) as info:
            await ops.list(parent="batches")
    assert info.value.status_code == 403 and info.value.status == "PERMISSION_DENIED"


def test_429_waits_retry_delay_then_succeeds() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        name = emu.create("video", duration=60)
        emu.fail_next(2, status=429, retry_delay=0.25)
        async with emu.aclient() as ops:
            assert (await ops.get(name)).name == name
        assert clock.monotonic() == pytest.approx(0.5)  # the server's retryDelay, twice

    on_virtual_clock(body)


async def test_429_without_retries_carries_retry_delay(emu: Any) -> None:
    emu.fail_next(1, status=429, retry_delay=3)
    async with emu.aclient(max_retries=0) as ops:
        with pytest.raises(ow.RateLimitError) as info:
            await ops.list(parent="batches")
    assert info.value.retry_delay == 3.0 and info.value.status_code == 429


async def test_500_without_retries(emu: Any) -> None:
    emu.fail_next(1, status=500)
    async with emu.aclient(max_retries=0) as ops:
        with pytest.raises(ow.ServerError) as info:
            await ops.list(parent="batches")
    assert info.value.status_code == 500


async def test_html_error_body_is_still_typed(emu: Any) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1><p>upstream went away</p></body></html>"
    emu.fail_next(1, status=502, body=page, content_type="text/html")
    async with emu.aclient(max_retries=0) as ops:
        with pytest.raises(ow.ServerError) as info:
            await ops.list(parent="batches")
    assert "502 Bad Gateway" in info.value.message and "<h1>" not in info.value.message


async def test_broken_json_success_body_is_malformed_error_after_its_retries(emu: Any) -> None:
    emu.fail_next(2, status=200, body='{"name": "operations/x", "do')
    async with emu.aclient(max_retries=1) as ops:
        with pytest.raises(ow.BrokenAnswerError, match="not JSON") as info:
            await ops.get("operations/x")
    assert isinstance(info.value, ow.MalformedOperationError)


def test_retries_until_success() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        name = emu.create("video", duration=60)
        emu.fail_next(3, status=503, path=name)
        async with emu.aclient(max_retries=5) as ops:
            assert (await ops.get(name)).name == name
        assert emu.stats()["by_name"][name] == 4
        assert 0 < clock.monotonic() < 0.5 + 1 + 2  # three jittered backoffs, under their caps

    on_virtual_clock(body)


def test_gives_up_after_max_retries() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        name = emu.create("video", duration=60)
        emu.fail_next(10, status=500, path=name)
        async with emu.aclient(max_retries=2) as ops:
            with pytest.raises(ow.ServerError):
                await ops.get(name)
        assert emu.stats()["by_name"][name] == 3

    on_virtual_clock(body)


def test_4xx_is_not_retried() -> None:
    async def body(emu: Any, clock: ow.VirtualClock) -> None:
        async with emu.aclient() as ops:
            with pytest.raises(ow.NotFoundError):
                await ops.get("operations/does-not-exist")
        assert emu.stats()["total"] == 1 and clock.monotonic() == 0

    on_virtual_clock(body)


@pytest.fixture()
def dropping_server():  # type: ignore[no-untyped-def]
    """A loopback server that accepts connections and closes them without answering."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    accepted = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.recv(65536)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", accepted
    stop.set()
    t.join()
    srv.close()


async def test_dropped_connections_are_retried_then_transport_error(dropping_server: Any) -> None:
    url, accepted = dropping_server
    async with AsyncOperations("k", base_url=url, max_retries=2) as ops:  # real jittered sleeps: < 1.5 s
        with pytest.raises(ow.TransportError) as info:
            await ops.get("operations/x")
    assert len(accepted) == 3
    assert info.value.__cause__ is not None and "operations/x" in str(info.value)
    await ops.aclose()


async def test_connection_refused_is_transport_error() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    async with AsyncOperations("k", base_url=f"http://127.0.0.1:{port}", max_retries=0) as ops:
        with pytest.raises(ow.TransportError):
            await ops.get("operations/x")


async def test_in_process_asgi_transport() -> None:
    import httpx

    from ops_widgets.emulator import EmulatorApp

    app = EmulatorApp(api_key="k")
    name = app.create("batch", duration=60)
    async with AsyncOperations("k", base_url="http://emulator", transport=httpx.ASGITransport(app=app)) as ops:
        assert (await ops.get(name)).running
        await ops.cancel(name)
        assert (await ops.get(name)).cancelled


def test_a_client_refuses_a_second_loop_rather_than_drop_its_pool(emu: Any) -> None:
    name = emu.create("video", duration=60)
    ops = emu.aclient()
    first = asyncio.new_event_loop()
    assert first.run_until_complete(ops.get(name)).name == name
    # Its pool belongs to the first loop: another loop is told so, rather than share or drop it.
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(ops.get(name))
    first.run_until_complete(ops.aclose())
    first.close()

    async def twice() -> None:
        async with emu.aclient() as fresh:  # one client per loop, closed with it
            assert (await fresh.get(name)).name == name
        with pytest.raises(RuntimeError, match="closed"):
            await fresh.get(name)

    asyncio.run(twice())


def test_a_server_sending_empty_pages_with_fresh_tokens_forever_is_not_followed_forever() -> None:
    sent = [0]

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sent[0] += 1
        payload = json.dumps({"nextPageToken": f"t{sent[0]}"}).encode()  # no operations, a new token
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    async def main() -> None:
        import httpx

        async with AsyncOperations("k", base_url="http://s.invalid", transport=httpx.ASGITransport(app=endless)) as ops:
            with pytest.raises(ow.MalformedOperationError, match="empty pages"):
                await ops.list_all(parent="batches", max_items=10)

    asyncio.run(main())
    assert 50 <= sent[0] <= 52  # bounded: a few dozen requests, not thousands
