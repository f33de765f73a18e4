"""The emulator over real loopback HTTP (raw httpx), plus in-process runs through ASGITransport."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ops_widgets.emulator import Emulator, EmulatorApp

HOUR = 3600.0
NOT_FOUND = {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}
VEO = ("veo-3.1-generate-preview", "veo-3.0-generate-001", "veo-3.0-fast-generate-001")
TYPES = "type.googleapis.com/google.ai.generativelanguage."


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(random_seed=7) as emulator:
        yield emulator


@pytest.fixture()
def api(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emu.base_url}/v1beta", headers={"x-goog-api-key": emu.api_key}) as client:
        yield client


def list_all(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every operation of a listing, following nextPageToken."""
    ops: list[dict[str, Any]] = []
    while True:
        r = api.get(path, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        ops += body.get("operations", [])
        if "nextPageToken" not in body:
            return ops
        params["pageToken"] = body["nextPageToken"]


def assert_google_error(r: httpx.Response, code: int, status: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and err["status"] == status and err["message"]
    return err


def assert_unbound(r: httpx.Response) -> None:
    """What Google does not bind answers 404 for the URL itself (not for a missing entity)."""
    err = assert_google_error(r, 404, "NOT_FOUND")
    assert err["message"] == f"The requested URL {r.request.url.path} was not found on this server."


# --- auth and routing -------------------------------------------------------------------------
def test_no_key_is_403_permission_denied(emu: Emulator) -> None:
    r = httpx.get(f"{emu.base_url}/v1beta/batches")
    err = assert_google_error(r, 403, "PERMISSION_DENIED")
    assert set(err) == {"code", "message", "status"}
    assert "unregistered callers" in err["message"]
    assert_google_error(httpx.get(f"{emu.base_url}/v1/operations"), 403, "PERMISSION_DENIED")


def test_wrong_key_is_400_api_key_invalid(emu: Emulator) -> None:
    r = httpx.get(f"{emu.base_url}/v1beta/batches", headers={"x-goog-api-key": "nope"})
    err = assert_google_error(r, 400, "INVALID_ARGUMENT")
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert err["details"][0]["reason"] == "API_KEY_INVALID"
    # The query-string key is honoured like the real service does.
    assert httpx.get(f"{emu.base_url}/v1/operations", params={"key": emu.api_key}).status_code == 200
    assert httpx.get(f"{emu.base_url}/v1/operations", params={"key": "bad"}).status_code == 400


def test_unknown_route_and_wrong_method(emu: Emulator, api: httpx.Client) -> None:
    assert_unbound(api.get("/nothing/here"))
    assert_unbound(api.get("/../v2/operations"))
    # v1beta has no top-level operations collection at all, with any method.
    assert_unbound(api.get("/operations"))
    assert_unbound(api.delete("/operations"))
    assert_unbound(api.get("/operations/abc"))
    # An unbound method on a bound path is not 405 but 404, like any unbound URL (no Allow header).
    batch = emu.create("batch", duration=HOUR)
    for r in (api.put(f"/{batch}"), api.patch(f"/{batch}"), api.post(f"/{batch}"), api.delete("/batches")):
        assert_unbound(r)
        assert "allow" not in r.headers
    # Unbound paths answer 404 even without a key (the key is checked only on bound routes).
    assert_unbound(httpx.get(f"{emu.base_url}/v1beta/operations"))


def test_repr_hides_key() -> None:
    with Emulator.start(api_key="sekrit-123") as emu:
        assert "sekrit" not in repr(emu) and "sekrit" not in repr(emu.app)
        assert emu.base_url == f"http://127.0.0.1:{emu.port}"


# --- get / cancel / delete --------------------------------------------------------------------
def test_running_and_done_shapes(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("video", duration=HOUR, model="veo-3.1-generate-preview")
    assert name.startswith("models/veo-3.1-generate-preview/operations/")
    assert api.get(f"/{name}").json() == {"name": name}  # running Veo: just a name, no "done"
    emu.complete(name)
    done = api.get(f"/{name}").json()
    assert done["done"] is True and "error" not in done
    sample = done["response"]["generateVideoResponse"]["generatedSamples"][0]
    assert sample["video"]["uri"].startswith(f"{emu.base_url}/v1beta/files/")
    assert done == emu.get_operation(name)

    tuning = api.get(f"/{emu.create('tuning', duration=HOUR)}").json()
    assert "done" not in tuning and "error" not in tuning and "response" not in tuning
    assert tuning["metadata"]["@type"].endswith("CreateTunedModelMetadata")
    assert tuning["metadata"]["createTime"].endswith("Z")


def test_failure_keeps_server_text_verbatim(emu: Emulator, api: httpx.Client) -> None:
    evil = '<img src=x onerror="window.__xss=1">'
    name = emu.create("batch", duration=HOUR, outcome="failure", error_message=evil, error_code=3)
    emu.complete(name)
    op = api.get(f"/{name}").json()
    assert op["done"] is True and op["error"] == {"code": 3, "message": evil}
    assert "response" not in op


def test_filtered_video_is_done_without_error_or_samples(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("video", duration=0, outcome="filtered")
    op = api.get(f"/{name}").json()
    assert op["done"] is True and "error" not in op
    video = op["response"]["generateVideoResponse"]
    assert video["raiMediaFilteredCount"] == 1 and video["raiMediaFilteredReasons"]
    assert "generatedSamples" not in video


def test_cancel(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    r = api.post(f"/{name}:cancel")
    assert r.status_code == 200 and r.json() == {}
    op = api.get(f"/{name}").json()
    assert op["done"] is True and op["error"] == {"code": 1, "message": "Operation was cancelled."}
    assert op["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    assert emu.get_operation(name) == op

    finished = emu.create("batch", duration=0)
    before = api.get(f"/{finished}").json()
    assert api.post(f"/{finished}:cancel").json() == {}  # a done operation stays as it is
    assert api.get(f"/{finished}").json() == before and "response" in before
    assert api.get(f"/{finished}").json()["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert api.post("/batches/doesnotexist:cancel").json() == NOT_FOUND

    # v1beta cancels nothing but batches: the other kinds' :cancel is an unbound URL, and they run on.
    for kind in ("video", "tuning", "import", "upload"):
        other = emu.create(kind, duration=HOUR)
        assert_unbound(api.post(f"/{other}:cancel"))
        assert "done" not in api.get(f"/{other}").json()


def test_v1_also_cancels_tuning(emu: Emulator) -> None:
    with httpx.Client(base_url=f"{emu.base_url}/v1", headers={"x-goog-api-key": emu.api_key}) as v1:
        tuning = emu.create("tuning", duration=HOUR)
        assert v1.post(f"/{tuning}:cancel").json() == {}
        op = v1.get(f"/{tuning}").json()
        assert op["done"] is True and op["error"]["code"] == 1 and "response" not in op
        assert v1.post(f"/{emu.create('batch', duration=HOUR)}:cancel").json() == {}
        assert_unbound(v1.post(f"/{emu.create('video', duration=HOUR)}:cancel"))
        assert v1.post("/tunedModels/none/operations/missing:cancel").json() == NOT_FOUND


def test_delete(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    assert name in {op["name"] for op in list_all(api, "/batches", pageSize=1000)}
    r = api.delete(f"/{name}")
    assert r.status_code == 200 and r.json() == {}
    r = api.get(f"/{name}")
    assert r.status_code == 404 and r.json() == NOT_FOUND
    assert name not in {op["name"] for op in list_all(api, "/batches", pageSize=1000)}
    with httpx.Client(base_url=f"{emu.base_url}/v1", headers={"x-goog-api-key": emu.api_key}) as v1:
        assert name not in {op["name"] for op in list_all(v1, "/operations", pageSize=1000)}
        # v1 also binds DELETE operations/**, where no kind of operation lives: a missing entity.
        assert v1.delete("/operations/abc/def").json() == NOT_FOUND
    r = api.delete(f"/{name}")
    assert r.status_code == 404 and r.json() == NOT_FOUND
    assert emu.get_operation(name) is None

    # v1beta deletes nothing but batches: the others stay.
    for kind in ("video", "tuning", "import", "upload"):
        other = emu.create(kind, duration=HOUR)
        assert_unbound(api.delete(f"/{other}"))
        assert emu.get_operation(other) is not None
        assert api.get(f"/{other}").status_code == 200


def test_empty_list_is_an_empty_object(fresh_emu: Emulator) -> None:
    with httpx.Client(base_url=f"{fresh_emu.base_url}/v1beta", headers={"x-goog-api-key": fresh_emu.api_key}) as api:
        assert api.get("/batches").json() == {}  # proto3: an empty list is {}
        assert api.get("/tunedModels/none-here/operations").json() == {}
        batch = fresh_emu.create("batch", duration=HOUR)
        assert [op["name"] for op in api.get("/batches").json()["operations"]] == [batch]
        api.delete(f"/{batch}")
        assert api.get("/batches").json() == {}


# --- listing ----------------------------------------------------------------------------------
def test_pagination_stable_across_deletes_and_creates(fresh_emu: Emulator) -> None:
    """Batches are what the API both lists and deletes: page /batches while some go and come."""
    with httpx.Client(base_url=f"{fresh_emu.base_url}/v1beta", headers={"x-goog-api-key": fresh_emu.api_key}) as api:
        _paginate_batches(fresh_emu, api)


def _paginate_batches(emu: Emulator, api: httpx.Client) -> None:
    names = [emu.create("batch", duration=HOUR) for _ in range(25)]
    emu.create("video", duration=HOUR)  # other kinds are not in /batches
    page1 = api.get("/batches", params={"pageSize": 10}).json()
    assert [op["name"] for op in page1["operations"]] == names[:10]
    # Between pages: delete one already seen, one not yet seen, and add a new one.
    assert api.delete(f"/{names[3]}").json() == {}
    assert api.delete(f"/{names[15]}").json() == {}
    newcomer = emu.create("batch", duration=HOUR)
    seen = [op["name"] for op in page1["operations"]]
    token, pages = page1["nextPageToken"], 1
    while token:
        body = api.get("/batches", params={"pageSize": 10, "pageToken": token}).json()
        seen += [op["name"] for op in body["operations"]]
        token, pages = body.get("nextPageToken"), pages + 1
    assert pages == 3
    assert len(seen) == len(set(seen))
    assert seen == [n for n in names if n != names[15]] + [newcomer]


def test_last_page_has_no_token(emu: Emulator, api: httpx.Client) -> None:
    parent = "tunedModels/exact"
    names = [emu.create("tuning", duration=HOUR, parent=parent) for _ in range(4)]
    first = api.get(f"/{parent}/operations", params={"pageSize": 2}).json()
    last = api.get(f"/{parent}/operations", params={"pageSize": 2, "pageToken": first["nextPageToken"]}).json()
    assert [op["name"] for op in last["operations"]] == names[2:] and "nextPageToken" not in last


def test_filters(emu: Emulator, api: httpx.Client) -> None:
    parent = "tunedModels/filter-test"
    running = [emu.create("tuning", duration=HOUR, parent=parent) for _ in range(3)]
    finished = [emu.create("tuning", duration=0, parent=parent) for _ in range(2)]
    path = f"/{parent}/operations"
    assert [op["name"] for op in list_all(api, path, filter="done=false", pageSize=1)] == running
    assert [op["name"] for op in list_all(api, path, filter="done = true")] == finished
    assert len(list_all(api, path, filter="")) == 5


@pytest.mark.parametrize("params", [
    {"pageSize": "-1"}, {"pageSize": "ten"}, {"pageToken": "garbage!!"}, {"pageToken": "c2VxOng"},
    {"filter": "state=RUNNING"}, {"filter": "done=maybe"},
])
def test_bad_list_parameters_are_400(emu: Emulator, api: httpx.Client, params: dict[str, str]) -> None:
    assert_google_error(api.get("/batches", params=params), 400, "INVALID_ARGUMENT")
    assert_google_error(api.get("/models/veo-3.0-generate-001/operations", params=params), 400, "INVALID_ARGUMENT")
    assert_google_error(httpx.get(f"{emu.base_url}/v1/operations", params=params,
                                  headers={"x-goog-api-key": emu.api_key}), 400, "INVALID_ARGUMENT")


def test_nested_parent_lists(emu: Emulator, api: httpx.Client) -> None:
    video = emu.create("video", duration=HOUR, model="veo-nested-test")
    tuning = emu.create("tuning", duration=HOUR, parent="tunedModels/nested-test")
    store_op = emu.create("import", duration=HOUR, parent="fileSearchStores/nested")
    upload = emu.create("upload", duration=HOUR, parent="fileSearchStores/nested")
    batch = emu.create("batch", duration=HOUR)
    assert [op["name"] for op in list_all(api, "/models/veo-nested-test/operations")] == [video]
    assert [op["name"] for op in list_all(api, "/tunedModels/nested-test/operations")] == [tuning]
    batches = list_all(api, "/batches", pageSize=1000)
    assert batch in {op["name"] for op in batches}
    assert all(op["name"].startswith("batches/") for op in batches)
    assert api.get("/tunedModels/none-here/operations").json() == {}
    # File search stores' operations are got one by one, never listed.
    assert_unbound(api.get("/fileSearchStores/nested/operations"))
    assert_unbound(api.get("/fileSearchStores/nested/upload/operations"))
    assert_unbound(api.get("/batches/x/operations"))
    # Only v1 lists every operation, of every kind, at its top level.
    with httpx.Client(base_url=f"{emu.base_url}/v1", headers={"x-goog-api-key": emu.api_key}) as v1:
        everything = {op["name"] for op in list_all(v1, "/operations", pageSize=1000)}
        assert {video, tuning, store_op, upload, batch} <= everything
        assert [op["name"] for op in list_all(v1, "/models/veo-nested-test/operations")] == [video]


def test_list_100k_in_pages_of_1000() -> None:
    with Emulator.start(random_seed=1) as emu, httpx.Client(
            base_url=f"{emu.base_url}/v1", headers={"x-goog-api-key": emu.api_key}, timeout=60) as api:
        names = emu.seed(100_000)
        assert len(set(names)) == 100_000
        r = api.get("/operations", params={"pageSize": 5000})  # clamped to 1000
        assert len(r.json()["operations"]) == 1000
        params: dict[str, Any] = {"pageSize": 1000}
        listed: list[str] = []
        pages = 0
        while True:
            body = api.get("/operations", params=params).json()
            listed += [op["name"] for op in body["operations"]]
            pages += 1
            if "nextPageToken" not in body:
                break
            params["pageToken"] = body["nextPageToken"]
        assert pages == 100 and listed == names  # oldest first, no gaps or duplicates
        # The batches among them, through v1beta's /batches in pages of 1000 too.
        batches = [n for n in names if n.startswith("batches/")]
        assert 10_000 < len(batches) < 30_000
        assert [op["name"] for op in list_all(api, f"{emu.base_url}/v1beta/batches", pageSize=1000)] == batches


def test_seed_mix(emu: Emulator) -> None:
    app = EmulatorApp(random_seed=3)
    ops = [app.get_operation(n) for n in app.seed(2000)]
    assert all(op is not None for op in ops)
    running = [op for op in ops if op and "done" not in op]
    cancelled = [op for op in ops if op and op.get("error", {}).get("code") == 1]
    failed = [op for op in ops if op and op.get("error", {}).get("code") in (3, 13)]
    assert 400 < len(running) < 800 and cancelled and failed
    prefixes = {op["name"].split("/")[0] for op in ops if op}
    assert prefixes == {"models", "tunedModels", "batches", "fileSearchStores"}
    kinds: dict[str, int] = {}
    for op in ops:
        assert op is not None
        name = op["name"]
        if name.startswith("batches/"):
            kind = "batch"
            assert op["metadata"]["@type"] == TYPES + "v1main.GenerateContentBatch"
            assert op["metadata"]["state"].startswith("BATCH_STATE_")
            assert all(isinstance(v, str) for v in op["metadata"]["batchStats"].values())
        elif name.startswith("fileSearchStores/"):
            kind = "upload" if "/upload/operations/" in name else "import"
            assert "metadata" not in op  # no progress, no times
            if "response" in op:
                assert op["response"]["documentName"].startswith(op["response"]["parent"] + "/documents/")
        elif name.startswith("models/"):
            kind = "video"
            assert name.split("/")[1] in VEO and "metadata" not in op
        else:
            kind = "tuning"
            assert op["metadata"]["@type"].endswith(".v1beta.CreateTunedModelMetadata")
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"video", "tuning", "batch", "import", "upload"}
    assert all(n > 250 for n in kinds.values()), kinds


# --- starting operations --------------------------------------------------------------------------
def test_predict_long_running_video_finishes_with_fetchable_uri() -> None:
    with Emulator.start(speed=1000, random_seed=5) as emu, httpx.Client(
            base_url=emu.base_url, headers={"x-goog-api-key": emu.api_key}) as http:
        r = http.post("/v1beta/models/veo-3.1-generate-preview:predictLongRunning",
                      json={"instances": [{"prompt": "a cat surfing"}], "parameters": {"aspectRatio": "16:9"}})
        assert r.status_code == 200
        name = r.json()["name"]
        assert r.json() == {"name": name} and name.startswith("models/veo-3.1-generate-preview/operations/")
        op_id = name.rsplit("/", 1)[1]
        assert 12 <= len(op_id) <= 24 and op_id.isalnum() and op_id == op_id.lower()
        deadline = time.monotonic() + 30
        while not (op := http.get(f"/v1beta/{name}").json()).get("done"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        uri = op["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        assert uri.startswith(emu.base_url) and uri.endswith(":download?alt=media")
        video = http.get(uri)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert b"ftyp" in video.content[:12]
        assert httpx.get(uri).status_code == 403  # the download needs the key too
        bad = http.post("/v1beta/models/veo-3.1-generate-preview:predictLongRunning", json={"nope": 1})
        assert_google_error(bad, 400, "INVALID_ARGUMENT")


def test_create_tuned_model(emu: Emulator, api: httpx.Client) -> None:
    body = {"displayName": "Number Generator", "baseModel": "models/gemini-1.5-flash-001-tuning",
            "tuningTask": {"hyperparameters": {"epochCount": 2, "batchSize": 2},
                           "trainingData": {"examples": {"examples": [{"textInput": "1", "output": "2"}] * 10}}}}
    op = api.post("/tunedModels", json=body).json()
    assert op["name"].startswith("tunedModels/number-generator-") and "/operations/" in op["name"]
    meta = op["metadata"]
    assert meta["totalSteps"] == 10 and meta["tunedModel"] == op["name"].split("/operations/")[0]
    assert "done" not in op
    assert_google_error(api.post("/tunedModels", json={"displayName": "x"}), 400, "INVALID_ARGUMENT")
    assert_google_error(api.post("/tunedModels", content=b"{not json"), 400, "INVALID_ARGUMENT")
    # v1 neither tunes nor lists tuned models.
    v1 = f"{emu.base_url}/v1/tunedModels"
    assert_unbound(httpx.post(v1, json=body, headers={"x-goog-api-key": emu.api_key}))
    assert_unbound(httpx.get(v1, headers={"x-goog-api-key": emu.api_key}))


def test_models_list_says_which_run_long_operations(emu: Emulator) -> None:
    from ops_widgets import _capabilities as caps

    for version in ("v1beta", "v1"):
        r = httpx.get(f"{emu.base_url}/{version}/models", headers={"x-goog-api-key": emu.api_key})
        assert r.status_code == 200
        models = {m["name"]: m for m in r.json()["models"]}
        assert all(isinstance(m["supportedGenerationMethods"], list) and m["displayName"] for m in models.values())
        veo = {name for name, m in models.items() if "predictLongRunning" in m["supportedGenerationMethods"]}
        assert veo == {f"models/{m}" for m in VEO}
        assert "batchGenerateContent" in models["models/gemini-2.5-flash"]["supportedGenerationMethods"]
        # What a client sweeps with no parent: v1 its top level, v1beta batches and the Veo models.
        parents = caps.sweep_parents(version, list(models.values()), [])
        assert parents == (["operations"] if version == "v1" else ["batches", *sorted(veo, key=list(models).index)])
    assert_google_error(httpx.get(f"{emu.base_url}/v1beta/models"), 403, "PERMISSION_DENIED")
    # Veo runs on v1beta only.
    r = httpx.post(f"{emu.base_url}/v1/models/veo-3.0-generate-001:predictLongRunning",
                   json={"instances": [{"prompt": "x"}]}, headers={"x-goog-api-key": emu.api_key})
    assert_unbound(r)


async def test_tuned_models_list_their_states() -> None:
    clock = FakeClock()
    app = EmulatorApp(random_seed=4, api_key="k", clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu", headers={"x-goog-api-key": "k"}) as http:
        assert (await http.get("/v1beta/tunedModels")).json() == {}
        body = {"displayName": "Ok Model", "baseModel": "models/gemini-1.5-flash-001-tuning"}
        ok = (await http.post("/v1beta/tunedModels", json=body, params={"tunedModelId": "ok-model"})).json()
        assert ok["name"].startswith("tunedModels/ok-model/operations/")
        conflict = await http.post("/v1beta/tunedModels", json=body, params={"tunedModelId": "ok-model"})
        assert_google_error(conflict, 409, "ABORTED")
        failing = app.create("tuning", duration=HOUR, outcome="failure")
        cancelled = app.create("tuning", duration=HOUR)
        assert (await http.post(f"/v1/{cancelled}:cancel")).json() == {}  # v1 binds tuning cancel
        models = {m["name"]: m for m in (await http.get("/v1beta/tunedModels")).json()["tunedModels"]}
        tuned = {name.split("/operations/")[0]: name for name in (ok["name"], failing, cancelled)}
        assert set(models) == set(tuned)
        assert models["tunedModels/ok-model"] == {"name": "tunedModels/ok-model", "displayName": "Ok Model",
                                                  "baseModel": "models/gemini-1.5-flash-001-tuning",
                                                  "state": "CREATING"}
        state = {tuned[name]: m["state"] for name, m in models.items()}
        assert state == {ok["name"]: "CREATING", failing: "CREATING", cancelled: "FAILED"}
        clock.now += 4 * 3 * HOUR  # longer than any tuning
        models = {m["name"]: m for m in (await http.get("/v1beta/tunedModels")).json()["tunedModels"]}
        state = {tuned[name]: m["state"] for name, m in models.items()}
        assert state == {ok["name"]: "ACTIVE", failing: "FAILED", cancelled: "FAILED"}
        done = (await http.get(f"/v1beta/{ok['name']}")).json()
        assert done["response"]["name"] == "tunedModels/ok-model" and done["response"]["state"] == "ACTIVE"


def test_batch_generate_content_starts_a_batch(emu: Emulator, api: httpx.Client) -> None:
    request = {"batch": {"displayName": "my batch", "inputConfig": {"requests": {"requests": [
        {"request": {"contents": [{"parts": [{"text": f"question {i}"}]}]}, "metadata": {"key": str(i)}}
        for i in range(3)]}}}}
    r = api.post("/models/gemini-2.5-flash:batchGenerateContent", json=request)
    assert r.status_code == 200
    op = r.json()
    name = op["name"]
    assert name.startswith("batches/") and "done" not in op and "response" not in op
    meta = op["metadata"]
    assert meta["@type"] == TYPES + "v1main.GenerateContentBatch"
    assert meta["name"] == name and meta["model"] == "models/gemini-2.5-flash" and meta["displayName"] == "my batch"
    assert meta["state"] == "BATCH_STATE_PENDING"
    assert meta["batchStats"] == {"requestCount": "3", "pendingRequestCount": "3"}
    assert meta["createTime"].endswith("Z") and meta["updateTime"].endswith("Z")
    assert api.get(f"/{name}").json()["metadata"]["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
    assert name in {o["name"] for o in list_all(api, "/batches", pageSize=1000)}
    emu.complete(name)
    done = api.get(f"/{name}").json()
    assert done["done"] is True and done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    stats = done["metadata"]["batchStats"]
    assert stats["requestCount"] == "3" and "pendingRequestCount" not in stats
    # Inline requests answer inline (GenerateContentBatchOutput.inlinedResponses), in order, keyed.
    output = done["response"]
    assert output["@type"] == TYPES + "v1main.GenerateContentBatchOutput" and "responsesFile" not in output
    assert [r["metadata"] for r in output["inlinedResponses"]["inlinedResponses"]] == [
        {"key": str(i)} for i in range(3)]
    # v1 binds it too; a request with no batch is a 400.
    v1 = httpx.post(f"{emu.base_url}/v1/models/gemini-2.5-flash:batchGenerateContent", json=request,
                    headers={"x-goog-api-key": emu.api_key})
    assert v1.status_code == 200 and v1.json()["name"].startswith("batches/")
    assert_google_error(api.post("/models/gemini-2.5-flash:batchGenerateContent", json={}), 400, "INVALID_ARGUMENT")
    assert_unbound(api.get("/models/gemini-2.5-flash:batchGenerateContent"))


def test_import_file_operation_has_no_metadata(emu: Emulator, api: httpx.Client) -> None:
    r = api.post("/fileSearchStores/store-imports:importFile", json={"fileName": "files/abc123"})
    assert r.status_code == 200
    name = r.json()["name"]
    assert name.startswith("fileSearchStores/store-imports/operations/") and "/upload/" not in name
    assert r.json() == {"name": name}  # running: no metadata (no progress, no times), no "done"
    assert api.get(f"/{name}").json() == {"name": name}
    emu.complete(name)
    assert api.get(f"/{name}").json() == {"name": name, "done": True, "response": {
        "@type": TYPES + "v1beta.ImportFileResponse",
        "parent": "fileSearchStores/store-imports",
        "documentName": emu.get_operation(name)["response"]["documentName"]}}  # type: ignore[index]
    document = api.get(f"/{name}").json()["response"]["documentName"]
    assert document.startswith("fileSearchStores/store-imports/documents/")
    for bad in ({}, {"fileName": "abc123"}, {"fileName": 7}):
        assert_google_error(api.post("/fileSearchStores/store-imports:importFile", json=bad), 400, "INVALID_ARGUMENT")
    assert_unbound(httpx.post(f"{emu.base_url}/v1/fileSearchStores/store-imports:importFile",
                              json={"fileName": "files/abc123"}, headers={"x-goog-api-key": emu.api_key}))
    failed = emu.create("import", duration=0, outcome="failure", parent="fileSearchStores/store-imports")
    op = api.get(f"/{failed}").json()
    assert set(op) == {"name", "done", "error"} and op["error"]["code"] == 13


def test_upload_operation_has_no_metadata(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("upload", duration=HOUR, parent="fileSearchStores/store-uploads")
    assert name.startswith("fileSearchStores/store-uploads/upload/operations/")
    assert api.get(f"/{name}").json() == {"name": name}
    emu.complete(name)
    op = api.get(f"/{name}").json()
    assert set(op) == {"name", "done", "response"} and op["done"] is True
    response = op["response"]
    assert response["@type"] == TYPES + "v1beta.UploadToFileSearchStoreResponse"
    assert response["parent"] == "fileSearchStores/store-uploads"
    assert response["documentName"].startswith("fileSearchStores/store-uploads/documents/")
    # v1 names these stores ragStores: the fileSearchStores paths are unbound there.
    assert_unbound(httpx.get(f"{emu.base_url}/v1/{name}", headers={"x-goog-api-key": emu.api_key}))


# --- faults and stats ---------------------------------------------------------------------------
def test_fail_next_429_with_retry_info_then_recovers(emu: Emulator, api: httpx.Client) -> None:
    emu.fail_next(2, status=429, retry_delay=0.2)
    for _ in range(2):
        err = assert_google_error(api.get("/batches"), 429, "RESOURCE_EXHAUSTED")
        retry = [d for d in err["details"] if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"]
        assert retry[0]["retryDelay"] == "0.2s"
    assert api.get("/batches").status_code == 200


def test_fail_next_html_body_and_path_filter(emu: Emulator, api: httpx.Client) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emu.fail_next(1, status=502, body=html, content_type="text/html", path="operations/target")
    assert api.get("/batches").status_code == 200  # path did not match: untouched
    r = api.get("/models/veo-3.0-generate-001/operations/target")
    assert r.status_code == 502 and r.headers["content-type"] == "text/html" and r.text == html
    assert api.get("/models/veo-3.0-generate-001/operations/target").json() == NOT_FOUND  # used up
    emu.fail_next(1)  # default: 503 UNAVAILABLE
    assert_google_error(api.get("/batches"), 503, "UNAVAILABLE")


def test_fail_for_storm_until_cleared(emu: Emulator, api: httpx.Client) -> None:
    emu.fail_for(600, status=429, retry_delay=1.5)
    try:
        for _ in range(3):
            err = assert_google_error(api.get("/batches"), 429, "RESOURCE_EXHAUSTED")
            assert err["details"][0]["retryDelay"] == "1.5s"
    finally:
        emu.clear_faults()
    assert api.get("/batches").status_code == 200


def test_stats_count_requests_per_name(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("upload", duration=HOUR)
    emu.reset_stats()
    for _ in range(3):
        api.get(f"/{name}")
    api.get("/batches")
    api.get("/models/veo-3.0-generate-001/operations")
    api.get("/operations")  # unbound: counted, under no template
    stats = emu.stats()
    assert stats["by_name"] == {name: 3}
    assert stats["by_route"] == {"GET /v1beta/{name}": 3, "GET /v1beta/batches": 1,
                                 "GET /v1beta/{parent}/operations": 1, "GET /v1beta/(unmatched)": 1}
    assert stats["by_status"] == {200: 5, 404: 1}
    assert stats["total"] == 6


def test_admin_http_routes(emu: Emulator) -> None:
    with httpx.Client(base_url=f"{emu.base_url}/_emulator") as admin:  # no key needed here
        name = admin.post("/operations", json={"kind": "batch", "duration": HOUR}).json()["name"]
        assert name.startswith("batches/")
        assert "done" not in admin.get(f"/operations/{name}").json()
        done = admin.post(f"/operations/{name}:complete").json()
        assert done["done"] is True and done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        uploads = admin.post("/seed", json={"count": 5, "kinds": ["upload"]}).json()["names"]
        assert len(uploads) == 5 and all("/upload/operations/" in n for n in uploads)
        assert admin.post("/faults", json={"count": 1, "status": 500}).json() == {}
        assert httpx.get(f"{emu.base_url}/v1/operations").status_code == 500
        assert admin.post("/faults", json={"seconds": 600, "status": 503}).json() == {}
        assert admin.delete("/faults").json() == {}
        assert admin.post("/stats:reset").json() == {}
        assert admin.get("/stats").json() == {"total": 0, "by_route": {}, "by_name": {}, "by_status": {},
                                            "faults": {}}
        assert admin.post("/operations", json={"kind": "nope"}).status_code == 400
        assert admin.post("/operations/batches/missing:complete").status_code == 404
        assert admin.get("/operations/batches/missing").status_code == 404


# --- in process: ASGITransport and an injected clock ---------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_in_process_tuning_progress_grows_and_storm_ends() -> None:
    clock = FakeClock()
    app = EmulatorApp(random_seed=11, api_key="k", clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu/v1beta",
                                 headers={"x-goog-api-key": "k"}) as api:
        name = app.create("tuning", duration=1000)
        seen = []
        for _ in range(5):
            meta = (await api.get(f"/{name}")).json()["metadata"]
            seen.append(meta.get("completedPercent", 0))
            clock.now += 250
        assert seen == sorted(seen) and seen[0] == 0 and 0 < seen[2] < 100 and seen[-1] == 100
        done = (await api.get(f"/{name}")).json()
        assert done["done"] is True and done["response"]["state"] == "ACTIVE"
        assert done["response"]["name"] == done["metadata"]["tunedModel"]

        app.fail_for(10, status=429)
        assert (await api.get("/batches")).status_code == 429
        clock.now += 11  # the storm's window is over
        assert (await api.get("/batches")).status_code == 200


def test_same_seed_same_operations() -> None:
    def run(seed: int) -> list[dict[str, Any] | None]:
        app = EmulatorApp(random_seed=seed, speed=10, clock=lambda: 1_800_000_000.0)
        names = app.seed(300) + [app.create(kind) for kind in ("video", "tuning", "batch", "import", "upload")]
        return [app.get_operation(n) for n in names]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_console_command_serves_in_the_foreground() -> None:
    """`ops-widgets emulator --port N --seed 5`, as a user starts it in a terminal."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops_widgets", "emulator", "--port", str(port), "--seed", "5", "--api-key", "k"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        r = httpx.get(f"http://127.0.0.1:{port}/v1/operations", headers={"x-goog-api-key": "k"})
        assert r.status_code == 200 and len(r.json()["operations"]) == 5
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_resumable_upload_needs_a_key_to_start_and_a_known_session(emu: Emulator) -> None:
    url = f"{emu.base_url}/upload/v1beta/fileSearchStores/up:uploadToFileSearchStore"
    start = {"x-goog-upload-protocol": "resumable", "x-goog-upload-command": "start"}
    assert httpx.post(url, headers=start, json={}).status_code == 403  # no key, no session
    r = httpx.post(url, headers={**start, "x-goog-api-key": emu.api_key}, json={})
    assert r.status_code == 200 and r.headers["x-goog-upload-status"] == "active"
    session = r.headers["x-goog-upload-url"]
    bogus = httpx.post(url + "?upload_id=nope", headers={"x-goog-upload-command": "upload, finalize"}, content=b"x")
    assert bogus.status_code == 400
    done = httpx.post(session, headers={"x-goog-upload-command": "upload, finalize"}, content=b"hello")
    assert done.status_code == 200 and done.headers["x-goog-upload-status"] == "final"
    name = done.json()["name"]
    assert name.startswith("fileSearchStores/up/upload/operations/") and "metadata" not in done.json()
    again = httpx.post(session, headers={"x-goog-upload-command": "upload, finalize"}, content=b"hello")
    assert again.status_code == 400  # a finished session is gone
    assert httpx.post(url.replace("v1beta", "v1"), headers={**start, "x-goog-api-key": emu.api_key}).status_code == 404


@pytest.mark.parametrize("t", [0.0, 1_764_000_000.25, 1_764_000_059.999999, 951_782_400.5, 4_102_444_799.000001])
def test_the_emulator_writes_times_as_google_does_and_they_read_back(t: float) -> None:
    # UTC, six fraction digits, "Z"; the client reads exactly that instant (to the microsecond).
    from datetime import datetime, timezone

    from ops_widgets._progress import parse_time
    from ops_widgets.emulator._state import rfc3339

    text = rfc3339(t)
    assert len(text) == 27 and text[10] == "T" and text.endswith("Z")
    assert parse_time(text) == datetime.fromtimestamp(int(t * 1_000_000) / 1_000_000, timezone.utc)


@pytest.mark.parametrize("items, token", [([], None), ([], "t"), ([{"name": "a", "done": True}], None),
                                          ([{"name": "a"}, {"name": "b", "metadata": {"x": [1, "é"]}}], "n\"x")])
def test_a_list_answer_is_the_json_of_its_operations_and_token(items: list[dict[str, Any]], token: str | None) -> None:
    import json

    from ops_widgets.emulator._app import _list_answer

    status, content_type, body, _ = _list_answer(iter(items), token)
    expected = ({"operations": items} if items else {}) | ({"nextPageToken": token} if token else {})
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == expected and list(json.loads(body)) == list(expected)
