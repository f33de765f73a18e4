"""The polling engine: ONE poller per (client, operation name), shared by every handle,
subscriber and wait() on that name, so a notebook that shows an operation in three widgets and
waits on it in a fourth cell still sends one stream of requests for it.

    Hub (one per AsyncOperations, on that client's loop)
     ├── Limiter   at most N requests in flight and R per second; a 429 pauses them all
     └── Poller    per name: latest snapshot, Adaptive schedule, subscribers, waiters
          └── Tracked / AsyncTracked handles (what users and widgets hold)

Pollers run on the client's loop (the engine thread for the blocking Operations). Handles may be
used from any thread: whatever must run on the loop is handed over with call_soon_threadsafe.
A poller stops when its operation is done, or when no handle, subscriber or waiter is left.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import _loop
from ._exceptions import (
    AuthenticationError,
    BadRequestError,
    InvalidNameError,
    NotFoundError,
    OpsError,
    PermissionDeniedError,
    RateLimitError,
    WaitTimeout,
)
from ._schedule import Adaptive, Durations, backoff
from ._types import Operation

if TYPE_CHECKING:
    from ._client import AsyncOperations

__all__ = ["AsyncTracked", "Hub", "Limiter", "Poller", "Tracked"]

logger = logging.getLogger("ops_widgets")

Callback = Callable[[Operation], Any]

# Errors that more polling cannot fix: the poller stops and waiters get the error.
_PERMANENT = (NotFoundError, AuthenticationError, PermissionDeniedError, BadRequestError, InvalidNameError)
_REPORT_AFTER = 3  # consecutive failures before a handle shows last_error (one blip is not news)
_STAGGER = 1.0  # seconds over which pollers resume after a pause when the rate is not capped


class Limiter:
    """Politeness per client: ``max_concurrency`` requests in flight and ``max_rate`` per second.

    Turns are handed out in order, ``1 / max_rate`` apart; ``pause()`` (a 429) moves every turn
    past the pause, so all pollers stop together and then resume staggered, not in a burst.
    """

    def __init__(self, max_concurrency: int = 16, max_rate: float | None = 10.0,
                 rand: Callable[[], float] = random.random) -> None:
        if max_concurrency < 1:
            raise ValueError(f"poll_concurrency must be >= 1, got {max_concurrency!r}")
        self._sem = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / max_rate if max_rate else 0.0
        self._next = 0.0
        self.paused_until = 0.0
        self._rand = rand

    def pause(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.paused_until = max(self.paused_until, now + seconds)

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            at = max(now, self._next, self.paused_until)
            if self._interval:
                self._next = at + self._interval
            elif at > now:
                at += self._rand() * _STAGGER
            if at > now:
                await asyncio.sleep(at - now)
            if self.paused_until <= loop.time():
                break  # else a pause began while we queued: queue again behind it
        await self._sem.acquire()

    def release(self) -> None:
        self._sem.release()


class Hub:
    """All pollers of one client, on that client's loop."""

    def __init__(self, client: AsyncOperations, *, max_concurrency: int = 16,
                 max_rate: float | None = 10.0, durations: Durations | None = None) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.limiter = Limiter(max_concurrency, max_rate, client._rand)
        self.durations = durations or Durations(scale=client._typical_scale)
        self.pollers: dict[str, Poller] = {}
        self._pause_backoff: Iterator[float] | None = None

    def active(self, name: str) -> Poller | None:
        poller = self.pollers.get(name)
        return poller if poller is not None and not poller.stopped else None

    async def poller(self, target: str | Operation, poll_interval: float | None = None) -> Poller:
        name = target.name if isinstance(target, Operation) else target
        poller = self.active(name)
        if poller is None:
            # An Operation in hand is the first snapshot for free; a name costs one GET, whose
            # errors (404, bad key) are the caller's to see at once.
            first = target if isinstance(target, Operation) else await self.client.get(name)
            poller = self.active(name)  # another track() may have won the race during the await
            if poller is None:
                poller = self.pollers[name] = Poller(self, first)
        if poll_interval is not None:
            poller.want_interval(poll_interval)
        return poller

    async def fetch(self, name: str) -> Operation:
        await self.limiter.acquire()
        try:
            op = await self.client._get(name, retries=0)
        finally:
            self.limiter.release()
        self._pause_backoff = None
        return op

    def rate_limited(self, exc: RateLimitError) -> float:
        """Pause every poller of this client for the server's retryDelay, else a growing backoff."""
        if exc.retry_delay is not None:
            delay = exc.retry_delay
        else:
            if self._pause_backoff is None:
                self._pause_backoff = backoff(1.0, 60.0, 2.0, jitter=False)
            delay = next(self._pause_backoff)
        self.limiter.pause(delay)
        logger.info("rate limited: all polling paused for %.1fs", delay)
        return delay

    def forget(self, poller: Poller) -> None:
        if self.pollers.get(poller.name) is poller:
            del self.pollers[poller.name]


