"""Vertex AI's :wait, end to end (issue 10, acceptance 4): the client long-polls the operations
that bind it, one :wait in flight per name, through the emulator on a VirtualClock; falls back to
GETs on the adaptive schedule when the server has no :wait; never long-polls a Veo operation
(fetchPredictOperation only) nor anything on the Gemini API."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from discovery import in_document
from recorder import Recorder

import ops_widgets as ow
from ops_widgets.emulator import Emulator

LOC = "projects/emulator-project/locations/us-central1"
WAIT = 60.0  # the timeout the engine asks :wait for (LONG_POLL_TIMEOUT), and the emulator's cap
# 100 long-polls at once need poll_concurrency >= 115: long-polls get all but an eighth of the slots.
CONCURRENCY = 128


def in_process(*, vertex_wait: bool = True, seed: int = 1) -> tuple[ow.VirtualClock, Emulator, Recorder]:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed, vertex_wait=vertex_wait)
    return clock, emu, Recorder(emu, clock)


def generic_ops(emu: Emulator, count: int = 100) -> dict[str, float]:
    """``count`` generic operations made now (t=0) of 30 to 300 s: name -> when it is done."""
    durations = [30.0 + 270.0 * i / (count - 1) for i in range(count)]
    return {emu.create("generic", service="vertex", duration=d): d for d in durations}


def requests_by_name(rec: Recorder, names: dict[str, float]) -> dict[str, list[tuple[float, str, int]]]:
    """Each name's own requests (GET {name}, POST {name}:wait): (answered at, method, status)."""
    mine: dict[str, list[tuple[float, str, int]]] = {name: [] for name in names}
    for t, method, path, status in rec.log:
        name = path.removeprefix("/v1/").removesuffix(":wait")
        if name in mine:
            mine[name].append((t, "WAIT" if path.endswith(":wait") else method, status))
    return mine


def track_until_done(clock: ow.VirtualClock, rec: Recorder, names: dict[str, float],
                     **options: Any) -> dict[str, float]:
    """Track every name at once; when the client saw each one done (clock time)."""
    seen: dict[str, float] = {}

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options(**{"poll_concurrency": CONCURRENCY, **options})) as ops:
            async for op in ops.as_completed(names):
                assert op.succeeded
                seen[op.name] = clock.monotonic()

    clock.run(flow())
    return seen


def test_100_operations_long_polled_with_few_requests_and_no_delay() -> None:
    clock, emu, rec = in_process()
    names = generic_ops(emu)
    seen = track_until_done(clock, rec, names)
    assert seen.keys() == names.keys()
    for name, done_at in names.items():
        delay = seen[name] - done_at
        assert -1e-6 <= delay < 1, (name, delay)  # (epoch seconds in floats: a rounding early at most)
    for name, sent in requests_by_name(rec, names).items():
        assert len(sent) <= names[name] / WAIT + 2, (name, sent)
        # Its first snapshot (a GET, or a list page of the location), then only :wait.
        methods = [method for _t, method, _s in sent]
        skip = int(methods[:1] == ["GET"])
        assert methods[skip:] == ["WAIT"] * (len(methods) - skip), (name, sent)
        # The server held each :wait until its timeout, and answered the last at the done time.
        waits = [t for t, method, status in sent if method == "WAIT" and status == 200]
        assert waits[-1] == pytest.approx(names[name], abs=1e-6)
        gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
        assert all(WAIT - 1e-6 <= gap < WAIT + 1 for gap in gaps[:-1]) and all(gap <= WAIT for gap in gaps[-1:])
    # Every request sent is a method of Google's discovery document (acceptance 1, for this flow).
    assert [(m, p) for _t, m, p, _s in rec.log if p != "/token" and not in_document(m, p)] == []


