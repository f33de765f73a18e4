"""A local emulator of the Gemini API's Operations surface: a raw ASGI app, served by uvicorn.

    with Emulator.start(speed=60, random_seed=1) as emu:
        emu.seed(1000)
        ops = emu.client()          # ops_widgets.Operations pointed at emu.base_url

A bad day, reproducibly: ``Emulator.start(faults=Faults.mix(0.2, seed=1))`` (5xx, HTML 502 pages,
dropped connections, truncated bodies), ``emu.set_faults(Faults(storm_requests=100))`` (a 429 storm).

Or in-process, with no socket: ``httpx.AsyncClient(transport=httpx.ASGITransport(app=EmulatorApp()))``.
"""

from ._app import EmulatorApp
from ._faults import Faults
from ._server import Emulator, serve_forever

__all__ = ["Emulator", "EmulatorApp", "Faults", "serve_forever"]
