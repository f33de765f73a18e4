"""What the Gemini API and Vertex AI let you do with an operation, per API version: the one place
that knows. Pure data and functions.

From Google's published HTTP rules for the google.longrunning.Operations mixin of
generativelanguage (tests/test_bindings.py derives them from the google-ai-generativelanguage
package's REST transports and fails when this table and they disagree). A pattern is a name
template: ``*`` is one path segment, ``**`` one or more.

Vertex AI (``service="vertex"``, versions v1 and v1beta1) is written as a small table too, from
Google's discovery documents (tests/test_vertex_bindings.py reads aiplatform.v1/v1beta1.json from
google-api-python-client and fails when they disagree): the collections whose operations are bound,
the jobs (tuningJobs, batchPredictionJobs: resources with a JOB_STATE_*, not Operations), and the
models whose operations are fetched with ``:fetchPredictOperation`` (Veo: no GET at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

__all__ = [
    "ACTIONS", "BINDINGS", "NEWER_BINDINGS", "SERVICES", "VERTEX_ACTIONS", "VERTEX_BINDINGS", "VERTEX_JOBS",
    "VERTEX_OPERATIONS", "Binding", "allowed", "binding", "describe", "fetch_endpoint", "list_path",
    "listable_parents", "listed_parent", "listing_parent", "sweep_parents",
]

ACTIONS = ("get", "list", "cancel", "delete")


@dataclass(frozen=True)
class Binding:
    """One bound method: the HTTP verb, and the path after the version for a name matching
    ``pattern`` (``{name}`` stands for the name)."""

    verb: str
    pattern: str
    path: str = "{name}"


def _get(*patterns: str) -> tuple[Binding, ...]:
    return tuple(Binding("GET", p) for p in patterns)


BINDINGS: dict[str, dict[str, tuple[Binding, ...]]] = {
    "v1beta": {
        "get": _get("batches/*", "corpora/*/operations/*", "generatedFiles/*/operations/*",
                    "models/*/operations/*", "tunedModels/*/operations/*"),
        # list: the pattern is the parent; batches are listed at /batches itself.
        "list": (Binding("GET", "batches"), Binding("GET", "models/*", "{name}/operations"),
                 Binding("GET", "tunedModels/*", "{name}/operations")),
        "cancel": (Binding("POST", "batches/*", "{name}:cancel"),),
        "delete": (Binding("DELETE", "batches/*"),),
    },
    "v1": {
        "get": _get("batches/*", "corpora/*/operations/*", "generatedFiles/*/operations/*",
                    "models/*/operations/*", "ragStores/*/operations/*", "ragStores/*/upload/operations/*",
                    "tunedModels/*/operations/*"),
        "list": (Binding("GET", "batches"), Binding("GET", "models/*", "{name}/operations"),
                 Binding("GET", "operations"), Binding("GET", "tunedModels/*", "{name}/operations")),
        "cancel": (Binding("POST", "batches/*", "{name}:cancel"),
                   Binding("POST", "tunedModels/*/operations/*", "{name}:cancel")),
        "delete": (Binding("DELETE", "batches/*"), Binding("DELETE", "operations/**")),
    },
}

# Bound by the service but newer than the google-ai-generativelanguage release the tests read:
# file search stores (v1beta's name for v1's ragStores), whose import and upload operations the
# google-genai SDK polls with GET {name} (google-genai: file_search_stores.import_file and
# upload_to_file_search_store, then operations.get).
NEWER_BINDINGS: dict[str, dict[str, tuple[Binding, ...]]] = {
    "v1beta": {"get": _get("fileSearchStores/*/operations/*", "fileSearchStores/*/upload/operations/*")},
    "v1": {},
}


# --- Vertex AI ------------------------------------------------------------------------------------
SERVICES = ("gemini", "vertex")
VERTEX_ACTIONS = ("get", "list", "cancel", "delete", "wait", "create", "predict", "fetch")
_ALL = "get list cancel delete wait"
_LOCATION = "projects/*/locations/*"

# Collections under projects/*/locations/* whose operations are bound ("" is the location's own
# projects/*/locations/*/operations; "datasets/dataItems" is datasets/*/dataItems/*/operations/*;
# "ragEngineConfig." is a singleton: ragEngineConfig/operations/*), with the Operations methods
# bound for them; most have all five.
_V1_FULL = """
    - customJobs dataLabelingJobs datasets datasets/annotationSpecs datasets/dataItems
    datasets/dataItems/annotations datasets/savedQueries deploymentResourcePools endpoints featurestores
    featurestores/entityTypes featurestores/entityTypes/features hyperparameterTuningJobs indexEndpoints indexes
    memoryBanks memoryBanks/memories metadataStores metadataStores/artifacts metadataStores/contexts
    metadataStores/executions migratableResources modelDeploymentMonitoringJobs models models/evaluations
    notebookExecutionJobs notebookRuntimeTemplates notebookRuntimes onlineEvaluators persistentResources
    pipelineJobs ragCorpora ragCorpora/ragFiles ragEngineConfig. reasoningEngines reasoningEngines/memories
    reasoningEngines/sessions schedules semanticGovernancePolicies servingProfiles skills specialistPools studies
    studies/trials taskStores tensorboards tensorboards/experiments tensorboards/experiments/runs
    tensorboards/experiments/runs/timeSeries trainingPipelines
