"""Emulator: an EmulatorApp served by uvicorn on 127.0.0.1 from a daemon thread, or driven
in-process through httpx.ASGITransport on a client's own clock (``Emulator.in_process``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ._app import EmulatorApp
from ._faults import Faults

if TYPE_CHECKING:
    from .. import AsyncOperations, Operations
    from .._clock import Clock

_IN_PROCESS_URL = "http://emulator.invalid"  # never resolved: requests go straight to the app


class Emulator:
    """A running emulator. Use `Emulator.start()` (real HTTP on loopback) or
    `Emulator.in_process(clock)`; stop it with `stop()` or a `with` block."""

    def __init__(self, app: EmulatorApp, server: uvicorn.Server | None, thread: threading.Thread | None,
                 port: int, speed: float = 1.0, clock: Clock | None = None) -> None:
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}" if server is not None else _IN_PROCESS_URL
        self.api_key = app.api_key
        self.speed = speed
        self.clock = clock  # in-process: the clock its clients get, whose time the app reads
        self._server, self._thread = server, thread
        app.base_url = self.base_url
        # The admin methods are the app's own bound methods: one implementation, same signatures.
        self.seed = app.seed
        self.create = app.create
        self.complete = app.complete
        self.fail_next = app.fail_next
        self.fail_for = app.fail_for
        self.set_faults = app.set_faults
        self.clear_faults = app.clear_faults
        self.stats = app.stats
        self.reset_stats = app.reset_stats
        self.get_operation = app.get_operation

    @classmethod
    def start(cls, port: int = 0, *, speed: float = 1.0, random_seed: int | None = None,
              api_key: str = "emulator-key", latency: float | tuple[float, float] = 0.0,
              clock: Callable[[], float] | None = None, faults: Faults | None = None,
              vertex_wait: bool = True) -> Emulator:
        """Serve a new EmulatorApp on 127.0.0.1:`port` (0 = any free port) and wait until it listens.

        ``clock`` (epoch seconds) replaces the wall clock, e.g. ``lambda: frozen`` so that nothing
        finishes by itself during a test. ``faults``: misbehave from the first request (see Faults;
        ``set_faults``/``clear_faults`` change them live). ``vertex_wait=False``: Vertex AI
        operations have no ``:wait`` (it answers 404, as a method the service does not bind);
        ``emu.app.vertex_wait`` changes it live.
        """
        app = EmulatorApp(speed=speed, random_seed=random_seed, api_key=api_key, latency=latency,
                          clock=clock or time.time, faults=faults, vertex_wait=vertex_wait)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="ops-widgets-emulator", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"the emulator could not start on 127.0.0.1:{port}")
            time.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        return cls(app, server, thread, bound, speed)

    @classmethod
    def in_process(cls, clock: Clock, *, speed: float = 1.0, random_seed: int | None = None,
                   api_key: str = "emulator-key", faults: Faults | None = None,
                   vertex_wait: bool = True) -> Emulator:
        """The same app with no server: its clients reach it through httpx.ASGITransport and share
        ``clock`` with it, so a VirtualClock runs hours of operations in milliseconds. Dropped
        connections (``faults``) raise the httpx.RemoteProtocolError a socket's close would."""
        app = EmulatorApp(speed=speed, random_seed=random_seed, api_key=api_key, clock=clock.time, faults=faults,
                          vertex_wait=vertex_wait)
        return cls(app, None, None, 0, speed, clock)

    def vertex_key_info(self, *, lifetime: float = 3600.0, project: str = "emulator-project") -> dict[str, Any]:
        """A service-account key file's JSON (``json.dump`` it to get the file) for a new service
        account of this emulator: its ``token_uri`` is the emulator's POST /token, whose access
        tokens live ``lifetime`` seconds (emulator clock). The key is made in memory, per emulator."""
        return self.app.vertex.service_account(project, lifetime, f"{self.base_url}/token")

    def vertex_credentials(self, *, lifetime: float = 3600.0, project: str = "emulator-project") -> Any:
        """google-auth service-account credentials (cloud-platform scope) that sign a JWT and trade
        it for an access token at this emulator's /token; tokens live ``lifetime`` seconds of the
        emulator's clock (the VirtualClock in-process). An ops_widgets client refreshes them on its
        own clock, after half a short token's life; in-process, its token requests go through its
        own transport. google-auth's own ``valid`` (what other clients such as google-genai ask)
        calls a token stale from 3m45s before its expiry, so a ``lifetime`` below that makes them
        refresh before every request; their refresh needs a served emulator (a socket)."""
        from google.oauth2 import service_account

        info = self.vertex_key_info(lifetime=lifetime, project=project)
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=["https://www.googleapis.com/auth/cloud-platform"])

    @property
    def faults(self) -> Faults:
        """The random faults injected now (``Faults()`` when none)."""
        return self.app.faults

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def _client_options(self, kw: dict[str, Any]) -> dict[str, Any]:
        # Typical durations shrink with the emulator's speed; in-process, the app is the transport.
        options: dict[str, Any] = {"base_url": self.base_url, "time_scale": self.speed}
        if kw.get("vertexai"):
            # Vertex AI: the emulator's project and location unless others are named, and a new
            # service account of it (real google-auth signing; token requests go to its /token,
            # in-process through the client's own transport) unless an API key (express mode) or
            # other credentials are given.
            from ._vertex import DEFAULT_LOCATION, DEFAULT_PROJECT

            options.update(project=DEFAULT_PROJECT, location=DEFAULT_LOCATION)
            if kw.get("api_key") is None and kw.get("credentials") is None:
                options["credentials"] = self.vertex_credentials(project=kw.get("project") or DEFAULT_PROJECT)
        else:
            options["api_key"] = self.api_key
        if self._server is None:
            import httpx

            app: Any = self.app  # an ASGI app; its own annotations are narrower than httpx's
            options.update(transport=httpx.ASGITransport(app=app), clock=self.clock)
        return {**options, **kw}

    def client(self, **kw: Any) -> Operations:
        from .. import Operations  # lazy: the client package imports nothing from here

        return Operations(**self._client_options(kw))

    def aclient(self, **kw: Any) -> AsyncOperations:
        from .. import AsyncOperations

        return AsyncOperations(**self._client_options(kw))

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:  # never the key
        if self._thread is None:
            return f"<Emulator in-process clock={self.clock!r}>"
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<Emulator {self.base_url} {state}>"


def serve_forever(port: int = 8000, *, speed: float = 1.0, random_seed: int | None = None,
                  api_key: str = "emulator-key", seed: int = 0, faults: Faults | None = None) -> None:
    """Run an emulator in the foreground (Ctrl-C stops it), with `seed` operations made up front
    and ``faults`` injected into its API routes."""
    emu = Emulator.start(port, speed=speed, random_seed=random_seed, api_key=api_key, faults=faults)
    if seed:
        emu.seed(seed)
    # The emulator's key is a local, made-up credential: printing it is how users learn it.
    print(f"Operations API emulator at {emu.base_url}  (api key: {emu.api_key})", flush=True)
    if faults is not None and faults != Faults():
        shown = {k: v for k, v in faults.to_dict().items() if v != getattr(Faults(), k)}
        print("faults: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in shown.items()), flush=True)
    thread = emu._thread
    assert thread is not None  # started above, with a server
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
