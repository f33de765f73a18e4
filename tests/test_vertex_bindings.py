"""The Vertex AI part of the capability table (ops_widgets._capabilities) against Google's published
discovery documents for Vertex AI, aiplatform.v1.json and aiplatform.v1beta1.json (read by tests/discovery.py
from the installed google-api-python-client package, never copied)."""

from __future__ import annotations

import pytest
from discovery import VERSIONS, flat, methods

from ops_widgets import _capabilities as caps

OPERATIONS = {"get", "list", "cancel", "delete", "wait"}
JOBS = {"tuningJobs", "batchPredictionJobs"}
JOB_METHODS = {"create", "get", "list", "cancel", "delete"}
PREDICT = {"predictLongRunning": "predict", "fetchPredictOperation": "fetch"}


def google(version: str) -> dict[str, set[tuple[str, str]]]:
    """{action: {(VERB, flat path)}} of the methods of long-running work: the Operations methods of
    every collection under projects.locations, the jobs' methods, and predictLongRunning /
    fetchPredictOperation wherever they are bound."""
    found: dict[str, set[tuple[str, str]]] = {a: set() for a in caps.VERTEX_ACTIONS}
    for path, name, method in methods(version):
        action = None
        if path[:2] == ["projects", "locations"] and path[-1] == "operations" and name in OPERATIONS:
            action = name
        elif path[:2] == ["projects", "locations"] and len(path) == 3 and path[2] in JOBS and name in JOB_METHODS:
            action = name
        elif name in PREDICT:
            action = PREDICT[name]
        if action is not None:
            found[action].add((method["httpMethod"], flat(method)))
    assert all(found.values()), f"a kind of method went missing from aiplatform.{version}.json: {found}"
    return found


def ours(version: str) -> dict[str, set[tuple[str, str]]]:
    return {action: {(b.verb, f"/{version}/" + b.path.format(name=b.pattern)) for b in bindings}
            for action, bindings in caps.VERTEX_BINDINGS[version].items()}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_vertex_table_is_googles(version: str) -> None:
    mine, theirs = ours(version), google(version)
    for action in caps.VERTEX_ACTIONS:
        assert mine[action] - theirs[action] == set(), f"{action}: we bind what Google does not"
        assert theirs[action] - mine[action] == set(), f"{action}: Google binds what we do not"


def test_the_comparison_can_fail() -> None:
    """A table that lost a collection, or gained one, is seen."""
    theirs = google("v1")
    bad = ours("v1")
    bad["cancel"].add(("POST", "/v1/projects/*/locations/*/publishers/*/models/*/operations/*:cancel"))
    assert bad["cancel"] != theirs["cancel"]
    bad = ours("v1")
    bad["wait"].discard(("POST", "/v1/projects/*/locations/*/ragCorpora/*/ragFiles/*/operations/*:wait"))
    assert bad["wait"] != theirs["wait"]


@pytest.mark.parametrize("version", VERSIONS)
def test_publisher_model_operations_have_no_get(version: str) -> None:
    """Veo's operations sit under the publisher model, which binds no operations collection at all:
    they are read with fetchPredictOperation on the model."""
    assert not any("publishers" in path and path[-1] == "operations" for path, _n, _m in methods(version))
    veo = "projects/p/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/o1"
    for action in ("get", "cancel", "delete", "wait"):
        assert not caps.allowed(version, action, veo, service="vertex")
    assert caps.fetch_endpoint(version, veo) == veo.rsplit("/operations/", 1)[0]
    assert caps.fetch_endpoint(version, "projects/p/locations/l/operations/o") is None
    assert caps.fetch_endpoint(version, "publishers/google/models/veo-3.0-generate-001/operations/o") is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_every_templated_name_is_allowed(version: str) -> None:
    for action, bindings in google(version).items():
        for verb, path in bindings:
            suffix = {"list": "/operations", "wait": ":wait", "cancel": ":cancel", "predict": ":predictLongRunning",
                      "fetch": ":fetchPredictOperation"}.get(action, "")
            name = path.removeprefix(f"/{version}/").replace("*", "x1")
            if name.endswith(suffix) and not (action == "list" and name.endswith(("Jobs",))):
                name = name[: len(name) - len(suffix)]
            assert caps.allowed(version, action, name, service="vertex"), (action, verb, name)


def test_jobs_and_lists() -> None:
    loc = "projects/p/locations/us-central1"
    assert caps.allowed("v1", "cancel", f"{loc}/tuningJobs/123", service="vertex")
    assert not caps.allowed("v1", "delete", f"{loc}/tuningJobs/123", service="vertex")
    assert caps.allowed("v1", "delete", f"{loc}/batchPredictionJobs/9", service="vertex")
    assert caps.list_path("v1", f"{loc}/tuningJobs", service="vertex") == f"{loc}/tuningJobs"
    assert caps.list_path("v1", loc, service="vertex") == f"{loc}/operations"
    assert caps.listed_parent("v1", f"{loc}/ragCorpora/c/operations", service="vertex") == f"{loc}/ragCorpora/c"
    assert caps.listed_parent("v1", f"{loc}/batchPredictionJobs", service="vertex") == f"{loc}/batchPredictionJobs"
    # v1 lists a tuning job's operations, v1beta1 does not; v1's feature groups list nothing usable.
    assert caps.allowed("v1", "list", f"{loc}/tuningJobs/t", service="vertex")
    assert not caps.allowed("v1beta1", "list", f"{loc}/tuningJobs/t", service="vertex")
    assert not caps.allowed("v1", "list", f"{loc}/featureGroups/g", service="vertex")
    # The Gemini API's table is apart: the same version name means another service.
    assert not caps.allowed("v1", "get", f"{loc}/operations/o")
    with pytest.raises(ValueError, match="Vertex AI api_version"):
        caps.allowed("v1beta", "get", f"{loc}/operations/o", service="vertex")


def test_v1_feature_store_lists_are_bound_oddly() -> None:
    """v1 binds the feature stores' ListOperations at GET {name}:wait ("listWait"), where a list
    cannot be: the table leaves those lists out, and this says so if Google fixes it."""
    odd = [(path, m) for path, name, m in methods("v1") if name == "listWait"]
    assert odd and all(flat(m).endswith("/operations/*:wait") and m["httpMethod"] == "GET" for _p, m in odd)
