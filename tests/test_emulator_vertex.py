"""The emulator's Vertex AI surface: over loopback HTTP with plain httpx and real google-auth
service-account credentials (signing, the JWT-bearer grant, refresh), and in-process on a
VirtualClock for :wait. Every (method, path) it serves for Vertex AI is one of Google's discovery
document (aiplatform.v1/v1beta1.json from google-api-python-client)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from discovery import in_document
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from test_vertex_bindings import google

from ops_widgets import ListOperationsResponse, Operation, State, VirtualClock
from ops_widgets import _capabilities as caps
from ops_widgets.emulator import Emulator
from ops_widgets.emulator import _vertex as vx

LOC = "projects/demo-project/locations/us-central1"
VEO = f"{LOC}/publishers/google/models/veo-3.0-generate-001"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(random_seed=11) as server:
        yield server


@pytest.fixture(scope="module")
def creds(emu: Emulator) -> Any:
    return emu.vertex_credentials(lifetime=60)


def headers(creds: Any) -> dict[str, str]:
    """What google-auth puts on a request: it refreshes first when the token is (nearly) expired."""
    out: dict[str, str] = {}
    creds.before_request(Request(), "GET", "http://unused", out)
    return out


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# --- google-auth against /token --------------------------------------------------------------------
def test_google_auth_signs_trades_and_refreshes_short_lived_tokens(emu: Emulator) -> None:
    """A lifetime under google-auth's refresh margin (3m45s): it refreshes before every request,
    each time signing a new JWT that the emulator verifies against the account's public key."""
    creds = emu.vertex_credentials(lifetime=60)
    before = emu.stats()["by_route"].get("POST /token", 0)
    tokens = set()
    with httpx.Client(base_url=emu.base_url) as client:
        for _ in range(3):
            sent = headers(creds)
            tokens.add(sent["authorization"])
            assert client.get(f"/v1/{LOC}/tuningJobs", headers=sent).status_code == 200
    assert len(tokens) == 3 and emu.stats()["by_route"]["POST /token"] - before == 3
    assert creds.token.startswith("ya29.") and creds.token not in repr(emu)


def test_a_key_file_on_disk_drives_the_same_flow(emu: Emulator, tmp_path: Any) -> None:
    import json

    path = tmp_path / "key.json"
    path.write_text(json.dumps(emu.vertex_key_info(lifetime=120)))
    creds = service_account.Credentials.from_service_account_file(str(path), scopes=[SCOPE])
    assert creds._token_uri == f"{emu.base_url}/token"
    with httpx.Client(base_url=emu.base_url) as client:
        assert client.get(f"/v1/{LOC}/operations", headers=headers(creds)).status_code == 200


