"""Name validation and URLs (pure)."""

from __future__ import annotations

import pytest

from ops_widgets import InvalidNameError, UnsupportedError
from ops_widgets._backends import GeminiBackend, validate_name, validate_parent

GOOD = [
    "operations/abc123",
    "models/veo-3.1-generate-preview/operations/vz341u0pmdlc",
    "tunedModels/number-generator-model-dzlmi0gswwqb/operations/bvl8dymw0fhw",
    "batches/xyz",
    "fileSearchStores/s-1/operations/a_b.c~d",
]
BAD = [
    "", "abc123", "operations", "operations/", "/operations/x", "operations//x",
    "operations/../x", "models/../operations/x", "operations/.", "operations/a b",
    "operations/x?key=1", "operations/x#f", "operations/x%2F", "https://evil.example/operations/x",
    "batches/x/y", "models/veo", "operations/x/", "operations/é",
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD + [None, 3])
def test_bad_names(name: object) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)  # type: ignore[arg-type]


def test_parents() -> None:
    assert validate_parent("models/veo-3.0-generate-001") == "models/veo-3.0-generate-001"
    for bad in ["", "models/../x", "models/veo/operations", "a b"]:
        with pytest.raises(InvalidNameError):
            validate_parent(bad)


def test_urls() -> None:
    b = GeminiBackend("http://127.0.0.1:9/", "v1beta")
    assert b.operation_url("operations/a") == "http://127.0.0.1:9/v1beta/operations/a"
    assert b.cancel_url("batches/z") == "http://127.0.0.1:9/v1beta/batches/z:cancel"
    with pytest.raises(UnsupportedError, match="top-level"):  # v1beta lists no top level
        b.list_url(None)
    with pytest.raises(UnsupportedError, match="fileSearchStores"):
        b.list_url("fileSearchStores/s")
    assert GeminiBackend("http://127.0.0.1:9/", "v1").list_url(None) == "http://127.0.0.1:9/v1/operations"
    assert b.list_url("tunedModels/t") == "http://127.0.0.1:9/v1beta/tunedModels/t/operations"
    assert b.list_url("batches") == "http://127.0.0.1:9/v1beta/batches"
    assert b.list_params(10, "tok", "done=true") == {"pageSize": "10", "pageToken": "tok", "filter": "done=true"}
    assert b.list_params(None, "", None) == {}
    with pytest.raises(ValueError):
        b.list_params(0, None, None)
    assert b.auth_headers("k") == {"x-goog-api-key": "k"}


def test_names_longer_than_the_service_allows_are_refused_before_io() -> None:
    b = GeminiBackend("http://127.0.0.1:9/", "v1beta")
    for length in (1_100, 10_000, 100_000):
        name = "batches/" + "a" * length
        with pytest.raises(InvalidNameError, match="characters long") as info:
            b.operation_url(name)
        assert len(str(info.value)) < 200  # the message does not echo the name
    assert b.operation_url("batches/" + "a" * 900).endswith("a" * 900)
