"""What the Gemini API lets you do with an operation, per API version: the one place that knows.
Pure data and functions.

From Google's published HTTP rules for the google.longrunning.Operations mixin of
generativelanguage (tests/test_bindings.py derives them from the google-ai-generativelanguage
package's REST transports and fails when this table and they disagree). A pattern is a name
template: ``*`` is one path segment, ``**`` one or more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

__all__ = [
    "ACTIONS", "BINDINGS", "NEWER_BINDINGS", "Binding", "allowed", "binding", "describe", "list_path",
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


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    parts = [r"[^/]+(?:/[^/]+)*" if p == "**" else r"[^/]+" if p == "*" else re.escape(p)
             for p in pattern.split("/")]
    return re.compile("/".join(parts))


def _bindings(api_version: str, action: str) -> tuple[Binding, ...]:
    version = BINDINGS.get(api_version)
    if version is None:
        raise ValueError(f"unknown api_version {api_version!r}; choose one of {', '.join(BINDINGS)}")
    return version[action] + NEWER_BINDINGS.get(api_version, {}).get(action, ())


def binding(api_version: str, action: str, name: str) -> Binding | None:
    """The binding that serves ``action`` on ``name`` (for list: the parent), or None."""
    return next((b for b in _bindings(api_version, action) if _regex(b.pattern).fullmatch(name)), None)


def allowed(api_version: str, action: str, name: str) -> bool:
    """Whether the service binds ``action`` for ``name`` in ``api_version``."""
    return binding(api_version, action, name) is not None


def list_path(api_version: str, parent: str) -> str | None:
    """The path (after the version) that lists ``parent``'s operations, or None if unbound."""
    found = binding(api_version, "list", parent)
    return None if found is None else found.path.format(name=parent)


def listed_parent(api_version: str, path: str) -> str | None:
    """The parent whose list is served at ``path`` (after the version), or None: the inverse of
    list_path, for a server routing a request."""
    for b in _bindings(api_version, "list"):
        suffix = b.path.removeprefix("{name}")
        if path.endswith(suffix) and _regex(b.pattern).fullmatch(parent := path[: len(path) - len(suffix)]):
            return parent
    return None


def listing_parent(api_version: str, name: str) -> str | None:
    """The collection whose list pages show the operation ``name`` (a list sweep reads them
    instead of one GET per operation), or None when the service lists no such collection."""
    head, sep, tail = name.rpartition("/operations/")
    candidates = [head] if sep and "/" not in tail else []
    candidates.append(name.rpartition("/")[0])
    return next((p for p in candidates if p and allowed(api_version, "list", p)), None)


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


def listable_parents(api_version: str) -> tuple[str, ...]:
    """The parent templates whose operations the service lists, for messages."""
    return tuple(b.pattern for b in _bindings(api_version, "list"))


def describe(api_version: str, action: str) -> str:
    """"batches/*, tunedModels/*/operations/*": what ``action`` is bound for, for messages."""
    return ", ".join(b.pattern for b in _bindings(api_version, action)) or "nothing"
