"""The emulator answers exactly what Google binds, per API version.

The bound methods of the google.longrunning.Operations mixin are derived from the installed
google-ai-generativelanguage package's REST transports (tests/test_bindings.py's google_bindings),
never written down here; the newer file search store bindings come from
ops_widgets._capabilities.NEWER_BINDINGS. Against an in-process emulator on a virtual clock:

- every bound (method, template) answers for a matching name that exists: 200, doing what it says;
  templates no emulated kind lives under answer 404 for the missing entity, not for the URL;
- every pair of method and collection the emulator knows that Google does not bind answers the
  404 of an unknown URL.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

import ops_widgets as ow
from ops_widgets import _capabilities as caps
from ops_widgets.emulator import Emulator

try:  # tests/ is on sys.path (rootdir conftest, "prepend" import mode)
    from test_bindings import google_bindings
except ImportError:  # another import mode: load the module from its file
    import importlib.util
    from pathlib import Path

    _spec = importlib.util.spec_from_file_location("_test_bindings", Path(__file__).with_name("test_bindings.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    google_bindings = _module.google_bindings

HOUR = 3600.0
VERSIONS = ("v1beta", "v1")
KINDS = ("video", "tuning", "batch", "import", "upload")
ENTITY_NOT_FOUND = "Requested entity was not found."
# Bound by Google, but no kind of operation the emulator makes lives there.
NO_KIND = {"corpora/*/operations/*", "generatedFiles/*/operations/*", "ragStores/*/operations/*",
           "ragStores/*/upload/operations/*", "operations/**"}
VERBS = {"get": "GET", "list": "GET", "cancel": "POST", "delete": "DELETE"}

Binding = tuple[str, str, str, str]  # version, action, verb, uri template ("/v1beta/{name=batches/*}:cancel")


def _newer(version: str) -> set[tuple[str, str, str]]:
    """NEWER_BINDINGS written the way Google's rules are: (action, verb, /{version}/{name=pattern}suffix)."""
    return {(action, b.verb, f"/{version}/" + b.path.replace("{name}", "{name=" + b.pattern + "}"))
            for action, bindings in caps.NEWER_BINDINGS.get(version, {}).items() for b in bindings}


def _all_bindings() -> list[Binding]:
    out = []
    for version in VERSIONS:
        google = {(action, verb, uri) for action, pairs in google_bindings(version).items() for verb, uri in pairs}
        out += [(version, *b) for b in sorted(google | _newer(version))]
    return out


BOUND: list[Binding] = _all_bindings()


def _split(uri: str) -> tuple[str, str, str]:
    """'/v1beta/{name=models/*}/operations' -> ('/v1beta/', 'models/*', '/operations')."""
    match = re.fullmatch(r"([^{]*)\{name=([^}]+)\}(.*)", uri)
    assert match is not None, uri
    return match.group(1), match.group(2), match.group(3)


def _pattern_regex(pattern: str) -> str:
    return "/".join(r"[^/]+(?:/[^/]+)*" if p == "**" else r"[^/]+" if p == "*" else re.escape(p)
                    for p in pattern.split("/"))


def _matches(pattern: str, name: str) -> bool:
    return re.fullmatch(_pattern_regex(pattern), name) is not None


def is_bound(version: str, verb: str, path: str) -> bool:
    """Whether Google (or NEWER_BINDINGS) binds ``verb`` on ``/{version}/{path}``."""
    for v, _action, bound_verb, uri in BOUND:
        if v == version and bound_verb == verb:
            prefix, pattern, suffix = _split(uri)
            if re.fullmatch(re.escape(prefix) + _pattern_regex(pattern) + re.escape(suffix), f"/{version}/{path}"):
                return True
    return False


def list_parent(name: str) -> str:
    """The collection a name of ours would be listed in: 'batches', 'models/m', 'fileSearchStores/s/upload'."""
    return "batches" if name.startswith("batches/") else name.rpartition("/operations/")[0]


def list_path(parent: str) -> str:
    return parent if parent == "batches" else f"{parent}/operations"


