"""VertexBackend (pure): hosts, name checks, what reads/cancels/deletes/waits/lists each name,
and GoogleAuth's refresh plan."""

from __future__ import annotations

import math

import pytest

from ops_widgets import InvalidNameError, ListOperationsResponse, UnsupportedError
from ops_widgets._auth import refresh_plan
from ops_widgets._backends import Call, GeminiBackend, VertexBackend, validate_vertex_name, vertex_host

LOC = "projects/p/locations/us-central1"
VEO = f"{LOC}/publishers/google/models/veo-3.0-generate-001"
GOOD = [
    f"{LOC}/operations/123",
    f"{LOC}/ragCorpora/9/operations/8",
    f"{LOC}/datasets/1/dataItems/2/operations/3",
    f"{LOC}/tuningJobs/77",
    f"{LOC}/batchPredictionJobs/78",
    f"{VEO}/operations/a-b-c",
    "publishers/google/models/veo-3.0-generate-001/operations/x",  # express mode: no project
]
BAD = [
    "", "operations/abc", "models/veo-3.0-generate-001/operations/x", "batches/b", f"{LOC}", f"{LOC}/tuningJobs",
    f"{LOC}/customJobs/1", f"{LOC}/operations/../x", f"{LOC}/operations/x?alt=1", "projects/p/operations/1",
    f"{LOC}/tuningJobs/1/extra", "https://evil.example/v1/" + LOC + "/operations/1",
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert validate_vertex_name(name) == name


@pytest.mark.parametrize("name", BAD + [None])
def test_bad_names_fail_before_anything(name: object) -> None:
    with pytest.raises(InvalidNameError):
        validate_vertex_name(name)  # type: ignore[arg-type]


def test_a_gemini_name_says_which_client_it_needs() -> None:
    with pytest.raises(InvalidNameError, match="Gemini API name"):
        VertexBackend("p", "us-central1").read("models/veo-3.0-generate-001/operations/x")


def test_hosts() -> None:
    assert vertex_host("us-central1") == "https://us-central1-aiplatform.googleapis.com"
    assert vertex_host("global") == "https://aiplatform.googleapis.com"
    assert vertex_host("eu") == "https://aiplatform.eu.rep.googleapis.com"
    for bad in ("", "us-central1.evil.example", "US", "a/b", "x#y"):
        with pytest.raises(InvalidNameError):
            vertex_host(bad)
    with pytest.raises(InvalidNameError):
        VertexBackend("p", "evil.example/")


def test_the_location_in_the_name_picks_the_host() -> None:
    b = VertexBackend("p", "us-central1")
    assert b.read("projects/p/locations/europe-west4/operations/1") == Call(
        "GET", "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/operations/1")
    assert b.read("projects/q/locations/global/tuningJobs/5").url == (
        "https://aiplatform.googleapis.com/v1/projects/q/locations/global/tuningJobs/5")
    # No location in the name (express mode): the client's.
    assert b.read("publishers/google/models/veo-2.0-generate-001/operations/o").url.startswith(
        "https://us-central1-aiplatform.googleapis.com/v1/publishers/google/models/veo-2.0-generate-001:")
    # A base_url serves every location; v1beta1 on request.
    e = VertexBackend("p", "us-central1", "v1beta1", "http://127.0.0.1:9/")
    assert e.read("projects/p/locations/asia-east1/operations/1").url == (
        "http://127.0.0.1:9/v1beta1/projects/p/locations/asia-east1/operations/1")
    with pytest.raises(ValueError, match="v1beta1"):
        VertexBackend("p", "us-central1", "v1beta")


def test_veo_is_read_with_fetch_predict_operation_never_get() -> None:
    b = VertexBackend("p", "us-central1")
    name = f"{VEO}/operations/o"
    assert b.read(name) == Call("POST", f"https://us-central1-aiplatform.googleapis.com/v1/{VEO}:fetchPredictOperation",
                                {"operationName": name})
    assert not b.can("get", name) and not b.can("cancel", name) and not b.can("delete", name)
    assert b.listing_parent(name) is None  # no list sweep either: each is fetched
    with pytest.raises(UnsupportedError, match="cannot cancel"):
        b.cancel(name)


def test_jobs_and_operations_actions() -> None:
    b = VertexBackend("p", "us-central1")
    root = "https://us-central1-aiplatform.googleapis.com/v1"
    tuning, batch, op = f"{LOC}/tuningJobs/1", f"{LOC}/batchPredictionJobs/2", f"{LOC}/ragCorpora/3/operations/4"
    assert b.cancel(tuning) == Call("POST", f"{root}/{tuning}:cancel")
    assert b.delete(batch) == Call("DELETE", f"{root}/{batch}")
    assert b.can("cancel", tuning) and not b.can("delete", tuning)  # a tuning job cannot be deleted
    with pytest.raises(UnsupportedError, match="cannot delete"):
        b.delete(tuning)
    assert b.wait(op, 30) == Call("POST", f"{root}/{op}:wait", params={"timeout": "30s"})
    assert b.wait_url(op) == f"{root}/{op}:wait" and b.can("wait", op)
    assert not b.can("wait", batch)
    with pytest.raises(UnsupportedError):
        b.wait_url(batch)
    assert not b.can("cancel", "not a name") and not b.can("frobnicate", op)
    assert b.listing_parent(tuning) == f"{LOC}/tuningJobs" and b.listing_parent(op) == f"{LOC}/ragCorpora/3"


def test_lists() -> None:
    b = VertexBackend("p", "us-central1")
    root = "https://us-central1-aiplatform.googleapis.com/v1"
    assert b.list_url(None) == f"{root}/{LOC}/operations"
    assert b.list_url(f"{LOC}/tuningJobs") == f"{root}/{LOC}/tuningJobs"  # jobs: at the collection
    assert b.list_url(f"{LOC}/ragCorpora/3") == f"{root}/{LOC}/ragCorpora/3/operations"
    assert b.sweep_parents() == [LOC, f"{LOC}/batchPredictionJobs", f"{LOC}/tuningJobs"]
    with pytest.raises(UnsupportedError, match="no list"):
        b.list_url(VEO)
    with pytest.raises(InvalidNameError):
        b.list_url(f"{LOC}/operations")
    with pytest.raises(UnsupportedError, match="project"):
        VertexBackend(None, "global").list_url(None)


def test_parse_reads_vertex_shapes() -> None:
    b = VertexBackend("p", "us-central1")
    job = b.parse({"name": f"{LOC}/tuningJobs/1", "state": "JOB_STATE_CANCELLING"})
    assert job.job and job.cancelling and not job.done
    jobs = {"batchPredictionJobs": [{"name": f"{LOC}/batchPredictionJobs/2", "state": "JOB_STATE_SUCCEEDED"}]}
    page = ListOperationsResponse.from_page(b.read_list(jobs))
    assert page.operations[0].succeeded and page.operations[0].vertex
    assert not GeminiBackend("http://x", "v1beta").can("wait", "batches/b")


@pytest.mark.parametrize(("lifetime", "refresh", "expires"), [
    (3600, 2880, 3540),   # 80% of an hour (earlier than 5 minutes before); used until a minute before
    (1000, 700, 940),     # 5 minutes before the end (earlier than 80%)
    (10, 5, 9),           # a short token: at half its life, never before
])
def test_refresh_plan(lifetime: float, refresh: float, expires: float) -> None:
    assert refresh_plan(100.0, lifetime) == (100.0 + refresh, 100.0 + expires)


def test_refresh_plan_without_expiry() -> None:
    assert refresh_plan(5.0, None) == (math.inf, math.inf)
