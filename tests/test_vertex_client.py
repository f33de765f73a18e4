"""The Vertex AI client against the emulator: jobs, Veo through fetchPredictOperation, express mode,
credentials and their refresh, hosts per location, and what is never sent.

In-process on a VirtualClock (a Recorder in front of the app logs every request) unless a flow
needs google-auth's own transport (a served emulator over loopback)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from discovery import unbound
from google.oauth2 import service_account
from recorder import Recorder

import ops_widgets as ow
from ops_widgets import AuthenticationError, InvalidNameError, State, UnsupportedError
from ops_widgets.emulator import Emulator

PROJECT, LOCATION = "emulator-project", "us-central1"
LOC = f"projects/{PROJECT}/locations/{LOCATION}"
VEO_MODEL = "publishers/google/models/veo-3.0-generate-001"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture(autouse=True)
def _only_googles_methods() -> Iterator[None]:
    """Acceptance 1, the client's side: every request that a flow of this module sends through a
    Recorder (but the OAuth2 token endpoint's) calls a method of Google's discovery document for
    Vertex AI: its verb and path, its query parameters and its body's fields (tests/discovery.py)."""
    Recorder.made.clear()
    yield
    wrong = [why for rec in Recorder.made for method, path, query, body in rec.requests
             if path != "/token" and (why := unbound(method, path, query, body)) is not None]
    checked = sum(len(rec.requests) for rec in Recorder.made)
    Recorder.made.clear()
    assert wrong == [], f"{len(wrong)} of {checked} requests are not Google's"


def test_the_request_check_can_fail() -> None:
    """What the fixture above would refuse: a GET of a Veo operation, a job's cancel read as a GET,
    a query parameter or a body field the method does not take, a Gemini API path."""
    veo = f"/v1/{LOC}/{VEO_MODEL}"
    assert unbound("POST", f"{veo}:fetchPredictOperation", "", b'{"operationName": "x"}') is None
    assert unbound("GET", f"/v1/{LOC}/tuningJobs", "pageSize=1000&pageToken=t") is None
    assert unbound("POST", f"/v1/{LOC}/operations/1:wait", "timeout=30s") is None
    assert unbound("GET", f"{veo}/operations/o") is not None
    assert unbound("GET", f"/v1/{LOC}/tuningJobs/1:cancel") is not None
    assert unbound("GET", f"/v1/{LOC}/tuningJobs/1", "pageSize=10") is not None
    assert unbound("POST", f"/v1/{LOC}/operations/1:cancel", "", b'{"force": true}') is not None
    assert unbound("POST", f"{veo}:fetchPredictOperation", "", b'{"name": "x"}') is not None
    assert unbound("GET", "/v1beta/models/veo-3.0-generate-001/operations/o") is not None


def in_process(seed: int = 1) -> tuple[ow.VirtualClock, Emulator, Recorder]:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed)
    return clock, emu, Recorder(emu, clock)


