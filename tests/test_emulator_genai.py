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
def client(emu: Emulator) -> Iterator[genai.Client]:
    sdk = genai.Client(api_key=emu.api_key,
                       http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))
    yield sdk
    sdk.close()


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


def test_sdk_imports_a_file_and_reads_the_document_name(emu: Emulator, client: genai.Client) -> None:
    op = client.file_search_stores.import_file(file_search_store_name="fileSearchStores/sdk-store",
                                               file_name="files/sdk-file")
    assert op.name is not None and op.name.startswith("fileSearchStores/sdk-store/operations/")
    assert not op.done and op.metadata is None  # imports report no progress at all
    emu.complete(op.name)
    done = client.operations.get(op)
    assert done.done and done.error is None and done.metadata is None and done.response is not None
    assert done.response.parent == "fileSearchStores/sdk-store"
    document = done.response.document_name
    assert document is not None and document.startswith("fileSearchStores/sdk-store/documents/")


def test_sdk_polls_an_upload_operation(emu: Emulator, client: genai.Client) -> None:
    name = emu.create("upload", duration=0, parent="fileSearchStores/sdk-uploads")
    op = client.operations.get(types.UploadToFileSearchStoreOperation(name=name))
    assert op.done and op.metadata is None and op.response is not None
    assert op.response.document_name and op.response.document_name.startswith("fileSearchStores/sdk-uploads/documents/")


def test_sdk_batches_create_get_cancel_list_delete(emu: Emulator, client: genai.Client) -> None:
    job = client.batches.create(model="gemini-2.5-flash", src=[{"contents": [{"parts": [{"text": "hi"}]}]}],
                                config={"display_name": "sdk batch"})
    assert job.name is not None and job.name.startswith("batches/")
    assert job.model == "models/gemini-2.5-flash" and job.display_name == "sdk batch"
    assert job.state == types.JobState.JOB_STATE_PENDING and job.create_time is not None
    emu.complete(job.name)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_SUCCEEDED

    running = emu.create("batch", duration=3600)
    client.batches.cancel(name=running)
    assert client.batches.get(name=running).state == types.JobState.JOB_STATE_CANCELLED
    assert {job.name, running} <= {b.name for b in client.batches.list(config={"page_size": 1000})}
    client.batches.delete(name=running)
    assert running not in {b.name for b in client.batches.list(config={"page_size": 1000})}


def test_sdk_lists_models_with_their_methods(client: genai.Client) -> None:
    models = {m.name: m for m in client.models.list()}
    veo = {name for name, m in models.items() if "predictLongRunning" in (m.supported_actions or [])}
    assert veo == {"models/veo-3.1-generate-preview", "models/veo-3.0-generate-001", "models/veo-3.0-fast-generate-001"}
    assert "batchGenerateContent" in (models["models/gemini-2.5-flash"].supported_actions or [])


def test_sdk_uploads_to_a_file_search_store_and_polls_it(emu: Emulator, client: genai.Client) -> None:
    """The SDK's resumable upload (start, then upload+finalize) answers the upload operation,
    which carries no metadata and ends with the document's name."""
    import io

    op = client.file_search_stores.upload_to_file_search_store(
        file=io.BytesIO(b"a few words to index"), file_search_store_name="fileSearchStores/sdk-upload",
        config={"mime_type": "text/plain", "display_name": "notes.txt"})
    assert op.name and op.name.startswith("fileSearchStores/sdk-upload/upload/operations/")
    assert not op.done
    emu.complete(op.name)
    done = client.operations.get(op)
    assert done.done and done.response is not None
    assert done.response.document_name and done.response.document_name.startswith("fileSearchStores/sdk-upload/")
    assert emu.stats()["by_route"]["POST /upload/v1beta/fileSearchStores/{store}:uploadToFileSearchStore"] >= 2
