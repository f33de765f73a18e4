"""Nothing lost under faults: every call that tracks, waits, lists or acts in bulk rides out the
faults a real network and server produce, on the engine's retry policy and the client's one 429
pause, and every wait keeps its deadline. On a virtual clock, in process, through tests/faults.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from faults import Faulty, first_n, random_faults
from recorder import Recorder

import ops_widgets as ow
from ops_widgets import Operation, State
from ops_widgets._engine import DEADLINE_GRACE, FIRST_SNAPSHOT_PATIENCE
from ops_widgets._transport import RATE_LIMIT_PATIENCE
from ops_widgets.emulator import Emulator

Body = Callable[[Emulator, ow.VirtualClock, Recorder], Awaitable[None]]


def simulate(body: Body, seed: int = 11) -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed)
    clock.run(body(emu, clock, Recorder(emu, clock)))


def faulty(rec: Recorder, script: Any, **kw: Any) -> tuple[dict[str, Any], Faulty]:
    transport = Faulty(httpx.ASGITransport(app=rec), script, **kw)
    return rec.options(transport=transport), transport


def path_has(text: str) -> Callable[[httpx.Request], bool]:
    return lambda request: text in request.url.path


@pytest.mark.parametrize("fault", ["503", "drop_before", "drop_after", "truncated", "html", "429"])
def test_tracks_first_get_rides_out_more_faults_than_the_request_retry_budget(fault: str) -> None:
    """Eight faults in a row on the first GET (the transport's budget is 5 retries): track() backs
    off on the engine's policy and returns the live handle, as its poller would have. (Eight
    backoff delays are at most 183 s, well inside its patience, whatever the jitter.)"""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=600)
        options, transport = faulty(rec, first_n(8, fault, path_has(name)))
        async with ow.AsyncOperations(**options) as ops:
            h = await ops.track(name)
            assert h.operation.name == name and transport.injected == {fault: 8}
            assert (await h.wait()).succeeded

    simulate(body)


def test_track_still_raises_at_once_for_what_retrying_cannot_fix() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            with pytest.raises(ow.NotFoundError):
                await ops.track("batches/nope")
        async with ow.AsyncOperations(**rec.options(api_key="wrong")) as ops:
            with pytest.raises(ow.AuthenticationError):
                await ops.track(emu.create("batch"))
        assert clock.monotonic() < 1  # no backoff spent on either

    simulate(body)


def test_a_server_that_never_answers_makes_track_raise_after_its_patience() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch")
        options, _ = faulty(rec, first_n(10**6, "503"))
        async with ow.AsyncOperations(**options) as ops:
            with pytest.raises(ow.ServerError):
                await ops.track(name)
        assert FIRST_SNAPSHOT_PATIENCE - 61 <= clock.monotonic() <= FIRST_SNAPSHOT_PATIENCE + 1

    simulate(body)


def test_concurrent_tracks_of_one_name_share_one_first_get() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            handles = await asyncio.gather(*(ops.track(name) for _ in range(20)))
            assert len({id(h._poller) for h in handles}) == 1
            assert len(rec.gets(name)) == 1

    simulate(body)


@pytest.mark.parametrize("fault", ["503", "truncated", "slow", "429", "drop_before"])
def test_wait_keeps_its_deadline_whatever_its_first_get_meets(fault: str) -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        options, _ = faulty(rec, first_n(10**6, fault, path_has(name)))
        async with ow.AsyncOperations(**options) as ops:
            with pytest.raises(ow.WaitTimeout):
                await ops.wait(name, poll_interval=1, timeout=2)
            assert clock.monotonic() <= 2 + DEADLINE_GRACE + 1e-6

    simulate(body)


def test_one_truncated_answer_is_sent_again_by_every_kind_of_call() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=5)
        options, transport = faulty(rec, first_n(1, "truncated", path_has(name)))
        async with ow.AsyncOperations(**options) as ops:
            assert (await ops.get(name)).name == name
            transport.script = first_n(1, "truncated", path_has(name))
            assert (await ops.wait(name, poll_interval=1, timeout=60)).succeeded
            transport.script = first_n(1, "truncated", path_has("/batches"))
            assert any(op.name == name for op in await ops.list_all(parent="batches"))
        assert transport.injected == {"truncated": 3}

    simulate(body)


def test_direct_calls_hold_during_the_clients_429_pause() -> None:
    """A 429 to one poller pauses the whole client: a get(), a listing and a bulk cancel made
    during the pause go out after it, not into the storm."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name, other = emu.create("batch", duration=3600), emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name, poll_interval=1)
            emu.fail_next(1, status=429, retry_delay=20, path=name)
            await asyncio.sleep(1.5)  # the poll meets the 429; the client pauses for 20 s
            paused_at = clock.monotonic()
            sent_before = len(rec.log)
            await ops.get(other)
            await ops.list(parent="batches")
            outcomes = await ops.cancel_many([other])
            assert outcomes["ok"].all()
            during = [t for t, *_ in rec.log[sent_before:] if t < paused_at + 18]
            assert during == []
            h.close()

    simulate(body)