def test_jobs_get_list_cancel_track_delete() -> None:
    clock, emu, rec = in_process()
    tuning = emu.create("tuning", service="vertex", duration=7200)
    batch = emu.create("batch", service="vertex", duration=600)

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options()) as ops:
            job = await ops.get(tuning)
            assert job.job and job.running and job.job_state == "JOB_STATE_PENDING" and job.vertex
            frame = await ops.list_dataframe(parent=f"{LOC}/tuningJobs", progress=False)
            assert list(frame.index) == [tuning] and frame.loc[tuning, "state"] == "running"
            assert frame.loc[tuning, "kind"] == "tuning"
            everything = {op.name for op in await ops.list_all()}  # the location's operations and its jobs
            assert everything == {tuning, batch}

            assert ops.can_cancel(tuning) and not ops.can_delete(tuning)
            await ops.cancel(tuning)
            assert (await ops.get(tuning)).cancelling
            await ops.cancel(tuning)  # already cancelling: the service's 400 is the outcome asked for
            handle = await ops.track(tuning)
            done = await handle.wait()
            assert done.state is State.CANCELLED and done.job_state == "JOB_STATE_CANCELLED"

            finished = await ops.wait(batch, poll_interval=30, timeout=None)
            assert finished.succeeded and finished.kind == "batch" and "completionStats" in finished.metadata
            assert ops.can_delete(batch)
            await ops.delete(batch)
            with pytest.raises(ow.NotFoundError):
                await ops.get(batch)

            before = len(rec.log)
            with pytest.raises(UnsupportedError, match="cannot delete"):
                await ops.delete(tuning)  # a tuning job has no delete: nothing is sent
            with pytest.raises(UnsupportedError, match="batch_results"):
                await ops.batch_results(batch)
            assert len(rec.log) == before

    clock.run(flow())
    sent = rec.sent()
    assert ("POST", f"/v1/{tuning}:cancel") in sent and ("DELETE", f"/v1/{batch}") in sent
    assert ("GET", f"/v1/{LOC}/tuningJobs") in sent
    assert all(path != "/token" or method == "POST" for method, path in rec.sent(token=True))


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_generic_operations_get_list_cancel_delete_track_wait(version: str) -> None:
    """The location's own operations and a RAG corpus's, through every method the client has for
    them (the fixture above checks each request against Google's document of ``version``):
    pages of a list (pageSize, pageToken), a cancel, a delete, wait() and track()."""
    clock, emu, rec = in_process(9)
    generic = [emu.create("generic", service="vertex", duration=300 + 60 * i) for i in range(3)]
    imported = emu.create("import", service="vertex", duration=200)
    corpus = imported.rsplit("/operations/", 1)[0]

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options(api_version=version)) as ops:
            assert (await ops.get(generic[0])).running
            assert {op.name for op in await ops.list_all(parent=LOC, page_size=2)} == set(generic)
            assert [op.name for op in await ops.list_all(parent=corpus)] == [imported]
            assert ops.can_cancel(generic[1]) and ops.can_delete(generic[2])
            await ops.cancel(generic[1])
            assert (await ops.wait(generic[1], poll_interval=10, timeout=None)).state is State.CANCELLED
            await ops.delete(generic[2])
            with pytest.raises(ow.NotFoundError):
                await ops.get(generic[2])
            assert (await (await ops.track(imported)).wait()).succeeded
            assert (await ops.wait(generic[0], poll_interval=30, timeout=None)).succeeded

    clock.run(flow())
    sent = rec.sent()
    assert ("POST", f"/{version}/{generic[1]}:cancel") in sent and ("DELETE", f"/{version}/{generic[2]}") in sent
    pages = [query for method, path, query, _body in rec.requests if path == f"/{version}/{LOC}/operations"]
    assert any("pageToken=" in query for query in pages)


def test_veo_in_express_mode_is_fetched_never_got() -> None:
    """Express mode (an API key, no project): predictLongRunning, then wait() and track() read the
    video through fetchPredictOperation only."""
    clock, emu, rec = in_process(2)

    async def flow() -> tuple[str, ow.Operation, ow.Operation]:
        app: Any = rec
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=emu.base_url) as http:
            started = await http.post(f"/v1/{VEO_MODEL}:predictLongRunning", headers={"x-goog-api-key": emu.api_key},
                                      json={"instances": [{"prompt": "a lighthouse at dusk"}]})
            name = started.json()["name"]
        async with ow.AsyncOperations(**rec.vertex_options(api_key=emu.api_key, project=None)) as ops:
            waited = await ops.wait(name, poll_interval=20, timeout=None)
            tracked = await (await ops.track(name)).wait()
        return name, waited, tracked

    name, waited, tracked = clock.run(flow())
    assert name.startswith(VEO_MODEL + "/operations/")
    for op in (waited, tracked):
        assert op.succeeded and op.vertex and op.response is not None and op.response["videos"][0]["bytesBase64Encoded"]
    assert not any(method == "GET" for method, _path in rec.sent())  # zero GETs
    assert rec.sent().count(("POST", f"/v1/{VEO_MODEL}:fetchPredictOperation")) >= 2


def test_veo_with_credentials_on_a_served_emulator() -> None:
    """Acceptance 3 over real HTTP with real google-auth signing: a service account starts a Veo
    video with predictLongRunning; wait() and track() reach the video through fetchPredictOperation,
    never a GET (which answers 404). The video is finished at once: polling a running one on time
    is test_veo_in_express_mode_is_fetched_never_got's, on the virtual clock (nothing waits here)."""
    from google.auth.transport.requests import Request

    with Emulator.start(random_seed=5) as emu:
        creds = emu.vertex_credentials()
        creds.refresh(Request())
        model = f"{LOC}/{VEO_MODEL}"
        started = httpx.post(f"{emu.base_url}/v1/{model}:predictLongRunning",
                             headers={"authorization": f"Bearer {creds.token}"},
                             json={"instances": [{"prompt": "p"}], "parameters": {"storageUri": "gs://b/out"}})
        name = started.json()["name"]
        emu.complete(name)
        with emu.client(vertexai=True) as ops:
            assert not ops.can_cancel(name)
            done = ops.wait(name, timeout=60)
            tracked = ops.track(name).wait(timeout=60)
        stats = emu.stats()
    assert done.succeeded and tracked.succeeded
    assert done.response is not None and done.response["videos"][0]["gcsUri"].startswith("gs://b/out/")
    assert "GET /v1/{name}" not in stats["by_route"]
    assert stats["by_route"]["POST /v1/{model}:fetchPredictOperation"] == stats["by_name"][name] >= 2
    assert 404 not in stats["by_status"] and 401 not in stats["by_status"]


