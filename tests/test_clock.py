"""VirtualClock in manual mode, driven from another thread as the widget tests drive it."""

from __future__ import annotations

import asyncio
import threading
import time

import ops_widgets as ow
from ops_widgets._clock import call_on_loop


def test_advance_never_moves_time_past_a_timer_another_thread_just_queued() -> None:
    """A thread queues "call me in 10 s" (call_soon_threadsafe) and then advances 10 s while the
    loop thread is on its way to idle (a widget made while the engine finishes its first poll):
    the timer is set at the old time and fires at the new one. It once fired 10 s late (a
    widget's first heartbeat went missing): the loop, about to wait, moved time to the target of
    an advance() that began after the timer was queued."""
    clock = ow.VirtualClock(auto=False)
    loop = clock.new_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fired: list[float] = []
    finishing = threading.Event()

    def busy() -> None:  # the engine busy until just before it goes idle
        finishing.set()
        sum(range(2000))

    try:
        loop.call_soon_threadsafe(loop.call_later, 10_000_000.0, lambda: None)  # idle waits have a timeout
        clock.settle()
        for i in range(1, 1001):
            finishing.clear()
            loop.call_soon_threadsafe(busy)
            finishing.wait(10)
            loop.call_soon_threadsafe(lambda: loop.call_later(10.0, lambda: fired.append(clock.monotonic())))
            clock.advance(10.0)
            assert fired[i - 1:] == [10.0 * i], f"step {i}: fired at {fired[-2:]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_time_stands_still_while_the_loop_awaits_a_worker_thread() -> None:
    """An auto VirtualClock does not jump while the loop awaits asyncio.to_thread (google-auth's
    token refresh signs a JWT there): other tasks' timers wait. Once that worker blocks on a
    coroutine it sent to the loop (call_on_loop: the token request), time moves again, and it
    stands still from the coroutine's answer until the worker returns. Before, a ticker made
    time race ahead during the worker's few real milliseconds: refreshes landed at random times."""
    clock = ow.VirtualClock()

    async def main() -> tuple[float, float, str, float, float, list[float]]:
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1)
                ticks.append(clock.monotonic())

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()

        def work() -> tuple[float, str, float]:
            time.sleep(0.02)  # blocking work; the ticker must not tick meanwhile
            before = clock.monotonic()
            answer = call_on_loop(asyncio.sleep(5, "answer"), loop).result(10)  # time moves while it sleeps
            time.sleep(0.02)
            return before, answer, clock.monotonic()

        began = clock.monotonic()
        before, answer, after = await asyncio.to_thread(work)
        end = clock.monotonic()
        task.cancel()
        return began, before, answer, after, end, ticks

    began, before, answer, after, end, ticks = clock.run(main())
    assert (began, before, answer, after, end) == (0.0, 0.0, "answer", 5.0, 5.0)
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]
