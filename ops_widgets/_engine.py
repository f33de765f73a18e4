"""The polling engine: the ONE place that polls. One poller per (client, operation name), shared
by every handle, subscriber, widget and wait() on that name, so a notebook that shows an operation
in three widgets and waits on it in a fourth cell still sends one stream of requests for it.

    Engine (one per client, on that client's loop)
     ├── Limiter   at most N requests in flight and R per second; a 429 pauses them all
     ├── Wakeups   one loop timer for every poller between polls
     └── Poller    per name: latest snapshot, schedule, subscribers, poll requests
          └── AsyncTracked / Tracked handles (what users and views hold)

A wait() is a request to the shared poller, never a loop of its own: it asks for a poll at or
after each time its own schedule (fixed interval, backoff) names, and the poller polls as soon as
the most demanding of its waiters, fixed intervals and adaptive schedule asks. So a wait behaves
the same whether or not anything else tracks the name.

Everything here runs on the engine's loop; handles are the thread-safe way in. Subscribers are
called on the loop, in order, with no lock held. Time is the injected Clock's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import inspect
import itertools
import logging
import math
import random
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from ._backends import VIDEO_MAX_BYTES
from ._clock import Clock, Pause
from ._exceptions import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    InvalidNameError,
    NotFoundError,
    OpsError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedError,
    WaitTimeout,
)
from ._loop import block_on, call_soon
from ._progress import extrapolate, progress_step
from ._schedule import Adaptive, Durations, backoff, clip_to_deadline
from ._text import summary_line
from ._types import Operation

__all__ = ["DEADLINE_GRACE", "FIRST_SNAPSHOT_PATIENCE", "LONG_POLL_TIMEOUT", "AsyncTracked", "Engine", "Limiter",
           "Poller", "Tracked", "Wakeups"]

logger = logging.getLogger("ops_widgets")

T = TypeVar("T")
Callback = Callable[[Operation], Any]
Fetch = Callable[[str], Awaitable[Operation]]
# A long-poll: (name, timeout in seconds) -> the operation once done, or as it is when the timeout passed.
LongPoll = Callable[[str, float], Awaitable[Operation]]
# A video of a done operation: (the operation, which video, the cap in bytes) -> its bytes.
VideoFetch = Callable[[Operation, int, int], Awaitable[bytes]]
# One list page of a collection: (the operations on it, the next page's token or None).
ListPage = Callable[[str, "str | None"], Awaitable[tuple[list[Operation], "str | None"]]]

# Errors that more polling cannot fix: the poller stops and waiters get the error.
_PERMANENT = (NotFoundError, AuthenticationError, PermissionDeniedError, BadRequestError, InvalidNameError)
_REPORT_AFTER = 3  # consecutive failures before a handle shows last_error (one blip is not news)
_STAGGER = 1.0  # seconds over which pollers resume after a pause when the rate is not capped
_EPS = 1e-6  # a poll sent this close before a due time counts as at it (float rounding)
# How long past its deadline a wait lets its last poll finish before it gives up on it.
DEADLINE_GRACE = 1.0
# How long track() keeps trying to get a first snapshot through transient failures (5xx, dropped
# or broken answers, 429s) before it raises the last one; a wait() tries until its deadline.
FIRST_SNAPSHOT_PATIENCE = 300.0
# List sweeps: a collection is read by list pages instead of one GET per operation once its
# tracked operations outnumber, this many times over, the pages a sweep of it reads.
_SWEEP_SAVING = 4
_FIRST_WORKERS = 64  # first snapshots a track_all fetches at once (the limiter caps what is sent)
_CHUNK = 256  # pollers a track_all makes between two turns of the event loop
_SWEEP_MAX_PAGES = 100  # a sweep reads at most this many pages; what it did not see is GET
_SWEEP_CHUNK = 100  # operations of a page taken in per turn of the event loop
# A collection worth sweeping is swept periodically, reading every page: every _SWEEP_EVERY
# seconds at most (a fixed 10 s loop sees an operation done 5 s late on average; this, 2.5 s), no
# more often than _SWEEP_PAGE_EVERY seconds per page (the 7 pages of a 7,000-batch collection
# about every 10 s: measured on bench/engine_fleet.py's all-listable fleet, 1.3 s per page cost
# 1/100 of the fixed loop's requests and 1.4 s 1/102, at p95 8.7 and 9.2 s), and no more often than
# costs each tracked operation one request per _SWEEP_BUDGET seconds (1/20 of that loop's). While
# they come every _SWEPT_WITHIN seconds or sooner (that loop's period) and the budget does not set
# their pace, their pollers leave their own polls to them.
_SWEEP_EVERY = 5.0
_SWEEP_PAGE_EVERY = 1.4
_SWEEP_BUDGET = 200.0
_SWEPT_WITHIN = 10.0
_SWEPT_SLACK = 1.5  # a swept poller's own poll waits this many periods: it is due only if sweeps stop
_SWEEP_BROKEN_FOR = 60.0  # after a sweep failed (not a 429), GETs for this long (service time)
# The timeout a long-poll asks for (real seconds, whatever the time scale: the server holds the
# request on its own clock). Vertex AI holds a :wait for at most about a minute (the emulator's
# MAX_WAIT); asking for more gains nothing. The request's own HTTP timeout must exceed it.
LONG_POLL_TIMEOUT = 60.0


class Limiter:
    """Politeness per client: ``max_concurrency`` requests in flight and ``max_rate`` per second.

    Turns are ``1 / max_rate`` apart. When requests queue for them, the one with the earliest
    deadline goes first: its asking time plus the ``slack`` it says it can wait at little cost
    (a poll that only re-reads a far finish's rate can wait; one aimed at a finish, a list page
    or a first snapshot cannot). Equal deadlines go in the order asked. A pause (a 429, met by a
    poll or by any other request of the client) moves every turn past it, so all pollers stop
    together and then resume staggered, not in a burst.
    """

    def __init__(self, clock: Clock, max_concurrency: int = 16, max_rate: float | None = 10.0,
                 rand: Callable[[], float] = random.random, pause: Pause | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"poll_concurrency must be >= 1, got {max_concurrency!r}")
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"poll_rate must be > 0 or None, got {max_rate!r}")
        self._clock = clock
        self._sem = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / max_rate if max_rate else 0.0
        self._next = 0.0  # the earliest time of the next turn
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []  # (deadline, order, turn)
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.pause = pause or Pause(clock)
        self._rand = rand
        # Long-polls hold their slot for up to a minute: they may take all but a few, so that
        # first GETs, list pages and the polls of other names never queue behind them.
        self.long_cap = max_concurrency - max(1, max_concurrency // 8)
        self.long_held = 0

    async def _turn(self, slack: float = 0.0) -> None:
        """Wait for this request's rate turn (and past any pause)."""
        if not self._interval:  # no rate cap: only a pause holds requests back
            if self.pause.until > self._clock.monotonic():
                await self.pause.wait()
                await asyncio.sleep(self._rand() * _STAGGER)  # resume staggered, not in a burst
                await self._turn()  # a pause that began meanwhile holds it too
            return
        now = self._clock.monotonic()
        if not self._queue and now >= max(self._next, self.pause.until):
            self._next = now + self._interval
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (now + max(slack, 0.0), next(self._order), turn))
        self._arm()
        await turn  # cancelled while queued: the hand-out skips it

    def _arm(self) -> None:
        """Make sure a timer hands out the next turn when it is due."""
        if self._timer is None and self._queue:
            delay = max(self._next, self.pause.until) - self._clock.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._hand_out)

    def _hand_out(self) -> None:
        self._timer = None
        now = self._clock.monotonic()
        if now >= max(self._next, self.pause.until) - _EPS:  # else a pause began: wait it out
            while self._queue:
                turn = heapq.heappop(self._queue)[2]
                if not turn.done():  # its asker is gone: the next one
                    turn.set_result(None)
                    self._next = now + self._interval
                    break
        self._arm()

    async def acquire(self, slack: float = 0.0) -> None:
        await self._turn(slack)
        await self._sem.acquire()

    def release(self) -> None:
        self._sem.release()

    def _long_room(self) -> bool:
        return self.long_held < self.long_cap and not self._sem.locked()  # a slot free, nobody queued

    async def acquire_long(self) -> bool:
        """A slot for a long-poll, if one is free now: True once it is held (after a rate turn:
        the long-poll is one request, sent once, so it spends one turn, and never holds the rate
        while it waits on the server); False, holding nothing, when long-polls fill their share
        of the slots or requests queue for slots (the caller polls by GET this time)."""
        if not self._long_room():
            return False
        await self._turn()
        if not self._long_room():
            return False
        await self._sem.acquire()  # free and nobody queued: does not wait
        self.long_held += 1
        return True

    def release_long(self) -> None:
        self.long_held -= 1
        self.release()