def test_without_wait_on_the_server_it_falls_back_to_gets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ops_widgets")
    clock, emu, rec = in_process(vertex_wait=False)
    names = generic_ops(emu)
    seen = track_until_done(clock, rec, names)
    assert seen.keys() == names.keys()
    lists = [t for t, method, path, _s in rec.log if (method, path) == ("GET", f"/v1/{LOC}/operations")]
    by_name = requests_by_name(rec, names)
    waits = [t for sent in by_name.values() for t, method, _s in sent if method == "WAIT"]
    # The first read after a 404 that finds the operation (a GET, or a list page that has it) shows
    # the server has no :wait.
    gets = [t for sent in by_name.values() for t, method, _s in sent if method == "GET"]
    probe = min(t for t in gets + lists if t > min(waits))
    for name, sent in by_name.items():
        # At most one :wait each (404, as Google answers a method it does not bind), sent before a
        # read showed that 404 to mean "no :wait"; from then on GETs and list pages only, which
        # see it done.
        assert [status for _t, method, status in sent if method == "WAIT"] in ([], [404]), (name, sent)
        reads = [t for t, method, _s in sent if method == "GET"] + lists
        assert seen[name] >= names[name] - 1e-6 and seen[name] in reads
    assert max(waits) <= probe
    assert sum("has no long-poll" in r.getMessage() for r in caplog.records) == 1
    # The adaptive schedule, from list pages of the location: less than two requests per
    # operation, the :wait answered 404 included (a GET each would be several).
    assert len(lists) + sum(len(sent) for sent in by_name.values()) < 2 * len(names)


def test_operations_beyond_the_long_poll_slots_are_read_from_list_pages() -> None:
    """The default poll_concurrency (16) leaves 14 slots to long-polls: the other operations poll
    on the adaptive schedule, read from list pages of their location (not a GET each), and take a
    slot when one frees."""
    clock, emu, rec = in_process()
    names = generic_ops(emu)
    seen = track_until_done(clock, rec, names, poll_concurrency=16)
    assert seen.keys() == names.keys() and all(seen[n] >= names[n] - 1e-6 for n in names)
    by_name = requests_by_name(rec, names)
    long_polled = [n for n, sent in by_name.items() if any(m == "WAIT" for _t, m, _s in sent)]
    assert 14 <= len(long_polled) < len(names)
    lists = [p for _t, m, p, _s in rec.log if (m, p) == ("GET", f"/v1/{LOC}/operations")]
    assert lists and len(lists) + sum(len(sent) for sent in by_name.values()) < 2 * len(names)


def test_ops_wait_takes_the_done_from_the_long_poll() -> None:
    """ops.wait(name) asks for a poll every 10 s, only to see the done: the :wait in flight
    answers it, so a 250 s operation costs about 250 / 60 requests, not 25."""
    clock, emu, rec = in_process()
    name = emu.create("generic", service="vertex", duration=250)

    async def flow() -> float:
        async with ow.AsyncOperations(**rec.vertex_options()) as ops:
            op = await ops.wait(name, poll_interval=10, timeout=None)
            assert op.done
            return clock.monotonic()

    assert clock.run(flow()) == pytest.approx(250)
    sent = requests_by_name(rec, {name: 250})[name]
    assert [m for _t, m, _s in sent] == ["GET"] + ["WAIT"] * 5


def test_a_veo_operation_is_never_long_polled() -> None:
    """A publisher-model operation has no :wait (nor GET): fetchPredictOperation only, beside a
    generic operation of the same client that long-polls."""
    clock, emu, rec = in_process()
    video = emu.create("video", service="vertex", duration=200)
    generic = emu.create("generic", service="vertex", duration=200)

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options()) as ops:
            handles = await ops.track_all([video, generic])
            finals = [await h.wait() for h in handles]
            assert all(op.succeeded for op in finals)

    clock.run(flow())
    model = video.rpartition("/operations/")[0]
    for _t, method, path, _s in rec.log:
        if video in path or model in path:
            assert (method, path) == ("POST", f"/v1/{model}:fetchPredictOperation")
    assert any(path == f"/v1/{generic}:wait" for _t, _m, path, _s in rec.log)
    assert sum(path == f"/v1/{model}:fetchPredictOperation" for _t, _m, path, _s in rec.log) > 200 / WAIT + 2


