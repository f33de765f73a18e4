"""The google-genai SDK, unmodified, in Vertex AI mode against the emulator: real google-auth
service-account credentials (token_uri = the emulator's /token), Veo through predictLongRunning and
fetchPredictOperation, tuning jobs and batch prediction jobs: proof the Vertex wire shapes are the
ones the SDK reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops_widgets import Operation, State
from ops_widgets.emulator import Emulator

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402

PROJECT, LOCATION = "demo-project", "us-central1"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator.start(random_seed=8) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Iterator[genai.Client]:
    # Tokens shorter than google-auth's refresh margin: it refreshes (signs a new JWT) per request.
    sdk = genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                       credentials=emu.vertex_credentials(lifetime=60),
                       http_options=types.HttpOptions(base_url=emu.base_url))
    yield sdk
    sdk.close()


def test_generate_videos_to_a_gcs_uri(emu: Emulator, client: genai.Client) -> None:
    tokens = emu.stats()["by_route"].get("POST /token", 0)
    op = client.models.generate_videos(model="veo-3.0-generate-001",
                                       source=types.GenerateVideosSource(prompt="a lighthouse at dusk"),
                                       config=types.GenerateVideosConfig(output_gcs_uri="gs://my-bucket/veo",
                                                                         number_of_videos=2))
    assert op.name is not None and not op.done
    assert op.name.startswith(f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/veo-3.0-generate-001/")
    op = client.operations.get(op)
    assert not op.done
    emu.complete(op.name)
    op = client.operations.get(op)
    assert op.done and op.error is None and op.response is not None and op.response.generated_videos
    uris = [v.video.uri for v in op.response.generated_videos if v.video is not None]
    assert len(uris) == 2 and all(u is not None and u.startswith("gs://my-bucket/veo/") for u in uris)
    # Our reading of the same operation agrees with the SDK's.
    ours = Operation.from_api_response(emu.get_operation(op.name), vertex=True)
    assert ours.video_uris == uris and ours.state is State.SUCCEEDED
    routes = emu.stats()["by_route"]
    assert routes["POST /v1beta1/{model}:fetchPredictOperation"] >= 2 and "GET /v1beta1/{name}" not in routes
    assert routes["POST /token"] - tokens >= 3
    assert emu.stats()["by_name"][op.name] >= 2  # fetchPredictOperation counts as a poll of the operation


def test_generate_videos_inline(emu: Emulator, client: genai.Client) -> None:
    op = client.models.generate_videos(model="veo-3.0-fast-generate-001",
                                       source=types.GenerateVideosSource(prompt="a cat surfing"))
    assert op.name is not None
    emu.complete(op.name)
    op = client.operations.get(op)
    assert op.response is not None and op.response.generated_videos
    video = op.response.generated_videos[0].video
    assert video is not None and video.video_bytes is not None and video.video_bytes[4:8] == b"ftyp"


def test_filtered_and_failed_videos(emu: Emulator, client: genai.Client) -> None:
    filtered = emu.create("video", service="vertex", project=PROJECT, outcome="filtered", duration=0)
    op = client.operations.get(types.GenerateVideosOperation(name=filtered))
    assert op.done and op.error is None and op.response is not None
    assert op.response.rai_media_filtered_count == 1 and op.response.rai_media_filtered_reasons
    failed = emu.create("video", service="vertex", project=PROJECT, outcome="failure", duration=0,
                        error_message="boom")
    op = client.operations.get(types.GenerateVideosOperation(name=failed))
    assert op.done and op.error == {"code": 13, "message": "boom"}


def test_an_unknown_operation_is_a_404(client: genai.Client) -> None:
    name = f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/veo-3.0-generate-001/operations/gone"
    with pytest.raises(errors.ClientError) as info:
        client.operations.get(types.GenerateVideosOperation(name=name))
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


@pytest.mark.filterwarnings("ignore::google.genai._common.ExperimentalWarning")  # the SDK's tuning is "experimental"
def test_tuning_jobs(emu: Emulator, client: genai.Client) -> None:
    job = client.tunings.tune(base_model="gemini-2.5-flash",
                              training_dataset=types.TuningDataset(gcs_uri="gs://b/train.jsonl"),
                              config=types.CreateTuningJobConfig(tuned_model_display_name="support bot"))
    assert job.name is not None and job.state == types.JobState.JOB_STATE_PENDING and not job.has_ended
    emu.complete(job.name)
    job = client.tunings.get(name=job.name)
    assert job.has_succeeded and job.tuned_model is not None and job.tuned_model.model is not None
    assert job.name in [j.name for j in client.tunings.list()]


def test_batch_prediction_jobs(emu: Emulator, client: genai.Client) -> None:
    batch = client.batches.create(model="gemini-2.5-flash", src="gs://b/in.jsonl",
                                  config=types.CreateBatchJobConfig(dest="gs://b/out"))
    assert batch.name is not None and batch.state == types.JobState.JOB_STATE_PENDING
    client.batches.cancel(name=batch.name)
    assert client.batches.get(name=batch.name).state == types.JobState.JOB_STATE_CANCELLING
    assert batch.name in [b.name for b in client.batches.list()]
    done = emu.create("batch", service="vertex", project=PROJECT, duration=10)
    emu.complete(done)
    assert client.batches.get(name=done).state == types.JobState.JOB_STATE_SUCCEEDED
    client.batches.delete(name=done)
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=done)
    assert info.value.code == 404


def test_the_sdks_filtered_listings(emu: Emulator, client: genai.Client) -> None:
    """The SDK's documented way to list jobs by state (a filter) reads only those jobs; a filter
    the emulator does not evaluate is the SDK's ClientError 400, not a silently unfiltered list."""
    ended = emu.create("tuning", service="vertex", project=PROJECT, duration=100)
    emu.complete(ended)
    running = emu.create("tuning", service="vertex", project=PROJECT, duration=10**6)
    succeeded = [j.name for j in client.tunings.list(config=types.ListTuningJobsConfig(
        filter='state="JOB_STATE_SUCCEEDED"'))]
    assert ended in succeeded and running not in succeeded
    with pytest.raises(errors.ClientError) as info:
        list(client.batches.list(config=types.ListBatchJobsConfig(filter='displayName:"nightly*"')))
    assert info.value.code == 400
