"""The polling engine on a virtual clock, against the emulator app in-process: one request stream
per name, waits as requests to the shared poller, subscriptions, cancel, failures and a 429 storm
over 1,000 pollers. Hours of simulated polling run in well under a second; nothing sleeps."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from faults import Faulty, first_n
from recorder import Recorder

import ops_widgets as ow
from ops_widgets import Operation, State
from ops_widgets._engine import Limiter
from ops_widgets._loop import stop_thread
from ops_widgets._schedule import fixed
from ops_widgets.emulator import Emulator

Body = Callable[[Emulator, ow.VirtualClock, Recorder], Awaitable[None]]


async def _no_cancel(_name: str) -> None:
    """An Engine's cancel for tests that never cancel."""
    raise AssertionError("no cancel here")


async def _no_get(_name: str) -> Operation:
    """An Engine's poll for tests where list sweeps answer every poll."""
    raise AssertionError("a sweep answers these: no GET")


def simulate(body: Body, seed: int = 5) -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed)
    clock.run(body(emu, clock, Recorder(emu, clock)))


@pytest.fixture()
def blocking() -> Iterator[tuple[Emulator, ow.VirtualClock]]:
    """An in-process emulator and a virtual clock for the blocking facade (its own engine thread)."""
    clock = ow.VirtualClock()
    yield Emulator.in_process(clock, random_seed=9), clock
    stop_thread(clock)


