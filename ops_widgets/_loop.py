"""The engine loop: one private asyncio loop on a daemon thread, per process.

Every blocking call (Operations) and, later, every widget and poller runs its coroutines here,
so each httpx client is only ever touched from the loop that created it, and blocking calls work
in a plain script, in a Jupyter cell (where a loop is already running) and from many threads.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Coroutine, TypeVar

__all__ = ["engine_loop", "on_engine_thread", "run"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def engine_loop() -> asyncio.AbstractEventLoop:
    """The engine loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, ready), name="ops-widgets-engine", daemon=True
            )
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        return _loop


def on_engine_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the engine loop and block the calling thread until it is done.

    An interrupt (Ctrl-C, Jupyter's stop button) cancels the coroutine, then propagates.
    """
    if on_engine_thread():
        coro.close()
        raise RuntimeError(
            "a blocking Operations method was called on the ops_widgets engine thread "
            "(from an on_progress callback or a subscriber?); use AsyncOperations there"
        )
    future = asyncio.run_coroutine_threadsafe(coro, engine_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def _forget_after_fork() -> None:
    # The child has no engine thread; it starts its own on first use.
    global _loop, _thread
    _loop, _thread = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