def test_a_refused_token_is_refreshed_once_and_sent_again() -> None:
    clock, emu, rec = in_process(3)
    name = emu.create("generic", service="vertex", duration=3600)

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options()) as ops:
            await ops.get(name)
            emu.app.vertex.state.tokens.clear()  # the service forgets (revokes) every token
            await asyncio.gather(*(ops.get(name) for _ in range(5)))  # the first refused: one refresh for all

    clock.run(flow())
    statuses = [(p, s) for _t, _m, p, s in rec.log]
    assert statuses.count(("/token", 200)) == 2
    assert statuses.count((f"/v1/{name}", 401)) == 1 and statuses.count((f"/v1/{name}", 200)) == 6


def test_closing_the_client_during_a_refresh_cancels_it() -> None:
    """A client closed while its token is refreshed (a slow token endpoint) closes at once: the
    refresh is cancelled (no task left pending on the loop), the request that waited for the
    token gets an OpsError at once, and no task is left on the loop."""
    clock, emu, rec = in_process(7)
    name = emu.create("generic", service="vertex", duration=3600)
    creds = emu.vertex_credentials()
    started, gate = threading.Event(), threading.Event()
    refresh = creds.refresh

    def slow_refresh(request: Any) -> None:  # a token endpoint that does not answer (yet)
        started.set()
        gate.wait(30)
        refresh(request)

    creds.refresh = slow_refresh

    async def flow() -> tuple[bool, BaseException | None, list[asyncio.Task[Any]], float]:
        ops = ow.AsyncOperations(**rec.vertex_options(credentials=creds))
        getting = asyncio.ensure_future(ops.get(name))
        assert await asyncio.to_thread(started.wait, 10)  # the refresh's worker thread is blocked
        await ops.aclose()
        for _ in range(3):
            await asyncio.sleep(0)
        at_once = getting.done()
        gate.set()  # (had the close not ended it, let the refresh end now)
        error = (await asyncio.gather(getting, return_exceptions=True))[0]
        before = clock.monotonic()
        await asyncio.sleep(60)  # time moves: the worker holds it no more
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return at_once, error if isinstance(error, BaseException) else None, left, clock.monotonic() - before

    try:
        at_once, error, left, moved = clock.run(flow())
    finally:
        gate.set()
    assert at_once and isinstance(error, ow.OpsError) and "closed while a Google access token" in str(error)
    assert left == [] and moved == 60
    assert rec.log == []  # nothing was sent: no token, no request


def test_express_mode_where_vertex_wants_credentials_says_to_use_them() -> None:
    clock, emu, rec = in_process(4)
    job = emu.create("tuning", service="vertex")

    async def flow() -> AuthenticationError:
        async with ow.AsyncOperations(**rec.vertex_options(api_key=emu.api_key)) as ops:
            with pytest.raises(AuthenticationError) as caught:
                await ops.get(job)
            return caught.value

    error = clock.run(flow())
    assert error.status_code == 401 and "use Google credentials" in str(error)
    assert "application-default login" in str(error) and emu.api_key not in str(error)
    assert rec.sent() == [("GET", f"/v1/{job}")]  # sent once: a refused key is not retried


def test_bad_credentials_say_what_to_do() -> None:
    clock, emu, rec = in_process(5)
    job = emu.create("tuning", service="vertex")
    info = emu.vertex_key_info()
    info["client_email"] = "stranger@elsewhere.iam.gserviceaccount.com"  # an account the service does not know
    stranger = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])

    async def flow() -> AuthenticationError:
        async with ow.AsyncOperations(**rec.vertex_options(credentials=stranger)) as ops:
            with pytest.raises(AuthenticationError) as caught:
                await ops.get(job)
            return caught.value

    error = clock.run(flow())
    assert "could not be refreshed" in str(error) and "invalid_grant" in str(error)
    assert "gcloud auth application-default login" in str(error)
    assert rec.sent() == []  # nothing went to Vertex AI without a token