def test_an_expired_token_is_refused_until_refreshed() -> None:
    now = [1_800_000_000.0]
    with Emulator.start(clock=lambda: now[0]) as server, httpx.Client(base_url=server.base_url) as client:
        creds = server.vertex_credentials(lifetime=300)  # beyond google-auth's margin: it keeps the token
        sent = headers(creds)
        assert client.get(f"/v1/{LOC}/operations", headers=sent).status_code == 200
        now[0] += 301  # emulator time: the token is past its lifetime
        refused = client.get(f"/v1/{LOC}/operations", headers=headers(creds))
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        err = error_of(refused)
        assert err["status"] == "UNAUTHENTICATED" and err["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
        assert err["message"].startswith("Request had invalid authentication credentials.")
        creds.refresh(Request())
        assert client.get(f"/v1/{LOC}/operations", headers=headers(creds)).status_code == 200


def test_the_token_endpoint_refuses_what_it_did_not_sign(emu: Emulator) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    info = emu.vertex_key_info()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
    forged = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_grant"):
        forged.refresh(Request())
    unscoped = service_account.Credentials.from_service_account_info(emu.vertex_key_info())
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_scope"):
        unscoped.refresh(Request())
    with httpx.Client(base_url=emu.base_url) as client:
        answer = client.post("/token", data={"grant_type": "password", "assertion": "x"})
        assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(("sent", "status", "reason"), [
    ({}, 401, "CREDENTIALS_MISSING"),
    ({"authorization": "Bearer ya29.not-one-of-ours"}, 401, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
    ({"authorization": "Basic dXNlcjpwYXNz"}, 401, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
    ({"x-goog-api-key": "emulator-key"}, 401, "CREDENTIALS_MISSING"),  # no API keys under projects/
])
def test_the_401s_are_googles(emu: Emulator, sent: dict[str, str], status: int, reason: str) -> None:
    with httpx.Client(base_url=emu.base_url) as client:
        answer = client.get(f"/v1/{LOC}/tuningJobs", headers=sent)
    err = error_of(answer)
    assert (answer.status_code, err["code"], err["status"]) == (status, status, "UNAUTHENTICATED")
    assert err["details"] == [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                               "domain": "googleapis.com", "metadata": {"service": "aiplatform.googleapis.com"}}]
    assert "key" not in err["message"] or sent.get("x-goog-api-key") is not None
    assert "emulator-key" not in answer.text and "not-one-of-ours" not in answer.text


def test_express_mode_takes_the_key_on_publisher_models_only(emu: Emulator) -> None:
    """Vertex AI express mode: an API key, no project: publishers/*/models/* (predictLongRunning,
    fetchPredictOperation); the names it answers have no project either."""
    model = "publishers/google/models/veo-3.0-fast-generate-001"
    with httpx.Client(base_url=emu.base_url) as client:
        started = client.post(f"/v1/{model}:predictLongRunning", headers={"x-goog-api-key": emu.api_key},
                              json={"instances": [{"prompt": "a lighthouse"}]})
        assert started.status_code == 200
        name = started.json()["name"]
        assert name.startswith(model + "/operations/")
        fetched = client.post(f"/v1/{model}:fetchPredictOperation", headers={"x-goog-api-key": emu.api_key},
                              json={"operationName": name})
        assert fetched.json() == {"name": name}
        wrong = client.post(f"/v1/{model}:fetchPredictOperation", headers={"x-goog-api-key": "nope"},
                            json={"operationName": name})
        assert wrong.status_code == 400 and error_of(wrong)["details"][0]["reason"] == "API_KEY_INVALID"


# --- Veo -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["gs://my-bucket/veo", None])
def test_veo_is_fetched_never_got(emu: Emulator, creds: Any, storage: str | None) -> None:
    request: dict[str, Any] = {"instances": [{"prompt": "a cat surfing"}], "parameters": {"sampleCount": 2}}
    if storage:
        request["parameters"]["storageUri"] = storage
    with httpx.Client(base_url=emu.base_url) as client:
        name = client.post(f"/v1/{VEO}:predictLongRunning", headers=headers(creds), json=request).json()["name"]
        assert re.fullmatch(VEO + r"/operations/[0-9a-f-]{36}", name)
        got = client.get(f"/v1/{name}", headers=headers(creds))
        assert got.status_code == 404 and error_of(got)["status"] == "NOT_FOUND"
        fetch = f"/v1/{VEO}:fetchPredictOperation"
        assert client.post(fetch, headers=headers(creds), json={"operationName": name}).json() == {"name": name}
        assert client.post(f"/v1/{name}:wait", headers=headers(creds)).status_code == 404  # not bound either
        emu.complete(name)
        body = client.post(fetch, headers=headers(creds), json={"operationName": name}).json()
        missing = client.post(fetch, headers=headers(creds), json={"operationName": name[:-4] + "0000"})
        elsewhere = client.post(f"/v1/{LOC}/publishers/google/models/veo-2.0-generate-001:fetchPredictOperation",
                                headers=headers(creds), json={"operationName": name})
    assert missing.status_code == 404 and elsewhere.status_code == 400
    op = Operation.from_api_response(body, vertex=True)
    assert op.kind == "video" and op.state is State.SUCCEEDED and body["response"]["raiMediaFilteredCount"] == 0
    if storage:
        assert op.video_uris == [f"{storage}/{op.id}/sample_{i}.mp4" for i in range(2)] and op.video_data == []
    else:
        assert op.video_uris == [] and [v[4:8] for v in op.video_data] == [b"ftyp"] * 2


def test_filtered_and_failed_videos(emu: Emulator, creds: Any) -> None:
    filtered = emu.create("video", service="vertex", project="demo-project", outcome="filtered", duration=1)
    failed = emu.create("video", service="vertex", project="demo-project", outcome="failure", duration=1,
                        error_message="boom", error_code=13)
    emu.complete(filtered)
    emu.complete(failed)
    with httpx.Client(base_url=emu.base_url) as client:
        ops = [Operation.from_api_response(client.post(
            f"/v1/{name.rsplit('/operations/', 1)[0]}:fetchPredictOperation", headers=headers(creds),
            json={"operationName": name}).json(), vertex=True) for name in (filtered, failed)]
    assert ops[0].state is State.FILTERED and ops[0].filter_reasons
    assert ops[1].state is State.FAILED and ops[1].error is not None and ops[1].error.message == "boom"


def test_only_veo_runs_long(emu: Emulator, creds: Any) -> None:
    with httpx.Client(base_url=emu.base_url) as client:
        answer = client.post(f"/v1/{LOC}/publishers/google/models/gemini-2.5-flash:predictLongRunning",
                             headers=headers(creds), json={"instances": [{"prompt": "x"}]})
        bad = client.post(f"/v1/{VEO}:predictLongRunning", headers=headers(creds), json={"instances": []})
        endpoint = client.post(f"/v1/{LOC}/endpoints/123:predictLongRunning", headers=headers(creds),
                               json={"instances": [{"prompt": "x"}]})
    assert answer.status_code == 404 and "Publisher Model" in error_of(answer)["message"]
    assert endpoint.status_code == 404 and "Endpoint" in error_of(endpoint)["message"]
    assert bad.status_code == 400


# --- jobs ------------------------------------------------------------------------------------------
def test_a_tuning_job_from_create_to_cancelled() -> None:
    now = [1_800_000_000.0]
    with Emulator.start(clock=lambda: now[0], random_seed=3) as server, \
            httpx.Client(base_url=server.base_url) as client:
        auth = headers(server.vertex_credentials(lifetime=10**6))
        created = client.post(f"/v1/{LOC}/tuningJobs", headers=auth, json={
            "baseModel": "gemini-2.5-flash", "tunedModelDisplayName": "my model",
            "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/train.jsonl"}})
        job = created.json()
        assert created.status_code == 200 and job["state"] == "JOB_STATE_PENDING"
        assert re.fullmatch(LOC + r"/tuningJobs/\d{19}", job["name"])
        now[0] += 60
        assert client.get(f"/v1/{job['name']}", headers=auth).json()["state"] == "JOB_STATE_RUNNING"
        listed = client.get(f"/v1/{LOC}/tuningJobs", headers=auth).json()
        assert [j["name"] for j in listed["tuningJobs"]] == [job["name"]]
        assert client.post(f"/v1/{job['name']}:cancel", headers=auth).json() == {}
        cancelling = Operation.from_api_response(client.get(f"/v1/{job['name']}", headers=auth).json())
        assert cancelling.cancelling and not cancelling.done
        now[0] += vx.CANCEL_SECONDS
        body = client.get(f"/v1/{job['name']}", headers=auth).json()
        again = client.post(f"/v1/{job['name']}:cancel", headers=auth)
        unbound = client.delete(f"/v1/{job['name']}", headers=auth)  # tuning jobs cannot be deleted
    op = Operation.from_api_response(body)
    assert op.state is State.CANCELLED and op.kind == "tuning" and body["error"]["code"] == 1 and "endTime" in body
    assert again.status_code == 400 and error_of(again)["status"] == "FAILED_PRECONDITION"
    assert unbound.status_code == 404


def test_a_succeeded_tuning_job_names_its_model(emu: Emulator, creds: Any) -> None:
    name = emu.create("tuning", service="vertex", project="demo-project", duration=600)
    emu.complete(name)
    with httpx.Client(base_url=emu.base_url) as client:
        body = client.get(f"/v1beta1/{name}", headers=headers(creds)).json()
    op = Operation.from_api_response(body)
    assert op.state is State.SUCCEEDED and op.response is not None
    assert body["tunedModel"]["model"].startswith(f"{LOC}/models/") and body["tunedModel"]["model"].endswith("@1")


def test_a_batch_prediction_job(emu: Emulator, creds: Any) -> None:
    with httpx.Client(base_url=emu.base_url) as client:
        made = client.post(f"/v1/{LOC}/batchPredictionJobs", headers=headers(creds), json={
            "displayName": "nightly", "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://b/out"}}})
        assert made.status_code == 200 and made.json()["state"] == "JOB_STATE_PENDING"
        name = emu.create("batch", service="vertex", project="demo-project", duration=1000, outcome="partial")
        running = client.delete(f"/v1/{name}", headers=headers(creds))
        assert running.status_code == 400 and error_of(running)["status"] == "FAILED_PRECONDITION"
        emu.complete(name)
        body = client.get(f"/v1/{name}", headers=headers(creds)).json()
        deleted = client.delete(f"/v1/{name}", headers=headers(creds)).json()
        gone = client.get(f"/v1/{name}", headers=headers(creds))
        delete_op = client.get(f"/v1/{deleted['name']}", headers=headers(creds)).json()
        listed = client.get(f"/v1/{LOC}/batchPredictionJobs", headers=headers(creds)).json()
    op = Operation.from_api_response(body)
    assert op.state is State.SUCCEEDED and op.partial and op.kind == "batch"
    assert body["outputInfo"]["gcsOutputDirectory"].startswith("gs://demo-project-batch/output/prediction-")
    stats = body["completionStats"]
    assert int(stats["failedCount"]) > 0 and "incompleteCount" not in stats  # zero: omitted
    assert deleted["done"] is True and deleted["metadata"]["@type"].endswith("DeleteOperationMetadata")
    assert gone.status_code == 404 and delete_op == deleted
    assert name not in [j["name"] for j in listed.get("batchPredictionJobs", [])]


