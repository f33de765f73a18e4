"""Arbitrary JSON (and bytes) into the parsers: typed errors or success, never a crash.

Everything that reads server data (ApiError.from_response, Operation/ListOperationsResponse
.from_api_response, then every property, repr and the DataFrame) must survive any value the
server could send: null where an object belongs, 400-digit numbers, odd timestamps.
Derandomized, so a run never flakes: the same examples every time.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ops_widgets import ApiError, ListOperationsResponse, Operation, OpsError, State, to_dataframe
from ops_widgets._frame import FrameBuilder
from ops_widgets._types import read_list_page

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Numbers JSON can carry that a float cannot: 400 digits overflow float() (float range ends near 1e308).
huge_ints = st.integers(min_value=300, max_value=400).flatmap(
    lambda digits: st.sampled_from([10**digits, -(10**digits), 10**digits - 1])
)
numbers = st.integers() | huge_ints | st.floats(allow_nan=False, allow_infinity=False)
numeric_strings = st.sampled_from(["1" * 400, "-1e400", "1e400", "nan", "inf", " 42 ", "0x10", "", "12.5", "-0"])
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20) | numeric_strings
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# One opaque branch, so that `x | anything` stays a two-way choice instead of flattening into a
# one_of where x is one branch among a dozen.
anything = st.deferred(lambda: json_values | scalars)

# Timestamps near the edges of what parses: bad month, offsets of 24h or more, no zone, far years.
odd_times = st.sampled_from([
    "2024-13-01T00:00:00Z", "2024-01-01T00:00:00+99:00", "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00+23:59", "2024-01-01T00:00:00+05:60", "2024-01-01T00:00:00",
    "2024-02-30T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
    "1600-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "2024-01-01T00:00:60Z", "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00.123456789123Z", "\uff12\uff10\uff12\uff14-01-01T00:00:00Z", " 2024-01-01T00:00:00Z ",
    "2024-01-01t00:00:00z", "2024-01-01 00:00:00Z", "2026-08-21T08:00:03.118207Z", "2026-01-02T05:04:05+02:00",
])
# Then RFC 3339 shapes with every part drawn a little beyond its range, so many read and many do not.
drawn_times = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.sampled_from("Tt "),
    st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
    st.none().map(lambda _: "") | st.text("0123456789", min_size=1, max_size=12).map(".{}".format),
    st.sampled_from(["Z", "z", ""]) | st.builds("{}{:02d}:{:02d}".format, st.sampled_from("+-"),
                                                st.integers(0, 99), st.integers(0, 99)),
)
times = drawn_times | odd_times | anything
progress_keys = ["progress", "progressPercent", "completionPercentage", "completedPercent",
                 "progressPercentage", "completedSteps", "totalSteps"]
metadata = st.fixed_dictionaries({}, optional={
    "@type": st.sampled_from(["type.googleapis.com/x.Batch", "x.TuningMetadata", "x.ImportFiles"]) | anything,
    "createTime": times, "updateTime": times, "model": anything,
    **dict.fromkeys(progress_keys, anything),
    "batchStats": st.fixed_dictionaries({}, optional={
        "requestCount": anything, "successfulRequestCount": anything, "failedRequestCount": anything,
    }) | anything,
    "genericMetadata": st.fixed_dictionaries({}, optional={"createTime": times, "updateTime": times}) | anything,
})
op_error = st.fixed_dictionaries({}, optional={"code": anything, "message": anything, "details": anything})
response = st.fixed_dictionaries({}, optional={
    "videos": st.lists(st.fixed_dictionaries({}, optional={"gcsUri": anything}) | anything, max_size=3) | anything,
    "generateVideoResponse": st.fixed_dictionaries({}, optional={
        "generatedSamples": st.lists(st.fixed_dictionaries({}, optional={
            "video": st.fixed_dictionaries({}, optional={"uri": anything}) | anything,
        }) | anything, max_size=3) | anything,
    }) | anything,
})
names = st.sampled_from([
    "models/veo-3.0/operations/a", "batches/b", "tunedModels/t/operations/x", "operations/", "/",
    "projects/p/locations/l/ragCorpora/2/operations/3", "x" * 5000,
]) | st.text(min_size=1, max_size=30)
# A usable skeleton (a name; done, metadata, response, error present or not, null or not) with
# hostile values inside: most of these parse, so every property and the frame get exercised.
operation_shaped = st.fixed_dictionaries({"name": names}, optional={
    "done": st.sampled_from([True, False, None]),
    "metadata": metadata | st.none(),
    "response": response | st.none(),
    "error": op_error | st.none(),
})
# Then the same keys holding anything at all: most of these must be refused, with a typed error.
operation_hostile = st.fixed_dictionaries({}, optional={
    "name": names | anything, "done": anything, "metadata": metadata | anything,
    "response": response | anything, "error": op_error | anything,
})
# A Vertex AI job (tuningJobs, batchPredictionJobs): a resource with a JOB_STATE_*, its own error,
# times and completionStats, in place of an Operation's done/metadata/response.
job_names = st.sampled_from([
    "projects/p/locations/us-central1/tuningJobs/123", "projects/p/locations/l/batchPredictionJobs/9",
    "projects/p/locations/l/tuningJobs/", "tuningJobs/1",
]) | names
job_states = st.sampled_from([
    "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED", "JOB_STATE_EXPIRED", "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_UNSPECIFIED", "JOB_STATE_NEW", "JOB_STATE_",
])
job_shaped = st.fixed_dictionaries({"name": job_names}, optional={
    "state": job_states | anything,
    "error": op_error | anything,
    "createTime": times, "updateTime": times, "endTime": times, "startTime": times,
    "completionStats": st.fixed_dictionaries({}, optional={
        "successfulCount": anything, "failedCount": anything, "incompleteCount": anything,
    }) | anything,
    "tunedModel": st.fixed_dictionaries({}, optional={"model": anything, "endpoint": anything}) | anything,
    "outputInfo": st.fixed_dictionaries({}, optional={"gcsOutputDirectory": anything}) | anything,
    "videos": anything,
})
list_shaped = st.fixed_dictionaries({}, optional={
    "operations": st.lists(operation_shaped | operation_hostile | job_shaped, max_size=3) | anything,
    "tuningJobs": st.lists(job_shaped, max_size=3) | anything,
    "nextPageToken": st.text(max_size=10) | anything,
    "unreachable": st.lists(st.text(max_size=10)) | anything,
}) | anything

detail = st.fixed_dictionaries({}, optional={
    "@type": st.sampled_from([
        "type.googleapis.com/google.rpc.ErrorInfo", "type.googleapis.com/google.rpc.RetryInfo"]) | anything,
    "retryDelay": st.sampled_from(["47s", "0.5s", "1e400s", "1e300s", "-3s", "nans", "infs", "s", "1" * 400 + "s"])
    | st.fixed_dictionaries({}, optional={"seconds": anything, "nanos": anything}) | anything,
    "reason": st.just("API_KEY_INVALID") | anything,
})
google_error_fields = {
    "code": anything, "message": st.text() | st.just("m" * 5000) | anything,
    "status": st.sampled_from(["NOT_FOUND", "s" * 5000]) | anything,
}
# A Google error body with details (where ErrorInfo and RetryInfo are looked for), then any
# "error" at all, then any JSON at all.
error_body = (
    st.fixed_dictionaries({"error": st.fixed_dictionaries(
        {"details": st.lists(detail, min_size=1, max_size=3)}, optional=google_error_fields)})
    | st.fixed_dictionaries({"error": st.fixed_dictionaries({}, optional={**google_error_fields, "details": anything})})
    | st.fixed_dictionaries({"error": anything})
    | anything
)
statuses = st.sampled_from([400, 429]) | st.integers(min_value=100, max_value=599)
content_types = st.sampled_from(["application/json", "text/html; charset=utf-8", "text/plain", ""]) | st.text(
    max_size=20
)


def check_error(err: Any, status: int) -> None:
    assert isinstance(err, ApiError) and err.status_code == status
    assert isinstance(err.message, str) and len(str(err)) < 2300  # long server messages are cut
    assert isinstance(err.details, list)
    delay = getattr(err, "retry_delay", None)
    assert delay is None or (isinstance(delay, float) and math.isfinite(delay) and delay >= 0)


@FUZZ
@given(status=statuses, body=error_body, content_type=content_types)
# What this test found first: a null @type made _has_reason raise AttributeError; a 400-digit
# "seconds" raised OverflowError; "1e400s" gave an infinite retry_delay; a long message came whole.
@example(400, {"error": {"details": [{"@type": None, "reason": "API_KEY_INVALID"}]}}, "application/json")
@example(400, {"error": {"details": [{"@type": 7}, {"@type": ["x"]}]}}, "")
@example(429, {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                      "retryDelay": {"seconds": 10**400}}]}}, "")
@example(429, {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                      "retryDelay": "1e400s"}]}}, "")
@example(503, {"error": {"message": "m" * 5000, "status": "s" * 5000}}, "application/json")
@example(500, {"error": {"message": {"nested": [1, 2, 3] * 1000}}}, "application/json")
def test_error_bodies_always_become_api_errors(status: int, body: Any, content_type: str) -> None:
    check_error(ApiError.from_response(status, json.dumps(body).encode(), content_type), status)


@FUZZ
@given(status=statuses, body=st.binary(max_size=300) | st.sampled_from([
    b"<" * 100_000, b"1" * 5000, b"[" * 100_000, b'{"error": 1' + b"0" * 400 + b"}", b"\xff\xfe{}",
]), content_type=content_types)
def test_raw_bytes_always_become_api_errors(status: int, body: bytes, content_type: str) -> None:
    check_error(ApiError.from_response(status, body, content_type), status)


# Every property of Operation, found by introspection: one added later is fuzzed too.
PROPERTIES = sorted(name for name, value in vars(Operation).items() if isinstance(value, property))


def test_the_fuzz_reads_every_property() -> None:
    assert {"progress", "create_time", "state", "filtered", "video_uris", "batch_state"} <= set(PROPERTIES)


def exercise(op: Operation) -> None:
    """Every read of a parsed Operation, and its row in a frame: none may raise."""
    for name in PROPERTIES:
        getattr(op, name)
    for now in (0.0, 1.7e9, 1e30, -1e30):
        seconds = op.run_seconds(now)
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    str(op)
    p = op.progress
    assert p is None or 0.0 <= p <= 100.0
    created, updated = op.create_time, op.update_time
    for t in (created, updated):
        assert t is None or t.tzinfo is not None
    assert op.kind in ("video", "tuning", "import", "batch", "other")
    op.state  # noqa: B018
    assert all(isinstance(u, str) for u in op.video_uris)
    assert "\n" not in op.summary() or "\n" in op.name
    repr(op)
    op.id  # noqa: B018
    row = to_dataframe([op]).iloc[0]
    for col, t in (("create_time", created), ("update_time", updated)):
        # NaT exactly where the Operation has no time, or one datetime64[ns] cannot hold.
        if t is None or not in_ns_range(t):
            assert pd.isna(row[col]), col
        else:
            assert row[col] == t, col


def in_ns_range(t: datetime) -> bool:
    micros = (t - EPOCH) // timedelta(microseconds=1)  # aware arithmetic: no overflow at year 1 or 9999
    return -(2**63) // 1000 < micros < (2**63 - 1) // 1000


def parse_or_typed_error(parse: Any, data: Any, **kwargs: Any) -> Any:
    try:
        return parse(data, **kwargs)
    except OpsError as exc:
        assert len(str(exc)) < 500, "messages must not echo large values"
        return None


@FUZZ
@given(data=operation_shaped, vertex=st.booleans())
# What this test found first: "done": null was refused; a 400-digit progress raised OverflowError
# out of op.progress; a 400-digit error code broke to_dataframe (Int64); a 5000-character name
# was echoed whole in every MalformedOperationError.
@example({"name": "operations/a", "done": None}, False)
@example({"name": "operations/a", "metadata": {"progress": 10**400}}, False)
@example({"name": "operations/a", "metadata": {"completedSteps": 10**400, "totalSteps": 3}}, False)
@example({"name": "operations/a", "metadata": {"completedSteps": 1, "totalSteps": -(10**400)}}, False)
@example({"name": "batches/a",
          "metadata": {"batchStats": {"requestCount": "1" * 400, "failedRequestCount": 10**400}}}, False)
@example({"name": "operations/a", "done": True, "error": {"code": 10**400}}, False)
@example({"name": "x" * 5000, "done": "yes"}, False)
@example({"name": "models/veo/operations/a", "metadata": {"model": {"not": "a string"}}}, False)
@example({"name": "operations/a", "metadata": {"createTime": "2024-01-01T00:00:00+99:00"}}, True)
# A 1678 createTime fits nanoseconds, but its age (now - then) does not: the duration overflowed.
@example({"name": "models/veo-3.0/operations/a", "metadata": {"createTime": "1678-01-01T00:00:00Z"}}, False)
def test_operation_skeletons_with_hostile_values(data: Any, vertex: bool) -> None:
    op = parse_or_typed_error(Operation.from_api_response, data, vertex=vertex)
    if op is not None:
        exercise(op)


@FUZZ
@given(data=job_shaped, vertex=st.booleans())
@example({"name": "projects/p/locations/l/batchPredictionJobs/9", "state": "JOB_STATE_RUNNING",
          "completionStats": {"successfulCount": "1" * 400, "incompleteCount": -(10**400)}}, True)
@example({"name": "projects/p/locations/l/tuningJobs/1", "state": "JOB_STATE_FAILED", "error": None}, False)
def test_vertex_jobs_with_hostile_values(data: Any, vertex: bool) -> None:
    op = parse_or_typed_error(Operation.from_api_response, data, vertex=vertex)
    if op is not None:
        exercise(op)
        assert op.done == (op.state is not State.RUNNING)
        assert op.failed == (op.state in (State.FAILED, State.CANCELLED))


@FUZZ
@given(data=operation_hostile | anything, vertex=st.booleans())
def test_arbitrary_operations_parse_or_raise_typed_errors(data: Any, vertex: bool) -> None:
    op = parse_or_typed_error(Operation.from_api_response, data, vertex=vertex)
    if op is not None:
        exercise(op)


@FUZZ
@given(data=list_shaped, vertex=st.booleans())
def test_arbitrary_list_pages_parse_or_raise_typed_errors(data: Any, vertex: bool) -> None:
    page = parse_or_typed_error(ListOperationsResponse.from_api_response, data, vertex=vertex)
    if page is not None:
        repr(page)
        for op in page.operations:
            exercise(op)
        to_dataframe(page.operations)
        # list_dataframe's route: the checked dicts laid out with no Operation, the same frame
        now = datetime(2026, 12, 5, tzinfo=timezone.utc)
        raw, objects = FrameBuilder(), FrameBuilder()
        raw.add(read_list_page(data, vertex=vertex).operations)
        objects.add(page.operations)
        pd.testing.assert_frame_equal(raw.build(now), objects.build(now))


@FUZZ
@given(create=times, update=times, generic=st.booleans())
@example("2024-01-01T00:00:00+99:00", "2024-13-01T00:00:00Z", False)
@example("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", True)
def test_times_read_the_same_in_the_operation_and_the_frame(create: Any, update: Any, generic: bool) -> None:
    times = {"createTime": create, "updateTime": update}
    op = Operation.from_api_response({"name": "operations/t", "done": True,
                                      "metadata": {"genericMetadata": times} if generic else times})
    exercise(op)  # its create_time/update_time columns: NaT exactly where the Operation has None


@FUZZ
@given(metadata=st.fixed_dictionaries({}, optional=dict.fromkeys(progress_keys, numbers | numeric_strings)))
def test_progress_is_none_or_within_0_and_100(metadata: dict[str, Any]) -> None:
    p = Operation.from_api_response({"name": "operations/p", "metadata": metadata}).progress
    assert p is None or 0.0 <= p <= 100.0


def _flat_rows(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    # The plain reading of "metadata.<path>" columns: one dict per row, nested objects' keys joined
    # with dots, the last of two equal paths kept. The frame must be what pandas makes of these rows.
    for key, item in value.items():
        if item and isinstance(item, dict):
            _flat_rows(item, f"{prefix}.{key}", out)
        else:
            out[f"{prefix}.{key}"] = item
    return out


# Few keys, so rows share paths, and "a.b" beside {"a": {"b": ...}}: one path twice in a row.
inner = st.dictionaries(st.sampled_from(["b", "c.d", "@type"]), anything, max_size=3)
flat_metadata = st.dictionaries(st.sampled_from(["a", "a.b", "c", "model"]), anything | inner, max_size=4)


@FUZZ
@given(metadatas=st.lists(flat_metadata, max_size=12))
def test_metadata_columns_are_what_pandas_makes_of_one_flat_dict_per_row(metadatas: list[dict[str, Any]]) -> None:
    ops = [Operation.from_api_response({"name": f"operations/m{i}", "metadata": md}) for i, md in enumerate(metadatas)]
    builder = FrameBuilder()
    for start in range(0, len(ops), 5):  # pages: the rows of later pages land after the earlier ones
        builder.add(ops[start:start + 5])
    frame = builder.build()
    rows = [_flat_rows(md, "metadata", {}) for md in metadatas]
    expected = pd.DataFrame.from_records(rows, index=frame.index) if any(rows) else pd.DataFrame(index=frame.index)
    expected = expected[sorted(expected.columns)]
    pd.testing.assert_frame_equal(frame.drop(columns=[c for c in frame.columns if not c.startswith("metadata.")]),
                                  expected, check_column_type=False)
