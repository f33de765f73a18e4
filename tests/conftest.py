from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

WIRE = Path(__file__).parent / "wire"


def wire(name: str) -> Any:
    """An example body in the real shape (see tests/wire/README.md)."""
    return json.loads((WIRE / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must never leak into (or change) a test.
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