def test_no_credentials_anywhere_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(AuthenticationError, match="gcloud auth application-default login"):
        ow.AsyncOperations(vertexai=True, project="p")


def test_settings_as_google_genai_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    emu = Emulator.in_process(ow.VirtualClock())
    creds = emu.vertex_credentials(project="key-project")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    ops = ow.AsyncOperations(credentials=creds, history=False)
    assert repr(ops) == ("AsyncOperations(vertexai=True, project='env-project', location='europe-west4', "
                         "api_version='v1')")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.delenv("GOOGLE_CLOUD_LOCATION")
    ops = ow.AsyncOperations(credentials=creds, api_version="v1beta1", history=False)
    assert "project='key-project', location='global', api_version='v1beta1'" in repr(ops)  # as google-genai
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "0")
    assert "base_url='https://generativelanguage" in repr(ow.AsyncOperations(api_key="k", history=False))
    with pytest.raises(ValueError, match="vertexai=True"):
        ow.AsyncOperations(api_key="k", project="p")
    with pytest.raises(ValueError, match="exclude each other"):
        ow.AsyncOperations(api_key="k", vertexai=True, credentials=creds)


def test_each_location_is_sent_to_its_own_host() -> None:
    """No base_url: the real hosts, picked by the location in each name. The token endpoint and
    the service are answered by an httpx.MockTransport standing where Google's would (the
    credentials are google-auth's own service-account credentials, signing for real)."""
    clock = ow.VirtualClock()
    info = Emulator.in_process(clock).vertex_key_info()
    info["token_uri"] = "https://oauth2.googleapis.com/token"
    creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    seen: list[tuple[str, str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.host, request.url.path))
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "ya29.test-token", "expires_in": 3600})
        assert request.headers["authorization"] == "Bearer ya29.test-token"
        return httpx.Response(200, json={"name": request.url.path.split("/", 2)[2], "done": True, "response": {}})

    names = ["projects/p/locations/europe-west4/operations/1", "projects/p/locations/global/operations/2",
             "projects/p/locations/us-central1/ragCorpora/3/operations/4"]

    async def flow() -> None:
        async with ow.AsyncOperations(vertexai=True, project="p", location="us-central1", credentials=creds,
                                      transport=httpx.MockTransport(answer), clock=clock, history=False) as ops:
            for name in names:
                assert (await ops.get(name)).succeeded

    clock.run(flow())
    assert [unbound(method, path) for method, _host, path in seen[1:]] == [None] * 3
    assert seen == [("POST", "oauth2.googleapis.com", "/token"),
                    ("GET", "europe-west4-aiplatform.googleapis.com", f"/v1/{names[0]}"),
                    ("GET", "aiplatform.googleapis.com", f"/v1/{names[1]}"),
                    ("GET", "us-central1-aiplatform.googleapis.com", f"/v1/{names[2]}")]


def test_bad_names_and_unbound_methods_send_nothing() -> None:
    clock, emu, rec = in_process(6)

    async def flow() -> None:
        async with ow.AsyncOperations(**rec.vertex_options()) as ops:
            with pytest.raises(InvalidNameError, match="Gemini API name"):
                await ops.get("models/veo-3.0-generate-001/operations/x")
            with pytest.raises(InvalidNameError):
                await ops.track(f"{LOC}/operations/../x")
            with pytest.raises(UnsupportedError, match="cannot cancel"):
                await ops.cancel(f"{LOC}/{VEO_MODEL}/operations/o")
            with pytest.raises(UnsupportedError, match="no list"):
                await ops.list(parent=f"{LOC}/{VEO_MODEL}")

    clock.run(flow())
    assert rec.log == []