def test_a_job_listing_evaluates_the_documented_state_filter_and_refuses_the_rest(emu: Emulator, creds: Any) -> None:
    """Google documents a job listing's filter (state=..., state!=..., AND, and more fields). The
    emulator evaluates the state comparisons and answers 400 to the rest: ignoring a filter would
    hand back the jobs it asked to leave out."""
    loc = "projects/filter-project/locations/us-central1"
    running = [emu.create("batch", service="vertex", project="filter-project", duration=10**6) for _ in range(3)]
    ended = [emu.create("batch", service="vertex", project="filter-project", duration=10**6) for _ in range(3)]
    for name in ended:
        emu.complete(name)

    def listed(filter_: str, page_size: int = 50) -> list[str] | httpx.Response:
        names, token = [], None
        with httpx.Client(base_url=emu.base_url) as client:
            while True:
                answer = client.get(f"/v1/{loc}/batchPredictionJobs", headers=headers(creds), params={
                    "filter": filter_, "pageSize": page_size, **({"pageToken": token} if token else {})})
                if answer.status_code != 200:
                    return answer
                names += [j["name"] for j in answer.json().get("batchPredictionJobs", [])]
                token = answer.json().get("nextPageToken")
                if not token:
                    return names

    assert listed('state="JOB_STATE_SUCCEEDED"') == listed("state=JOB_STATE_SUCCEEDED", page_size=1) == ended
    assert sorted(listed('state!="JOB_STATE_SUCCEEDED"')) == sorted(running)  # type: ignore[type-var]
    # The running ones are pending or running (pending for their first 30 s), never anything else.
    assert listed('state!="JOB_STATE_SUCCEEDED" AND state!="JOB_STATE_PENDING" AND state!=JOB_STATE_RUNNING') == []
    assert sorted(listed("")) == sorted(running + ended)  # type: ignore[type-var]
    for bad, said in [("done=false", "state comparisons"), ('displayName="x"', "state comparisons"),
                      ('state="JOB_STATE_DONE"', "not a job state"), ("state=", "state comparisons")]:
        answer = listed(bad)
        assert isinstance(answer, httpx.Response) and answer.status_code == 400, bad
        assert error_of(answer)["status"] == "INVALID_ARGUMENT" and said in error_of(answer)["message"], bad


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_the_states_a_job_filter_may_name_are_the_discovery_documents(version: str) -> None:
    from discovery import discovery

    prefix = "GoogleCloudAiplatformV1" if version == "v1" else "GoogleCloudAiplatformV1beta1"
    schemas = discovery(version)["schemas"]
    for job in ("BatchPredictionJob", "TuningJob"):
        assert set(schemas[prefix + job]["properties"]["state"]["enum"]) == vx.JOB_STATE_NAMES, job


