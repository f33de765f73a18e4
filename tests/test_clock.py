"""VirtualClock in manual mode, driven from another thread as the widget tests drive it."""

from __future__ import annotations

import threading

import ops_widgets as ow


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
