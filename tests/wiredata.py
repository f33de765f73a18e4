"""Example bodies in the real shapes (see tests/wire/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WIRE = Path(__file__).parent / "wire"


def wire(name: str) -> Any:
    return json.loads((WIRE / f"{name}.json").read_text())