def on_emulator(body: Callable[[Emulator, httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``body(emu, http)`` against a fresh in-process emulator on a virtual clock."""
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=5)

    async def run() -> None:
        app: Any = emu.app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=emu.base_url,
                                     headers={"x-goog-api-key": emu.api_key}) as http:
            await body(emu, http)

    clock.run(run())


def assert_not_found(r: httpx.Response, message: str) -> None:
    assert r.status_code == 404, (r.request.method, r.request.url.path, r.text)
    assert r.json() == {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}


def url_not_found(r: httpx.Response) -> str:
    return f"The requested URL {r.request.url.path} was not found on this server."


def test_the_bindings_are_derived_not_empty() -> None:
    """The derivation found what the issue names (a guard against an empty or misread package)."""
    templates = {(v, a, _split(uri)[1]) for v, a, _verb, uri in BOUND}
    assert ("v1beta", "cancel", "batches/*") in templates and ("v1beta", "list", "batches") in templates
    assert ("v1", "list", "operations") in templates and ("v1", "delete", "operations/**") in templates
    assert ("v1", "cancel", "tunedModels/*/operations/*") in templates
    assert ("v1beta", "list", "operations") not in templates
    assert ("v1beta", "get", "fileSearchStores/*/upload/operations/*") in templates  # newer


@pytest.mark.parametrize(("version", "action", "verb", "uri"), BOUND, ids=[f"{v}-{a}-{u}" for v, a, _, u in BOUND])
def test_every_bound_method_answers(version: str, action: str, verb: str, uri: str) -> None:
    prefix, pattern, suffix = _split(uri)
    assert verb == VERBS[action] and prefix == f"/{version}/"

    async def body(emu: Emulator, http: httpx.AsyncClient) -> None:
        made = [emu.create(kind, duration=HOUR) for kind in KINDS]
        if action == "list":
            fits = [n for n in made if pattern in ("operations", list_parent(n)) or _matches(pattern, list_parent(n))]
        else:
            fits = [n for n in made if _matches(pattern, n)]
        assert bool(fits) is (pattern not in NO_KIND), (pattern, made)
        if not fits:  # bound, but nothing of ours lives there: the entity is missing, not the URL
            name = pattern.replace("**", "a/b").replace("*", "x1")
            r = await http.request(verb, prefix + name + suffix)
            assert_not_found(r, ENTITY_NOT_FOUND)
            return
        name = list_parent(fits[0]) if action == "list" and pattern != "operations" else fits[0]
        target = "operations" if pattern == "operations" else name
        r = await http.request(verb, prefix + target + suffix)
        assert r.status_code == 200, (verb, r.request.url.path, r.text)
        if action == "get":
            assert r.json()["name"] == name and r.json() == emu.get_operation(name)
        elif action == "list":
            listed = {op["name"] for op in r.json()["operations"]}
            assert set(fits) <= listed if pattern == "operations" else fits[0] in listed
        elif action == "cancel":
            assert r.json() == {}
            op = emu.get_operation(name)
            assert op is not None and op["done"] is True and op["error"]["code"] == 1
        else:
            assert r.json() == {} and emu.get_operation(name) is None

    on_emulator(body)


def _requests(name: str) -> list[tuple[str, str]]:
    """Every method the emulator could be asked on an operation name and on its collection."""
    return [("GET", name), ("POST", f"{name}:cancel"), ("DELETE", name), ("PUT", name), ("PATCH", name),
            ("POST", name), ("GET", list_path(list_parent(name)))]


@pytest.mark.parametrize("version", VERSIONS)
def test_what_google_does_not_bind_is_an_unknown_url(version: str) -> None:
    unbound: set[tuple[str, str, str]] = set()  # (kind, verb, what): for the check at the end

    async def body(emu: Emulator, http: httpx.AsyncClient) -> None:
        alive = [emu.create("video", duration=HOUR)]
        for kind in KINDS:
            for index in range(len(_requests(alive[0]))):
                name = emu.create(kind, duration=HOUR)  # a fresh one each: a bound DELETE removes it
                alive.append(name)
                verb, path = _requests(name)[index]
                r = await http.request(verb, f"/{version}/{path}")
                what = "list" if path.endswith("/operations") or path == "batches" else path.replace(name, "{name}")
                if is_bound(version, verb, path):
                    assert r.status_code == 200, (verb, path, r.text)
                    if verb == "DELETE":
                        alive.remove(name)
                else:
                    assert_not_found(r, url_not_found(r))
                    unbound.add((kind, verb, what))
        # The top level: listed only where bound (v1); no operation of ours is named operations/...
        for verb, path in [("GET", "operations"), ("DELETE", "operations"), ("POST", "operations"),
                           ("GET", "operations/abc"), ("POST", "operations/abc:cancel"), ("DELETE", "operations/abc")]:
            r = await http.request(verb, f"/{version}/{path}")
            if not is_bound(version, verb, path):
                assert_not_found(r, url_not_found(r))
                unbound.add(("top", verb, path))
            elif path == "operations":
                assert r.status_code == 200 and [op["name"] for op in r.json()["operations"]] == alive
            else:
                assert_not_found(r, ENTITY_NOT_FOUND)

    on_emulator(body)
    # What the issue says, read back from the derivation (so that it cannot pass on an empty table).
    for kind in ("video", "tuning", "import", "upload"):
        assert (kind, "DELETE", "{name}") in unbound
        assert (kind, "POST", "{name}:cancel") in unbound or (version, kind) == ("v1", "tuning")
    for kind in ("import", "upload"):
        assert (kind, "GET", "list") in unbound
        assert ((kind, "GET", "{name}") in unbound) is (version == "v1")  # v1 says ragStores
    for kind in KINDS:  # no version binds writing an operation
        assert {(kind, "PUT", "{name}"), (kind, "PATCH", "{name}"), (kind, "POST", "{name}")} <= unbound
    # Batches: got, listed, cancelled and deleted in both versions.
    assert {(v, w) for k, v, w in unbound if k == "batch"} == {("PUT", "{name}"), ("PATCH", "{name}"),
                                                              ("POST", "{name}")}
    for kind in ("video", "tuning"):
        assert not {(kind, "GET", "{name}"), (kind, "GET", "list")} & unbound
    assert (("top", "GET", "operations") in unbound) is (version == "v1beta")
    assert (("top", "DELETE", "operations/abc") in unbound) is (version == "v1beta")
    assert ("top", "GET", "operations/abc") in unbound and ("top", "POST", "operations/abc:cancel") in unbound


@pytest.mark.parametrize(("version", "action", "verb", "uri"),
                         [(v, *b) for v in VERSIONS for b in sorted(_newer(v))])
def test_newer_bindings_answer_for_existing_operations(version: str, action: str, verb: str, uri: str) -> None:
    prefix, pattern, suffix = _split(uri)

    async def body(emu: Emulator, http: httpx.AsyncClient) -> None:
        names = [emu.create(kind, duration=HOUR, parent="fileSearchStores/newer") for kind in ("import", "upload")]
        name = next(n for n in names if _matches(pattern, n))
        r = await http.request(verb, prefix + name + suffix)
        assert r.status_code == 200 and r.json() == {"name": name}  # running, and no metadata
        emu.complete(name)
        done = (await http.request(verb, prefix + name + suffix)).json()
        assert done["done"] is True and done["response"]["documentName"].startswith("fileSearchStores/newer/documents/")

    on_emulator(body)
