"""The polling engine against the emulator over loopback: one stream per name, subscriptions,
cancel through a handle, and a 429 storm."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import pytest

import ops_widgets as ow
from ops_widgets import Operation, State


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_three_handles_and_a_wait_make_one_request_stream(emu: Any) -> None:
    name = emu.create("tuning", duration=1.5)
    ops = emu.client()
    h1 = ops.track(name, poll_interval=0.1)
    h2 = ops.track(name)
    h3 = ops.track(Operation.from_api_response({"name": name}))
    assert h1._poller is h2._poller is h3._poller
    result: list[Operation] = []
    waiter = threading.Thread(target=lambda: result.append(ops.wait(name, poll_interval=0.01, timeout=30)))
    waiter.start()
    final = h2.wait(timeout=30)
    waiter.join()
    assert final.succeeded and result == [final] and h1.operation == final
    poller = h1._poller
    # Every GET the server saw for this name: the first snapshot, then the poller's own polls.
    # A second stream (the wait's 0.01 s loop) would have sent dozens more.
    assert emu.stats()["by_name"][name] == 1 + poller.requests
    assert poller.requests <= 1.5 / 0.1 + 4
    ops.close()


def test_subscribers_see_every_change_in_order(emu: Any) -> None:
    name = emu.create("tuning", duration=1.0)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.05)
    a: list[Operation] = []
    b: list[Operation] = []
    h.subscribe(a.append)
    assert len(a) == 1 and a[0] == h.operation  # called at once with the latest snapshot
    h.subscribe(b.append)
    h.wait(timeout=30)
    wait_until(lambda: len(b) == len(a) and a[-1].done)
    assert [o.raw for o in a] == [o.raw for o in b]
    progress = [o.progress for o in a]
    assert progress == sorted(progress) and a[-1].state is State.SUCCEEDED
    assert all(x.raw != y.raw for x, y in zip(a, a[1:]))  # only polls that changed something
    assert len(a) >= 4
    ops.close()


def test_unsubscribe_stops_delivery(emu: Any) -> None:
    name = emu.create("tuning", duration=1.0)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.05)
    seen: list[Operation] = []
    unsubscribe = h.subscribe(seen.append)
    unsubscribe()
    unsubscribe()  # twice is harmless
    h.wait(timeout=30)
    assert len(seen) == 1
    ops.close()


def test_a_raising_callback_does_not_stop_the_others(emu: Any, caplog: pytest.LogCaptureFixture) -> None:
    name = emu.create("import", duration=0.6)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.05)

    def bad(op: Operation) -> None:
        raise RuntimeError("subscriber bug")

    good: list[Operation] = []
    with caplog.at_level(logging.ERROR, logger="ops_widgets"):
        h.subscribe(bad)
        h.subscribe(good.append)
        final = h.wait(timeout=30)
    wait_until(lambda: good and good[-1].done)
    assert final.done and good[-1] == final
    assert any("raised" in r.getMessage() for r in caplog.records)
    ops.close()


def test_cancel_through_a_handle_cancels_on_the_server_once(emu: Any) -> None:
    name = emu.create("video", duration=3600)
    ops = emu.client()
    h = ops.track(name)
    emu.reset_stats()
    threads = [threading.Thread(target=h.cancel) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.cancel()  # and once more after it went through
    assert emu.get_operation(name)["error"]["code"] == 1  # the server says so
    final = h.wait(timeout=10)  # the poller confirms it soon after
    assert final.cancelled and h.operation.state is State.CANCELLED
    assert emu.stats()["by_route"].get("POST /v1beta/{name}:cancel") == 1
    ops.close()


def test_poller_stops_when_nobody_is_interested(emu: Any) -> None:
    name = emu.create("video", duration=3600)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.02)
    poller = h._poller
    unsubscribe = h.subscribe(lambda op: None)
    h.close()
    time.sleep(0.1)
    assert not poller.stopped  # a subscriber is still there
    unsubscribe()
    wait_until(lambda: poller.stopped)
    count = emu.stats()["by_name"][name]
    time.sleep(0.2)
    assert emu.stats()["by_name"][name] == count
    h2 = ops.track(name)  # tracking again starts a new poller
    assert h2._poller is not poller
    del h2
    gc.collect()  # a dropped handle releases its interest too
    ops.close()


def test_wait_joins_a_tracked_poller(emu: Any) -> None:
    name = emu.create("generic", duration=0.5)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.05)
    seen: list[Operation] = []
    final = ops.wait(name, poll_interval=0.001, on_progress=seen.append)
    assert final.done and seen[-1].done
    assert emu.stats()["by_name"][name] == 1 + h._poller.requests
    ops.close()


def test_track_an_unknown_name_raises_at_once(emu: Any) -> None:
    ops = emu.client()
    with pytest.raises(ow.NotFoundError):
        ops.track("operations/nothing-here")
    with pytest.raises(ow.InvalidNameError):
        ops.track("nothing here")
    ops.close()


def test_deleted_while_tracked_stops_and_tells_waiters(emu: Any) -> None:
    name = emu.create("video", duration=3600)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.05)
    ops.delete(name)
    with pytest.raises(ow.NotFoundError):
        h.wait(timeout=10)
    assert isinstance(h.last_error, ow.NotFoundError)
    ops.close()


def test_transient_failures_are_reported_while_polling_goes_on(emu: Any) -> None:
    name = emu.create("generic", duration=3600)
    ops = emu.client()
    h = ops.track(name, poll_interval=0.01)
    h._poller._retry_delays = None
    ops._async._rand = lambda: 0.01  # short jittered backoff between failed polls
    emu.fail_next(4, status=503, path=name)
    wait_until(lambda: h.last_error is not None)
    assert isinstance(h.last_error, ow.ServerError)
    wait_until(lambda: h.last_error is None)  # recovered, and the handle says so
    assert not h._poller.stopped
    ops.close()


def test_elapsed_and_eta(emu: Any) -> None:
    ops = emu.client()
    tuning = ops.track(emu.create("tuning", duration=3.0), poll_interval=0.3)
    wait_until(lambda: (tuning.operation.progress or 0) > 20)
    assert tuning.elapsed > 0.3 and tuning.eta is not None and tuning.eta < 5
    assert tuning.eta_is_estimate is False
    video = ops.track(emu.create("video", duration=3600))
    assert video.eta_is_estimate is True and video.eta is not None and video.eta > 0
    assert "running" in repr(video) and "eta ~" in repr(video)
    done = tuning.wait(timeout=30)
    assert tuning.eta == 0 and tuning.elapsed == pytest.approx(3.0, abs=0.5)
    assert done.done
    ops.close()


async def test_async_tracking(emu: Any) -> None:
    name = emu.create("tuning", duration=0.5)
    async with emu.aclient() as ops:
        h = await ops.track(name, poll_interval=0.05)
        assert isinstance(h, ow.AsyncTracked)
        seen: list[Operation] = []

        async def on_change(op: Operation) -> None:  # async callbacks are run too
            seen.append(op)

        h.subscribe(on_change)
        final = await h.wait(timeout=30)
        await asyncio.sleep(0.05)
        assert final.succeeded and seen[-1].done
        other = await ops.track(emu.create("video", duration=3600))
        await other.cancel()
        assert (await other.wait(timeout=10)).cancelled


def test_429_storm_pauses_every_poller_and_loses_nothing(emu: Any) -> None:
    ops = emu.client(poll_rate=200)
    names = [emu.create("generic", duration=1.5) for _ in range(40)]
    handles = [ops.track(n, poll_interval=0.05) for n in names]
    emu.reset_stats()
    emu.fail_for(1.0, status=429, retry_delay=0.4)
    finals = [h.wait(timeout=60) for h in handles]
    stats = emu.stats()
    assert all(op.done for op in finals) and [op.name for op in finals] == names
    # 40 pollers at 20 polls/s would have sent ~800 requests into a 1 s storm; pausing them
    # all on each 429 keeps it to about one in-flight wave per pause.
    storm_429s = stats["by_status"].get(429, 0)
    assert 1 <= storm_429s <= 120
    ops.close()


def test_closing_the_client_releases_waiters(emu: Any) -> None:
    ops = emu.client()
    h = ops.track(emu.create("video", duration=3600), poll_interval=0.05)
    result: list[BaseException] = []

    def wait() -> None:
        try:
            h.wait(timeout=30)
        except ow.OpsError as exc:
            result.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    ops.close()
    waiter.join(10)
    assert not waiter.is_alive() and "closed" in str(result[0])
    assert h._poller.stopped


def test_failures_after_a_429_still_back_off(emu: Any) -> None:
    """A 429 asks for an immediate retry after the pause; 5xx answers after it must not inherit
    that and hammer the server."""
    ops = emu.client(poll_rate=None)
    ops._async._rand = lambda: 1.0  # backoff without jitter: 1 s, 2 s, ...
    name = emu.create("generic", duration=3600)
    h = ops.track(name, poll_interval=0.01)
    emu.fail_next(1, status=429, retry_delay=0.05, path=name)
    emu.fail_for(1.5, status=503, path=name)
    before = emu.stats()["by_name"][name]
    time.sleep(1.5)
    sent = emu.stats()["by_name"][name] - before
    assert 2 <= sent <= 6  # the 429, then 503s one, two... seconds apart (not hundreds)
    h.close()
    ops.close()