def test_a_job_in_the_widget_cancelled_from_its_button(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance 5: a tuning job shows live in OperationWidget and is cancelled from the button."""
    import test_widget as tw

    comms = tw.Comms()
    monkeypatch.setattr(tw.ipywidgets.widgets.widget.comm, "create_comm",
                        lambda **kw: tw.RecordingComm(comms.now, **kw))
    clock = ow.VirtualClock(auto=False)
    comms.now = clock.monotonic
    emu = Emulator.in_process(clock, random_seed=8)
    rec = Recorder(emu, clock)
    job = emu.create("tuning", service="vertex", duration=3600)
    ops = ow.Operations(**rec.vertex_options(poll_rate=None))
    try:
        ops.get(job)  # the token, before time is moved by hand
        widget = ops.watch(job)
        clock.advance(60)
        assert widget.state == "running" and widget.kind == "tuning"
        widget.comm.from_front({"type": "cancel"})
        clock.settle()
        assert ("POST", f"/v1/{job}:cancel") in rec.sent()
        for _ in range(30):  # the job spends a few emulated seconds CANCELLING
            clock.advance(1)
            if widget.state == "cancelled":
                break
        assert widget.state == "cancelled"
        assert json.dumps(widget.get_state(), default=str).count("ya29.") == 0
    finally:
        ops.close()
        tw.stop_thread(clock)


def test_a_service_account_keeps_200_pollers_authorized(tmp_path: Path, _history_home: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Acceptance 2, in-process on a VirtualClock shared by the client and the emulator (which
    mints each token's expiry on it): a key file made here, tokens that live 4 emulated seconds,
    200 operations and jobs tracked (a poll a second each) through a minute of emulated time.

    - Every request carries a live token: no 401 at all. The client counts a token's life on
      the same clock the service expires it on and stops sending it in its last tenth, so a 401
      here would be a wrong plan, not bad luck; the 401-refresh-retry path has its own test.
    - Refreshes are few and one at a time: one per half lifetime (a short token is renewed
      after half its life), never two closer than that, whatever the number of pollers.
    - No token (nor the key) in a log record at DEBUG, a repr, an exception, a widget's state
      or the history.

    It once ran on a served emulator with poll_interval=30: real seconds on the client's real
    clock (poll_interval is not scaled by time_scale), so the 200 pollers polled twice in 30 s and
    saw 2 tokens. On a VirtualClock, refreshes landed at random times until the clock stopped
    moving while the loop awaits the refresh's worker thread (tests/test_clock.py)."""
    caplog.set_level(logging.DEBUG)  # every logger: ours, google-auth's, httpx's, httpcore's
    lifetime, minute = 4.0, 60.0
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=11)
    rec = Recorder(emu, clock)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(emu.vertex_key_info(lifetime=lifetime, project=PROJECT)))
    creds = service_account.Credentials.from_service_account_file(str(key_file), scopes=[SCOPE])
    kinds = ("generic", "import", "tuning", "batch", "video")
    # Done from 20 s to the end of the minute: every kind polled all through it.
    names = [emu.create(kinds[i % len(kinds)], service="vertex", duration=20 + (minute - 21) * i / 199)
             for i in range(200)]
    ops = ow.Operations(**rec.vertex_options(credentials=creds, poll_rate=None))
    try:
        handles = ops.track_all(names, poll_interval=1)
        widget = ops.watch(names[0])
        with pytest.raises(ow.NotFoundError) as missing:
            ops.get(f"{LOC}/operations/404")
        finished = [h.wait(timeout=2 * minute) for h in handles]
        shown = [repr(ops), repr(handles[0]), repr(finished[0]), str(missing.value), repr(missing.value),
                 json.dumps(widget.get_state(), default=str), repr(creds), repr(emu)]
        for h in handles:
            h.close()
    finally:
        ops.close()

    assert all(op.done for op in finished) and clock.monotonic() >= minute - 1
    served = [(t, path, status) for t, _m, path, status in rec.log if path != "/token"]
    assert [x for x in served if x[2] == 401] == []  # every request carried a live token
    assert {int(t) for t, _p, _s in served} >= set(range(int(minute) - 1))  # polled every second
    refreshed = [t for t, _m, path, status in rec.log if path == "/token" and status == 200]
    gaps = [b - a for a, b in zip(refreshed, refreshed[1:], strict=False)]
    # One refresh per half lifetime: never sooner (not one per poller), never later than the
    # token's last tenth (requests go out every second).
    assert gaps and all(lifetime / 2 <= gap <= 0.9 * lifetime for gap in gaps), gaps
    assert len(refreshed) <= minute / (lifetime / 2) + 1 and len(served) > 50 * len(refreshed)  # a token serves many

    tokens = list(emu.app.vertex.state.tokens)
    key_line = json.loads(key_file.read_text())["private_key"].splitlines()[1]
    history = b"".join(p.read_bytes() for p in _history_home.rglob("*") if p.is_file())
    assert history  # the history was kept, and looked at
    text = "\n".join([*shown, caplog.text, *(r.getMessage() for r in caplog.records)])
    assert len(tokens) == len(refreshed) and "ya29." in json.dumps(tokens)
    assert not any(t in text or t.encode() in history for t in tokens)
    assert key_line not in text and key_line.encode() not in history