# --- operations ------------------------------------------------------------------------------------
def test_operations_get_list_cancel_delete(emu: Emulator, creds: Any) -> None:
    loc = "projects/ops-project/locations/europe-west4"
    generic = [emu.create("generic", service="vertex", project="ops-project", location="europe-west4",
                          duration=10**6) for _ in range(5)]
    imported = emu.create("import", service="vertex", project="ops-project", location="europe-west4",
                          duration=10**6)
    with httpx.Client(base_url=emu.base_url) as client:
        names, token = [], None
        while True:
            page = client.get(f"/v1/{loc}/operations", headers=headers(creds),
                              params={"pageSize": 2, **({"pageToken": token} if token else {})}).json()
            names += [o["name"] for o in page["operations"]]
            token = page.get("nextPageToken")
            if not token:
                break
        corpus = imported.rsplit("/operations/", 1)[0]
        in_corpus = client.get(f"/v1/{corpus}/operations", headers=headers(creds)).json()
        undone = client.get(f"/v1/{corpus}/operations", headers=headers(creds), params={"filter": "done=false"}).json()
        finished = client.get(f"/v1/{corpus}/operations", headers=headers(creds), params={"filter": "done=true"}).json()
        refused = client.get(f"/v1/{corpus}/operations", headers=headers(creds), params={"filter": "state=RUNNING"})
        running = Operation.from_api_response(client.get(f"/v1/{imported}", headers=headers(creds)).json(),
                                              vertex=True)
        assert client.post(f"/v1/{generic[0]}:cancel", headers=headers(creds)).json() == {}
        cancelled = Operation.from_api_response(client.get(f"/v1/{generic[0]}", headers=headers(creds)).json())
        assert client.delete(f"/v1/{generic[1]}", headers=headers(creds)).json() == {}
        gone = client.get(f"/v1/{generic[1]}", headers=headers(creds))
    assert names == generic and [o["name"] for o in in_corpus["operations"]] == [imported]
    assert [o["name"] for o in undone["operations"]] == [imported] and finished == {}
    assert refused.status_code == 400 and "done=true, done=false" in error_of(refused)["message"]
    assert running.kind == "import" and running.state is State.RUNNING and running.create_time is not None
    assert cancelled.cancelled and cancelled.error is not None and cancelled.error.code == 1
    assert gone.status_code == 404


