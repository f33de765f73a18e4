"""Google's published discovery documents for Vertex AI, aiplatform.v1.json and aiplatform.v1beta1.json,
as shipped in the google-api-python-client package (a test dependency): read from the installed
package, never copied. One matcher for the emulator's routes and the client's requests alike."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

VERSIONS = ("v1", "v1beta1")


@cache
def discovery(version: str) -> dict[str, Any]:
    docs = resources.files("googleapiclient") / "discovery_cache" / "documents"
    doc: dict[str, Any] = json.loads((docs / f"aiplatform.{version}.json").read_text(encoding="utf-8"))
    assert doc["version"] == version and doc["rootUrl"] == "https://aiplatform.googleapis.com/"
    return doc


def methods(version: str) -> list[tuple[list[str], str, dict[str, Any]]]:
    """(resource path, method name, method) of every method of the document."""
    out: list[tuple[list[str], str, dict[str, Any]]] = []

    def walk(resources_: dict[str, Any], path: list[str]) -> None:
        for name, resource in resources_.items():
            for method_name, method in resource.get("methods", {}).items():
                out.append(([*path, name], method_name, method))
            walk(resource.get("resources", {}), [*path, name])

    walk(discovery(version)["resources"], [])
    return out


def flat(method: dict[str, Any]) -> str:
    """"v1/projects/{projectsId}/locations/{locationsId}/operations/{operationsId}:wait" as
    "/v1/projects/*/locations/*/operations/*:wait"."""
    return "/" + re.sub(r"\{[^}]+\}", "*", method["flatPath"])


@cache
def _document_regex(version: str) -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
    """Every method of the document as (VERB, regex over request paths, method). A path
    parameter is one segment and holds no ':', so that "tuningJobs/1:cancel" is not a GET of a
    job named "1:cancel"."""
    return [(m["httpMethod"], re.compile(re.escape(flat(m)).replace(r"\*", "[^/:]+")), m)
            for _path, _name, m in methods(version)]


def matching(method: str, path: str) -> list[dict[str, Any]]:
    """The document's methods that bind ``method`` on ``path`` ("/v1/projects/p/...")."""
    version = path.split("/")[1] if path.count("/") > 1 else ""
    if version not in VERSIONS:
        return []
    return [m for verb, rx, m in _document_regex(version) if verb == method and rx.fullmatch(path)]


def in_document(method: str, path: str) -> bool:
    return bool(matching(method, path))


def unbound(method: str, path: str, query: str = "", body: bytes = b"") -> str | None:
    """Why a request is no call of a documented method (None when it is one): its (VERB, path)
    must match a method, its query parameters must be that method's (or the document's global
    ones: alt, fields, ...), and a JSON body's fields must be those of the method's request
    schema (a method with no request schema takes no fields)."""
    version = path.split("/")[1] if path.count("/") > 1 else ""
    if version not in VERSIONS:
        return f"{method} {path}: not under a Vertex AI API version ({', '.join(VERSIONS)})"
    found = matching(method, path)
    if not found:
        return f"{method} {path}: no method of aiplatform.{version}.json binds it"
    common = set(discovery(version)["parameters"])
    fields: set[str] = set()
    if body.strip():
        sent = json.loads(body)
        fields = set(sent) if isinstance(sent, dict) else {"<not an object>"}
    reasons = []
    for m in found:
        params = {k for k, v in m.get("parameters", {}).items() if v.get("location") == "query"} | common
        extra = {k for k, _v in parse_qsl(query, keep_blank_values=True)} - params
        ref = m.get("request", {}).get("$ref")
        allowed = set(discovery(version)["schemas"][ref].get("properties", {})) if ref else set()
        if not extra and fields <= allowed:
            return None
        reasons.append(f"{m['id']}: query {sorted(extra)} or body fields {sorted(fields - allowed)} not its own")
    return f"{method} {path}?{query}: " + "; ".join(reasons)