"""
_V1BETA1_FULL = _V1_FULL + """
    agents apps edgeDevices exampleStores extensionControllers extensions learningSets modelMonitors
    reasoningEngines/feedbackEntries reasoningEngines/runtimeRevisions reasoningEngines/sandboxEnvironmentSnapshots
    reasoningEngines/sandboxEnvironmentTemplates reasoningEngines/sandboxEnvironments
"""
# v1's feature store operations bind their list at a GET on {name}:wait ("listWait" in the
# discovery document): not a list we can use, so they count as unlisted here.
_V1_PARTIAL = {
    "featureGroups featureGroups/features featureOnlineStores featureOnlineStores/featureViews":
        "get delete wait",
    "reasoningEngines/sandboxEnvironmentSnapshots reasoningEngines/sandboxEnvironmentTemplates "
    "reasoningEngines/sandboxEnvironments": "get cancel delete wait",
}
_V1BETA1_PARTIAL = {
    "evaluationItems evaluationRuns evaluationSets featureGroups featureGroups/featureMonitors "
    "featureGroups/features featureOnlineStores featureOnlineStores/featureViews": "get list delete wait",
    "evaluationMetrics solvers": "get list delete",
    "collaborativeProjects reasoningEngines/examples tuningJobs": "get cancel delete wait",
}


def _collections(full: str, partial: dict[str, str]) -> dict[str, frozenset[str]]:
    table = {("" if c == "-" else c): frozenset(_ALL.split()) for c in full.split()}
    table.update({c: frozenset(actions.split()) for cs, actions in partial.items() for c in cs.split()})
    return dict(sorted(table.items()))


VERTEX_OPERATIONS: dict[str, dict[str, frozenset[str]]] = {
    "v1": _collections(_V1_FULL + " tuningJobs", _V1_PARTIAL),  # v1 lists a tuning job's operations
    "v1beta1": _collections(_V1BETA1_FULL, _V1BETA1_PARTIAL),
}
# Jobs: resources under projects/*/locations/*/{collection}/*, with these methods (both versions).
VERTEX_JOBS: dict[str, frozenset[str]] = {
    "batchPredictionJobs": frozenset("create get list cancel delete".split()),
    "tuningJobs": frozenset("create get list cancel".split()),  # a tuning job cannot be deleted
}
# What starts a long-running prediction and fetches its operations (both versions): publisher models
# (Veo) and endpoints, in a location or, for express mode (an API key, no project), without one.
_PREDICTORS = (f"{_LOCATION}/publishers/*/models/*", f"{_LOCATION}/endpoints/*", "publishers/*/models/*",
               "endpoints/*")


def _expand(collection: str) -> str:
    """"datasets/dataItems" -> "projects/*/locations/*/datasets/*/dataItems/*"; a singleton
    ("ragEngineConfig.") has no id."""
    parts = [p.removesuffix(".") if p.endswith(".") else f"{p}/*" for p in collection.split("/") if p]
    return "/".join([_LOCATION, *parts])


def _vertex_bindings(version: str) -> dict[str, tuple[Binding, ...]]:
    out: dict[str, list[Binding]] = {a: [] for a in VERTEX_ACTIONS}
    for collection, actions in VERTEX_OPERATIONS[version].items():
        parent = _expand(collection)
        op = f"{parent}/operations/*"
        if "get" in actions:
            out["get"].append(Binding("GET", op))
        if "list" in actions:
            out["list"].append(Binding("GET", parent, "{name}/operations"))
        if "cancel" in actions:
            out["cancel"].append(Binding("POST", op, "{name}:cancel"))
        if "delete" in actions:
            out["delete"].append(Binding("DELETE", op))
        if "wait" in actions:
            out["wait"].append(Binding("POST", op, "{name}:wait"))
    for collection, actions in VERTEX_JOBS.items():
        # Like Gemini's batches: a job is read at its name, and listed at the collection itself.
        jobs = f"{_LOCATION}/{collection}"
        if "create" in actions:
            out["create"].append(Binding("POST", jobs))
        if "get" in actions:
            out["get"].append(Binding("GET", f"{jobs}/*"))
        if "list" in actions:
            out["list"].append(Binding("GET", jobs))
        if "cancel" in actions:
            out["cancel"].append(Binding("POST", f"{jobs}/*", "{name}:cancel"))
        if "delete" in actions:
            out["delete"].append(Binding("DELETE", f"{jobs}/*"))
    out["predict"] = [Binding("POST", p, "{name}:predictLongRunning") for p in _PREDICTORS]
    out["fetch"] = [Binding("POST", p, "{name}:fetchPredictOperation") for p in _PREDICTORS]
    return {a: tuple(bs) for a, bs in out.items()}


VERTEX_BINDINGS: dict[str, dict[str, tuple[Binding, ...]]] = {v: _vertex_bindings(v) for v in VERTEX_OPERATIONS}


def fetch_endpoint(api_version: str, name: str) -> str | None:
    """The model or endpoint whose ``:fetchPredictOperation`` reads the Vertex operation ``name``
    ("projects/p/locations/l/publishers/google/models/veo-3.0-generate-001/operations/o" -> its model),
    or None when it is not a prediction operation (then GET reads it, if bound)."""
    head, sep, op_id = name.rpartition("/operations/")
    if not sep or not op_id or "/" in op_id:
        return None
    return head if allowed(api_version, "fetch", head, service="vertex") else None


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    parts = [r"[^/]+(?:/[^/]+)*" if p == "**" else r"[^/]+" if p == "*" else re.escape(p)
             for p in pattern.split("/")]
    return re.compile("/".join(parts))


def _bindings(api_version: str, action: str, service: str = "gemini") -> tuple[Binding, ...]:
    if service == "vertex":
        vertex = VERTEX_BINDINGS.get(api_version)
        if vertex is None:
            raise ValueError(f"unknown Vertex AI api_version {api_version!r}; "
                             f"choose one of {', '.join(VERTEX_BINDINGS)}")
        return vertex.get(action, ())
    if service != "gemini":
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    version = BINDINGS.get(api_version)
    if version is None:
        raise ValueError(f"unknown api_version {api_version!r}; choose one of {', '.join(BINDINGS)}")
    return version[action] + NEWER_BINDINGS.get(api_version, {}).get(action, ())


def binding(api_version: str, action: str, name: str, *, service: str = "gemini") -> Binding | None:
    """The binding that serves ``action`` on ``name`` (for list: the parent), or None."""
    return next((b for b in _bindings(api_version, action, service) if _regex(b.pattern).fullmatch(name)), None)


def allowed(api_version: str, action: str, name: str, *, service: str = "gemini") -> bool:
    """Whether the service binds ``action`` for ``name`` in ``api_version``."""
    return binding(api_version, action, name, service=service) is not None


def list_path(api_version: str, parent: str, *, service: str = "gemini") -> str | None:
    """The path (after the version) that lists ``parent``'s operations, or None if unbound."""
    found = binding(api_version, "list", parent, service=service)
    return None if found is None else found.path.format(name=parent)