def test_unbound_methods_answer_404(emu: Emulator, creds: Any) -> None:
    """What Google binds in neither version is not served (with a token, so auth is not why)."""
    with httpx.Client(base_url=emu.base_url) as client:
        for method, path in [
            ("GET", f"/v1/{LOC}/featureGroups/g/operations"),  # v1 lists them at a GET ...:wait
            ("GET", f"/v1beta1/{LOC}/tuningJobs/1/operations"),  # v1 lists a tuning job's, v1beta1 not
            ("POST", f"/v1/{LOC}/evaluationMetrics/m/operations/o:cancel"),
            ("GET", f"/v1/{VEO}/operations"),
            ("GET", "/v1/projects/p/operations/o"),
            ("GET", f"/v1beta1/{LOC.replace('projects/', 'projectz/')}/operations"),
        ]:
            answer = client.request(method, path, headers=headers(creds))
            assert answer.status_code == 404, (method, path)


# --- :wait on a VirtualClock, in-process ------------------------------------------------------------
async def token_in_process(emu: Emulator, client: httpx.AsyncClient) -> dict[str, str]:
    """The JWT-bearer grant by hand (google-auth's transports need a socket): the assertion is
    signed with the key file's key by google-auth's own jwt.encode."""
    info = emu.vertex_key_info(lifetime=10**6)
    signer = service_account.Credentials.from_service_account_info(info).signer
    issued = int(time.time())  # google-auth checks iat/exp against the real clock, not the emulator's
    assertion = jwt.encode(signer, {"iss": info["client_email"], "aud": info["token_uri"], "scope": SCOPE,
                                    "iat": issued, "exp": issued + 3600})
    answer = await client.post("/token", data={"grant_type": vx.JWT_BEARER, "assertion": assertion.decode()})
    assert answer.status_code == 200, answer.text
    return {"authorization": f"Bearer {answer.json()['access_token']}"}