def test_a_retried_cancel_that_finds_it_cancelled_counts_as_cancelled() -> None:
    """The server cancels, the answer is lost, the retry is refused (already cancelling): that is
    a cancel that happened, for cancel() and for cancel_many's row."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=3600) for _ in range(2)]
        calls: dict[str, int] = {}

        def script(request: httpx.Request) -> str | None:
            if not request.url.path.endswith(":cancel"):
                return None
            calls[request.url.path] = calls.get(request.url.path, 0) + 1
            return "drop_after" if calls[request.url.path] == 1 else "refuse_cancel"

        options, _ = faulty(rec, script)
        async with ow.AsyncOperations(**options) as ops:
            await ops.cancel(names[0])
            outcomes = await ops.cancel_many([names[1]])
            assert outcomes["ok"].tolist() == [True], outcomes["error"].tolist()
            for name in names:
                assert (await ops.get(name)).state is State.CANCELLED

    simulate(body)


def test_a_refused_cancel_of_an_operation_that_finished_is_still_an_error() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=1)
        options, _ = faulty(rec, lambda r: "refuse_cancel" if r.url.path.endswith(":cancel") else None)
        await asyncio.sleep(5)
        async with ow.AsyncOperations(**options) as ops:
            with pytest.raises(ow.BadRequestError, match="terminal state"):
                await ops.cancel(name)

    simulate(body)


def test_bulk_calls_catch_every_error_per_row() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        good, bad = emu.create("batch", duration=3600), emu.create("batch", duration=3600)
        options, _ = faulty(rec, lambda r: "invalid_url" if bad in r.url.path else None)
        async with ow.AsyncOperations(**options, max_retries=0) as ops:
            outcomes = await ops.cancel_many([good, bad, "not a name"])
        assert outcomes["ok"].tolist() == [True, False, False]
        assert outcomes["error"][1].startswith("TransportError")
        assert outcomes["error"][2].startswith("InvalidNameError")

    simulate(body)


def test_an_exception_while_handling_a_poll_is_a_failed_poll_not_a_dead_poller(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug (or an odd value the model did not foresee) raising out of reading a snapshot: that
    poll counts as failed, polling goes on, waiters get the end."""
    from ops_widgets import _schedule

    original = _schedule.Adaptive.observe
    raised = [0]

    def observe(self: Any, elapsed: float, progress: float | None, step: float = 0.0) -> None:
        if progress is not None and 30 < progress < 60 and raised[0] < 2:
            raised[0] += 1
            raise OverflowError("a value the schedule could not take")
        original(self, elapsed, progress, step)

    monkeypatch.setattr(_schedule.Adaptive, "observe", observe)

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(emu.create("tuning", duration=600), poll_interval=10)
            assert (await h.wait(timeout=3600)).succeeded
        assert raised[0] == 2

    simulate(body)
    assert "OverflowError" in caplog.text


def test_a_poller_whose_task_died_is_never_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the poller's loop itself ends by an exception, its waiters get an error at once (no hang
    until their timeout) and the next track() of the name starts a fresh poller that works."""
    from ops_widgets import _engine

    original = _engine.Poller._next_due
    broken = [True]

    def next_due(self: Any) -> float:
        if broken[0]:
            broken[0] = False
            raise RuntimeError("the poller's own bug")
        return original(self)

    monkeypatch.setattr(_engine.Poller, "_next_due", next_due)

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=60)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name)
            with pytest.raises(ow.OpsError, match="stopped unexpectedly"):
                await h.wait(timeout=3600)
            assert clock.monotonic() < 1 and not h.polling
            again = await ops.track(name)
            assert again._poller is not h._poller
            assert (await again.wait(timeout=3600)).succeeded

    simulate(body)


def test_hundreds_of_names_tracked_through_random_faults_and_a_storm_all_finish_true() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create(kind, duration=60 + i % 300, outcome="failure" if i % 3 == 1 else "success")
                 for i, kind in enumerate(["batch", "video", "tuning", "import"] * 50)]
        options, transport = faulty(rec, random_faults(0.2, seed=3))
        async with ow.AsyncOperations(**options) as ops:
            emu.fail_for(3, status=429, retry_delay=1)
            handles = await ops.track_all(names)  # not one lost
            finals = await asyncio.gather(*(h.wait(timeout=7200) for h in handles))
        truth = {n: Operation.from_api_response(emu.get_operation(n)).state for n in names}
        assert [op.name for op in finals] == names
        assert all(op.state is truth[op.name] for op in finals)
        assert sum(transport.injected.values()) > 100

    simulate(body)


def test_a_direct_call_rides_out_a_429_storm_longer_than_its_retries() -> None:
    """Twenty seconds of 429s with a 1 s retryDelay: twenty answers, more than max_retries=5, yet
    get() and cancel() succeed after the storm (a storm is waited out, not counted as faults)."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options(max_retries=5)) as ops:
            emu.fail_for(20, status=429, retry_delay=1)
            assert (await ops.get(name)).name == name
            assert 20 <= clock.monotonic() <= 22
            emu.fail_for(20, status=429, retry_delay=1)
            await ops.cancel(name)
            assert (await ops.get(name)).state is State.CANCELLED
        assert sum(1 for *_, status in rec.log if status == 429) >= 30

    simulate(body)


def test_a_429_storm_longer_than_the_patience_raises_rate_limit_error() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options(max_retries=2)) as ops:
            emu.fail_for(3600, status=429, retry_delay=1)
            with pytest.raises(ow.RateLimitError):
                await ops.get(name)
            assert RATE_LIMIT_PATIENCE <= clock.monotonic() <= RATE_LIMIT_PATIENCE + 5

    simulate(body)
