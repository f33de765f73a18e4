"""The capability table (ops_widgets._capabilities) against Google's own HTTP bindings, derived
from the installed google-ai-generativelanguage package's REST transports (generated from the
service's HTTP rules): never copied by hand."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

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


def file_download_bindings() -> set[tuple[str, str]]:
    """FileService.DownloadFile's (VERB, uri template): v1beta has the Files service, v1 does not."""
    rest = importlib.import_module("google.ai.generativelanguage_v1beta.services.file_service.transports.rest_base")
    inner = rest._BaseFileServiceRestTransport._BaseDownloadFile
    return {(o["method"].upper(), o["uri"]) for o in inner._get_http_options()}


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


def _template_regex(uri: str) -> re.Pattern[str]:
    """Google's URI template ("/v1beta/{name=models/*}/operations") as a regex over paths."""
    body = re.sub(r"\{name=([^}]*)\}", r"\1", uri)
    return re.compile("/".join(re.escape(seg).replace(r"\*\*", "[^:]+").replace(r"\*", "[^/:]+")
                               for seg in body.split("/")))


def _matches(version: str, method: str, path: str) -> bool:
    """Whether (method, path) is a request Google binds in ``version``: an Operations method
    (derived from the package, plus the newer bindings named in _capabilities), or one of the
    model-listing methods the client calls to find what to list."""
    if method == "GET" and path in (f"/{version}/models", f"/{version}/tunedModels"):
        return True  # ModelService.ListModels and ListTunedModels
    if path.startswith("/download/"):
        # A batch's responses file (batch_results): FileService.DownloadFile of the package's v1beta
        # file_service ("/v1beta/{name=files/*}:download"), at its media path under /download.
        return method == "GET" and any(
            verb == method and _template_regex(uri).fullmatch(path.removeprefix("/download"))
            for verb, uri in file_download_bindings())
    google = google_bindings(version)
    for action in ("get", "list", "cancel", "delete"):
        if any(verb == method and _template_regex(uri).fullmatch(path) for verb, uri in google[action]):
            return True
    newer = caps.NEWER_BINDINGS.get(version, {})
    return any(b.verb == method and caps.allowed(version, action, path.removeprefix(f"/{version}/"))
               for action, bindings in newer.items() for b in bindings)


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_every_request_of_the_user_flows_is_bound(version: str) -> None:
    """list_all, list_dataframe, get, track, wait, cancel, delete and batch_results, through a
    recording transport: each (method, path) sent is one Google binds in the version in use."""
    import httpx

    import ops_widgets as ow
    from ops_widgets.emulator import Emulator

    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=5)
    sent: list[tuple[str, str]] = []

    async def recording(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        sent.append((scope["method"], scope["path"]))
        await emu.app(scope, receive, send)  # type: ignore[arg-type]

    async def flows() -> None:
        emu.seed(60, kinds=("video", "tuning", "batch"))
        batch = emu.create("batch", duration=600)
        finished = emu.create("batch", duration=1, requests=30)
        imported = emu.create("import", duration=30)
        async with ow.AsyncOperations(emu.api_key, base_url=emu.base_url, api_version=version, clock=clock,
                                      transport=httpx.ASGITransport(app=recording)) as ops:
            listed = await ops.list_all(page_size=7)
            assert listed
            await ops.list_dataframe(page_size=7, progress=False)
            await ops.list(parent="batches")
            await ops.get(listed[0])
            if version == "v1beta":  # v1 binds no GET for fileSearchStores (it says ragStores)
                await ops.wait(imported, poll_interval=5, timeout=600)
            handle = await ops.track(batch)
            await ops.cancel(batch)
            await handle.wait(timeout=600)
            await ops.delete(batch)
            for op in listed[:5]:
                if ops.can_cancel(op) and not op.done:
                    await ops.cancel(op)
            assert len(await ops.batch_results(finished)) == 30  # GET the batch, then its responses file

    clock.run(flows())
    unbound = [(m, p) for m, p in sent if not _matches(version, m, p)]
    assert sent and unbound == []


def test_the_matcher_refuses_what_google_does_not_bind() -> None:
    assert not _matches("v1beta", "GET", "/v1beta/operations")
    assert not _matches("v1beta", "POST", "/v1beta/models/veo-3.0-generate-001/operations/x:cancel")
    assert not _matches("v1beta", "DELETE", "/v1beta/tunedModels/t/operations/o")
    assert _matches("v1", "GET", "/v1/operations") and _matches("v1beta", "GET", "/v1beta/batches")
    assert _matches("v1beta", "GET", "/v1beta/fileSearchStores/s/upload/operations/u")  # a newer binding
    assert _matches("v1", "GET", "/download/v1beta/files/batch-x:download")
    assert not _matches("v1", "GET", "/download/v1/files/batch-x:download")
    assert not _matches("v1beta", "GET", "/download/v1beta/batches/x")
