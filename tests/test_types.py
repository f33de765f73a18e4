"""Parsing every wire shape into Operation / ListOperationsResponse, and rejecting bad input."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from wiredata import wire

from ops_widgets import ListOperationsResponse, MalformedOperationError, Operation, OperationError, State


def test_running_video_has_no_done_key() -> None:
    op = Operation.from_api_response(wire("veo_running"))
    assert op.name == "models/veo-3.1-generate-preview/operations/vz341u0pmdlc"
    assert op.id == "vz341u0pmdlc"
    assert (op.done, op.running, op.complete, op.succeeded, op.failed, op.cancelled) == (
        False, True, False, False, False, False)
    assert op.state is State.RUNNING
    assert op.metadata == {} and op.response is None and op.error is None
    assert op.progress is None  # Veo reports no progress at all
    assert op.create_time is None and op.video_uris == []
    assert op.raw == wire("veo_running")


def test_done_video_exposes_uris() -> None:
    op = Operation.from_api_response(wire("veo_done"))
    assert op.state is State.SUCCEEDED and op.succeeded and op.complete
    assert op.video_uris == [
        "https://generativelanguage.googleapis.com/v1beta/files/0gc6o1faxwse:download?alt=media"
    ]


def test_safety_filtered_video_succeeds_without_uris() -> None:
    op = Operation.from_api_response({
        "name": "models/veo-3.0-generate-001/operations/f1",
        "done": True,
        "response": {"generateVideoResponse": {"raiMediaFilteredCount": 1,
                                               "raiMediaFilteredReasons": ["celebrity"]}},
    })
    assert op.succeeded and op.video_uris == []  # done without an error: the seed's "succeeded"
    assert op.state is State.FILTERED and op.filtered and op.filter_reasons == ["celebrity"]


def test_vertex_video_uris_come_from_videos_gcs_uri() -> None:
    data = {"name": "projects/p/locations/us-central1/publishers/google/models/veo-3.0/operations/x",
            "done": True,
            "response": {"videos": [{"gcsUri": "gs://b/1.mp4"}, {"bytesBase64Encoded": "AAAA"}]}}
    assert Operation.from_api_response(data, vertex=True).video_uris == ["gs://b/1.mp4"]
    assert Operation.from_api_response(data).video_uris == []


def test_tuning_running_progress_and_done() -> None:
    running = Operation.from_api_response(wire("tuning_running"))
    assert running.id == "bvl8dymw0fhw" and running.running
    assert running.progress == pytest.approx(39.473682)
    done = Operation.from_api_response(wire("tuning_done"))
    assert done.succeeded and done.progress == 100.0
    assert done.response["name"] == "tunedModels/number-generator-model-dzlmi0gswwqb"


def test_failed_and_cancelled_carry_grpc_codes() -> None:
    failed = Operation.from_api_response(wire("failed"))
    assert failed.failed and not failed.cancelled and failed.state is State.FAILED
    assert failed.error == OperationError(13, failed.error.message, [])
    assert "internal error" in failed.error.message
    cancelled = Operation.from_api_response(wire("cancelled"))
    assert cancelled.cancelled and cancelled.failed and cancelled.state is State.CANCELLED
    assert cancelled.id == "c4n5c3l7e8d9x0y1z2a3b4c5"
    # int64 counts arrive as strings: 12 finished of "100"
    assert cancelled.progress == pytest.approx(12.0)
    assert cancelled.create_time == datetime(2026, 8, 21, 8, 0, 3, 118207, tzinfo=timezone.utc)
    assert cancelled.update_time == datetime(2026, 8, 21, 8, 41, 27, 552093, tzinfo=timezone.utc)


def test_list_pages() -> None:
    page1 = ListOperationsResponse.from_api_response(wire("list_page1"))
    assert [o.id for o in page1.operations] == ["k3w9xq7mv2rt8yzp4c6d1hn0", "p0r7t2m5n8b1v4c6x9z3q2w1"]
    assert page1.has_more_pages and page1.next_page_token.startswith("CiRi")
    assert page1.operations[0].progress == pytest.approx(40.0)  # (38 + 2) / 100
    assert page1.operations[1].progress == 0.0
    page2 = ListOperationsResponse.from_api_response(wire("list_page2"))
    assert not page2.has_more_pages and page2.next_page_token is None
    assert [o.state for o in page2.operations] == [State.SUCCEEDED, State.CANCELLED]
    assert page2.operations[0].progress == 100.0


@pytest.mark.parametrize("body", [{}, {"operations": [], "nextPageToken": ""}])
def test_empty_list_and_empty_token(body: dict) -> None:
    page = ListOperationsResponse.from_api_response(body)
    assert page.operations == [] and page.next_page_token is None and not page.has_more_pages
    assert page.unreachable == []


def test_unreachable_is_kept() -> None:
    page = ListOperationsResponse.from_api_response({"unreachable": ["locations/x"]})
    assert page.unreachable == ["locations/x"]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"progress": 75.5}, 75.5),
        ({"progressPercent": "42"}, 42.0),
        ({"completionPercentage": 10}, 10.0),
        ({"completedPercent": 250}, 100.0),  # clamped
        ({"progress": -3}, 0.0),
        ({"completedSteps": 3, "totalSteps": 12}, 25.0),
        ({"completedSteps": "3", "totalSteps": "0"}, None),  # no division by zero
        ({"totalSteps": 84}, 0.0),  # proto3 omits completedSteps while it is 0
        ({"progressPercentage": 64}, 64.0),
        ({"batchStats": {"requestCount": "4", "successfulRequestCount": "1", "failedRequestCount": "1"}}, 50.0),
        ({"batchStats": {"requestCount": "0"}}, None),
        ({"progress": True}, None),  # a bool is not a number
        ({"progress": "n/a", "progressPercent": 5}, 5.0),  # unreadable: try the next name
        ({"progress": 10, "completedPercent": 90}, 10.0),  # order: the seed's names first
        ({"state": "RUNNING"}, None),
    ],
)
def test_progress_sources(metadata: dict, expected: float | None) -> None:
    op = Operation.from_api_response({"name": "operations/p", "metadata": metadata})
    assert op.progress == (None if expected is None else pytest.approx(expected))


def test_vertex_generic_metadata_times() -> None:
    op = Operation.from_api_response({
        "name": "projects/1/locations/us-central1/ragCorpora/2/operations/3",
        "metadata": {"genericMetadata": {"createTime": "2026-01-02T03:04:05.123456789Z",
                                         "updateTime": "2026-01-02T05:04:05+02:00"},
                     "progressPercentage": 30},
    }, vertex=True)
    assert op.create_time == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    assert op.update_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert op.progress == 30.0


def test_unparseable_time_is_none() -> None:
    op = Operation.from_api_response({"name": "operations/t", "metadata": {"createTime": "yesterday"}})
    assert op.create_time is None


def test_repr_is_one_short_line() -> None:
    r = repr(Operation.from_api_response(wire("tuning_running")))
    assert "\n" not in r and "running" in r and "39%" in r and "bvl8dymw0fhw" in r
    assert "snapshots" not in r


def test_operation_is_frozen() -> None:
    op = Operation.from_api_response(wire("veo_running"))
    with pytest.raises(AttributeError):
        op.done = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([1, 2], "JSON object"),
        ("operations/x", "JSON object"),
        (None, "JSON object"),
        ({}, "'name'"),
        ({"name": 5}, "'name'"),
        ({"name": "operations/x", "done": "true"}, "'done'"),
        ({"name": "operations/x", "done": True, "error": "boom"}, "'error'"),
        ({"name": "operations/x", "done": True, "error": {"code": "13"}}, "'code'"),
        ({"name": "operations/x", "metadata": [1]}, "'metadata'"),
        ({"name": "operations/x", "done": True, "response": "ok"}, "'response'"),
    ],
)
def test_malformed_operations_raise_typed_errors(data: object, says: str) -> None:
    with pytest.raises(MalformedOperationError, match=says) as info:
        Operation.from_api_response(data)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("data", [[], {"operations": {}}, {"nextPageToken": 3}, {"operations": [{"done": True}]}])
def test_malformed_lists_raise_typed_errors(data: object) -> None:
    with pytest.raises(MalformedOperationError):
        ListOperationsResponse.from_api_response(data)


@pytest.mark.parametrize(
    ("name", "metadata", "kind"),
    [
        ("models/veo-3.1-generate-preview/operations/a", {}, "video"),
        ("projects/p/locations/l/publishers/google/models/veo-3.0-generate-001/operations/a", {}, "video"),
        ("tunedModels/t/operations/a", {}, "tuning"),
        ("projects/p/locations/l/tuningJobs/1/operations/2",
         {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.CreateTuningJobOperationMetadata"}, "tuning"),
        ("batches/b", {}, "batch"),
        ("batches/b", {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"},
         "batch"),
        ("batches/b", {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentBatch"},
         "batch"),
        ("fileSearchStores/s/operations/a", {}, "import"),
        ("projects/1/locations/l/ragCorpora/2/operations/3",
         {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.ImportRagFilesOperationMetadata"}, "import"),
        ("operations/x", {}, "other"),
    ],
)
def test_kind(name: str, metadata: dict, kind: str) -> None:
    assert Operation.from_api_response({"name": name, "metadata": metadata}).kind == kind


def test_null_fields_read_as_their_defaults() -> None:
    # proto3 JSON reads null as the default; the seed's .NET `bool? Done` reads a null done as false.
    op = Operation.from_api_response({"name": "operations/n", "done": None, "metadata": None,
                                      "response": None, "error": None})
    assert not op.done and op.state is State.RUNNING and op.metadata == {} and op.error is None
    failed = Operation.from_api_response({"name": "operations/f", "done": True,
                                          "error": {"code": 13, "message": None, "details": None}})
    assert failed.error == OperationError(13, "", [])
    page = ListOperationsResponse.from_api_response({"operations": None, "unreachable": None, "nextPageToken": None})
    assert page.operations == [] and page.unreachable == [] and page.next_page_token is None


@pytest.mark.parametrize("metadata", [
    {"progress": 10**400},
    {"progressPercent": "1" * 400},
    {"completedSteps": 10**400, "totalSteps": 3},
    {"completedSteps": 3, "totalSteps": 10**400},
    {"batchStats": {"requestCount": 10**400, "successfulRequestCount": 1}},
    {"progress": "nan", "completedPercent": "-inf"},
])
def test_numbers_no_float_holds_give_no_progress(metadata: dict) -> None:
    assert Operation.from_api_response({"name": "operations/big", "metadata": metadata}).progress is None


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"progress": 1e308}, 100.0),  # finite, clamped
    ({"completedSteps": 1e308, "totalSteps": 1e-300}, 100.0),  # the ratio overflows to inf: clamped
    ({"progress": 10**300}, 100.0),  # 300 digits still fit a float
])
def test_big_but_finite_numbers_are_clamped(metadata: dict, expected: float) -> None:
    assert Operation.from_api_response({"name": "operations/big", "metadata": metadata}).progress == expected


@pytest.mark.parametrize("value", [
    "2024-01-01T00:00:00+99:00", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+05:60",
    "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z",
    "0000-01-01T00:00:00Z", "2024-01-01T00:00:00", "2024-01-01", "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",
    "", 20240101, None, ["2024-01-01T00:00:00Z"],
])
def test_times_that_are_not_rfc3339_are_none(value: object) -> None:
    op = Operation.from_api_response({"name": "operations/t", "metadata": {"createTime": value, "updateTime": value}})
    assert op.create_time is None and op.update_time is None


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-01-01T00:00:00+23:59", datetime(2023, 12, 31, 0, 1, tzinfo=timezone.utc)),
    ("2024-01-01t00:00:00z", datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ("2024-01-01 00:00:00.5-01:00", datetime(2024, 1, 1, 1, 0, 0, 500000, tzinfo=timezone.utc)),
    ("2024-01-01T00:00:00.123456789123Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)),
    (" 2024-02-29T12:00:00Z ", datetime(2024, 2, 29, 12, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
])
def test_rfc3339_times_read(value: str, expected: datetime) -> None:
    t = Operation.from_api_response({"name": "operations/t", "metadata": {"createTime": value}}).create_time
    assert t == expected and t is not None and t.tzinfo is not None


def test_error_code_must_be_an_int32() -> None:
    with pytest.raises(MalformedOperationError, match="int32"):
        Operation.from_api_response({"name": "operations/x", "done": True, "error": {"code": 2**31}})
    assert Operation.from_api_response(
        {"name": "operations/x", "done": True, "error": {"code": -(2**31)}}).error.code == -(2**31)


def test_messages_do_not_echo_large_values() -> None:
    with pytest.raises(MalformedOperationError) as info:
        Operation.from_api_response({"name": "n" * 5000, "done": 10**400})
    assert len(str(info.value)) < 200 and "too large" in str(info.value)


@pytest.mark.parametrize("type_", [None, 7, ["Batch"], {"a": 1}])
def test_kind_ignores_a_metadata_type_that_is_not_text(type_: object) -> None:
    assert Operation.from_api_response({"name": "operations/k", "metadata": {"@type": type_}}).kind == "other"


def test_run_seconds_is_the_one_rule_for_how_long_it_ran() -> None:
    times = {"createTime": "2026-01-01T00:00:00Z", "updateTime": "2026-01-01T00:02:00Z"}
    start = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    done = Operation.from_api_response({"name": "batches/b", "done": True, "metadata": times})
    running = Operation.from_api_response({"name": "batches/b", "metadata": times})
    assert done.run_seconds(start + 999) == 120.0  # done: updateTime - createTime, not now
    assert running.run_seconds(start + 30) == 30.0  # running: so far
    assert running.run_seconds(start - 5) == 0.0  # a server clock ahead of ours: never negative
    assert Operation.from_api_response({"name": "batches/b"}).run_seconds(start) is None
    no_update = {"createTime": times["createTime"]}
    assert Operation.from_api_response({"name": "batches/b", "done": True, "metadata": no_update}).run_seconds(
        start) is None
