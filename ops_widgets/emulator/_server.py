"""Emulator: an EmulatorApp served by uvicorn on 127.0.0.1 from a daemon thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ._app import EmulatorApp

if TYPE_CHECKING:
    from .. import AsyncOperations, Operations


class Emulator:
    """A running emulator. Use `Emulator.start()`; stop it with `stop()` or a `with` block."""

    def __init__(self, app: EmulatorApp, server: uvicorn.Server, thread: threading.Thread, port: int,
                 speed: float = 1.0) -> None:
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_key = app.api_key
        self.speed = speed
        self._server, self._thread = server, thread
        app.base_url = self.base_url
        # The admin methods are the app's own bound methods: one implementation, same signatures.
        self.seed = app.seed
        self.create = app.create
        self.complete = app.complete
        self.fail_next = app.fail_next
        self.fail_for = app.fail_for
        self.clear_faults = app.clear_faults
        self.stats = app.stats
        self.reset_stats = app.reset_stats
        self.get_operation = app.get_operation

    @classmethod
    def start(cls, port: int = 0, *, speed: float = 1.0, random_seed: int | None = None,
              api_key: str = "emulator-key", latency: float | tuple[float, float] = 0.0,
              clock: Callable[[], float] | None = None) -> Emulator:
        """Serve a new EmulatorApp on 127.0.0.1:`port` (0 = any free port) and wait until it listens.

        ``clock`` (epoch seconds) replaces the wall clock, e.g. ``lambda: frozen`` so that nothing
        finishes by itself during a test.
        """
        app = EmulatorApp(speed=speed, random_seed=random_seed, api_key=api_key, latency=latency,
                          clock=clock or time.time)
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

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def client(self, **kw: Any) -> Operations:
        from .. import Operations  # lazy: the client package imports nothing from here

        ops = Operations(api_key=self.api_key, base_url=self.base_url, **kw)
        ops._async._typical_scale = 1.0 / self.speed  # typical durations shrink with the clock
        return ops

    def aclient(self, **kw: Any) -> AsyncOperations:
        from .. import AsyncOperations

        ops = AsyncOperations(api_key=self.api_key, base_url=self.base_url, **kw)
        ops._typical_scale = 1.0 / self.speed
        return ops

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:  # never the key
        state = "running" if self._thread.is_alive() else "stopped"
        return f"<Emulator {self.base_url} {state}>"


def serve_forever(port: int = 8000, *, speed: float = 1.0, random_seed: int | None = None,
                  api_key: str = "emulator-key", seed: int = 0) -> None:
    """Run an emulator in the foreground (Ctrl-C stops it), with `seed` operations made up front."""
    emu = Emulator.start(port, speed=speed, random_seed=random_seed, api_key=api_key)
    if seed:
        emu.seed(seed)
    # The emulator's key is a local, made-up credential: printing it is how users learn it.
    print(f"Operations API emulator at {emu.base_url}  (api key: {emu.api_key})", flush=True)
    try:
        while emu._thread.is_alive():
            emu._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