class Poller:
    """Polls one operation for everyone interested in it."""

    def __init__(self, hub: Hub, first: Operation) -> None:
        self.hub = hub
        self.name = first.name
        self.latest = first
        self.last_error: OpsError | None = None
        self.requests = 0  # GETs sent by this poller (the first snapshot's excluded)
        self.stopped = False
        self.cancel_requested = False
        self.saw_running = not first.done  # seen running at least once (elapsed is then known)
        clock = hub.client._clock
        self._started = clock()
        self._observed_at = clock()
        self._done_at: float | None = None
        self._refs = 0
        self._subscribers: list[Callback] = []
        self._lock = threading.RLock()  # serializes deliveries, so each subscriber sees them in order
        self._done = asyncio.Event()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._interval: float | None = None
        self._schedule = Adaptive(first.kind, hub.durations)
        self._retry_delays: Iterator[float] | None = None  # backoff while polls keep failing
        self._retry_now = False  # after a 429: poll again as soon as the pause allows
        self._cancel_delays: Iterator[float] | None = None
        self._cancel_task: asyncio.Task[None] | None = None
        self._observe(first)
        if first.done:
            self._finish()

    # -- interest: handles, subscribers and waiters ----------------------------------------

    def retain(self) -> None:
        """On the loop: one more interested party; start polling if needed."""
        self._refs += 1
        if self._task is None and not self.stopped:
            self._task = self.hub.loop.create_task(self._run(), name=f"ops-widgets poll {self.name}")

    def release(self) -> None:
        """On the loop: one fewer; with none left, stop."""
        self._refs -= 1
        if self._refs <= 0 and not self.stopped:
            self._stop()

    def on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the poller's loop: now if we are on it, else hand it over."""
        try:
            here = asyncio.get_running_loop() is self.hub.loop
        except RuntimeError:
            here = False
        if here:
            fn()
            return
        try:
            self.hub.loop.call_soon_threadsafe(fn)
        except RuntimeError:
            pass  # the loop is closed (interpreter exit, asyncio.run over): nothing left to stop

    # -- what handles read -------------------------------------------------------------------

    def elapsed(self) -> float:
        op = self.latest
        create, update = op.create_time, op.update_time
        if create is not None:
            if op.done and update is not None:
                return max(0.0, (update - create).total_seconds())
            if not op.done:
                return max(0.0, self.hub.client._wall() - create.timestamp())
        end = self._done_at if self._done_at is not None else self.hub.client._clock()
        return max(0.0, end - self._started)

    def eta(self) -> tuple[float | None, bool]:
        """(seconds left counting down between polls, whether it comes from typical durations)."""
        if self.latest.done:
            return 0.0, False
        est = self._schedule.estimate()
        if est.eta is None:
            return None, est.from_priors
        since = self.hub.client._clock() - self._observed_at
        return max(0.0, est.eta - since), est.from_priors

    # -- subscriptions --------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(op)`` now with the latest snapshot, then after every change."""
        with self._lock:
            self._subscribers.append(callback)
            self._call(callback, self.latest)
        self.on_loop(self.retain)
        removed = False

        def unsubscribe() -> None:
            nonlocal removed
            with self._lock:
                if removed:
                    return
                removed = True
                self._subscribers.remove(callback)
            self.on_loop(self.release)

        return unsubscribe

    def _call(self, callback: Callback, op: Operation) -> None:
        try:
            result = callback(op)
            if inspect.isawaitable(result):
                asyncio.run_coroutine_threadsafe(_awaited(result), self.hub.loop)
        except Exception:
            logger.exception("a subscriber of %s raised; the others and the poller go on", self.name)

    def _deliver(self) -> None:
        with self._lock:
            op = self.latest
            for callback in list(self._subscribers):
                self._call(callback, op)

    # -- waiting and cancelling (on the loop) ----------------------------------------------

    async def wait(self, timeout: float | None = None, on_progress: Callback | None = None) -> Operation:
        self.retain()
        unsubscribe = self.subscribe(on_progress) if on_progress is not None else None
        try:
            if timeout is None:
                await self._done.wait()
            else:
                await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError:
            raise WaitTimeout(
                f"{self.name} was still running after {timeout:g}s (it goes on; wait again or cancel it)",
                self.latest,
            ) from None
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self.release()
        if not self.latest.done and self.last_error is not None:
            raise self.last_error  # stopped for good (deleted, key revoked): say why
        return self.latest

    async def cancel(self) -> None:
        """Send ONE cancel however often it is asked for; then poll soon to see it confirmed."""
        if self.latest.done or self.cancel_requested:
            return
        if self._cancel_task is None:
            self._cancel_task = self.hub.loop.create_task(self._send_cancel())
        task = self._cancel_task
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and (task.cancelled() or task.exception() is not None):
                self._cancel_task = None  # a failed cancel may be tried again

    async def _send_cancel(self) -> None:
        await self.hub.client.cancel(self.name)
        self.expect_cancel()

    def expect_cancel(self) -> None:
        """On the loop: a cancel went through (here or elsewhere); poll soon to see it confirmed."""
        self.cancel_requested = True
        self._cancel_delays = backoff(0.5, 10.0, 2.0, jitter=False)
        self.wake()

    # -- the loop ---------------------------------------------------------------------------

    def want_interval(self, interval: float) -> None:
        """A fixed interval asked for by a tracker; the shortest asked for wins."""
        self._interval = interval if self._interval is None else min(self._interval, interval)
        self.wake()

    def wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _next_delay(self) -> float:
        if self._retry_now:
            self._retry_now = False
            return 0.0
        if self._retry_delays is not None:
            return next(self._retry_delays)
        if self._cancel_delays is not None:
            return next(self._cancel_delays)
        if self._interval is not None:
            return self._interval
        return self._schedule.next_delay()

    async def _sleep(self, delay: float) -> None:
        loop = self.hub.loop
        self._wakeup = fut = loop.create_future()
        handle = loop.call_later(delay, _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._wakeup = None

    async def _run(self) -> None:
        failures = 0
        while not self.stopped:
            await self._sleep(self._next_delay())
            if self.stopped:
                return
            self.requests += 1
            try:
                op = await self.hub.fetch(self.name)
            except RateLimitError as exc:
                failures += 1
                self.hub.rate_limited(exc)
                self._retry_now = True  # queue again at once: the limiter holds it past the pause
                self._failed(exc, failures)
                continue
            except _PERMANENT as exc:
                self._failed(exc, _REPORT_AFTER)
                self._finish()
                return
            except Exception as exc:  # 5xx, transport, a broken body, even a bug: keep going
                if not isinstance(exc, OpsError):
                    logger.exception("polling %s failed unexpectedly; retrying", self.name)
                failures += 1
                if self._retry_delays is None:
                    self._retry_delays = backoff(1.0, 60.0, 2.0, rand=self.hub.client._rand)
                if isinstance(exc, OpsError):
                    self._failed(exc, failures)
                continue
            failures = 0
            self._retry_delays = None
            self._update(op)

    def _failed(self, exc: OpsError, failures: int) -> None:
        logger.debug("polling %s failed (%d in a row): %s", self.name, failures, exc)
        if failures >= _REPORT_AFTER and self.last_error is not exc:
            self.last_error = exc
            logger.warning("polling %s keeps failing (%d in a row): %s", self.name, failures, exc)
            self._deliver()  # the handle's last_error changed: tell subscribers

    def _observe(self, op: Operation) -> None:
        self._observed_at = self.hub.client._clock()
        if not op.done:
            self._schedule.observe(self.elapsed(), op.progress)

    def _update(self, op: Operation) -> None:
        changed = op.raw != self.latest.raw or self.last_error is not None
        self.saw_running = self.saw_running or not op.done
        self.last_error = None
        if op.done and not self.latest.done:
            self._done_at = self.hub.client._clock()
        self.latest = op
        self._observe(op)
        if op.done:
            create, update = op.create_time, op.update_time
            reported = (update - create).total_seconds() if create and update else None
            self._schedule.finished(self.elapsed(), reported)
        if changed:
            self._deliver()
        if op.done:
            self._finish()

    def _finish(self) -> None:
        self.stopped = True
        self._done.set()
        self.hub.forget(self)
        self.wake()

    def close(self, reason: OpsError) -> None:
        """Stop for good (the client is closing): waiters get ``reason`` instead of hanging."""
        self.last_error = reason
        self._done.set()
        self._stop()

    def _stop(self) -> None:
        self.stopped = True
        self.hub.forget(self)
        if self._task is not None and self._task is not _current_task():
            self._task.cancel()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def _awaited(aw: Any) -> None:
    await aw


class _Handle:
    """A live view of one operation: what users and widgets hold. Cheap; share the poller."""

    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        poller.retain()  # handles are made on the poller's loop
        self._finalizer = weakref.finalize(self, poller.on_loop, poller.release)

    @property
    def name(self) -> str:
        return self._poller.name

    @property
    def operation(self) -> Operation:
        """The latest snapshot."""
        return self._poller.latest

    @property
    def elapsed(self) -> float:
        """Seconds since it started (createTime when known, else since tracking began)."""
        return self._poller.elapsed()

    @property
    def eta(self) -> float | None:
        """Seconds left, or None when nothing can be estimated."""
        return self._poller.eta()[0]

    @property
    def eta_is_estimate(self) -> bool:
        """True when no progress is reported and the ETA comes from typical durations."""
        return self._poller.eta()[1]

    @property
    def last_error(self) -> OpsError | None:
        """The error of the last polls, after repeated failures (polling goes on); else None."""
        return self._poller.last_error

    @property
    def cancel_requested(self) -> bool:
        return self._poller.cancel_requested

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """``callback(op)`` now, then after every poll that changed something; returns unsubscribe."""
        return self._poller.subscribe(callback)

    def close(self) -> None:
        """Drop this handle's interest now (otherwise when it is garbage-collected)."""
        self._finalizer()

    def __repr__(self) -> str:
        eta, estimate = self._poller.eta()
        left = "" if eta is None or self.operation.done else f"  eta {'~' if estimate else ''}{eta:.0f}s"
        return f"<{type(self).__name__} {self.operation.summary()}  {self.elapsed:.0f}s{left}>"


class Tracked(_Handle):
    """The handle Operations.track() returns: blocking wait() and cancel()."""

    def wait(self, timeout: float | None = None) -> Operation:
        return _loop.run(self._poller.wait(timeout))

    def cancel(self) -> None:
        _loop.run(self._poller.cancel())


class AsyncTracked(_Handle):
    """The handle AsyncOperations.track() returns: awaitable wait() and cancel()."""

    async def wait(self, timeout: float | None = None) -> Operation:
        return await self._poller.wait(timeout)

    async def cancel(self) -> None:
        await self._poller.cancel()
