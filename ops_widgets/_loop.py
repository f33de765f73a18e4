"""The engine thread: a private asyncio loop on a daemon thread, one per clock (so one per process
for real time).

Every blocking call (Operations), poller, widget update and heartbeat runs its coroutines and
callbacks here, so each httpx client is only ever touched from the loop that created it, and
blocking calls work in a plain script, in a Jupyter cell (where a loop is already running) and
from many threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["EngineThread", "block_on", "call_soon", "stop_thread", "thread_for"]

T = TypeVar("T")

_lock = threading.Lock()
_threads: weakref.WeakKeyDictionary[Clock, EngineThread] = weakref.WeakKeyDictionary()


class EngineThread:
    """A loop of ``clock``'s on a daemon thread, and the thread-safe ways into it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.loop = clock.new_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="ops-widgets-engine", daemon=True)
        self._thread.start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` here and block the calling thread until it is done.

        An interrupt (Ctrl-C, Jupyter's stop button) cancels the coroutine, then propagates.
        """
        return block_on(self.loop, coro, "a blocking Operations method")



def block_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], what: str) -> T:
    """Run ``coro`` on ``loop`` and block this thread until it is done; an interrupt cancels it.

    Refused on the loop's own thread, where waiting for the loop would freeze it.
    """
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here:
        coro.close()
        raise RuntimeError(
            f"{what} was called on the ops_widgets engine thread (from an on_progress callback or a "
            "subscriber?): use AsyncOperations or AsyncTracked there, or hand the work to another thread"
        )
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    """Run ``fn()`` on ``loop``: now if we are on it, else handed over thread-safely."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here:
        fn()
        return
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass  # the loop is closed (interpreter exit, asyncio.run over): nothing is left to run it


def thread_for(clock: Clock = SYSTEM_CLOCK) -> EngineThread:
    """The engine thread of ``clock``, started on first use."""
    with _lock:
        thread = _threads.get(clock)
        if thread is None or not thread.alive:
            thread = _threads[clock] = EngineThread(clock)
        return thread


def stop_thread(clock: Clock) -> None:
    """Stop the engine thread of ``clock`` (a test's VirtualClock), if it has one."""
    with _lock:
        thread = _threads.pop(clock, None)
    if thread is not None and thread.alive:
        thread.loop.call_soon_threadsafe(thread.loop.stop)
        thread._thread.join(10)
        thread.loop.close()


def _forget_after_fork() -> None:
    # The child has no engine threads; it starts its own on first use.
    _threads.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