def test_wait_returns_when_done_or_at_the_timeout_in_emulator_time() -> None:
    clock = VirtualClock()
    emu = Emulator.in_process(clock, random_seed=2)

    async def flow() -> list[tuple[float, bool]]:
        app: Any = emu.app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=emu.base_url) as client:
            auth = await token_in_process(emu, client)
            name = emu.create("generic", service="vertex", duration=100)
            seen = []
            for timeout in ("30s", "600s", "45.5s"):  # 600s: capped at the RPC deadline (60s)
                start = clock.monotonic()
                answer = await client.post(f"/v1/{name}:wait", params={"timeout": timeout}, headers=auth)
                seen.append((clock.monotonic() - start, answer.json().get("done", False)))
            done_now = await client.post(f"/v1/{name}:wait", headers=auth)
            assert done_now.json()["done"] is True
            bad = await client.post(f"/v1/{name}:wait", params={"timeout": "soon"}, headers=auth)
            assert bad.status_code == 400
            return seen

    seen = clock.run(flow())
    assert [done for _t, done in seen] == [False, False, True]
    assert [round(t) for t, _d in seen] == [30, 60, 10]  # the third returns at the end, not its timeout


def test_wait_ends_early_on_cancel() -> None:
    clock = VirtualClock()
    emu = Emulator.in_process(clock, random_seed=4)

    async def flow() -> tuple[float, dict[str, Any]]:
        import asyncio

        app: Any = emu.app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=emu.base_url) as client:
            auth = await token_in_process(emu, client)
            name = emu.create("import", service="vertex", duration=10**5)
            start = clock.monotonic()
            waiting = asyncio.ensure_future(client.post(f"/v1/{name}:wait", params={"timeout": "50s"},
                                                        headers=auth))
            await asyncio.sleep(7)
            await client.post(f"/v1/{name}:cancel", headers=auth)
            answer = await waiting
            return clock.monotonic() - start, answer.json()

    took, body = clock.run(flow())
    assert body["done"] is True and body["error"]["code"] == 1 and 7 <= took <= 8


# --- against Google's discovery document -----------------------------------------------------------
def test_every_vertex_request_the_emulator_serves_is_in_the_discovery_document() -> None:
    """Every flow of this surface, through a recording transport: each (method, path) the
    emulator answered for Vertex AI (not 404) is a method of Google's document."""
    clock = VirtualClock()
    emu = Emulator.in_process(clock, random_seed=9)
    served: list[tuple[str, str, int]] = []

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def spy(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                served.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await emu.app(scope, receive, spy)

    async def flows() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=recording), base_url=emu.base_url) as c:
            auth = await token_in_process(emu, c)
            for version in ("v1", "v1beta1"):
                video = (await c.post(f"/{version}/{VEO}:predictLongRunning", headers=auth,
                                      json={"instances": [{"prompt": "p"}]})).json()["name"]
                await c.post(f"/{version}/{VEO}:fetchPredictOperation", headers=auth, json={"operationName": video})
                tuning = {"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t"}}
                batch = {"model": "m", "inputConfig": {}}
                for collection, body in (("tuningJobs", tuning), ("batchPredictionJobs", batch)):
                    job = (await c.post(f"/{version}/{LOC}/{collection}", headers=auth, json=body)).json()["name"]
                    await c.get(f"/{version}/{job}", headers=auth)
                    await c.get(f"/{version}/{LOC}/{collection}", headers=auth)
                    await c.post(f"/{version}/{job}:cancel", headers=auth)
                    clock_done = emu.create("batch", service="vertex", project="demo-project", duration=1)
                    emu.complete(clock_done)
                    await c.delete(f"/{version}/{clock_done}", headers=auth)
                for kind in ("generic", "import"):
                    name = emu.create(kind, service="vertex", project="demo-project", duration=5)
                    await c.get(f"/{version}/{name}", headers=auth)
                    await c.get(f"/{version}/{name.rsplit('/operations/', 1)[0]}/operations", headers=auth)
                    await c.post(f"/{version}/{name}:wait", params={"timeout": "1s"}, headers=auth)
                    await c.post(f"/{version}/{name}:cancel", headers=auth)
                    await c.delete(f"/{version}/{name}", headers=auth)
            await c.post("/v1/publishers/google/models/veo-3.0-generate-001:predictLongRunning",
                         headers={"x-goog-api-key": emu.api_key}, json={"instances": [{"prompt": "p"}]})

    clock.run(flows())
    vertex = [(m, p, s) for m, p, s in served if p != "/token"]
    assert len(vertex) > 40 and all(s != 404 for _m, _p, s in vertex), [x for x in vertex if x[2] == 404]
    assert [(m, p) for m, p, _s in vertex if not in_document(m, p)] == []
    # And the check can fail: Veo's GET, a tuning job's DELETE, a Gemini API path are not Vertex AI's.
    assert not in_document("GET", f"/v1/{VEO}/operations/o")
    assert not in_document("DELETE", f"/v1/{LOC}/tuningJobs/1")
    assert not in_document("GET", "/v1beta/models/veo-3.0-generate-001/operations/o")


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_the_emulator_routes_exactly_the_table(version: str) -> None:
    """Each binding of Google's (as derived from the document) is routed; what the document
    does not bind is not."""
    suffixes = {"cancel": ":cancel", "wait": ":wait", "predict": ":predictLongRunning",
                "fetch": ":fetchPredictOperation"}
    for action, bindings in google(version).items():
        for verb, path in bindings:
            rest = path.removeprefix(f"/{version}/").replace("*", "x1")
            found = vx.route(version, verb, rest)
            assert found is not None and found.handler == action, (action, verb, rest)
            assert rest.endswith(suffixes.get(action, ""))
    assert vx.route(version, "GET", f"{VEO}/operations/o") is None
    assert vx.route(version, "DELETE", f"{LOC}/tuningJobs/1") is None
    assert vx.route(version, "PATCH", f"{LOC}/operations/o") is None
    assert vx.route(version, "POST", f"{LOC}/operations/o:delete") is None
    assert caps.fetch_endpoint(version, f"{VEO}/operations/o") == VEO


