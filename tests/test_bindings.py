"""The capability table (ops_widgets._capabilities) against Google's own HTTP bindings, derived
from the installed google-ai-generativelanguage package's REST transports (generated from the
service's HTTP rules): never copied by hand."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from ops_widgets import _capabilities as caps

MIXIN = {"GetOperation": "get", "ListOperations": "list", "CancelOperation": "cancel", "DeleteOperation": "delete"}


def google_bindings(version: str) -> dict[str, set[tuple[str, str]]]:
    """{action: {(VERB, uri template)}} for the Operations mixin of every service of ``version``."""
    services = importlib.import_module(f"google.ai.generativelanguage_{version}.services")
    found: dict[str, set[tuple[str, str]]] = {a: set() for a in MIXIN.values()}
    for module in pkgutil.iter_modules(services.__path__):
        try:
            rest = importlib.import_module(f"{services.__name__}.{module.name}.transports.rest_base")
        except ImportError:
            continue
        for cls in vars(rest).values():
            if not inspect.isclass(cls):
                continue
            for method, action in MIXIN.items():
                inner = getattr(cls, f"_Base{method}", None)
                if inner is not None:
                    found[action] |= {(o["method"].upper(), o["uri"]) for o in inner._get_http_options()}
    assert any(found.values()), f"no Operations bindings found in google-ai-generativelanguage {version}"
    return found


def ours(version: str) -> dict[str, set[tuple[str, str]]]:
    """Our table written the way Google's rules are: /{version}/{name=pattern}/suffix."""
    out: dict[str, set[tuple[str, str]]] = {}
    for action, bindings in caps.BINDINGS[version].items():
        out[action] = {(b.verb, f"/{version}/" + b.path.replace("{name}", "{name=" + b.pattern + "}"))
                       for b in bindings}
    return out


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_the_table_is_googles(version: str) -> None:
    assert ours(version) == google_bindings(version)


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_allowed_follows_the_templates(version: str) -> None:
    for action, bindings in google_bindings(version).items():
        for _verb, uri in bindings:
            pattern = uri.split("{name=")[1].split("}")[0]
            name = pattern.replace("**", "a/b").replace("*", "x1")
            assert caps.allowed(version, action, name), (action, name)
    assert not caps.allowed("v1beta", "cancel", "models/veo-3.0-generate-001/operations/abc")
    assert caps.allowed("v1", "cancel", "tunedModels/t/operations/o")
    assert not caps.allowed("v1beta", "get", "operations/abc") and caps.allowed("v1", "delete", "operations/a/b")
    assert caps.list_path("v1beta", "batches") == "batches"
    assert caps.list_path("v1beta", "models/veo-3.0-generate-001") == "models/veo-3.0-generate-001/operations"
    assert caps.list_path("v1beta", "operations") is None and caps.list_path("v1", "operations") == "operations"


def test_newer_bindings_are_not_in_the_package_yet() -> None:
    """Listed once with their source: if the package learns them, move them into BINDINGS."""
    for version, actions in caps.NEWER_BINDINGS.items():
        google = google_bindings(version)
        for action, bindings in actions.items():
            for b in bindings:
                assert all(b.pattern not in uri for _v, uri in google[action]), (version, b.pattern)


def test_clients_say_what_the_service_can_cancel_and_delete() -> None:
    import ops_widgets as ow

    for client in (ow.Operations("k"), ow.Operations("k", api_version="v1")):
        v1 = "api_version='v1'" in repr(client)
        assert client.can_cancel("batches/b1") and client.can_delete("batches/b1")
        assert not client.can_cancel("models/veo-3.0-generate-001/operations/v")
        assert client.can_cancel("tunedModels/t/operations/o") is v1
        assert client.can_delete("operations/x") is v1
        assert not client.can_cancel("not a name")
        client.close()


def test_batches_are_listed_at_batches() -> None:
    from ops_widgets._backends import GeminiBackend

    backend = GeminiBackend("https://example.invalid", "v1beta")
    assert backend.list_url("batches") == "https://example.invalid/v1beta/batches"
    assert backend.list_url("models/veo-3.0-generate-001").endswith("/v1beta/models/veo-3.0-generate-001/operations")