def test_three_handles_and_a_wait_make_one_request_stream() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("tuning", duration=600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h1 = await ops.track(name, poll_interval=10)
            h2 = await ops.track(name)
            h3 = await ops.track(Operation.from_api_response({"name": name}))
            final, waited = await asyncio.gather(h2.wait(timeout=3600), ops.wait(name, poll_interval=30))
            assert final.succeeded and waited == final and h1.operation == final and h3.operation == final
        gets = rec.gets(name)
        # One stream: the first snapshot, the wait's own first poll, then one poll every 10 s
        # (the wait's 30 s asks are met by the 10 s stream, never sent twice).
        assert len(gets) <= 2 + 600 / 10 + 2
        assert all(b - a <= 10 + 1e-6 for a, b in zip(gets[1:], gets[2:], strict=False))

    simulate(body)


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
def test_wait_is_the_same_whether_or_not_the_name_is_tracked(tracked: bool) -> None:
    """poll_interval=2 gives a poll at least every 2 s, on_progress after every one of them, and
    an on_progress exception ends that wait only; other waiters and trackers go on."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("tuning", duration=60)
        async with ow.AsyncOperations(**rec.options()) as ops:
            other = await ops.track(name) if tracked else None  # as a widget in another cell would
            seen: list[tuple[float, float | None]] = []
            final = await ops.wait(name, poll_interval=2, timeout=600,
                                   on_progress=lambda op: seen.append((clock.monotonic(), op.progress)))
            assert final.succeeded and seen[-1][1] == 100  # the last poll included
            times = [t for t, _ in seen]
            assert times[0] == 0 and all(b - a <= 2 + 1e-6 for a, b in zip(times, times[1:], strict=False))
            gets = [t for t in rec.gets(name) if t <= times[-1]]
            assert len(seen) >= len(gets) - 1  # a callback after every poll it asked for
            assert all(any(abs(t - g) < 1e-6 for g in gets) for t in times)  # each one a real poll

            # An on_progress that raises ends that wait with its exception; a second waiter and
            # the tracker of the same name go on to the end.
            name = emu.create("tuning", duration=60)
            other = await ops.track(name) if tracked else None

            def boom(op: Operation) -> None:
                if (op.progress or 0) > 20:
                    raise KeyError("callback bug")

            calm: list[Operation] = []
            results = await asyncio.gather(
                ops.wait(name, poll_interval=2, on_progress=boom),
                ops.wait(name, poll_interval=5, on_progress=calm.append),
                return_exceptions=True,
            )
            assert isinstance(results[0], KeyError) and isinstance(results[1], Operation) and results[1].done
            assert calm[-1].done
            if other is not None:
                assert (await other.wait(timeout=10)).succeeded

    simulate(body)


def test_subscribers_see_every_change_in_order_and_unsubscribe_stops_them() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(emu.create("tuning", duration=100), poll_interval=5)
            a: list[Operation] = []
            b: list[Operation] = []
            h.subscribe(a.append)
            assert len(a) == 1 and a[0] == h.operation  # called at once with the latest snapshot
            h.subscribe(b.append)
            stopped: list[Operation] = []
            unsubscribe = h.subscribe(stopped.append)
            unsubscribe()
            unsubscribe()  # twice is harmless
            await h.wait(timeout=3600)
            assert [o.raw for o in a] == [o.raw for o in b]
            progress = [o.progress for o in a]
            assert progress == sorted(progress) and a[-1].state is State.SUCCEEDED
            assert all(x.raw != y.raw for x, y in zip(a, a[1:], strict=False))  # only polls that changed something
            assert len(a) >= 10 and len(stopped) == 1

    simulate(body)


def test_raising_subscribers_sync_or_async_are_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(emu.create("import", duration=20), poll_interval=1)

            def bad(op: Operation) -> None:
                raise RuntimeError("sync subscriber bug")

            async def bad_async(op: Operation) -> None:
                raise RuntimeError("async subscriber bug")

            good: list[Operation] = []
            h.subscribe(bad)
            h.subscribe(bad_async)
            h.subscribe(good.append)
            final = await h.wait(timeout=600)
            await asyncio.sleep(0)
            assert final.done and good[-1] == final

    with caplog.at_level(logging.ERROR, logger="ops_widgets"):
        simulate(body)
    texts = [(r.getMessage(), str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records]
    assert any("subscriber" in m and "sync subscriber bug" in e for m, e in texts)
    assert any("async subscriber" in m and "async subscriber bug" in e for m, e in texts)


def test_cancel_through_a_handle_cancels_on_the_server_once() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name)
            await asyncio.gather(h.cancel(), h.cancel(), h.cancel())
            await h.cancel()  # and once more after it went through
            assert emu.get_operation(name)["error"]["code"] == 1  # the server says so
            final = await h.wait(timeout=60)  # the poller confirms it soon after
            assert final.cancelled and clock.monotonic() <= 1
        assert sum(1 for _, m, p, _s in rec.log if m == "POST" and p.endswith(":cancel")) == 1

    simulate(body)


def test_poller_stops_when_nobody_is_interested() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("video", duration=36000)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name, poll_interval=1)
            unsubscribe = h.subscribe(lambda op: None)
            h.close()
            await asyncio.sleep(10)
            assert h.polling  # a subscriber is still there
            unsubscribe()
            await asyncio.sleep(0)
            assert not h.polling
            count = len(rec.gets(name))
            await asyncio.sleep(100)
            assert len(rec.gets(name)) == count
            h2 = await ops.track(name, poll_interval=1)  # tracking again starts a new poller
            assert h2.polling
            del h2
            gc.collect()  # a dropped handle releases its interest too
            await asyncio.sleep(2)
            count = len(rec.gets(name))
            await asyncio.sleep(100)
            assert len(rec.gets(name)) == count

    simulate(body)


def test_track_unknown_or_invalid_names_raise_at_once() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            with pytest.raises(ow.NotFoundError):
                await ops.track("operations/nothing-here")
            with pytest.raises(ow.InvalidNameError):
                await ops.track("nothing here")

    simulate(body)


def test_deleted_while_tracked_stops_and_tells_waiters() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name, poll_interval=1)
            await ops.delete(name)
            with pytest.raises(ow.NotFoundError):
                await h.wait(timeout=10)
            with pytest.raises(ow.NotFoundError):
                await ops.wait(name, poll_interval=1)
            assert isinstance(h.last_error, ow.NotFoundError) and not h.polling

    simulate(body)


def test_transient_failures_are_reported_while_polling_goes_on() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=36000)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name, poll_interval=1)
            emu.fail_next(4, status=503, path=name)
            errors: list[ow.OpsError | None] = []
            h.subscribe(lambda op: errors.append(h.last_error))
            await asyncio.sleep(200)
            assert any(isinstance(e, ow.ServerError) for e in errors)  # reported after 3 in a row
            assert errors[-1] is None and h.polling  # recovered, and the handle says so
            gets = rec.gets(name)
            gaps = [b - a for a, b in zip(gets, gets[1:], strict=False)]
            assert max(gaps) > 1  # it backed off while failing

    simulate(body)


def test_a_three_hour_tuning_job_and_a_ten_minute_video() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            tuning = await ops.track(emu.create("tuning", duration=3 * 3600))
            video = await ops.track(emu.create("video", duration=600))
            await asyncio.sleep(1800)
            assert tuning.eta_is_estimate is False and tuning.eta is not None
            assert tuning.eta == pytest.approx(9000, rel=0.2)  # from the reported progress
            assert tuning.elapsed == pytest.approx(1800, abs=1)
            assert video.operation.done and (video.elapsed or 0) >= 600
            done = await tuning.wait()
            assert done.succeeded and tuning.eta == 0
            assert tuning.elapsed == pytest.approx(3 * 3600, abs=1)  # its own createTime..updateTime
            assert clock.monotonic() - 3 * 3600 < 120  # seen done within two minutes
        # A few dozen requests for three hours, not a thousand.
        assert len(rec.gets(tuning.name)) < 120 and len(rec.gets(video.name)) < 60

    simulate(body)


@pytest.mark.parametrize("run", range(3))
def test_429_storm_over_1000_pollers_pauses_them_all_and_loses_nothing(run: int) -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=300 + i % 60) for i in range(1000)]
        async with ow.AsyncOperations(**rec.options(poll_rate=50)) as ops:
            # Every 5 s each: 200 polls a second asked for, capped at 50; a storm without pauses
            # would meet 3,000 of them.
            handles = [await ops.track(Operation.from_api_response(emu.get_operation(n)), poll_interval=5)
                       for n in names]
            emu.fail_for(60, status=429, retry_delay=10)
            finals = await asyncio.gather(*(h.wait(timeout=3600) for h in handles))
        assert all(op.done for op in finals) and [op.name for op in finals] == names
        storm = [t for t, _m, _p, status in rec.log if status == 429]
        # Every poller pauses on each 429: about one in-flight wave per 10 s pause, not 1,000s.
        assert 1 <= len(storm) <= 6 * 16 + 16
        assert all(t <= 60 + 1e-6 for t in storm)

    simulate(body, seed=run)


def test_wait_keeps_its_deadline_through_a_429_storm() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        async with ow.AsyncOperations(**rec.options()) as ops:
            h = await ops.track(name)  # (a first GET inside the storm is issue 11's: it retries, then raises)
            emu.fail_for(600, status=429, retry_delay=30)
            with pytest.raises(ow.WaitTimeout):
                await ops.wait(name, poll_interval=1, timeout=2)
            assert clock.monotonic() <= 2 + 1 + 1e-6  # its timeout, and at most a grace of 1 s
            h.close()

    simulate(body)


def test_failures_after_a_429_still_back_off() -> None:
    """A 429 asks for an immediate retry after the pause; 5xx answers after it must not inherit
    that and hammer the server."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=36000)
        async with ow.AsyncOperations(**rec.options(poll_rate=None)) as ops:
            h = await ops.track(name, poll_interval=0.01)
            emu.fail_next(1, status=429, retry_delay=0.05, path=name)
            emu.fail_for(60, status=503, path=name)
            before = len(rec.gets(name))
            await asyncio.sleep(60)
            sent = len(rec.gets(name)) - before
            assert 2 <= sent <= 12  # the 429, then 503s one, two, four... seconds apart (not thousands)
            h.close()

    simulate(body)


def test_closing_the_client_releases_waiters() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        ops = ow.AsyncOperations(**rec.options())
        h = await ops.track(emu.create("video", duration=3600), poll_interval=1)
        waiter = asyncio.ensure_future(h.wait(timeout=600))
        await asyncio.sleep(5)
        await ops.aclose()
        with pytest.raises(ow.OpsError, match="closed"):
            await waiter
        assert not h.polling
        with pytest.raises(RuntimeError, match="closed"):
            await ops.get(h.name)

    simulate(body)


@pytest.mark.parametrize(
    "call",
    [
        lambda ops, n: ops.wait(n, poll_interval=0),
        lambda ops, n: ops.wait(n, poll_interval=-1),
        lambda ops, n: ops.wait(n, timeout=-1),
        lambda ops, n: ops.wait_with_backoff(n, multiplier=1),
        lambda ops, n: ops.wait_with_backoff(n, multiplier=0.5),
        lambda ops, n: ops.wait_with_backoff(n, initial_delay=0),
        lambda ops, n: ops.wait_with_backoff(n, max_delay=-1),
        lambda ops, n: ops.track(n, poll_interval=0),
        lambda ops, n: ops.track_all([n], poll_interval=-5),
    ],
)
def test_bad_arguments_raise_before_anything_is_sent(call: Callable[[Any, str], Awaitable[Any]]) -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("video", duration=60)
        async with ow.AsyncOperations(**rec.options()) as ops:
            with pytest.raises(ValueError):
                await call(ops, name)
        assert rec.log == []

    simulate(body)


def test_bad_client_arguments_raise() -> None:
    for kw in ({"poll_concurrency": 0}, {"poll_rate": 0}, {"max_retries": -1}, {"timeout": 0}):
        with pytest.raises(ValueError):
            ow.AsyncOperations("k", **kw)


@pytest.mark.parametrize("run", range(50))
def test_a_subscriber_that_blocks_on_the_client_never_freezes_the_engine(
    run: int, blocking: tuple[Emulator, ow.VirtualClock]
) -> None:
    emu, clock = blocking
    ops = emu.client()
    name = emu.create("tuning", duration=120)
    h = ops.track(name, poll_interval=1)
    outcomes: list[str] = []

    def greedy(op: Operation) -> None:
        try:
            ops.get(op.name)  # a blocking call, on the engine thread
            outcomes.append("ok")
        except RuntimeError as exc:
            outcomes.append(str(exc))

    h.subscribe(greedy)
    assert h.wait(timeout=600).succeeded  # deliveries went on: the engine is not frozen
    assert outcomes and all("engine thread" in o for o in outcomes)
    ops.close()


def test_blocking_facade_from_threads_on_a_virtual_clock(blocking: tuple[Emulator, ow.VirtualClock]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emu, clock = blocking
    ops = emu.client()
    names = [emu.create("tuning", duration=600 + 60 * i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        finals = list(pool.map(lambda n: ops.wait(n, poll_interval=30, timeout=None), names))
    assert all(op.succeeded for op in finals)
    assert clock.monotonic() >= 600 + 7 * 60
    ops.close()


def _as_completed_run(use_as_completed: bool) -> tuple[list[str], list[str], int]:
    """100 operations of known durations: (finish order on the server, order seen, requests)."""
    out: dict[str, Any] = {}

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        durations = [30 + 10 * ((i * 37) % 100) for i in range(100)]  # 10 s apart, shuffled
        names = [emu.create("batch", duration=d) for d in durations]
        truth = [n for _, n in sorted(zip(durations, names, strict=True))]
        async with ow.AsyncOperations(**rec.options()) as ops:
            if use_as_completed:
                seen = [op.name async for op in ops.as_completed(names, poll_interval=5, timeout=3600)]
            else:
                handles = await ops.track_all(names, poll_interval=5)
                await asyncio.gather(*(h.wait() for h in handles))
                seen = []
        out.update(truth=truth, seen=seen, requests=len(rec.log))

    simulate(body)
    return out["truth"], out["seen"], out["requests"]


def test_as_completed_yields_in_completion_order_with_no_more_requests_than_tracking() -> None:
    truth, seen, requests = _as_completed_run(True)
    assert seen == truth
    _, _, tracking = _as_completed_run(False)
    assert requests <= tracking


def test_as_completed_times_out_and_stops_following_when_left(blocking: tuple[Emulator, ow.VirtualClock]) -> None:
    emu, clock = blocking
    with ow.Operations(api_key=emu.api_key, base_url=emu.base_url, clock=clock,
                       transport=httpx.ASGITransport(app=emu.app)) as ops:
        names = [emu.create("batch", duration=d) for d in (10, 60, 7200)]
        seen: list[Operation] = []
        with pytest.raises(ow.WaitTimeout, match="1 of 3"):
            for op in ops.as_completed(names, poll_interval=5, timeout=600):
                seen.append(op)
        assert [op.name for op in seen] == names[:2] and all(op.succeeded for op in seen)
        for op in ops.as_completed(names):  # leaving early is fine: nothing keeps polling after
            assert op.name == names[0]
            break


def test_on_screen_polls_at_the_watched_cadence_then_the_background_schedule_resumes() -> None:
    """While a view is on screen, an operation that reports progress is polled about every 5 %
    of its expected duration, 2 to 15 s apart; off screen, the sparse schedule resumes. A video
    (no progress to show between polls) keeps its schedule."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            short = await ops.track(emu.create("tuning", duration=60))
            long = await ops.track(emu.create("tuning", duration=3 * 3600))
            short.set_on_screen(True)
            long.set_on_screen(True)
            await asyncio.sleep(1800)
            gets = rec.gets(short.name)
            assert short.operation.done and len(gets) >= 15
            assert all(b - a <= 3.5 for a, b in zip(gets[1:], gets[2:], strict=False))  # 5 % of 60 s
            gets = [t for t in rec.gets(long.name) if 60 < t <= 1800]
            gaps = [b - a for a, b in zip(gets, gets[1:], strict=False)]
            assert gaps and max(gaps) <= 15.5 and min(gaps) >= 2 - 1e-6
            assert long.progress_rate is not None and long.progress_rate > 0
            long.set_on_screen(False)
            before = len(rec.gets(long.name))
            await asyncio.sleep(1800)
            assert len(rec.gets(long.name)) - before <= 10  # sparse again: minutes apart, not 15 s
            long.set_on_screen(True)
            long.close()  # closing a handle on screen leaves no watcher behind
            await asyncio.sleep(0)
            assert long._poller._watchers == 0

    simulate(body)


def test_a_video_on_screen_keeps_its_schedule() -> None:
    counts = []
    for on_screen in (False, True):
        async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder, on_screen: bool = on_screen) -> None:
            async with ow.AsyncOperations(**rec.options()) as ops:
                h = await ops.track(emu.create("video", duration=300))
                h.set_on_screen(on_screen)
                await h.wait()
            counts.append(len(rec.log))

        simulate(body)
    assert counts[0] == counts[1]


def test_tracking_2000_names_never_has_more_first_gets_in_flight_than_the_cap() -> None:
    """track_all of 2,000 names of a collection the service does not list (file search imports):
    every first GET goes through the limiter, at most poll_concurrency in flight at once (each
    answer held 50 ms so that they overlap)."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("import", duration=3600) for _ in range(2000)]
        flight = [0, 0]  # now, most

        async def slow(scope: Any, receive: Any, send: Any) -> None:
            flight[0] += 1
            flight[1] = max(flight[1], flight[0])
            try:
                await asyncio.sleep(0.05)
                await emu.app(scope, receive, send)
            finally:
                flight[0] -= 1

        async with ow.AsyncOperations(**rec.options(transport=httpx.ASGITransport(app=slow),
                                                    poll_concurrency=16, poll_rate=None)) as ops:
            handles = await ops.track_all(names)
            assert [h.name for h in handles] == names
        assert flight[1] == 16

    simulate(body)


def test_a_client_of_a_sped_up_emulator_polls_on_its_time_scale() -> None:
    """At speed=300 a 1 to 2.5 minute Veo job lasts 0.2 to 0.5 s: the schedule's gaps shrink with
    it, so each is seen done within seconds of emulated time, as in real life (with real-life
    gaps, the 1 s floor alone was 300 emulated seconds: 30 to 240 s late here)."""
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, speed=300, random_seed=3)

    async def body() -> list[float]:
        late = []
        async with emu.aclient() as ops:
            for duration in (60, 100, 150):
                start = clock.monotonic()
                await (await ops.track(emu.create("video", duration=duration))).wait()
                late.append((clock.monotonic() - start) * 300 - duration)
        return late

    assert max(clock.run(body())) < 15


def test_emulator_fixed_interval_still_means_what_it_says() -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, speed=300, random_seed=3)

    async def body() -> None:
        async with emu.aclient() as ops:
            t0 = clock.monotonic()
            await ops.wait(emu.create("batch", duration=3000), poll_interval=2)
            assert 10 <= clock.monotonic() - t0 <= 12  # 3000 emulated s = 10 s; polls 2 s apart

    clock.run(body())


def test_list_sweeps_replace_gets_for_listable_collections() -> None:
    """600 batches and 150 videos tracked at once get their first snapshots from list pages
    (a handful of GETs), and are then polled to the end by list sweeps: far fewer requests
    than one GET each per poll, every final state right."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=600 + i % 900, outcome="failure" if i % 7 == 0 else "success")
                 for i in range(600)]
        names += [emu.create("video", duration=100 + i % 200) for i in range(150)]
        async with ow.AsyncOperations(**rec.options()) as ops:
            handles = await ops.track_all(names)
            first = list(rec.log)
            finals = await asyncio.gather(*(h.wait() for h in handles))
        gets = [p for _, _, p, _ in first if p.startswith("/v1beta/batches/") or "/operations/" in p]
        assert len(gets) <= 20 and len(first) <= 40
        assert [op.state for op in finals] == [
            Operation.from_api_response(emu.get_operation(n)).state for n in names]
        sweeps = [p for _, _, p, _ in rec.log if p == "/v1beta/batches" or p.endswith("/operations")]
        one_by_one = sum(h._poller.requests for h in handles)
        assert len(rec.log) < len(names) and len(sweeps) > len(rec.log) / 2, (len(rec.log), one_by_one)

    simulate(body)


def test_track_all_hands_out_every_handle_in_order_one_poller_per_name() -> None:
    """Batches (listable: one list page), imports (a GET each), an Operation in hand (no request)
    and a repeated name: a handle per entry, in order; a repeated name shares its poller."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        batches = [emu.create("batch", duration=3600) for _ in range(30)]
        imports = [emu.create("import", duration=3600) for _ in range(5)]
        async with ow.AsyncOperations(**rec.options()) as ops:
            in_hand = await ops.get(emu.create("video", duration=3600))
            before = len(rec.log)
            targets = [imports[0], *batches, in_hand, *imports[1:], batches[0]]
            handles = await ops.track_all(targets)
            assert [h.name for h in handles] == [t if isinstance(t, str) else t.name for t in targets]
            assert handles[1]._poller is handles[-1]._poller and handles[1] is not handles[-1]
            sent = [p for _, m, p, _ in rec.log[before:]]
            assert sent.count("/v1beta/batches") == 1 and len(sent) == 1 + len(imports), sent

    simulate(body)


def test_track_all_of_a_name_whose_poller_stops_meanwhile_tracks_it_again() -> None:
    """A name already tracked when track_all starts (so not fetched with the others) whose last
    handle closes while the others' first GETs are out: track_all fetches it again, no KeyError."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        name = emu.create("batch", duration=3600)
        imports = [emu.create("import", duration=3600) for _ in range(30)]  # 3 s of GETs at 10/s
        async with ow.AsyncOperations(**rec.options()) as ops:
            earlier = await ops.track(name)
            tracking = asyncio.ensure_future(ops.track_all([name, *imports]))
            await asyncio.sleep(1)
            earlier.close()
            await asyncio.sleep(0)
            assert not earlier.polling and not tracking.done()
            handles = await tracking
            assert handles[0].polling and handles[0].operation.name == name
            assert [h.name for h in handles[1:]] == imports

    simulate(body)


def test_track_all_raises_the_first_error_and_leaves_nothing_polling() -> None:
    """A deleted name among many: NotFoundError, and not one of the others is polled after."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create(kind, duration=3600) for kind in ["batch", "import"] * 20]
        async with ow.AsyncOperations(**rec.options()) as ops:
            await ops.delete(names[6])  # a batch: not on the list page, so GET, and 404
            with pytest.raises(ow.NotFoundError):
                await ops.track_all(names)
            after = len(rec.log)
            await asyncio.sleep(1800)
            assert len(rec.log) == after
            again = await ops.track_all(names[:6])  # the others can be tracked as usual
            assert [h.operation.name for h in again] == names[:6]

    simulate(body)


def test_track_all_gets_first_snapshots_by_get_when_the_listing_fails() -> None:
    """The list page answers 500 (then a 429 storm, in a second client): every first snapshot
    comes by GET, no handle is lost, and the failed listing is not retried at once."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=3600) for _ in range(25)]
        for fault in ("500", "429"):
            listing = first_n(10**6, fault, lambda r: r.url.path == "/v1beta/batches")
            transport = Faulty(httpx.ASGITransport(app=rec), listing)
            async with ow.AsyncOperations(**rec.options(transport=transport)) as ops:
                before = len(rec.log)
                handles = await ops.track_all(names)
                assert [h.operation.name for h in handles] == names
            assert transport.injected[fault] == 1
            gets = [p for _, m, p, _ in rec.log[before:] if m == "GET" and p.startswith("/v1beta/batches/")]
            assert sorted(gets) == sorted(f"/v1beta/{n}" for n in names)

    simulate(body)


def test_a_collection_worth_sweeping_is_swept_periodically_and_seen_done_within_seconds() -> None:
    """200 batches of 10 to 15 minutes: the periodic sweeps (every 5 s while enough of them run)
    see each one done within seconds, with no GET after the first snapshots but for the last
    few, and about 1/50 of the requests a fixed 10 s loop would send."""

    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        durations = [600 + i * 1.5 for i in range(200)]
        names = [emu.create("batch", duration=d) for d in durations]
        ends = {n: clock.monotonic() + d for n, d in zip(names, durations, strict=True)}
        late: dict[str, float] = {}
        async with ow.AsyncOperations(**rec.options()) as ops:
            handles = await ops.track_all(names)
            for h in handles:
                h.subscribe(lambda op: late.setdefault(op.name, clock.monotonic() - ends[op.name]) if op.done else None)
            await asyncio.gather(*(h.wait() for h in handles))
        delays = sorted(late.values())
        assert len(delays) == 200 and delays[int(0.95 * 199)] <= 6.0, delays[-20:]
        # GETs only for the last few, once too few run for a sweep to pay (four per page).
        gets = [p.removeprefix("/v1beta/") for _, m, p, _ in rec.log if m == "GET" and p.startswith("/v1beta/batches/")]
        assert set(gets) <= set(names[-3:]), gets
        fixed_loop = sum(d // 10 + 2 for d in durations)
        assert len(rec.log) <= fixed_loop / 50, (len(rec.log), fixed_loop)

    simulate(body)


def test_a_sweep_waits_as_long_as_its_askers_can_and_no_longer() -> None:
    """A sweep asked only by polls with slack (re-reading the rate of a finish still far off)
    goes out when the first of them runs out of slack, not after the usual second per page; one
    asked by a poll without slack (it may see a finish) goes within that second."""
    from ops_widgets._engine import Engine

    clock = ow.VirtualClock()
    names = [f"batches/b{i}" for i in range(4)]

    async def sweep_at(asks: list[tuple[float, float]]) -> list[float]:
        """(when, slack) of each asker: the times the list pages went out."""
        listed: list[float] = []

        async def list_page(parent: str, token: str | None) -> tuple[list[Operation], str | None]:
            listed.append(clock.monotonic())
            return [Operation.from_api_response({"name": n}) for n in names], None

        engine = Engine(poll=_no_get, cancel=_no_cancel, clock=clock, list_page=list_page,
                        sweep_parent=lambda name: "batches")
        # Four members make the collection worth a sweep; their periodic sweeps would come only
        # every 50 s (the per-member budget), so the asks alone set the time here.
        engine.members["batches"] = 4
        t0 = clock.monotonic()

        async def ask(name: str, at: float, slack: float) -> None:
            await asyncio.sleep(at)
            await engine.fetch(name, slack=slack)

        await asyncio.gather(*(ask(n, at, slack) for n, (at, slack) in zip(names, asks, strict=True)))
        engine.close(ow.OpsError("closed"))
        return [t - t0 for t in listed]

    async def body() -> None:
        assert await sweep_at([(0, 30)] * 4) == pytest.approx([30])  # all can wait 30 s
        assert await sweep_at([(0, 30)] * 3 + [(0, 0)]) == pytest.approx([1])  # one cannot
        assert await sweep_at([(0, 30)] * 3 + [(10, 0)]) == pytest.approx([10])  # one comes that cannot
        assert await sweep_at([(0, 30)] * 3 + [(0, 12)]) == pytest.approx([12])  # the least slack counts

    clock.run(body())


def test_a_periodic_sweep_reads_every_page_and_an_asked_one_only_to_its_last_asker() -> None:
    """Its pollers leave their own polls to the periodic sweeps, wherever they sit in the list:
    with nobody asking, a sweep reads the whole collection. One asked reads until every asker was
    seen (here: one on the first of three pages)."""
    from ops_widgets._engine import Engine

    clock = ow.VirtualClock()
    pages = [[f"batches/p{p}-{i}" for i in range(4)] for p in range(3)]
    listed: list[tuple[float, str | None]] = []

    async def list_page(parent: str, token: str | None) -> tuple[list[Operation], str | None]:
        listed.append((clock.monotonic(), token))
        i = int(token or 0)
        return [Operation.from_api_response({"name": n}) for n in pages[i]], str(i + 1) if i < 2 else None

    async def body() -> None:
        engine = Engine(poll=_no_get, cancel=_no_cancel, clock=clock, list_page=list_page,
                        sweep_parent=lambda name: "batches")
        engine.members["batches"] = 100  # worth a periodic sweep every few seconds
        t0 = clock.monotonic()
        await engine.fetch(pages[0][1])
        assert [token for _, token in listed] == [None]  # the asker was on page 1
        await asyncio.sleep(30)
        # 3 pages for 100 members: the per-member budget sets the pace (6 s), so the pollers do
        # not leave their polls to these sweeps; with 1,000 members they do (every 5 s).
        assert engine.swept_every("batches") is None
        engine.members["batches"] = 1000
        await asyncio.sleep(7)
        assert engine.swept_every("batches") == pytest.approx(5.0)
        engine.close(ow.OpsError("closed"))
        periodic = [token for _, token in listed[1:]]
        assert len(periodic) >= 9 and periodic == ([None, "1", "2"] * 20)[:len(periodic)], periodic
        starts = [t - t0 for t, token in listed[1:] if token is None]
        assert all(b - a >= 5 for a, b in itertools.pairwise(starts)), starts  # not more often

    clock.run(body())


def test_an_operation_gone_from_a_swept_collection_is_fetched_and_stops() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=3600) for _ in range(20)]
        async with ow.AsyncOperations(**rec.options()) as ops:
            handles = await ops.track_all(names)
            await ops.delete(names[3])
            with pytest.raises(ow.NotFoundError):
                await handles[3].wait(timeout=3600)
            assert not handles[3].polling and handles[4].polling
        assert any(p.endswith("/" + names[3]) for _, m, p, _ in rec.log if m == "GET")

    simulate(body)


def test_a_collection_whose_listing_fails_is_polled_by_gets() -> None:
    async def body(emu: Emulator, clock: ow.VirtualClock, rec: Recorder) -> None:
        names = [emu.create("batch", duration=300 + i) for i in range(20)]
        broken = [False]
        transport = Faulty(httpx.ASGITransport(app=rec),
                           lambda r: "500" if broken[0] and r.url.path == "/v1beta/batches" else None)
        async with ow.AsyncOperations(**rec.options(transport=transport)) as ops:
            handles = await ops.track_all(names)
            broken[0] = True  # the listing only, from now on
            finals = await asyncio.gather(*(h.wait(timeout=3600) for h in handles))
        assert all(op.succeeded for op in finals) and transport.injected["500"] >= 1
        assert sum(1 for _, _, p, _ in rec.log if p.startswith("/v1beta/batches/")) >= 20

    simulate(body)


def test_a_poll_that_fails_after_the_operation_was_seen_done_elsewhere_is_no_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    """A poller's own request is in flight when another request (a list sweep, a long-poll)
    brings the done snapshot; when its own then fails (here: the client closed meanwhile),
    nothing failed: no error logged, no last_error, the done snapshot stands."""
    from ops_widgets._engine import AsyncTracked, Engine

    clock = ow.VirtualClock()
    name = "batches/b1"

    async def body() -> None:
        in_flight, fail = asyncio.Event(), asyncio.Event()

        async def poll(_name: str) -> Operation:
            in_flight.set()
            await fail.wait()
            raise RuntimeError("this client was closed; create a new one")

        engine = Engine(poll=poll, cancel=_no_cancel, clock=clock)
        handle = AsyncTracked(await engine.poller(Operation.from_api_response({"name": name})))
        await in_flight.wait()  # the clock runs to the poller's first due poll
        engine.offer(Operation.from_api_response({"name": name, "done": True, "response": {}}), clock.monotonic())
        fail.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert handle.operation.done and handle.last_error is None and not handle.polling

    with caplog.at_level(logging.DEBUG, logger="ops_widgets"):
        clock.run(body())
    assert not [r for r in caplog.records if "failed" in r.getMessage()]


def test_the_rate_limiter_serves_queued_requests_by_deadline_and_keeps_its_rate_and_pauses() -> None:
    """At 1 request/s, requests that queue go out by deadline (asked at + slack), equal deadlines
    in the order asked; turns stay 1 s apart; a pause holds every turn; one cancelled while
    queued gives its turn to the next."""
    clock = ow.VirtualClock()
    sent: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = Limiter(clock, max_concurrency=16, max_rate=1.0)

        async def ask(label: str, slack: float = 0.0) -> None:
            await limiter.acquire(slack)
            sent.append((label, clock.monotonic()))
            limiter.release()

        first = asyncio.ensure_future(ask("now"))
        learning = asyncio.ensure_future(ask("learning", slack=100))
        await asyncio.sleep(0)
        aimed = [asyncio.ensure_future(ask(f"aimed {i}")) for i in range(3)]
        gone = asyncio.ensure_future(ask("gone"))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(first, learning, *aimed, return_exceptions=True)
        limiter.pause.extend(10)  # a 429: nothing for 10 s, then 1 s apart again
        await asyncio.gather(ask("after a"), ask("after b"))

    clock.run(main())
    assert [label for label, _ in sent] == ["now", "aimed 0", "aimed 1", "aimed 2", "learning", "after a", "after b"]
    times = [t for _, t in sent]
    assert times[:5] == pytest.approx([0, 1, 2, 3, 4])  # the cancelled one took no turn
    assert times[5] >= times[4] + 10 - 1e-6 and times[6] == pytest.approx(times[5] + 1)


def test_a_poller_tells_the_limiter_which_polls_can_wait() -> None:
    """The adaptive schedule's slack reaches the limiter: a tuning job's polls that re-read the
    rate of a far finish may queue; the poll just after its finish, a video's polls (each may see
    it done) and the polls of a wait with its own interval may not."""
    from ops_widgets._engine import AsyncTracked, Engine

    clock = ow.VirtualClock()
    tuning, video, fixed_wait = "tunedModels/t/operations/1", "models/veo/operations/v", "tunedModels/u/operations/2"
    slacks: dict[str, list[float]] = {tuning: [], video: [], fixed_wait: []}

    async def body() -> None:
        granted: list[float] = []  # the slack of each turn, in the order the polls go out

        async def poll(name: str) -> Operation:
            slacks[name].append(granted.pop(0))
            t = clock.monotonic()
            if name == video:
                return Operation.from_api_response({"name": name, "done": t >= 600, "response": {}})
            return Operation.from_api_response(
                {"name": name, "done": t >= 5000, "response": {},
                 "metadata": {"completedPercent": min(100.0, 100 * t / 5000)}})

        engine = Engine(poll=poll, cancel=_no_cancel, clock=clock, max_rate=1.0)
        acquire = engine.limiter.acquire

        async def recording(slack: float = 0.0) -> None:
            await acquire(slack)
            granted.append(slack)  # the poll goes out next, with no await in between

        engine.limiter.acquire = recording  # type: ignore[method-assign]
        handles = [AsyncTracked(await engine.poller(Operation.from_api_response({"name": n})))
                   for n in (tuning, video)]
        waited = await engine.poller(Operation.from_api_response({"name": fixed_wait}))
        ops = await asyncio.gather(*(h.wait(timeout=10_000) for h in handles),
                                   engine.wait(waited, fixed(60.0), timeout=10_000))
        assert all(op.done for op in ops)

    clock.run(body())
    assert any(s > 10 for s in slacks[tuning])  # reading the rate, far from the finish
    assert slacks[tuning][-1] == 0  # the one that saw it done was aimed just after the finish
    assert slacks[video] and all(s == 0 for s in slacks[video])
    assert len(slacks[fixed_wait]) > 50 and all(s == 0 for s in slacks[fixed_wait])  # a wait's every 60 s


def _seen_done_after(finish: float, steps: int, counted: bool) -> float:
    """How long after ``finish`` a tracked tuning job in ``steps`` steps is seen done; ``counted``:
    its metadata counts the steps (completedSteps of totalSteps), else it only gives the percent."""
    from ops_widgets._engine import AsyncTracked, Engine

    clock = ow.VirtualClock()
    name = "tunedModels/t/operations/1"

    async def poll(_name: str) -> Operation:
        done = int(steps * min(1.0, clock.monotonic() / finish))
        metadata: dict[str, Any] = {"completedPercent": 100 * done / steps}
        if counted:
            metadata |= {"completedSteps": done, "totalSteps": steps}
        return Operation.from_api_response({"name": name, "done": done == steps, "metadata": metadata,
                                            **({"response": {}} if done == steps else {})})

    async def body() -> float:
        engine = Engine(poll=poll, cancel=_no_cancel, clock=clock)
        handle = AsyncTracked(await engine.poller(Operation.from_api_response({"name": name})))
        await handle.wait(timeout=10 * finish)
        return clock.monotonic() - finish

    return clock.run(body())


def test_a_job_counted_in_steps_is_seen_done_near_its_finish_not_a_step_late() -> None:
    # 20 steps over one to three hours: a step lasts 3 to 9 minutes, and the finish may be anywhere
    # in the last one. Given the step (totalSteps), the schedule aims at the middle of that window
    # and walks the rest of it in quarters; a reading taken as exact aims at its late end.
    finishes = [3600 + 7200 * i / 11 for i in range(12)]
    counted = [_seen_done_after(f, 20, True) for f in finishes]
    percent_only = [_seen_done_after(f, 20, False) for f in finishes]
    assert max(counted) <= 0.015 * max(finishes), counted  # 162 s; the percent alone: 326 s
    assert sum(counted) < sum(percent_only) / 2, (counted, percent_only)