def test_create_checks_its_arguments() -> None:
    emu = Emulator.in_process(VirtualClock())
    with pytest.raises(ValueError, match="unknown Vertex kind"):
        emu.create("upload", service="vertex")
    with pytest.raises(ValueError, match="project"):
        emu.create("generic", service="vertex", project="a/b")
    with pytest.raises(ValueError, match="outcome"):
        emu.create("tuning", service="vertex", outcome="filtered")
    with pytest.raises(ValueError, match="service='vertex'"):
        emu.create("video", project="p")
    with pytest.raises(ValueError, match="unknown service"):
        emu.create("video", service="aws")
    name = emu.create("video", service="vertex", project="p", location="europe-west4", model="veo-2.0-generate-001")
    assert name.startswith("projects/p/locations/europe-west4/publishers/google/models/veo-2.0-generate-001/")
    assert emu.get_operation(name) == {"name": name}


def test_seed_makes_every_kind_and_state() -> None:
    with Emulator.start(random_seed=1) as emu:  # its own: the mix depends on the seed, not on other tests
        seed_and_read(emu, emu.vertex_credentials(lifetime=3600))


def seed_and_read(emu: Emulator, creds: Any) -> None:
    names = emu.seed(1000, service="vertex", project="seeded", location="asia-northeast1")
    loc = "projects/seeded/locations/asia-northeast1"
    assert len(names) == 1000 and all(n.startswith(loc + "/") for n in names)
    ops = []
    with httpx.Client(base_url=emu.base_url) as client:
        for collection in ("tuningJobs", "batchPredictionJobs"):
            token = None
            while True:
                page = client.get(f"/v1/{loc}/{collection}", headers=headers(creds),
                                  params={"pageSize": 50, **({"pageToken": token} if token else {})}).json()
                ops += ListOperationsResponse.from_api_response(page, vertex=True).operations
                token = page.get("nextPageToken")
                if not token:
                    break
        generic = client.get(f"/v1/{loc}/operations", headers=headers(creds), params={"pageSize": 1000}).json()
        ops += ListOperationsResponse.from_api_response(generic, vertex=True).operations
        videos = [n for n in names if "/publishers/" in n]
        for name in videos:
            fetched = client.post(f"/v1/{name.rsplit('/operations/', 1)[0]}:fetchPredictOperation",
                                  headers=headers(creds), json={"operationName": name})
            ops.append(Operation.from_api_response(fetched.json(), vertex=True))
    assert {op.kind for op in ops} == {"tuning", "batch", "other", "video"}
    assert {op.state for op in ops} == set(State)
    assert any(op.partial for op in ops) and any(op.job and op.cancelled for op in ops)
    with pytest.raises(ValueError, match="kinds"):
        emu.seed(1, kinds=("upload",), service="vertex")