class Wakeups:
    """Wakes pollers at their due times, with ONE loop timer for them all.

    A poller between polls is a heap entry here, not a sleeping task: a task, its coroutines,
    its timer and their contexts are about fifteen objects the cyclic GC tracks, and at 10,000
    pollers the full collections they cause stall the loop (bench/track_names.py). A poller
    runs a task only while a poll is due or in flight.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self._loop, self._clock = loop, clock
        self._due: dict[Poller, float] = {}  # the earliest time each poller asked to be woken
        self._heap: list[tuple[float, int, Poller]] = []  # may hold stale entries (see _stale)
        self._seq = itertools.count()  # ties never compare pollers
        self._stale = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def at(self, due: float, poller: Poller) -> None:
        """Wake ``poller`` at ``due`` (clock time), or sooner if it already asked for sooner (a
        poller woken early looks at its dues and asks again)."""
        if due == math.inf:
            return  # nothing is due until something wakes it
        queued = self._due.get(poller)
        if queued is not None:
            if queued <= due:
                return
            self._stale += 1  # its later entry stays in the heap until popped or compacted
        self._due[poller] = due
        heapq.heappush(self._heap, (due, next(self._seq), poller))
        self._compact()
        if due < self._timer_at:
            self._arm(due)

    def cancel(self, poller: Poller) -> None:
        """No wakeup for ``poller`` (it stopped): its entry goes stale, not kept alive for long."""
        if self._due.pop(poller, None) is not None:
            self._stale += 1
            self._compact()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        self._due.clear()
        self._heap.clear()
        self._stale = 0

    def _compact(self) -> None:
        # Stale entries hold stopped pollers (and their snapshots) for up to the schedule's ceiling:
        # rebuild once they are half the heap, which keeps the cost amortised O(log n) per entry.
        if self._stale > 64 and 2 * self._stale > len(self._heap):
            self._heap = [(due, next(self._seq), poller) for poller, due in self._due.items()]
            heapq.heapify(self._heap)
            self._stale = 0

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_later(max(0.0, due - self._clock.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._clock.monotonic()
        heap, due_of = self._heap, self._due
        woken: list[Poller] = []
        while heap and heap[0][0] <= now + _EPS:
            due, _, poller = heapq.heappop(heap)
            if due_of.get(poller) == due:
                del due_of[poller]
                woken.append(poller)
            else:
                self._stale = max(0, self._stale - 1)
        if heap:
            self._arm(heap[0][0])
        for poller in woken:  # after re-arming: a woken poller may ask for a later time at once
            poller.wake()


class Engine:
    """All pollers of one client, on that client's loop.

    ``poll`` fetches one snapshot (no request retries: the engine owns retry and rate-limit
    policy, for first snapshots and pollers alike); ``cancel`` sends a cancel, and
    ``can_cancel`` says whether the service has one for a name. ``pause`` is the client's 429
    pause, shared with its direct calls. The engine knows nothing of HTTP.

    Long-polls (Vertex AI's ``POST {name}:wait?timeout=...``): ``long_poll(name, timeout)``
    returns the operation once it is done, or as it is when ``timeout`` seconds
    (``long_poll_timeout``, LONG_POLL_TIMEOUT by default) have passed; ``can_long_poll(name)``
    says whether the service binds it for that name. A poller of such a name keeps ONE long-poll
    outstanding instead of its adaptive schedule: a change to done is seen as it happens, with
    about one request per timeout. The hook must send with an HTTP timeout longer than the one
    it is given, and must not retry (the engine's policy does). Everything else still polls by
    GET beside it: a handle's ``poll_interval``, a view on screen (for an operation that reports
    progress), a wait with ``on_progress``, the check after a cancel. A wait without
    ``on_progress`` and ``AsyncTracked.wait`` / ``as_completed`` only need the done, and take
    it from the long-poll. Those other polls, and the polls of a name with no long-poll in flight,
    are read from list sweeps where a sweep is worth it, as any poll is; but a name counts toward
    its collection's sweeps only while no long-poll of it is in flight.

    A long-poll holds a concurrency slot while the server holds it, but spends one rate turn,
    when it is sent, like any request. Long-polls take at most ``Limiter.long_cap`` slots (all
    but an eighth of ``max_concurrency``, at least one slot kept back for short requests), and
    only a slot that is free now: a name that finds none polls on its adaptive schedule (by GET
    or list sweep) and tries again at its next poll. So N operations long-poll at once when
    ``max_concurrency`` leaves N slots to them (100 need ``max_concurrency`` 115).

    When the service does not bind ``:wait`` (the hook raises UnsupportedError or an ApiError of
    status 501; or a 404 while a GET of the same name still finds it), the engine remembers it,
    for every name of this client, and polls on the adaptive schedule. Other failures of a
    long-poll go through the pollers' usual policy (backoff, 429 pause, permanent errors).
    """

    def __init__(
        self,
        *,
        poll: Fetch,
        cancel: Callable[[str], Awaitable[None]],
        can_cancel: Callable[[str], bool] = lambda name: True,
        clock: Clock,
        max_concurrency: int = 16,
        max_rate: float | None = 10.0,
        durations: Durations | None = None,
        rand: Callable[[], float] = random.random,
        pause: Pause | None = None,
        list_page: ListPage | None = None,
        sweep_parent: Callable[[str], str | None] = lambda name: None,
        seen: Callable[[Operation], None] = lambda op: None,
        gone: Callable[[str], None] = lambda name: None,
        long_poll: LongPoll | None = None,
        can_long_poll: Callable[[str], bool] = lambda name: True,
        long_poll_timeout: float = LONG_POLL_TIMEOUT,
        video: VideoFetch | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.video = video  # the client's download_video: handles and widgets fetch through it
        self.clock = clock
        self.rand = rand
        self._poll, self._cancel = poll, cancel
        # Told of every snapshot of a polled operation (first, polled or swept), and of one the
        # service no longer has (404): the client's history listens.
        self.seen, self.gone = seen, gone
        self.can_cancel = can_cancel
        self.limiter = Limiter(clock, max_concurrency, max_rate, rand, pause)
        self.wakeups = Wakeups(self.loop, clock)
        self.durations = durations or Durations()
        self.pollers: dict[str, Poller] = {}
        # First snapshots being fetched, shared by every track()/wait() of the name meanwhile,
        # with how many callers wait on each.
        self._firsts: dict[str, tuple[asyncio.Task[tuple[Operation, float]], list[int]]] = {}
        # List sweeps (``list_page`` reads a page; ``sweep_parent`` names an operation's listable
        # collection): one per collection, and how many live pollers each collection has.
        self.list_page = list_page
        self.sweep_parent = sweep_parent if list_page is not None else (lambda name: None)
        self._sweeps: dict[str, Sweep] = {}
        self.members: dict[str, int] = {}
        self._asking: dict[str, int] = {}
        self.closed: OpsError | None = None
        self._pause_backoff: Iterator[float] | None = None
        if not long_poll_timeout > 0:
            raise ValueError(f"long_poll_timeout must be > 0 seconds, got {long_poll_timeout!r}")
        self._long_poll, self._can_long_poll = long_poll, can_long_poll
        self.long_poll_timeout = long_poll_timeout
        self.long_poll_unbound = False  # the service answered that it has no :wait: GETs from now on

    def long_polls(self, name: str) -> bool:
        """Whether ``name`` is polled by long-polls (while the service binds them)."""
        return self._long_poll is not None and not self.long_poll_unbound and self._can_long_poll(name)

    async def send_long_poll(self, name: str) -> tuple[Operation, float]:
        """One long-poll, in a limiter slot the caller holds: the snapshot, and when it was
        answered (it tells how the operation was then, not when it was sent)."""
        assert self._long_poll is not None
        op = await self._long_poll(name, self.long_poll_timeout)
        self._pause_backoff = None
        return op, self.clock.monotonic()

    def unbound(self, name: str, exc: OpsError) -> None:
        """The service has no :wait (as ``name``'s long-poll just learnt): poll by GET from now on."""
        if not self.long_poll_unbound:
            self.long_poll_unbound = True
            logger.info("the service has no long-poll (:wait) for %s (%s): polling by GET instead", name, exc)

    async def fetch_video(self, op: Operation, index: int, max_bytes: int) -> bytes:
        """A done operation's video, through the client's download (the engine does no HTTP)."""
        if self.video is None:
            raise UnsupportedError("this engine was made without a video download (no client behind it)")
        return await self.video(op, index, max_bytes)

    def active(self, name: str) -> Poller | None:
        poller = self.pollers.get(name)
        return poller if poller is not None and not poller.stopped else None

    async def poller(self, target: str | Operation, *, deadline: float | None = None) -> Poller:
        """The live poller of the name, made (and given a first snapshot) if there is none.

        An Operation in hand is the first snapshot for free. A name costs one GET, through the
        limiter and the 429 pause, retried on the pollers' own policy: errors that more tries
        cannot fix (404, bad key) raise at once; transient ones are retried until ``deadline``
        (then WaitTimeout), or for FIRST_SNAPSHOT_PATIENCE seconds with none (then the last error).
        """
        if self.closed is not None:
            raise self.closed
        name = target.name if isinstance(target, Operation) else target
        poller = self.active(name)
        if poller is not None:
            return poller
        if isinstance(target, Operation):
            await asyncio.sleep(0)  # a loop tracking thousands of Operations lets the others run
            first, sent = target, self.clock.monotonic()
        else:
            first, sent = await self._first(name, deadline)
        return self._adopt(name, first, sent)  # another track() may have won the race during the await

    def _adopt(self, name: str, first: Operation, sent: float) -> Poller:
        """The live poller of ``name``, made from this first snapshot if there is none."""
        poller = self.active(name)
        if poller is None:
            poller = self.pollers[name] = Poller(self, first, sent)
            self.join(poller)
        return poller

    async def pollers_for(self, targets: Sequence[str | Operation]) -> list[Poller]:
        """``poller()`` of each target, in order, with their first snapshots fetched together.

        Names of a listable collection, where enough of them are asked for a sweep to be worth
        it, are read from its list pages first; the others (and those the pages did not show)
        by GETs, at most _FIRST_WORKERS at once, each through the limiter and retried as
        ``poller()`` does. The first error raises, and no poller is made for the rest. Pollers
        are made a chunk per turn of the loop: ten thousand never stall it.
        """
        if self.closed is not None:
            raise self.closed
        firsts: dict[str, tuple[Operation, float]] = {}
        groups: dict[str, set[str]] = {}
        wanted: dict[str, None] = {}  # the names to fetch, once each, in order
        for target in targets:
            if isinstance(target, str) and target not in wanted and self.active(target) is None:
                wanted[target] = None
                parent = self.sweep_parent(target)
                if parent is not None:
                    groups.setdefault(parent, set()).add(target)
        for parent, names in groups.items():
            sweep = self._sweep_of(parent)
            if not sweep.worth_it(len(names)):
                continue
            try:
                firsts.update(await sweep.firsts(names))
            except RateLimitError as exc:  # the GETs below wait for the pause
                self.rate_limited(exc)
            except OpsError as exc:
                sweep.failed(exc)
        left = iter([name for name in wanted if name not in firsts])

        async def worker() -> None:
            for name in left:
                firsts[name] = await self._first(name, None, sweep=False)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(_FIRST_WORKERS, len(wanted)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()  # one failed: the others stop asking (no-op when done)
        made: list[Poller] = []
        for i, target in enumerate(targets, 1):
            if self.closed is not None:
                raise self.closed
            if isinstance(target, Operation):  # an Operation in hand is its own first snapshot
                made.append(self._adopt(target.name, target, self.clock.monotonic()))
            else:
                live = self.active(target)
                if live is None:  # fetched above, or live when asked and stopped since: fetched now
                    first = firsts.get(target)
                    live = self._adopt(target, *(first or await self._first(target, None)))
                made.append(live)
            if i % _CHUNK == 0:
                await asyncio.sleep(0)
        return made

    async def _first(self, name: str, deadline: float | None, *, sweep: bool = True) -> tuple[Operation, float]:
        """The first snapshot of ``name``, one fetch shared by every caller meanwhile (``sweep``:
        from a list sweep where that is worth it, when this call starts the fetch)."""
        entry = self._firsts.get(name)
        if entry is None:
            task = self.loop.create_task(self._first_snapshot(name, sweep), name=f"ops-widgets first GET {name}")
            entry = self._firsts[name] = (task, [0])
            task.add_done_callback(lambda t: self._firsts.pop(name, None) if self._firsts.get(name) == entry else None)
        task, waiting = entry
        waiting[0] += 1
        try:
            if deadline is None:
                return await asyncio.shield(task)
            left = deadline + DEADLINE_GRACE - self.clock.monotonic()
            try:
                return await asyncio.wait_for(asyncio.shield(task), max(left, 0.0))
            except asyncio.TimeoutError:
                raise WaitTimeout(f"{name}: the server had not answered its first request by the deadline "
                                  "(wait again)") from None
        finally:
            waiting[0] -= 1
            if waiting[0] == 0 and not task.done():
                task.cancel()  # nobody wants it any more

    async def _first_snapshot(self, name: str, sweep: bool) -> tuple[Operation, float]:
        give_up = self.clock.monotonic() + FIRST_SNAPSHOT_PATIENCE
        delays: Iterator[float] | None = None
        while True:
            delay = 0.0
            try:
                return await (self.fetch(name, first=True) if sweep else self._get_one(name))
            except RateLimitError as exc:
                self.rate_limited(exc)  # the limiter holds the next try past the pause
                error: OpsError = exc
            except NotFoundError:
                self.gone(name)
                raise
            except _PERMANENT:
                raise
            except OpsError as exc:
                error = exc
            except Exception as exc:  # a bug reading the answer: a failed try, reported typed
                logger.exception("the first GET of %s failed unexpectedly", name)
                error = OpsError(f"{type(exc).__name__}: {exc}")
            if not isinstance(error, RateLimitError):
                if delays is None:
                    delays = backoff(1.0, 60.0, 2.0, rand=self.rand)
                delay = next(delays)
            if max(self.clock.monotonic() + delay, self.limiter.pause.until) > give_up:
                raise error
            logger.info("the first GET of %s failed (%s); trying again in %.1fs", name, error, delay)
            await asyncio.sleep(delay)

    async def fetch(self, name: str, *, first: bool = False, slack: float = 0.0) -> tuple[Operation, float]:
        """One poll: the snapshot, and when the request went out. From the next list sweep of
        its collection where that is worth it (and it was there), else one GET; each request
        through the limiter. ``slack``: how much later this poll may go out at little cost (a GET
        queues that much behind those that cannot wait; a sweep waits that long for more askers)."""
        parent = self.sweep_parent(name)
        if parent is None:
            return await self._get_one(name, slack)
        sweep = self._sweep_of(parent)
        # Those asking now count too: a thousand first snapshots asked at once are one sweep. For
        # first snapshots only they count: the members have periodic sweeps of their own, and one
        # new name (listed last) is not worth reading every page for.
        self._asking[parent] = asking = self._asking.get(parent, 0) + 1
        try:
            if sweep.worth_it(asking if first else self.members.get(parent, 0) + asking):
                got = await sweep.get(name, first=first, slack=slack)
                if got is not None:
                    self._pause_backoff = None
                    return got
            return await self._get_one(name, slack)
        finally:
            self._asking[parent] -= 1

    def _sweep_of(self, parent: str) -> Sweep:
        sweep = self._sweeps.get(parent)
        if sweep is None:
            sweep = self._sweeps[parent] = Sweep(self, parent)
        return sweep

    async def _get_one(self, name: str, slack: float = 0.0) -> tuple[Operation, float]:
        await self.limiter.acquire(slack)
        try:
            sent = self.clock.monotonic()
            op = await self._poll(name)
        finally:
            self.limiter.release()
        self._pause_backoff = None
        return op, sent

    async def send_cancel(self, name: str) -> None:
        await self._cancel(name)

    def rate_limited(self, exc: RateLimitError) -> float:
        """Pause every poller of this client for the server's retryDelay, else a growing backoff."""
        if exc.retry_delay is not None:
            delay = exc.retry_delay
        else:
            if self._pause_backoff is None:
                self._pause_backoff = backoff(1.0, 60.0, 2.0, jitter=False)
            delay = next(self._pause_backoff)
        self.limiter.pause.extend(delay)
        logger.info("rate limited: all polling paused for %.1fs", delay)
        return delay

    def swept_every(self, parent: str | None) -> float | None:
        """The period of ``parent``'s periodic sweeps while they run and its pollers may leave
        their own polls to them, else None."""
        sweep = self._sweeps.get(parent) if parent is not None else None
        return sweep.period if sweep is not None else None

    def offer(self, op: Operation, sent: float) -> None:
        """A snapshot a list sweep brought without being asked: news for its poller, if any."""
        poller = self.active(op.name)
        if poller is not None:
            poller.offer(op, sent)

    def join(self, poller: Poller) -> None:
        """``poller`` polls on a schedule (again): it counts toward its collection's sweeps."""
        if poller.parent is not None and not poller.member and not poller.stopped:
            poller.member = True
            self.members[poller.parent] = self.members.get(poller.parent, 0) + 1

    def leave(self, poller: Poller) -> None:
        """``poller`` polls on no schedule now (a long-poll in flight watches it, or it stopped):
        a sweep is not worth it on its account."""
        if poller.parent is not None and poller.member:
            poller.member = False
            self.members[poller.parent] = max(0, self.members.get(poller.parent, 0) - 1)

    def forget(self, poller: Poller) -> None:
        self.leave(poller)
        self.wakeups.cancel(poller)
        if self.pollers.get(poller.name) is poller:
            del self.pollers[poller.name]

    def close(self, reason: OpsError) -> None:
        """Stop every poller for good: waiters get ``reason``, subscribers a last delivery."""
        self.closed = reason
        for poller in list(self.pollers.values()):
            poller.close(reason)
        for sweep in self._sweeps.values():
            sweep.stop()
        self.wakeups.close()

    async def wait(
        self,
        poller: Poller,
        delays: Iterator[float] | None,
        timeout: float | None,
        on_progress: Callback | None = None,
        *,
        start: float | None = None,
    ) -> Operation:
        """Until the operation is done, polling at least as ``delays`` asks (None: the poller's
        own cadence), calling ``on_progress`` after each of those polls, last one included.

        The first poll is due at ``start`` (default: now; a poller made for this wait has its
        first snapshot from then). An exception from ``on_progress`` ends this wait with it;
        WaitTimeout after ``timeout``.
        """
        start = self.clock.monotonic() if start is None else start
        deadline = None if timeout is None else start + timeout
        poller.retain()
        try:
            due = start
            while True:
                # With no on_progress, only the done matters: a long-poll in flight watches for it.
                op = await self._poll_at(poller, due if delays is not None else None, deadline, timeout,
                                         done_only=on_progress is None)
                if on_progress is not None:
                    result = on_progress(op)
                    if inspect.isawaitable(result):
                        await result
                if op.done:
                    return op
                if delays is None:
                    raise OpsError(f"polling {poller.name} stopped before it was done")
                now = self.clock.monotonic()
                delay = clip_to_deadline(next(delays), now, deadline)
                if delay is None:
                    raise _timeout(poller, timeout)
                due = now + delay
        finally:
            poller.release()

    async def _poll_at(self, poller: Poller, due: float | None, deadline: float | None,
                       timeout: float | None, *, done_only: bool = False) -> Operation:
        request = poller.poll_at(due, done_only=done_only)
        if deadline is None:
            return await request
        left = deadline + DEADLINE_GRACE - self.clock.monotonic()
        try:
            return await asyncio.wait_for(request, max(left, 0.0))
        except asyncio.TimeoutError:
            raise _timeout(poller, timeout) from None


def _timeout(poller: Poller, timeout: float | None) -> WaitTimeout:
    return WaitTimeout(
        f"{poller.name} was still running after {timeout or 0:g}s (it goes on; wait again or cancel it)",
        poller.latest,
    )


class Sweep:
    """Reads one listable collection by list pages for the pollers that ask, instead of one GET
    each. Polls are gathered for a moment (about a second per page the sweep reads, so list
    traffic stays near a page a second, or longer while every asker has slack: polls that
    re-read the rate of a finish still far off; first snapshots, asked all at once by a track_all,
    only for the turn of the loop that asks them); each page's operations answer those who asked and
    bring the other pollers of the collection fresh snapshots. Those it did not see (deleted,
    or past the pages read) are answered None: their pollers GET them.

    While the collection is worth sweeping it is also swept periodically, every page of it (every
    _SWEEP_EVERY seconds, or less often where it has many pages or its pages would cost each member
    more than _SWEEP_BUDGET allows); on a period of _SWEPT_WITHIN or less, not set by that budget,
    its pollers leave their own polls to the sweeps."""

    def __init__(self, engine: Engine, parent: str) -> None:
        self.engine = engine
        self.parent = parent
        self.pages = 1  # pages the last sweep read: what the next one will likely cost
        self.broken_until = -1.0
        self._wanted: dict[str, asyncio.Future[tuple[Operation, float] | None]] = {}
        self._urgent = False  # a first snapshot is among the wanted: no gathering time
        self._due = math.inf  # the latest the wanted let this sweep go out (when asked + slack)
        self._task: asyncio.Task[None] | None = None
        self._nudge: asyncio.Future[None] | None = None  # wakes the wait for the sweep's time
        self.period: float | None = None  # of the periodic sweeps, while pollers may rely on them

    def worth_it(self, interested: int) -> bool:
        """Whether a sweep would replace enough GETs: ``interested`` is the collection's live
        pollers plus the polls asked for right now."""
        if self.engine.clock.monotonic() < self.broken_until:
            return False
        return interested >= _SWEEP_SAVING * self.pages

    async def get(self, name: str, *, first: bool = False, slack: float = 0.0) -> tuple[Operation, float] | None:
        self._urgent = self._urgent or first
        self._due = min(self._due, self.engine.clock.monotonic() + slack)
        answer = self._wanted.get(name)
        if answer is None:
            answer = self._wanted[name] = self.engine.loop.create_future()
            # Askers await it through a shield: one that is gone (its client closed) never reads a
            # failed sweep's error, which asyncio would then log as never retrieved.
            answer.add_done_callback(_retrieve)
        if self._task is None:
            self._task = self.engine.loop.create_task(self._run(), name=f"ops-widgets sweep {self.parent}")
        elif self._nudge is not None:
            _settle_future(self._nudge)  # the sweep's time may be sooner now
        return await asyncio.shield(answer)

    async def _run(self) -> None:
        clock = self.engine.clock
        try:
            while True:
                if not self._wanted:  # nobody asks now: a periodic sweep, while worth it
                    period = self._period()
                    if period is None:
                        return
                    if not await self._until(clock.monotonic() + period, idle=True):
                        return
                else:
                    for _ in range(3):  # the rest of this turn's askers (their tasks are just starting)
                        await asyncio.sleep(0)
                    if not self._urgent:  # gather who else asks
                        await self._until(clock.monotonic() + self.pages * self.engine.durations.scale, idle=False)
                wanted, self._wanted, self._urgent, self._due = self._wanted, {}, False, math.inf
                try:
                    await self._sweep(wanted)
                except Exception as exc:  # every asker's poll failed with it; retrying is theirs
                    self.failed(exc)
                    for answer in wanted.values():
                        if not answer.done():
                            answer.set_exception(exc)
        finally:
            self._task = self.period = None

    async def _until(self, bound: float, *, idle: bool) -> bool:
        """Wait for the sweep's time, read again whenever someone asks. Idle: the periodic sweep's
        time ``bound``, or sooner once someone asks (as late as their slack allows). Gathering:
        ``bound`` (a second per page), or later while every asker has slack; at once for a first
        snapshot. False when the engine closed during an idle wait."""
        loop, clock = self.engine.loop, self.engine.clock

        def when() -> float:
            if idle:
                return min(bound, self._due)
            return -math.inf if self._urgent else max(bound, self._due)

        def closed() -> bool:
            return idle and self.engine.closed is not None

        while (left := when() - clock.monotonic()) > 0 and not closed():
            self._nudge = nudge = loop.create_future()
            timer = loop.call_later(left, _settle_future, nudge)
            try:
                await nudge
            finally:
                timer.cancel()
                self._nudge = None
        return not closed()

    def _period(self) -> float | None:
        """Seconds to the next periodic sweep (None: not worth one): at least _SWEEP_EVERY and
        _SWEEP_PAGE_EVERY per page, and long enough that its pages cost each member no more than
        _SWEEP_BUDGET allows. Sets ``period``, which the pollers read, to it or to None."""
        members = self.engine.members.get(self.parent, 0)
        if self.engine.closed is not None or not members or not self.worth_it(members):
            return None
        scale = self.engine.durations.scale
        floor = max(_SWEEP_EVERY, _SWEEP_PAGE_EVERY * self.pages)
        period = max(floor, _SWEEP_BUDGET * self.pages / members)
        # Pollers leave their own polls only to sweeps as frequent as a fixed 10 s loop, and not
        # stretched by the budget (a few members: each finish matters more than the requests).
        self.period = period * scale if period == floor and period <= _SWEPT_WITHIN else None
        return period * scale

    def stop(self) -> None:
        if self._nudge is not None:
            _settle_future(self._nudge)

    async def _sweep(self, wanted: dict[str, asyncio.Future[tuple[Operation, float] | None]]) -> None:
        def take(op: Operation, sent: float) -> bool:
            answer = wanted.pop(op.name, None)
            if answer is not None and not answer.done():
                answer.set_result((op, sent))
            return answer is not None

        # The periodic sweep (nobody asked) reads every page: its pollers left their polls to it.
        # Asked, it reads until every asker was seen.
        periodic = not wanted
        await self._read(take, lambda: periodic or bool(wanted))
        for answer in wanted.values():  # not on the pages read: a GET each
            if not answer.done():
                answer.set_result(None)

    async def firsts(self, names: set[str]) -> dict[str, tuple[Operation, float]]:
        """The first snapshots of ``names`` (a track_all's), read from list pages at once: those
        the pages showed, with when their page was asked for. No future or task per name."""
        found: dict[str, tuple[Operation, float]] = {}

        def take(op: Operation, sent: float) -> bool:
            if op.name in names and op.name not in found:
                found[op.name] = (op, sent)
                return True
            return False

        await self._read(take, lambda: len(found) < len(names))
        return found

    def failed(self, exc: Exception) -> None:
        """A sweep failed: GETs for a while (after a 429, the pause is the only wait)."""
        if not isinstance(exc, RateLimitError):
            self.broken_until = self.engine.clock.monotonic() + _SWEEP_BROKEN_FOR * self.engine.durations.scale
            logger.info("listing %s failed (%s): GETs for now", self.parent, exc)

    async def _read(self, take: Callable[[Operation, float], bool], more: Callable[[], bool]) -> None:
        """List pages until ``more()`` is false (or the list or the page budget ends): each
        operation goes to ``take``, and if it did not want it, to its poller as news."""
        engine, token, pages = self.engine, None, 0
        list_page = engine.list_page
        assert list_page is not None  # a Sweep exists only where the client can list
        while True:
            await engine.limiter.acquire()
            try:
                sent = engine.clock.monotonic()
                ops, token = await list_page(self.parent, token)
            finally:
                engine.limiter.release()
            pages += 1
            for i, op in enumerate(ops, 1):
                if not take(op, sent):
                    engine.offer(op, sent)
                if i % _SWEEP_CHUNK == 0:
                    await asyncio.sleep(0)  # a page wakes a thousand waiters: not all in one turn
            if not more() or token is None or pages >= _SWEEP_MAX_PAGES:
                break
        self.pages = pages


def _settle_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Poller:
    """Polls one operation for everyone interested in it. Lives on the engine's loop."""

    # Slots: a fleet holds 10,000 of these, and past 30 attributes an instance dict stops sharing
    # its keys (about 0.8 KB more each).
    __slots__ = (
        "_base_due", "_cancel_delays", "_cancel_due", "_cancel_task", "_clock", "_done_at", "_failures",
        "_intervals", "_latest_sent", "_long", "_observed_at", "_planned_long", "_probe", "_refs", "_requests",
        "_retry_delays", "_retry_due", "_schedule", "_slack", "_started", "_subscribers", "_task", "_watchers",
        "cancel_requested", "engine", "last_error", "latest", "member", "name", "parent", "requests", "saw_running",
        "stopped",
    )

    def __init__(self, engine: Engine, first: Operation, sent: float) -> None:
        self.engine = engine
        self.name = first.name
        # The collection a list sweep reads it from, long-polled or not: a name that finds no slot
        # for a long-poll, or whose service turns out to have no :wait, polls as any other.
        self.parent = engine.sweep_parent(first.name)
        self.member = False  # counted in engine.members (see Engine.join)
        self.latest = first
        engine.seen(first)
        self.last_error: OpsError | None = None
        self.requests = 0  # GETs and long-polls sent by this poller (the first snapshot's excluded)
        self.stopped = False
        self.cancel_requested = False
        self.saw_running = not first.done  # seen running at least once (elapsed is then known)
        clock = engine.clock
        self._clock = clock
        self._latest_sent = sent  # when the request that brought `latest` went out
        self._started = clock.monotonic()
        self._observed_at = self._started
        self._done_at: float | None = None
        self._refs = 0
        self._watchers = 0  # views on screen now: while any, poll at the watched cadence
        # Tuples, not lists: most pollers have none of these, and () is no object for the GC.
        self._subscribers: tuple[Callback, ...] = ()
        # (due, answer, done_only): done_only asks are met by a long-poll in flight (it answers at done).
        self._requests: tuple[tuple[float | None, asyncio.Future[Operation], bool], ...] = ()
        self._intervals: tuple[float, ...] = ()  # fixed intervals asked for by handles
        self._schedule = Adaptive(first.kind, engine.durations, model=first.model)
        self._base_due = self._started  # next poll of the handles' interval or the adaptive schedule
        self._slack = 0.0  # how long that poll may queue for a rate turn at little cost (Limiter)
        self._retry_due: float | None = None  # while polls fail: backoff overrides every due
        self._retry_delays: Iterator[float] | None = None
        self._failures = 0
        self._cancel_due: float | None = None
        self._cancel_delays: Iterator[float] | None = None
        self._cancel_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None  # only while a poll is due or in flight
        self._long: asyncio.Task[None] | None = None  # the long-poll in flight
        self._planned_long = False  # whether _base_due was planned with a long-poll in flight
        # A long-poll met a 404: GET now. Found: the service has no :wait (else the 404 stands).
        self._probe: OpsError | None = None
        self._observe(first)
        self._plan()
        if first.done:
            self._finish()

    # -- interest: handles, subscribers and waiters ----------------------------------------

    def retain(self) -> None:
        """One more interested party; start polling if needed."""
        self._refs += 1
        self.wake()

    def died(self, exc: BaseException | None = None) -> None:
        """The polling loop ended without stopping (a bug): stop for good, tell everyone."""
        if self.stopped:
            return
        logger.error("polling %s stopped unexpectedly", self.name, exc_info=exc)
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self.last_error = OpsError(f"polling {self.name} stopped unexpectedly{detail}; track it again")
        self._stop()
        self._finish()
        self._deliver()

    def release(self) -> None:
        """One fewer; with none left, stop."""
        self._refs -= 1
        if self._refs <= 0 and not self.stopped:
            self._stop()

    def attend(self, delta: int) -> None:
        """One more (+1) or one fewer (-1) view on screen; the cadence follows at once."""
        self._watchers = max(0, self._watchers + delta)
        self._plan()
        self.wake()

    def want_interval(self, interval: float) -> Callable[[], None]:
        """Poll at least every ``interval`` seconds until the returned function is called."""
        self._intervals = (*self._intervals, interval)
        self._plan()
        self.wake()

        def drop() -> None:
            self._intervals = _without(self._intervals, interval)
            self._plan()

        return drop

    # -- what views read ----------------------------------------------------------------------

    def elapsed(self) -> float | None:
        """Seconds it has run (ran), from its own times when it has them, else since tracking
        began; None when it was done on first sight with no times (how long is not known)."""
        op = self.latest
        own = op.run_seconds(self._clock.time())
        if own is not None:
            return own
        if op.done and not self.saw_running:
            return None
        end = self._done_at if self._done_at is not None else self._clock.monotonic()
        return max(0.0, end - self._started)

    def progress_now(self) -> tuple[float | None, float | None]:
        """(the progress a bar shows now, extrapolated from the last reading at the measured
        rate; that rate in percent per second, or None when there is none to extrapolate)."""
        op = self.latest
        progress = op.progress
        if progress is None or op.done:
            return progress, None
        rate = self._schedule.rate()
        return extrapolate(progress, rate, self._clock.monotonic() - self._observed_at), rate

    def eta(self) -> tuple[float | None, bool]:
        """(seconds left counting down between polls, whether it comes from typical durations)."""
        if self.latest.done:
            return 0.0, False
        est = self._schedule.estimate()
        if est.eta is None:
            return None, est.from_priors
        since = self._clock.monotonic() - self._observed_at
        return max(0.0, est.eta - since), est.from_priors

    # -- subscriptions (on the loop) ----------------------------------------------------------

    def subscribe(self, callback: Callback) -> None:
        """Call ``callback(op)`` now with the latest snapshot, then after every change."""
        self._subscribers = (*self._subscribers, callback)
        self.retain()
        self._call(callback, self.latest)

    def unsubscribe(self, callback: Callback) -> None:
        if callback in self._subscribers:
            self._subscribers = _without(self._subscribers, callback)
            self.release()

    def _call(self, callback: Callback, op: Operation) -> None:
        try:
            result = callback(op)
        except Exception:
            logger.exception("a subscriber of %s raised; the others and the poller go on", self.name)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(self._async_subscriber_done)

    def _async_subscriber_done(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("an async subscriber of %s raised; the others and the poller go on", self.name,
                         exc_info=task.exception())

    def _deliver(self) -> None:
        op = self.latest
        for callback in self._subscribers:
            self._call(callback, op)

    # -- poll requests (waiters) and cancel ----------------------------------------------------

    def poll_at(self, due: float | None, *, done_only: bool = False) -> asyncio.Future[Operation]:
        """The first snapshot from a poll sent at or after ``due`` (None: the next change that
        ends it, i.e. done); at once if the latest is that recent, or final. ``done_only``: the
        asker only looks for the done, so a long-poll in flight stands in for the poll."""
        answer: asyncio.Future[Operation] = self.engine.loop.create_future()
        if self.stopped:
            if self.latest.done or self.last_error is None:
                answer.set_result(self.latest)
            else:
                answer.set_exception(self.last_error)
        elif due is not None and self._latest_sent >= due - _EPS:
            answer.set_result(self.latest)
        else:
            self._requests = (*self._requests, (due, answer, done_only))
            self.wake()
        return answer

    async def cancel(self) -> None:
        """Send ONE cancel however often it is asked for; then poll soon to see it confirmed."""
        if self.latest.done or self.cancel_requested:
            return
        if self._cancel_task is None:
            self._cancel_task = self.engine.loop.create_task(self._send_cancel())
        task = self._cancel_task
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and (task.cancelled() or task.exception() is not None):
                self._cancel_task = None  # a failed cancel may be tried again

    async def _send_cancel(self) -> None:
        await self.engine.send_cancel(self.name)
        self.expect_cancel()

    def expect_cancel(self) -> None:
        """A cancel went through (here or elsewhere): poll soon, then less often, to see it."""
        self.cancel_requested = True
        self._cancel_delays = backoff(0.5, 10.0, 2.0, jitter=False)
        self._cancel_due = self._clock.monotonic()
        self._deliver()  # views show "cancelling" now, not at the next poll
        self.wake()

    # -- the loop ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed what is due: poll now if it is, else sleep until it is. (A poll in
        flight looks at the dues again when it ends.)"""
        if self._task is not None or self.stopped:
            return
        try:
            if not self._long_ready() and self._planned_long == (self._long is not None):
                due = self._next_due()
                if due - self._clock.monotonic() > _EPS:
                    self.engine.wakeups.at(due, self)
                    return
        except Exception as exc:  # a bug deciding: stop for good and say so, never poll blind
            self.died(exc)
            return
        self._task = self.engine.loop.create_task(self._run(), name=f"ops-widgets poll {self.name}")

    def _plan(self, now: float | None = None) -> None:
        """The next poll of the handles' fixed interval, else of the adaptive schedule. With a
        long-poll in flight, no schedule: only what handles and views ask for."""
        now = self._clock.monotonic() if now is None else now
        self._planned_long = self._long is not None
        self._slack = 0.0
        if self._planned_long:
            asked = list(self._intervals)
            if self._watchers and self.latest.progress is not None:  # a bar to move between answers
                asked.append(self._schedule.watched_delay())
            self._base_due = now + min(asked) if asked else math.inf
            return
        if self._intervals and not self._watchers:
            delay = min(self._intervals)  # a handle's fixed interval replaces the adaptive schedule
        elif self._watchers:  # while someone looks: the watched cadence, or a handle's interval if sooner
            delay = min([self._schedule.watched_delay(), *self._intervals])
        else:
            delay, self._slack = self._schedule.next_poll()
            swept = self.engine.swept_every(self.parent) if self.member else None
            if swept is not None:
                delay = max(delay, swept * _SWEPT_SLACK)  # the sweeps bring news soon: no poll of ours
        self._base_due = now + delay

    def _next_due(self) -> float:
        if self._retry_due is not None:
            return self._retry_due  # failing: back off, however eager the waiters are
        if self._probe is not None:
            return self._clock.monotonic()  # a long-poll's 404: the GET that tells why, now
        dues = [self._base_due]
        if self._cancel_due is not None:
            dues.append(self._cancel_due)
        watched = self._long is not None  # a long-poll in flight answers the done-only asks
        dues.extend(due for due, answer, done_only in self._requests
                    if due is not None and not answer.done() and not (done_only and watched))
        return min(dues)

    async def _run(self) -> None:
        try:
            await self._poll_while_due()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the loop itself: stop for good, tell everyone
            self.died(exc)
        finally:
            self._task = None

    async def _poll_while_due(self) -> None:
        """Poll while something is due; then ask the engine's timer for the next due and end."""
        while not self.stopped:
            if self._long_ready() and await self._start_long_poll():
                continue  # the long-poll is this round's poll
            if self._planned_long != (self._long is not None):
                self._plan()  # a long-poll ended without an answer: the schedule again
            due = self._next_due()
            if due - self._clock.monotonic() > _EPS:
                self.engine.wakeups.at(due, self)
                return
            self.requests += 1
            try:
                op, sent = await self.engine.fetch(self.name, slack=self._poll_slack())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopped:
                    return  # finished meanwhile (a sweep or a long-poll saw it done): nothing failed
                if self._failure(exc):
                    return
                continue
            if self.stopped:
                return  # a long-poll or a sweep saw it done meanwhile
            if self._probe is not None:  # a long-poll's 404, and the GET finds it: :wait is not bound
                self.engine.unbound(self.name, self._probe)
                self._probe = None
            error = self._take(op, sent)
            if error is not None:  # reading the snapshot failed: a failed poll, not a dead poller
                self._retry_later(error)

    def _poll_slack(self) -> float:
        """The schedule's slack when only it asked for this poll; none when a waiter's own
        interval, a cancel, a retry or a 404's check did (a wait with no interval of its own
        follows the schedule)."""
        if self._retry_due is not None or self._probe is not None or self._cancel_due is not None:
            return 0.0
        if any(due is not None and not answer.done() for due, answer, _ in self._requests):
            return 0.0
        return self._slack

    def _failure(self, exc: Exception) -> bool:
        """A failed poll (GET or long-poll) under the one policy; True when polling stopped for good."""
        if isinstance(exc, RateLimitError):
            self.engine.rate_limited(exc)
            self._retry_due = self._clock.monotonic()  # queue again: the limiter holds it past the pause
            self._failed(exc)
        elif isinstance(exc, _PERMANENT):
            if isinstance(exc, NotFoundError):
                self.engine.gone(self.name)
            self._failures = _REPORT_AFTER - 1
            self.stopped = True  # before _failed tells subscribers: they read `polling` then
            self._failed(exc)
            self._finish()
            return True
        else:  # 5xx, transport, a broken body, even a bug: keep going
            if not isinstance(exc, OpsError):
                logger.exception("polling %s failed unexpectedly; retrying", self.name)
            self._retry_later(exc if isinstance(exc, OpsError) else OpsError(f"{type(exc).__name__}: {exc}"))
        return False

    # -- long-polls ---------------------------------------------------------------------------

    def _long_ready(self) -> bool:
        """Whether to send a long-poll now: the name has them, none is in flight, no 404 is being
        checked, and polling is not backing off after failures."""
        return (self._long is None and self._probe is None and self.engine.long_polls(self.name)
                and (self._retry_due is None or self._retry_due <= self._clock.monotonic() + _EPS))

    async def _start_long_poll(self) -> bool:
        """Send a long-poll if a limiter slot is free for it (False: none, GET this round)."""
        if not await self.engine.limiter.acquire_long():
            return False
        if self.stopped or not self.engine.long_polls(self.name):  # changed during the rate turn
            self.engine.limiter.release_long()
            return False
        self._retry_due = None  # this is the retry, if one was due (the backoff goes on growing)
        self.requests += 1
        self._long = self.engine.loop.create_task(self._long_poll(), name=f"ops-widgets long-poll {self.name}")
        # Its slot is freed however it ends, even cancelled before it ran; meanwhile this name
        # does not count toward its collection's sweeps (the :wait watches it).
        self.engine.leave(self)
        self._long.add_done_callback(self._long_ended)
        self._plan()
        return True

    def _long_ended(self, task: asyncio.Task[None]) -> None:
        self.engine.limiter.release_long()
        if self._long is None:  # (not when the next long-poll already went out, nor once stopped)
            self.engine.join(self)

    async def _long_poll(self) -> None:
        try:
            op, answered = await self.engine.send_long_poll(self.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._long = None
            if self.stopped:
                return
            if isinstance(exc, NotFoundError) and not self.engine.long_poll_unbound:
                self._probe = exc  # gone, or no :wait at all: a GET now tells which
            elif isinstance(exc, (UnsupportedError, NotFoundError)) or (
                    isinstance(exc, ApiError) and exc.status_code == 501):
                self.engine.unbound(self.name, exc)
                self._probe = exc if isinstance(exc, NotFoundError) else None
            elif self._failure(exc):
                return
            self._plan()
            self.wake()
            return
        self._long = None
        if self.stopped:
            return
        error = self._take(op, answered)  # plans the next poll, or finishes
        if error is not None:
            self._retry_later(error)
        self.wake()

    def offer(self, op: Operation, sent: float) -> None:
        """A fresher snapshot brought by someone else's request (a list sweep): take it in as a
        poll of ours, which moves our own next poll on. (One it cannot take in is not a failed
        poll of ours: our own polls go on as planned.)"""
        if not self.stopped and sent > self._latest_sent and op.name == self.name:
            self._take(op, sent)

    def _take(self, op: Operation, sent: float) -> OpsError | None:
        """Take in a snapshot, the end of any run of failures; the error if it could not be."""
        try:
            self._update(op, sent)
        except Exception as exc:
            logger.exception("polling %s: could not take in a snapshot", self.name)
            return OpsError(f"{type(exc).__name__}: {exc}")
        self._failures = 0
        self._retry_due = self._retry_delays = None
        return None

    def _retry_later(self, exc: OpsError) -> None:
        if self._retry_delays is None:
            self._retry_delays = backoff(1.0, 60.0, 2.0, rand=self.engine.rand)
        self._retry_due = self._clock.monotonic() + next(self._retry_delays)
        self._failed(exc)

    def _failed(self, exc: OpsError) -> None:
        self._failures += 1
        logger.debug("polling %s failed (%d in a row): %s", self.name, self._failures, exc)
        if self._failures >= _REPORT_AFTER and self.last_error is not exc:
            self.last_error = exc
            logger.warning("polling %s keeps failing (%d in a row): %s", self.name, self._failures, exc)
            self._deliver()  # the handle's last_error changed: tell subscribers

    def _observe(self, op: Operation) -> None:
        self._observed_at = self._clock.monotonic()
        if not op.done:
            elapsed = self.elapsed()
            self._schedule.observe(0.0 if elapsed is None else elapsed, op.progress, progress_step(op.metadata))

    def _update(self, op: Operation, sent: float) -> None:
        self.engine.seen(op)
        changed = op.raw != self.latest.raw or self.last_error is not None
        self.saw_running = self.saw_running or not op.done
        self.last_error = None
        now = self._clock.monotonic()
        if op.done and not self.latest.done:
            self._done_at = now
        self.latest, self._latest_sent = op, max(sent, self._latest_sent)
        self._observe(op)
        if op.done:
            create, update = op.create_time, op.update_time
            reported = (update - create).total_seconds() if create and update else None
            self._schedule.finished(self.elapsed() or 0.0, reported)
        else:
            self._plan(now)
            if self._cancel_delays is not None:
                self._cancel_due = now + next(self._cancel_delays)
        if changed:
            self._deliver()
        # Every request this poll answers: sent at or after its due time, or any if it is done.
        if self._requests:
            left = []
            for request in self._requests:
                due, answer, _done_only = request
                if answer.done():
                    continue
                if op.done or (due is not None and sent >= due - _EPS):
                    answer.set_result(op)
                else:
                    left.append(request)
            self._requests = tuple(left)
        if op.done:
            self._finish()

    def _finish(self) -> None:
        """Done, or stopped for good by an error: answer everyone still waiting."""
        self.stopped = True
        self.engine.forget(self)
        self._cancel_long()
        for _, answer, _done_only in self._requests:
            if answer.done():
                continue
            if self.latest.done or self.last_error is None:
                answer.set_result(self.latest)
            else:
                answer.set_exception(self.last_error)
        self._requests = ()

    def close(self, reason: OpsError) -> None:
        """Stop for good (the client is closing): waiters get ``reason`` instead of hanging."""
        if self.stopped and self.latest.done:
            return
        self.last_error = reason
        self._stop()
        self._finish()
        self._deliver()  # views learn that nothing polls any more

    def _stop(self) -> None:
        self.stopped = True
        self.engine.forget(self)
        self._cancel_long()
        if self._task is not None and self._task is not _current_task():
            self._task.cancel()

    def _cancel_long(self) -> None:
        long, self._long = self._long, None
        if long is not None and long is not _current_task():
            long.cancel()  # its request is dropped, its slot freed


def _without(items: tuple[T, ...], item: T) -> tuple[T, ...]:
    """``items`` less the first one equal to ``item``."""
    i = items.index(item)
    return items[:i] + items[i + 1:]


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


class AsyncTracked:
    """A live handle on one operation, polled by the shared engine: what users and views hold.

    Reading it is cheap and safe from any thread. Interest ends with ``close()`` or when the
    handle is garbage-collected; the poller stops when no handle, subscriber or waiter is left.
    """

    def __init__(self, poller: Poller, *, poll_interval: float | None = None) -> None:
        """Made on the engine's loop (by ``track()``)."""
        self._poller = poller
        poller.retain()
        drop = poller.want_interval(poll_interval) if poll_interval is not None else None
        self._on_screen = [False]  # shared with the blocking twin and the finalizer
        self._finalizer = weakref.finalize(self, _release_on_loop, poller, drop, self._on_screen)

    # -- what a view reads ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._poller.name

    @property
    def operation(self) -> Operation:
        """The latest snapshot."""
        return self._poller.latest

    @property
    def elapsed(self) -> float | None:
        """Seconds since it started (createTime when known, else since tracking began), or None
        when it was already done when first seen and carries no times."""
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
        """The error of the last polls, after repeated failures (polling goes on), or the one
        that stopped polling; else None."""
        return self._poller.last_error

    @property
    def cancel_requested(self) -> bool:
        """A cancel was sent and the server has not confirmed it yet (or has: see operation)."""
        return self._poller.cancel_requested

    @property
    def can_cancel(self) -> bool:
        """Whether the service can cancel this operation at all (the Gemini API: batches only)."""
        return self._poller.engine.can_cancel(self._poller.name)

    @property
    def polling(self) -> bool:
        """Whether anything still polls this operation (False once done, closed or failed for good)."""
        return not self._poller.stopped

    @property
    def clock(self) -> Clock:
        """The clock the engine reads: views take their time from it too."""
        return self._poller.engine.clock

    @property
    def progress_now(self) -> float | None:
        """The progress a bar shows now: the last reading moved on at the measured rate (short
        of 100 until the service says done); None when no progress is reported."""
        return self._poller.progress_now()[0]

    @property
    def progress_rate(self) -> float | None:
        """Percent per second at which progress rises now (None: not known, or no progress)."""
        return self._poller.progress_now()[1]

    def set_on_screen(self, on_screen: bool) -> None:
        """A view of this handle is (True) or is no longer (False) in front of a person: while
        any is, the operation is polled at a watched cadence (about every 5 % of its expected
        duration, 2 to 15 s apart, for operations that report progress); then the background
        schedule resumes. Any thread."""
        if self._on_screen[0] == bool(on_screen) or not self._finalizer.alive:
            return
        self._on_screen[0] = bool(on_screen)
        poller = self._poller
        self.call_soon(lambda: poller.attend(1 if on_screen else -1))

    # -- thread-safe ways in ----------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """``callback(op)`` with the latest snapshot, then after every poll that changed
        something (or a change of ``last_error``/``cancel_requested``); returns unsubscribe.

        Callbacks run on the engine's loop, in order. From another thread, this returns once the
        first call has been made.
        """
        loop = self._poller.engine.loop
        self.call_soon(lambda: self._poller.subscribe(callback))
        if not _on(loop):
            _settle(loop)
        removed = False

        def unsubscribe() -> None:
            nonlocal removed
            if not removed:
                removed = True
                self.call_soon(lambda: self._poller.unsubscribe(callback))

        return unsubscribe

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the engine's loop (now, if called there)."""
        call_soon(self._poller.engine.loop, fn)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` on the engine's loop after ``delay`` seconds of the engine's clock."""
        loop = self._poller.engine.loop
        self.call_soon(lambda: loop.call_later(delay, fn))

    def request_cancel(self) -> concurrent.futures.Future[None]:
        """Ask for a cancel without waiting (any thread); the future says how it went."""
        return self.submit(self._poller.cancel())

    def request_video(self, index: int = 0, *, max_bytes: int = VIDEO_MAX_BYTES) -> concurrent.futures.Future[bytes]:
        """Ask for video ``index`` of the done operation without waiting (any thread); the future
        holds its bytes or the error (see download_video)."""
        return self.submit(self._poller.engine.fetch_video(self.operation, index, max_bytes))

    def expect_cancel(self) -> None:
        """A cancel of this operation went out by other means: poll soon to see it confirmed."""
        self.call_soon(self._poller.expect_cancel)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the engine's loop (any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._poller.engine.loop)

    def close(self) -> None:
        """Drop this handle's interest now (otherwise when it is garbage-collected)."""
        self._finalizer()

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, timeout: float | None = None) -> Operation:
        """Until done, at the poller's own cadence; WaitTimeout after ``timeout`` seconds."""
        return await self._poller.engine.wait(self._poller, None, timeout)

    async def cancel(self) -> None:
        """Send a cancel (once, however often asked) and return; polling confirms it soon."""
        await self._poller.cancel()

    async def download_video(self, index: int = 0, *, max_bytes: int = VIDEO_MAX_BYTES) -> bytes:
        """Video ``index`` of the operation once done, through its client (see the client's
        download_video: the key in a header only; UnsupportedError when there is no such video)."""
        return await self._poller.engine.fetch_video(self.operation, index, max_bytes)

    def __str__(self) -> str:
        """The one text form: "name  state  42%  1m 12s", with the engine's elapsed time."""
        return summary_line(self.operation, self.elapsed)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"


class Tracked(AsyncTracked):
    """The handle Operations.track() returns: blocking wait() and cancel()."""

    def __init__(self, handle: AsyncTracked) -> None:
        """A blocking view of ``handle``: the same poller, the same interest (and interval)."""
        self._poller = handle._poller
        self._async = handle  # keeps its interest alive as long as this handle lives
        self._on_screen = handle._on_screen
        self._finalizer = handle._finalizer

    def wait(self, timeout: float | None = None) -> Operation:  # type: ignore[override]
        """Block until done; WaitTimeout after ``timeout`` seconds."""
        return self._block(self._poller.engine.wait(self._poller, None, timeout))

    def cancel(self) -> None:  # type: ignore[override]
        """Send a cancel (once, however often asked) and return; polling confirms it soon."""
        self._block(self._poller.cancel())

    def download_video(self, index: int = 0, *, max_bytes: int = VIDEO_MAX_BYTES) -> bytes:  # type: ignore[override]
        """Block for video ``index`` of the operation once done (see AsyncTracked.download_video)."""
        return self._block(self._poller.engine.fetch_video(self.operation, index, max_bytes))

    def _block(self, coro: Coroutine[Any, Any, T]) -> T:
        return block_on(self._poller.engine.loop, coro, "a blocking Tracked method")


def _release_on_loop(poller: Poller, drop: Callable[[], None] | None, on_screen: list[bool]) -> None:
    def release() -> None:
        if drop is not None:
            drop()
        if on_screen[0]:
            on_screen[0] = False
            poller.attend(-1)
        poller.release()

    call_soon(poller.engine.loop, release)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """From another thread: return once ``loop`` has run what was handed to it before."""
    if loop.is_closed():
        return
    done = concurrent.futures.Future[None]()
    try:
        loop.call_soon_threadsafe(done.set_result, None)
    except RuntimeError:
        return
    done.result()