def test_the_gemini_api_client_never_long_polls() -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=3)
    rec = Recorder(emu, clock)
    names = [emu.create(kind, duration=200) for kind in ("video", "tuning", "batch")]

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.options()) as ops:
            finals = [await h.wait() for h in await ops.track_all(names)]
            assert all(op.done for op in finals)

    clock.run(flow())
    assert rec.log and not any(":wait" in path for _t, _m, path, _s in rec.log)


class _Timeouts(httpx.AsyncBaseTransport):
    """In front of the in-process app: the HTTP timeouts each request was sent with."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.path, dict(request.extensions["timeout"])))
        return await self._inner.handle_async_request(request)


@pytest.mark.parametrize(("timeout", "expected"),
                         [(1.0, WAIT + 30), (30.0, WAIT + 30), (300.0, 300.0), (None, None)])
def test_a_long_poll_outlasts_the_time_the_server_holds_it(timeout: float | None, expected: float | None) -> None:
    """The server answers a :wait after up to a minute: its HTTP timeout is that plus 30 s (or the
    client's, when longer; none when the client has none). Other requests keep the client's."""
    clock, emu, rec = in_process()
    name = emu.create("generic", service="vertex", duration=100)
    spy = _Timeouts(rec)

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options(transport=spy, timeout=timeout)) as ops:
            assert (await ops.wait(name, timeout=None)).done

    clock.run(flow())
    waits = [t for path, t in spy.seen if path.endswith(":wait")]
    others = [t for path, t in spy.seen if not path.endswith(":wait")]
    assert waits and others
    assert all(t == dict.fromkeys(("connect", "read", "write", "pool"), expected) for t in waits)
    assert all(t == dict.fromkeys(("connect", "read", "write", "pool"), timeout) for t in others)


def test_the_emulator_without_wait_answers_as_for_a_method_google_does_not_bind() -> None:
    clock, emu, _rec = in_process(vertex_wait=False)
    name = emu.create("generic", service="vertex", duration=100)
    job = emu.create("tuning", service="vertex", duration=100)  # tuning jobs bind no :wait anywhere

    async def flow() -> list[tuple[int, str]]:
        app: Any = emu.app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=emu.base_url) as client:
            async def wait(target: str) -> tuple[int, str]:
                answer = await client.post(f"/v1/{target}:wait", params={"timeout": "10s"})
                return answer.status_code, answer.text.replace(target, "{name}")

            unbound, never_bound = await wait(name), await wait(job)
            emu.app.vertex_wait = True  # live: routed again, so it wants credentials (none sent here)
            return [unbound, never_bound, await wait(name)]

    unbound, never_bound, routed = clock.run(flow())
    assert unbound == never_bound and unbound[0] == 404
    assert routed[0] == 401


def test_a_poll_beside_the_long_polls_is_a_get_not_a_list_page() -> None:
    """Names with a long-poll in flight do not count toward list sweeps: a handle that asks one of
    100 long-polled operations for a poll every 5 s gets GETs of it, not list pages of the whole
    location on its account."""
    clock, emu, rec = in_process()
    names = generic_ops(emu)
    eager = max(names, key=lambda n: names[n])  # 300 s

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options(poll_concurrency=CONCURRENCY)) as ops:
            handles = await ops.track_all(names)
            fast = await ops.track(eager, poll_interval=5)
            assert all(op.succeeded for op in [await h.wait() for h in handles])
            fast.close()

    clock.run(flow())
    lists = [t for t, m, p, _s in rec.log if (m, p) == ("GET", f"/v1/{LOC}/operations")]
    assert all(t < 1 for t in lists)  # first snapshots only
    # Every 5 s from when its long-poll went out (its rate turn among 100: about 10 s in), less
    # the few a :wait answer made unneeded (it restarts the interval).
    assert len(rec.gets(eager)) >= (300 - 15) / 5 - 5
    assert any(path == f"/v1/{eager}:wait" for _t, _m, path, _s in rec.log)
