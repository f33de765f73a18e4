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
    assert r.status_code == code
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and err["status"] == status and err["message"]
    return err


# --- auth and routing -------------------------------------------------------------------------
def test_no_key_is_403_permission_denied(emu: Emulator) -> None:
    r = httpx.get(f"{emu.base_url}/v1beta/operations")
    err = assert_google_error(r, 403, "PERMISSION_DENIED")
    assert set(err) == {"code", "message", "status"}
    assert "unregistered callers" in err["message"]


def test_wrong_key_is_400_api_key_invalid(emu: Emulator) -> None:
    r = httpx.get(f"{emu.base_url}/v1beta/operations", headers={"x-goog-api-key": "nope"})
    err = assert_google_error(r, 400, "INVALID_ARGUMENT")
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert err["details"][0]["reason"] == "API_KEY_INVALID"
    # The query-string key is honoured like the real service does.
    assert httpx.get(f"{emu.base_url}/v1/operations", params={"key": emu.api_key}).status_code == 200
    assert httpx.get(f"{emu.base_url}/v1/operations", params={"key": "bad"}).status_code == 400


def test_unknown_route_and_wrong_method(api: httpx.Client) -> None:
    assert_google_error(api.get("/nothing/here"), 404, "NOT_FOUND")
    assert_google_error(api.get("/../v2/operations"), 404, "NOT_FOUND")
    r = api.delete("/operations")
    assert_google_error(r, 405, "UNIMPLEMENTED")
    assert r.headers["allow"] == "GET"


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
    name = emu.create("generic", duration=HOUR, outcome="failure", error_message=evil, error_code=3)
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
    name = emu.create("generic", duration=HOUR)
    r = api.post(f"/{name}:cancel")
    assert r.status_code == 200 and r.json() == {}
    op = api.get(f"/{name}").json()
    assert op["done"] is True and op["error"] == {"code": 1, "message": "Operation was cancelled."}
    assert emu.get_operation(name) == op

    batch = emu.create("batch", duration=HOUR)
    assert api.post(f"/{batch}:cancel").json() == {}
    assert api.get(f"/{batch}").json()["metadata"]["state"] == "BATCH_STATE_CANCELLED"

    finished = emu.create("import", duration=0)
    before = api.get(f"/{finished}").json()
    assert api.post(f"/{finished}:cancel").json() == {}  # a done operation stays as it is
    assert api.get(f"/{finished}").json() == before and "response" in before
    assert_google_error(api.post("/operations/doesnotexist:cancel"), 404, "NOT_FOUND")


def test_delete(emu: Emulator, api: httpx.Client) -> None:
    parent = "fileSearchStores/deletetest"
    name = emu.create("import", duration=HOUR, parent=parent)
    assert [op["name"] for op in list_all(api, f"/{parent}/operations")] == [name]
    r = api.delete(f"/{name}")
    assert r.status_code == 200 and r.json() == {}
    r = api.get(f"/{name}")
    assert r.status_code == 404 and r.json() == NOT_FOUND
    assert api.get(f"/{parent}/operations").json() == {}  # proto3: empty list is {}
    assert name not in {op["name"] for op in list_all(api, "/operations", pageSize=1000)}
    assert api.delete(f"/{name}").status_code == 404
    assert emu.get_operation(name) is None


# --- listing ----------------------------------------------------------------------------------
def test_pagination_stable_across_deletes_and_creates(emu: Emulator, api: httpx.Client) -> None:
    parent = "fileSearchStores/pagetest"
    names = [emu.create("import", duration=HOUR, parent=parent) for _ in range(25)]
    page1 = api.get(f"/{parent}/operations", params={"pageSize": 10}).json()
    assert [op["name"] for op in page1["operations"]] == names[:10]
    # Between pages: delete one already seen, one not yet seen, and add a new one.
    api.delete(f"/{names[3]}")
    api.delete(f"/{names[15]}")
    newcomer = emu.create("import", duration=HOUR, parent=parent)
    seen = [op["name"] for op in page1["operations"]]
    token, pages = page1["nextPageToken"], 1
    while token:
        body = api.get(f"/{parent}/operations", params={"pageSize": 10, "pageToken": token}).json()
        seen += [op["name"] for op in body["operations"]]
        token, pages = body.get("nextPageToken"), pages + 1
    assert pages == 3
    assert len(seen) == len(set(seen))
    assert seen == [n for n in names if n != names[15]] + [newcomer]


def test_last_page_has_no_token(emu: Emulator, api: httpx.Client) -> None:
    parent = "fileSearchStores/exact"
    names = [emu.create("import", duration=HOUR, parent=parent) for _ in range(4)]
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
def test_bad_list_parameters_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    assert_google_error(api.get("/operations", params=params), 400, "INVALID_ARGUMENT")


def test_nested_parent_lists(emu: Emulator, api: httpx.Client) -> None:
    video = emu.create("video", duration=HOUR, model="veo-nested-test")
    store_op = emu.create("import", duration=HOUR, parent="fileSearchStores/nested")
    batch = emu.create("batch", duration=HOUR)
    assert [op["name"] for op in list_all(api, "/models/veo-nested-test/operations")] == [video]
    assert [op["name"] for op in list_all(api, "/fileSearchStores/nested/operations")] == [store_op]
    batches = list_all(api, "/batches", pageSize=1000)
    assert batch in {op["name"] for op in batches}
    assert all(op["name"].startswith("batches/") for op in batches)
    assert api.get("/tunedModels/none-here/operations").json() == {}
    everything = {op["name"] for op in list_all(api, "/operations", pageSize=1000)}
    assert {video, store_op, batch} <= everything


