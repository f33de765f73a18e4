"""Recorder: the request log of an in-process emulator on a virtual clock, for tests that count
and time the requests a client sends."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

import ops_widgets as ow
from ops_widgets.emulator import Emulator


class Recorder:
    """ASGI middleware in front of the emulator: (clock time, method, path, status) per request in
    ``log``, and (method, path, query string, body) in ``requests``."""

    made: ClassVar[list[Recorder]] = []  # every Recorder, for fixtures that check all they saw

    def __init__(self, emu: Emulator, clock: ow.VirtualClock) -> None:
        self.emu, self.clock = emu, clock
        self.log: list[tuple[float, str, str, int]] = []
        self.requests: list[tuple[str, str, str, bytes]] = []
        Recorder.made.append(self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = [0]
        body = bytearray()

        async def receiving() -> Any:
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.emu.app(scope, receiving, sending)
        self.log.append((self.clock.monotonic(), scope["method"], scope["path"], status[0]))
        self.requests.append((scope["method"], scope["path"], scope.get("query_string", b"").decode(), bytes(body)))

    def gets(self, name: str) -> list[float]:
        """When each GET of ``name`` was answered."""
        return [t for t, method, path, _ in self.log if method == "GET" and path.endswith("/" + name)]

    def options(self, **kw: Any) -> dict[str, Any]:
        """Client keywords that send through this recorder, on its clock."""
        return {"api_key": self.emu.api_key, "base_url": self.emu.base_url, "clock": self.clock,
                "transport": httpx.ASGITransport(app=self), **kw}

    def vertex_options(self, **kw: Any) -> dict[str, Any]:
        """The same for Vertex AI: the emulator's project and location, and a service account of
        it (its token requests go through this recorder too) unless ``api_key`` or ``credentials``."""
        options: dict[str, Any] = {"vertexai": True, "project": "emulator-project", "location": "us-central1",
                                   "base_url": self.emu.base_url, "clock": self.clock,
                                   "transport": httpx.ASGITransport(app=self)}
        if kw.get("api_key") is None and kw.get("credentials") is None:
            options["credentials"] = self.emu.vertex_credentials()
        return {**options, **kw}

    def sent(self, *, token: bool = False) -> list[tuple[str, str]]:
        """(method, path) of every request, POST /token left out unless ``token``."""
        return [(m, p) for _t, m, p, _s in self.log if token or p != "/token"]
