"""Vertex AI bodies read into Operation: jobs (tuningJobs, batchPredictionJobs) by their JOB_STATE_*,
with every state of Google's JobState enum (from the discovery document) in the table, and
publisher-model video results (response.videos[], raiMediaFilteredCount)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import pytest
from discovery import discovery

from ops_widgets import ListOperationsResponse, MalformedOperationError, Operation, State
from ops_widgets._types import JOB_STATES

LOC = "projects/my-project/locations/us-central1"
TUNING = f"{LOC}/tuningJobs/4567"
BATCH = f"{LOC}/batchPredictionJobs/8910"

# (state, done, State, partial, cancelling): the mapping, one row per JobState value.
EXPECTED: dict[str, tuple[bool, State, bool, bool]] = {
    "JOB_STATE_UNSPECIFIED": (False, State.RUNNING, False, False),  # not a state: not done
    "JOB_STATE_QUEUED": (False, State.RUNNING, False, False),
    "JOB_STATE_PENDING": (False, State.RUNNING, False, False),
    "JOB_STATE_RUNNING": (False, State.RUNNING, False, False),
    "JOB_STATE_PAUSED": (False, State.RUNNING, False, False),
    "JOB_STATE_UPDATING": (False, State.RUNNING, False, False),
    "JOB_STATE_CANCELLING": (False, State.RUNNING, False, True),
    "JOB_STATE_SUCCEEDED": (True, State.SUCCEEDED, False, False),
    "JOB_STATE_PARTIALLY_SUCCEEDED": (True, State.SUCCEEDED, True, False),
    "JOB_STATE_FAILED": (True, State.FAILED, False, False),
    "JOB_STATE_EXPIRED": (True, State.FAILED, False, False),
    "JOB_STATE_CANCELLED": (True, State.CANCELLED, False, False),
}


def google_job_states() -> list[str]:
    """JobState's values, as the discovery documents give them (TuningJob.state and
    BatchPredictionJob.state), v1 and v1beta1 alike."""
    found: set[tuple[str, ...]] = set()
    for version in ("v1", "v1beta1"):
        prefix = "GoogleCloudAiplatform" + version.capitalize()
        schemas = discovery(version)["schemas"]
        for job in ("TuningJob", "BatchPredictionJob"):
            found.add(tuple(schemas[prefix + job]["properties"]["state"]["enum"]))
    assert len(found) == 1, "the job kinds or versions disagree on JobState"
    return list(found.pop())


def test_the_table_has_every_google_job_state() -> None:
    states = google_job_states()
    assert set(EXPECTED) == set(states), "a JobState value was added or removed: map it"
    assert set(JOB_STATES) == set(states) - {"JOB_STATE_UNSPECIFIED"}


@pytest.mark.parametrize("state", google_job_states())
@pytest.mark.parametrize("job", [TUNING, BATCH])
def test_each_job_state(state: str, job: str) -> None:
    done, expected, partial, cancelling = EXPECTED[state]
    op = Operation.from_api_response({"name": job, "state": state, "createTime": "2026-01-02T03:04:05.000001Z",
                                      "updateTime": "2026-01-02T04:04:05Z"}, vertex=True)
    assert (op.done, op.state, op.partial, op.cancelling) == (done, expected, partial, cancelling)
    assert op.job_state == state and op.vertex
    assert op.kind == ("tuning" if "tuningJobs" in job else "batch")
    assert op.succeeded == (expected is State.SUCCEEDED)
    assert op.failed == (expected in (State.FAILED, State.CANCELLED))
    assert op.cancelled == (expected is State.CANCELLED)
    assert (op.error is not None) == op.failed
    if op.cancelled:
        assert op.error is not None and op.error.code == 1
    assert op.create_time == datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=timezone.utc)
    if done:
        assert op.run_seconds(0) == pytest.approx(3600.0 - 0.000001)


def test_a_job_without_a_state_is_not_done() -> None:
    op = Operation.from_api_response({"name": TUNING}, vertex=True)
    assert not op.done and op.state is State.RUNNING and op.job_state is None


def test_the_jobs_error_is_the_operations() -> None:
    body: dict[str, Any] = {"name": TUNING, "state": "JOB_STATE_FAILED",
                            "error": {"code": 3, "message": "Dataset is too small.", "details": [{"x": 1}]}}
    op = Operation.from_api_response(body, vertex=True)
    assert op.error is not None and (op.error.code, op.error.message) == (3, "Dataset is too small.")
    # Cancelled with an error that does not say CANCELLED: the state wins, the message stays.
    op = Operation.from_api_response({"name": TUNING, "state": "JOB_STATE_CANCELLED",
                                      "error": {"code": 13, "message": "Stopped."}}, vertex=True)
    assert op.cancelled and op.error is not None and op.error.message == "Stopped."
    op = Operation.from_api_response({"name": TUNING, "state": "JOB_STATE_EXPIRED"}, vertex=True)
    assert op.error is not None and op.error.code_name == "DEADLINE_EXCEEDED"


def test_a_succeeded_tuning_job_answers_its_tuned_model() -> None:
    tuned = {"model": f"{LOC}/models/123@1", "endpoint": f"{LOC}/endpoints/456"}
    op = Operation.from_api_response({"name": TUNING, "state": "JOB_STATE_SUCCEEDED", "tunedModel": tuned},
                                     vertex=True)
    assert op.response is not None and op.response["tunedModel"] == tuned


@pytest.mark.parametrize(("stats", "progress"), [
    ({"successfulCount": "30", "failedCount": "10", "incompleteCount": "60"}, 40.0),
    ({"successfulCount": "30", "incompleteCount": "0"}, 100.0),
    ({"successfulCount": "30", "failedCount": "10"}, None),  # no total known
    ({"successfulCount": "30", "incompleteCount": "-1"}, None),  # -1: the total is unknown
    ({"incompleteCount": "0"}, None),  # nothing at all
])
def test_batch_progress_from_completion_stats(stats: dict[str, str], progress: float | None) -> None:
    op = Operation.from_api_response({"name": BATCH, "state": "JOB_STATE_RUNNING", "completionStats": stats},
                                     vertex=True)
    assert op.progress == progress


def test_an_operation_under_a_tuning_job_is_an_operation() -> None:
    op = Operation.from_api_response({"name": f"{TUNING}/operations/77", "done": True, "response": {}}, vertex=True)
    assert op.job_state is None and op.succeeded and op.kind == "tuning"


def test_vertex_video_results() -> None:
    """fetchPredictOperation's answer, read as the seed's FromApiResponse(json, isVertexAI=true)."""
    veo = f"{LOC}/publishers/google/models/veo-3.0-generate-001/operations/a1b2"
    clip = b"\x00\x00\x00\x18ftypmp42"
    done = {"name": veo, "done": True, "response": {
        "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
        "videos": [{"gcsUri": "gs://bucket/out/sample_0.mp4", "mimeType": "video/mp4"},
                   {"bytesBase64Encoded": base64.b64encode(clip).decode(), "mimeType": "video/mp4"}]}}
    op = Operation.from_api_response(done, vertex=True)
    assert op.kind == "video" and op.state is State.SUCCEEDED
    assert op.video_uris == ["gs://bucket/out/sample_0.mp4"] and op.video_data == [clip]
    filtered = {"name": veo, "done": True, "response": {"raiMediaFilteredCount": 1,
                                                         "raiMediaFilteredReasons": ["withheld"]}}
    op = Operation.from_api_response(filtered, vertex=True)
    assert op.state is State.FILTERED and op.filter_reasons == ["withheld"] and op.video_data == []
    assert Operation.from_api_response({"name": veo}, vertex=True).state is State.RUNNING


@pytest.mark.parametrize("collection", ["tuningJobs", "batchPredictionJobs"])
def test_a_job_listing_reads_as_a_page_of_operations(collection: str) -> None:
    jobs = [{"name": f"{LOC}/{collection}/{i}", "state": "JOB_STATE_RUNNING"} for i in range(3)]
    page = ListOperationsResponse.from_api_response({collection: jobs, "nextPageToken": "t"}, vertex=True)
    assert [op.name for op in page.operations] == [j["name"] for j in jobs] and page.has_more_pages
    assert all(op.job and op.state is State.RUNNING for op in page.operations)
    with pytest.raises(MalformedOperationError, match=collection):
        ListOperationsResponse.from_api_response({collection: {"not": "a list"}}, vertex=True)