def test_list_100k_in_pages_of_1000() -> None:
    with Emulator.start(random_seed=1) as emu, httpx.Client(
            base_url=f"{emu.base_url}/v1beta", headers={"x-goog-api-key": emu.api_key}, timeout=60) as api:
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


def test_seed_mix(emu: Emulator) -> None:
    app = EmulatorApp(random_seed=3)
    ops = [app.get_operation(n) for n in app.seed(2000)]
    assert all(op is not None for op in ops)
    running = [op for op in ops if op and "done" not in op]
    cancelled = [op for op in ops if op and op.get("error", {}).get("code") == 1]
    failed = [op for op in ops if op and op.get("error", {}).get("code") in (3, 13)]
    assert 400 < len(running) < 800 and cancelled and failed
    prefixes = {op["name"].split("/")[0] for op in ops if op}
    assert prefixes == {"models", "tunedModels", "batches", "fileSearchStores", "operations"}
    for op in ops:
        assert op is not None
        if op["name"].startswith("batches/"):
            assert all(isinstance(v, str) for v in op["metadata"]["batchStats"].values())


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


def test_create_tuned_model(api: httpx.Client) -> None:
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


# --- faults and stats ---------------------------------------------------------------------------
def test_fail_next_429_with_retry_info_then_recovers(emu: Emulator, api: httpx.Client) -> None:
    emu.fail_next(2, status=429, retry_delay=0.2)
    for _ in range(2):
        err = assert_google_error(api.get("/operations"), 429, "RESOURCE_EXHAUSTED")
        retry = [d for d in err["details"] if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"]
        assert retry[0]["retryDelay"] == "0.2s"
    assert api.get("/operations").status_code == 200


def test_fail_next_html_body_and_path_filter(emu: Emulator, api: httpx.Client) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emu.fail_next(1, status=502, body=html, content_type="text/html", path="operations/target")
    assert api.get("/operations").status_code == 200  # path did not match: untouched
    r = api.get("/operations/target")
    assert r.status_code == 502 and r.headers["content-type"] == "text/html" and r.text == html
    emu.fail_next(1)  # default: 503 UNAVAILABLE
    assert_google_error(api.get("/operations"), 503, "UNAVAILABLE")


def test_fail_for_storm_until_cleared(emu: Emulator, api: httpx.Client) -> None:
    emu.fail_for(600, status=429, retry_delay=1.5)
    try:
        for _ in range(3):
            err = assert_google_error(api.get("/operations"), 429, "RESOURCE_EXHAUSTED")
            assert err["details"][0]["retryDelay"] == "1.5s"
    finally:
        emu.clear_faults()
    assert api.get("/operations").status_code == 200


def test_stats_count_requests_per_name(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("generic", duration=HOUR)
    emu.reset_stats()
    for _ in range(3):
        api.get(f"/{name}")
    api.get("/operations")
    stats = emu.stats()
    assert stats["by_name"] == {name: 3}
    assert stats["by_route"] == {"GET /v1beta/{name}": 3, "GET /v1beta/operations": 1}
    assert stats["total"] == 4


def test_admin_http_routes(emu: Emulator) -> None:
    with httpx.Client(base_url=f"{emu.base_url}/_emulator") as admin:  # no key needed here
        name = admin.post("/operations", json={"kind": "batch", "duration": HOUR}).json()["name"]
        assert name.startswith("batches/")
        assert "done" not in admin.get(f"/operations/{name}").json()
        done = admin.post(f"/operations/{name}:complete").json()
        assert done["done"] is True and done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
        assert len(admin.post("/seed", json={"count": 5, "kinds": ["generic"]}).json()["names"]) == 5
        assert admin.post("/faults", json={"count": 1, "status": 500}).json() == {}
        assert httpx.get(f"{emu.base_url}/v1/operations").status_code == 500
        assert admin.post("/faults", json={"seconds": 600, "status": 503}).json() == {}
        assert admin.delete("/faults").json() == {}
        assert admin.post("/stats:reset").json() == {}
        assert admin.get("/stats").json() == {"total": 0, "by_route": {}, "by_name": {}, "by_status": {}}
        assert admin.post("/operations", json={"kind": "nope"}).status_code == 400
        assert admin.post("/operations/operations/missing:complete").status_code == 404


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
        assert (await api.get("/operations")).status_code == 429
        clock.now += 11  # the storm's window is over
        assert (await api.get("/operations")).status_code == 200


def test_same_seed_same_operations() -> None:
    def run(seed: int) -> list[dict[str, Any] | None]:
        app = EmulatorApp(random_seed=seed, speed=10, clock=lambda: 1_800_000_000.0)
        names = app.seed(300) + [app.create(kind) for kind in ("video", "tuning", "batch", "import", "generic")]
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
        r = httpx.get(f"http://127.0.0.1:{port}/v1beta/operations", headers={"x-goog-api-key": "k"})
        assert r.status_code == 200 and len(r.json()["operations"]) == 5
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
