"""Time, injected: the one object that every part of ops_widgets reads time from.

A Clock answers monotonic time (for intervals, deadlines, ETAs, throttles), wall time (to compare
with a server's createTime), and makes the event loop that waits on it: every sleep and timer in
ops_widgets is an asyncio sleep or ``call_later`` on that loop, so the loop's time and the clock's
are the same time.

``VirtualClock`` makes loops whose time jumps to the next timer whenever nothing else is ready, so
hours of polling run in milliseconds, deterministically. Use it with in-process transports (an
ASGI app): a jump does not wait for sockets. It does wait for worker threads: while the loop
awaits ``run_in_executor`` (``asyncio.to_thread``: google-auth's blocking token refresh), time
stands still, as real time would barely move in the milliseconds such work takes; a worker that
sends a coroutine to the loop and blocks on it (``call_on_loop``) lets time move until it is
answered. In manual mode time moves only by ``advance()``, which another thread calls, for tests
that look at a widget between two instants.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import selectors
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["SYSTEM_CLOCK", "Clock", "Pause", "VirtualClock", "call_on_loop"]

T = TypeVar("T")


class Clock:
    """Real time. ``monotonic()`` is the event loop's own time (``time.monotonic``)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether timers on ``loop`` run on this clock's time."""
        return not isinstance(loop, _VirtualLoop)

    def __repr__(self) -> str:
        return "Clock()"


SYSTEM_CLOCK = Clock()


class Pause:
    """Until when a client sends nothing: a 429 said to hold off. One per client, shared by its
    direct calls (Transport) and its pollers (the engine's Limiter), so the whole client holds."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, self.clock.monotonic() + seconds)

    async def wait(self) -> None:
        """Return once no pause is on (a pause extended meanwhile is waited out too)."""
        while (left := self.until - self.clock.monotonic()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
            await asyncio.sleep(left)


class VirtualClock(Clock):
    """Simulated time for tests and simulations.

    ``auto=True``: a loop from ``new_loop()`` jumps to its next timer whenever it is idle.
    ``auto=False``: time stands still until ``advance(seconds)`` moves it, running every timer
    on the way; ``advance`` is called from a thread other than the loop's.
    """

    def __init__(self, start: float = 1_767_225_600.0, *, auto: bool = True) -> None:
        self._wall0 = start  # wall time at monotonic 0 (default: 2026-01-01T00:00:00Z)
        self._now = 0.0
        self._auto = auto
        self._target = math.inf if auto else 0.0
        self._idle = False
        self._cond = threading.Condition()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._works: set[_Work] = set()  # worker-thread jobs its loops await (run_in_executor)

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._wall0 + self._now

    def new_loop(self) -> asyncio.AbstractEventLoop:
        loop = _VirtualLoop(self)
        self._loops.append(loop)
        return loop

    def owns(self, loop: asyncio.AbstractEventLoop) -> bool:
        return isinstance(loop, _VirtualLoop) and loop.clock is self

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on a new loop of this clock (like ``asyncio.run``)."""
        loop = self.new_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loops.remove(loop)

    def advance(self, seconds: float, *, real_timeout: float = 10.0) -> None:
        """Manual mode: move time ``seconds`` on, running every timer due on the way, and
        return once the loops are idle at the new time."""
        if self._auto:
            raise RuntimeError("advance() is for VirtualClock(auto=False); an auto clock moves by itself")
        if seconds < 0:
            raise ValueError(f"time only moves forward, got {seconds!r}")
        with self._cond:
            self._target = self._now + seconds
            self._idle = False
        for loop in list(self._loops):
            if not loop.is_closed():
                loop.call_soon_threadsafe(_nothing)  # wake its selector
        with self._cond:
            if not self._cond.wait_for(lambda: self._idle and self._now >= self._target, real_timeout):
                raise TimeoutError(f"the loop did not settle at t={self._target:g} within {real_timeout:g}s")

    def settle(self) -> None:
        """Manual mode: run what is ready now, without moving time."""
        self.advance(0.0)

    def _jump(self, timeout: float | None, pending: Callable[[], bool]) -> bool:
        """Called by an idle loop about to wait ``timeout``: move time, or say it must block.
        True also when ``pending()`` finds work that arrived meanwhile (another thread's callback):
        asked under the lock advance() takes, so that time never moves past work queued before it."""
        with self._cond:
            if pending():
                return True
            if self._busy():
                return False  # not idle: a worker thread is busy; its answer wakes the selector
            if timeout is not None and self._now + timeout <= self._target:
                self._now += timeout
                return True
            if math.isfinite(self._target) and self._target > self._now:
                self._now = self._target
            self._idle = True
            self._cond.notify_all()
            return False

    def _busy(self) -> bool:
        return any(not work.waiting for work in self._works)

    def _update(self, work: _Work, *, waiting: bool | None = None, finished: bool = False) -> None:
        """A worker's work changed; once none is busy, wake the loops (one may be blocked waiting
        for it) so that they can move time again."""
        with self._cond:
            if finished:
                self._works.discard(work)
            elif waiting is not None:
                work.waiting = waiting
            idle = not self._busy()
        if idle:
            for loop in list(self._loops):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_nothing)

    def __repr__(self) -> str:
        return f"VirtualClock(t={self._now:g}, auto={self._auto})"


def _nothing() -> None:
    pass


class _Work:
    """One run_in_executor job of a virtual loop: busy unless its thread waits on the loop."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = False


_worker = threading.local()  # .work: the _Work this worker thread is running, if any


def call_on_loop(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[T]:
    """``asyncio.run_coroutine_threadsafe``, for a worker thread that will block on the answer:
    on a VirtualClock's loop, time may move while the coroutine runs (it may sleep) and stands
    still again from its end, when the worker resumes."""
    work: _Work | None = getattr(_worker, "work", None)
    if not isinstance(loop, _VirtualLoop) or work is None:
        return _submit(coro, loop, coro)
    clock = loop.clock

    async def answered() -> T:
        # Marked on the loop's thread, from the coroutine's start to its end: marked from the
        # worker instead, an idle loop could jump before the coroutine even arrived.
        clock._update(work, waiting=True)
        try:
            return await coro
        finally:
            clock._update(work, waiting=False)  # before the answer is handed over: no jump between

    return _submit(answered(), loop, coro)


def _submit(wrapper: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop,
            coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[T]:
    try:
        return asyncio.run_coroutine_threadsafe(wrapper, loop)
    except RuntimeError:  # the loop is closed (its client is gone): the coroutines never run
        wrapper.close()
        coro.close()
        raise


class _VirtualSelector(selectors.BaseSelector):
    """The real selector, except that an idle wait moves virtual time instead of sleeping."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        # Nothing is ready: this is where a real loop would sleep until its next timer.
        arrived: list[tuple[selectors.SelectorKey, int]] = []

        def pending() -> bool:
            arrived.extend(self._real.select(0))
            return bool(arrived)

        if self._clock._jump(timeout, pending):
            return arrived
        # Past what time may reach (manual mode) or no timer at all: wait for another thread.
        return self._real.select(None)

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        super().__init__(_VirtualSelector(clock))

    def time(self) -> float:
        return self.clock.monotonic()

    # typeshed spells the arguments with TypeVarTuple, which Python 3.10's typing lacks.
    def run_in_executor(self, executor: concurrent.futures.Executor | None,  # type: ignore[override]
                        func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        work = _Work()

        def run() -> T:  # on the worker thread
            _worker.work = work
            try:
                return func(*args)
            finally:
                _worker.work = None

        with self.clock._cond:
            self.clock._works.add(work)
        future = super().run_in_executor(executor, run)
        # On this loop as the answer arrives (or when no one awaits it any more): time may move.
        future.add_done_callback(lambda _f: self.clock._update(work, finished=True))
        return future
