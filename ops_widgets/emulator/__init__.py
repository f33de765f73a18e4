"""A local emulator of the Gemini API's Operations surface: a raw ASGI app, served by uvicorn.

    with Emulator.start(speed=60, random_seed=1) as emu:
        emu.seed(1000)
        ops = emu.client()          # ops_widgets.Operations pointed at emu.base_url

Or in-process, with no socket: ``httpx.AsyncClient(transport=httpx.ASGITransport(app=EmulatorApp()))``.
"""

from ._app import EmulatorApp
from ._server import Emulator, serve_forever

__all__ = ["Emulator", "EmulatorApp", "serve_forever"]
