"""The google-genai SDK, unmodified, polls the emulator: proof its wire shapes are the real ones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ops_widgets.emulator import Emulator

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(speed=100, random_seed=2) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu: Emulator) -> genai.Client:
    return genai.Client(api_key=emu.api_key,
                        http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))


def poll(client: genai.Client, name: str) -> types.GenerateVideosOperation:
    op = client.operations.get(types.GenerateVideosOperation(name=name))
    deadline = time.monotonic() + 30
    while not op.done:
        assert time.monotonic() < deadline, "the operation never finished"
        time.sleep(0.05)
        op = client.operations.get(op)
    return op


def test_sdk_polls_video_operation_to_a_fetchable_uri(emu: Emulator, client: genai.Client) -> None:
    r = httpx.post(f"{emu.base_url}/v1beta/models/veo-3.1-generate-preview:predictLongRunning",
                   headers={"x-goog-api-key": emu.api_key},
                   json={"instances": [{"prompt": "a lighthouse at dusk"}], "parameters": {"durationSeconds": 8}})
    name = r.json()["name"]
    first = client.operations.get(types.GenerateVideosOperation(name=name))
    assert first.name == name and not first.done  # running: the wire has no "done" key at all
    emu.complete(name)
    op = poll(client, name)
    assert op.error is None and op.response is not None and op.response.generated_videos
    uri = op.response.generated_videos[0].video.uri
    assert uri is not None and uri.startswith(f"{emu.base_url}/v1beta/files/")
    assert op.result == op.response
    video = httpx.get(uri, headers={"x-goog-api-key": emu.api_key})
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert emu.stats()["by_name"][name] >= 2


def test_sdk_sees_safety_filtered_video(emu: Emulator, client: genai.Client) -> None:
    name = emu.create("video", duration=0, outcome="filtered")
    op = poll(client, name)
    assert op.error is None and op.response is not None
    assert op.response.rai_media_filtered_count == 1 and op.response.rai_media_filtered_reasons
    assert not op.response.generated_videos


def test_sdk_sees_failure_as_grpc_error(emu: Emulator, client: genai.Client) -> None:
    name = emu.create("video", duration=0, outcome="failure", error_message="boom")
    op = poll(client, name)
    assert op.response is None and op.error == {"code": 13, "message": "boom"}


def test_sdk_surfaces_404(emu: Emulator, client: genai.Client) -> None:
    from google.genai import errors

    with pytest.raises(errors.ClientError) as info:
        client.operations.get(types.GenerateVideosOperation(name="models/veo-3.1-generate-preview/operations/gone"))
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
