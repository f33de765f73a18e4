"""A virtual clock, the emulator in process on it, and client options whose requests are counted:
what bench/attention.py and bench/engine_fleet.py run a real client against."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

try:
    import ops_widgets as ow
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import ops_widgets as ow
from ops_widgets.emulator import Emulator


class Emulated:
    def __init__(self, seed: int) -> None:
        self.clock = ow.VirtualClock()
        self.emu = Emulator.in_process(self.clock, random_seed=seed)
        self.requests = 0  # every HTTP request a client made with options() sent

    def options(self) -> dict[str, Any]:
        """Keywords of a default client that talks to this emulator, on this clock."""
        return {"api_key": self.emu.api_key, "base_url": self.emu.base_url, "clock": self.clock,
                "transport": httpx.ASGITransport(app=self._count)}

    async def _count(self, scope: Any, receive: Any, send: Any) -> None:
        self.requests += 1
        await self.emu.app(scope, receive, send)