def listed_parent(api_version: str, path: str, *, service: str = "gemini") -> str | None:
    """The parent whose list is served at ``path`` (after the version), or None: the inverse of
    list_path, for a server routing a request."""
    for b in _bindings(api_version, "list", service):
        suffix = b.path.removeprefix("{name}")
        if path.endswith(suffix) and _regex(b.pattern).fullmatch(parent := path[: len(path) - len(suffix)]):
            return parent
    return None


def listing_parent(api_version: str, name: str, *, service: str = "gemini") -> str | None:
    """The collection whose list pages show the operation ``name`` (a list sweep reads them
    instead of one GET per operation), or None when the service lists no such collection."""
    head, sep, tail = name.rpartition("/operations/")
    candidates = [head] if sep and "/" not in tail else []
    candidates.append(name.rpartition("/")[0])
    return next((p for p in candidates if p and allowed(api_version, "list", p, service=service)), None)


def sweep_parents(api_version: str, models: list[dict[str, object]], tuned_models: list[str]) -> list[str]:
    """What list_all() with no parent reads: the top-level list where the version binds one (v1),
    else every listable collection: batches, each model that runs long operations
    (supportedGenerationMethods has predictLongRunning), and each tuned model."""
    if allowed(api_version, "list", "operations"):
        return ["operations"]
    long_running = [str(m["name"]) for m in models
                    if isinstance(m.get("name"), str) and "predictLongRunning" in _methods(m)]
    parents = ["batches", *long_running, *tuned_models]
    return [p for p in dict.fromkeys(parents) if allowed(api_version, "list", p)]


def _methods(model: dict[str, object]) -> list[str]:
    methods = model.get("supportedGenerationMethods")
    return [m for m in methods if isinstance(m, str)] if isinstance(methods, list) else []


def listable_parents(api_version: str, *, service: str = "gemini") -> tuple[str, ...]:
    """The parent templates whose operations the service lists, for messages."""
    return tuple(b.pattern for b in _bindings(api_version, "list", service))


def describe(api_version: str, action: str, *, service: str = "gemini") -> str:
    """"batches/*, tunedModels/*/operations/*": what ``action`` is bound for, for messages."""
    return ", ".join(b.pattern for b in _bindings(api_version, action, service)) or "nothing"
