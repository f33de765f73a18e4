"""The states the real services report beyond done/error: safety-filtered videos (Gemini API and
Vertex AI shapes) and Gemini API batches whose metadata.state runs ahead of `done`. Odd values in
those fields never raise; they read as the plain done/error rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wiredata import wire

from ops_widgets import Operation, State, to_dataframe
from ops_widgets._frame import STATES
from ops_widgets.widgets._table_view import TableIndex, page_rows
from ops_widgets.widgets._view import result_items, view_state

REASON = ("The video could not be generated because it may violate our usage guidelines. "
          "You have not been charged for this request.")
V1MAIN = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
V1BETA = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"


def gemini_filtered(gvr: Any = None, **top: Any) -> dict[str, Any]:
    """A done Veo operation as the Gemini API sends a filtered one (generateVideoResponse)."""
    if gvr is None:
        gvr = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [REASON]}
    return {
        "name": "models/veo-3.1-generate-preview/operations/f1lt3r3d0001",
        "done": True,
        "response": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                     "generateVideoResponse": gvr, **top},
    }


def vertex_filtered(**response: Any) -> dict[str, Any]:
    """A done Veo operation as Vertex AI's fetchPredictOperation answers a filtered one."""
    body = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["Unsafe content (code 58061214)."]}
    body.update(response)
    return {"name": "projects/p/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/"
                    "a1b2c3d4-0000-4000-8000-000000000000",
            "done": True, "response": body}


def batch(state: Any = "BATCH_STATE_RUNNING", *, type_: str = V1MAIN, **top: Any) -> dict[str, Any]:
    """A Gemini API batch operation (metadata GenerateContentBatch, int64 counts as strings)."""
    name = "batches/k3w9xq7mv2rt8yzp4c6d1hn0"
    meta: dict[str, Any] = {
        "@type": type_, "model": "models/gemini-2.5-flash", "name": name, "displayName": "wave_1",
        "createTime": "2026-08-21T08:00:03.118207Z", "updateTime": "2026-08-21T08:41:27.552093Z",
        "batchStats": {"requestCount": "100", "successfulRequestCount": "38", "failedRequestCount": "2",
                       "pendingRequestCount": "60"},
    }
    if state is not ...:
        meta["state"] = state
    return {"name": name, "metadata": meta, **top}


def parse(data: Any, *, vertex: bool = False) -> Operation:
    return Operation.from_api_response(data, vertex=vertex)


# -- safety-filtered videos ----------------------------------------------------------------------


def test_state_order_is_the_frames_and_the_tables() -> None:
    assert [s.value for s in State] == ["running", "succeeded", "failed", "cancelled", "filtered"]
    assert STATES == [s.value for s in State]
    assert str(State.FILTERED) == "filtered"


def test_gemini_filtered_video() -> None:
    op = parse(gemini_filtered())
    assert op.state is State.FILTERED and op.filtered
    assert op.succeeded and op.done and not op.failed and not op.cancelled  # the seed's meaning
    assert op.filter_reasons == [REASON] and op.video_uris == [] and op.kind == "video"
    assert "filtered" in repr(op) and op.summary().endswith("  filtered")


@pytest.mark.parametrize("gvr", [
    {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [REASON]},
    {"raiMediaFilteredCount": "1", "raiMediaFilteredReasons": [REASON]},  # an int as a string
    {"raiMediaFilteredCount": 2, "generatedSamples": []},  # no reasons, an empty list of samples
    {"raiMediaFilteredCount": " 3 "},
    {"raiMediaFilteredReasons": [REASON]},  # reasons with the count omitted
    {"raiMediaFilteredCount": 1, "generatedSamples": [None, {}, 7]},  # nothing that holds a video
])
def test_filtered_gemini_shapes(gvr: dict[str, Any]) -> None:
    assert parse(gemini_filtered(gvr)).state is State.FILTERED


def test_vertex_filtered_video() -> None:
    responses: list[dict[str, Any]] = [{}, {"videos": []}, {"videos": None}, {"raiMediaFilteredCount": "1"}]
    for response in responses:
        op = parse(vertex_filtered(**response), vertex=True)
        assert op.state is State.FILTERED and op.filtered and op.succeeded, response
        assert op.filter_reasons == ["Unsafe content (code 58061214)."]
    # Parsed without vertex=True (the filter fields are read in both places): filtered still.
    assert parse(vertex_filtered()).state is State.FILTERED


@pytest.mark.parametrize(("data", "vertex"), [
    (wire("veo_done"), False),  # a video came
    (gemini_filtered({"generatedSamples": [{"video": {"uri": "https://x/v.mp4"}}], "raiMediaFilteredCount": 1,
                      "raiMediaFilteredReasons": ["one of two withheld"]}), False),  # some came
    (gemini_filtered({}), False),  # no samples, but nothing says they were filtered
    (gemini_filtered({"raiMediaFilteredCount": 0, "raiMediaFilteredReasons": []}), False),
    (gemini_filtered({"raiMediaFilteredCount": "0"}), False),
    (vertex_filtered(videos=[{"gcsUri": "gs://b/1.mp4"}]), True),
    (vertex_filtered(videos=[{"bytesBase64Encoded": "AAAA"}]), True),
    (vertex_filtered(videos=[{"gcsUri": "gs://b/1.mp4"}]), False),  # a video, whichever way it is read
    (vertex_filtered(raiMediaFilteredCount=0, raiMediaFilteredReasons=None), True),
])
def test_not_filtered(data: dict[str, Any], vertex: bool) -> None:
    op = parse(data, vertex=vertex)
    assert op.state is State.SUCCEEDED and not op.filtered


def test_only_a_done_errorless_operation_is_filtered() -> None:
    running = gemini_filtered()
    del running["done"]
    assert parse(running).state is State.RUNNING and not parse(running).filtered
    assert parse(running).filter_reasons == []
    failed = {**gemini_filtered(), "error": {"code": 13, "message": "internal"}}
    assert parse(failed).state is State.FAILED and not parse(failed).filtered and parse(failed).filter_reasons == []
    cancelled = {**gemini_filtered(), "error": {"code": 1}}
    assert parse(cancelled).state is State.CANCELLED


def test_partly_filtered_keeps_its_videos_and_says_why_the_others_went() -> None:
    op = parse(gemini_filtered({"generatedSamples": [{"video": {"uri": "https://x/v.mp4"}}],
                                "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["second withheld"]}))
    assert op.state is State.SUCCEEDED and op.video_uris == ["https://x/v.mp4"]
    assert op.filter_reasons == ["second withheld"]
    assert result_items(op) == [{"label": "video 1:", "text": "https://x/v.mp4"},
                                {"label": "filtered:", "text": "second withheld"}]


def test_filter_reasons_are_strings_only_and_capped() -> None:
    reasons = ["  a  ", 7, None, ["x"], {"r": 1}, "", "   ", True, "b" * 5000, *[f"r{i}" for i in range(50)]]
    op = parse(gemini_filtered({"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": reasons}))
    got = op.filter_reasons
    assert got[0] == "a" and all(isinstance(r, str) and r.strip() for r in got)
    assert len(got) == 10 and len(got[1]) == 500 and got[1].endswith("…")
    assert parse(gemini_filtered({"raiMediaFilteredReasons": "one reason"})).filter_reasons == ["one reason"]


@pytest.mark.parametrize("odd", [
    None, True, False, "", "one", "1e400", "nan", "inf", -1, 0.5, 10**400, [], [1], {}, {"count": 1}, "0x10",
])
def test_odd_filter_counts_never_raise(odd: Any) -> None:
    for gvr in ({"raiMediaFilteredCount": odd}, {"raiMediaFilteredReasons": odd},
                {"raiMediaFilteredCount": odd, "generatedSamples": odd}):
        for data in (gemini_filtered(gvr), vertex_filtered(**dict.fromkeys(gvr, odd))):
            for vertex in (False, True):
                op = parse(data, vertex=vertex)
                assert op.state in (State.SUCCEEDED, State.FILTERED)
                assert isinstance(op.filtered, bool) and all(isinstance(r, str) for r in op.filter_reasons)
                view_state(op, elapsed=None, eta=None, eta_is_estimate=False)


@pytest.mark.parametrize("gvr", [None, 5, "x", [], [{"raiMediaFilteredCount": 1}]])
def test_generate_video_response_that_is_no_object(gvr: Any) -> None:
    data = gemini_filtered()
    data["response"]["generateVideoResponse"] = gvr
    op = parse(data)
    assert op.state is State.SUCCEEDED and not op.filtered and op.filter_reasons == []


def test_view_state_of_a_filtered_video() -> None:
    hostile = "<img src=x onerror=alert(1)> & <b>bold</b>"
    op = parse(gemini_filtered({"raiMediaFilteredCount": "2", "raiMediaFilteredReasons": [REASON, hostile]}))
    s = view_state(op, elapsed=95.0, eta=3.0, eta_is_estimate=True)
    assert s["state"] == "filtered" and s["kind"] == "video"
    assert s["error_code"] == s["error_message"] == ""
    assert s["eta"] is None and not s["eta_is_estimate"]
    assert s["result"] == [{"label": "filtered:", "text": f"{REASON}; {hostile}"}]  # text, verbatim: no href
    bare = view_state(parse(gemini_filtered({"raiMediaFilteredCount": 1})), elapsed=None, eta=None,
                      eta_is_estimate=False)
    assert bare["result"] == [{"label": "filtered:", "text": "by safety checks (no reason given)"}]
    assert view_state(op, elapsed=1, eta=None, eta_is_estimate=False, cancelling=True)["state"] == "filtered"


def test_a_done_video_without_samples_or_filter_says_so() -> None:
    op = parse(gemini_filtered({}))
    assert result_items(op) == [{"label": "no video:", "text": "the response holds no video"}]


def test_frame_and_table_rows_of_a_filtered_video() -> None:
    ops = [parse(gemini_filtered()), parse(wire("veo_done")), parse(wire("failed")), parse(batch())]
    frame = to_dataframe(ops)
    assert list(frame["state"].cat.categories) == [s.value for s in State]
    assert list(frame["state"].astype(str)) == ["filtered", "succeeded", "failed", "running"]
    row = frame.loc[ops[0].name]
    assert bool(row["done"]) and pd_isna(row["error_code"]) and pd_isna(row["error_message"])
    assert list(TableIndex(frame).matching(states=["filtered"])) == [ops[0].name]
    rows = page_rows(frame, [ops[0].name], selected=(), cancelling={ops[0].name})
    assert rows[0]["state"] == "filtered" and rows[0]["error"] == ""


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# -- batches: metadata.state while not done --------------------------------------------------------


@pytest.mark.parametrize(("state", "expected"), [
    ("BATCH_STATE_PENDING", State.RUNNING),
    ("BATCH_STATE_RUNNING", State.RUNNING),
    ("BATCH_STATE_SUCCEEDED", State.SUCCEEDED),
    ("BATCH_STATE_FAILED", State.FAILED),
    ("BATCH_STATE_EXPIRED", State.FAILED),
    ("BATCH_STATE_CANCELLED", State.CANCELLED),
    ("BATCH_STATE_UNSPECIFIED", State.RUNNING),
    ("BATCH_STATE_SOMETHING_NEW", State.RUNNING),
    ("batch_state_succeeded", State.RUNNING),  # enum names are exact
    ("", State.RUNNING),
    (..., State.RUNNING),  # no state at all
])
@pytest.mark.parametrize("type_", [V1MAIN, V1BETA])
def test_running_batch_follows_its_own_state(state: Any, expected: State, type_: str) -> None:
    for done in ({}, {"done": False}, {"done": None}):
        op = parse(batch(state, type_=type_, **done))
        assert op.kind == "batch" and not op.done
        assert op.state is expected, (state, done)
        assert op.batch_state == (None if state is ... else state)
        assert not op.succeeded and not op.failed and not op.cancelled  # those keep their done meaning


def test_done_decides_once_present() -> None:
    # done with no error: succeeded, whatever the batch says; with error 1: cancelled.
    ok = parse(batch("BATCH_STATE_FAILED", done=True, response={"@type": V1MAIN + "Output"}))
    assert ok.state is State.SUCCEEDED and ok.batch_state == "BATCH_STATE_FAILED"
    assert parse(wire("cancelled")).state is State.CANCELLED
    failed = parse(batch("BATCH_STATE_SUCCEEDED", done=True, error={"code": 13, "message": "x"}))
    assert failed.state is State.FAILED


def test_the_response_says_filtered_whatever_the_name() -> None:
    # A video model not named veo-* is kind "other"; its filtered response still reads as filtered.
    data = gemini_filtered()
    data["name"] = "models/some-new-video-model/operations/x"
    op = parse(data)
    assert op.kind == "other" and op.state is State.FILTERED


def test_wire_list_batches() -> None:
    page = wire("list_page1")
    for o in page["operations"]:
        o["metadata"]["@type"] = V1MAIN  # what batches really carry
    ops = [parse(o) for o in page["operations"]]
    assert [o.batch_state for o in ops] == ["BATCH_STATE_RUNNING", "BATCH_STATE_PENDING"]
    assert [o.state for o in ops] == [State.RUNNING, State.RUNNING] and all(o.kind == "batch" for o in ops)


def test_kind_reads_the_v1main_batch_type() -> None:
    data = batch()
    data["name"] = "operations/elsewhere"  # not named like a batch: the @type alone says it
    assert parse(data).kind == "batch"
    data["metadata"]["@type"] = V1BETA
    assert parse(data).kind == "batch"


def test_batch_state_only_for_batches() -> None:
    tuning = copy.deepcopy(wire("tuning_running"))
    tuning["metadata"]["state"] = "BATCH_STATE_SUCCEEDED"
    op = parse(tuning)
    assert op.kind == "tuning" and op.batch_state is None and op.state is State.RUNNING
    other = parse({"name": "operations/x", "metadata": {"state": "BATCH_STATE_FAILED"}})
    assert other.batch_state is None and other.state is State.RUNNING


@pytest.mark.parametrize("odd", [None, 3, 3.5, True, [], ["BATCH_STATE_SUCCEEDED"], {"name": "x"}, 10**400, "x" * 5000])
def test_odd_batch_states_never_raise(odd: Any) -> None:
    op = parse(batch(odd))
    assert op.state is State.RUNNING
    assert op.batch_state == (odd if isinstance(odd, str) else None)
    view_state(op, elapsed=None, eta=None, eta_is_estimate=False)
    to_dataframe([op])


def test_view_state_of_a_batch_that_ended_before_its_operation() -> None:
    running = view_state(parse(batch("BATCH_STATE_RUNNING")), elapsed=10, eta=20, eta_is_estimate=True)
    assert running["state"] == "running" and running["eta"] == 20 and running["eta_is_estimate"]
    assert running["progress"] == 40.0  # (38 + 2) of "100"
    for state, shown in (("BATCH_STATE_SUCCEEDED", "succeeded"), ("BATCH_STATE_EXPIRED", "failed"),
                         ("BATCH_STATE_CANCELLED", "cancelled")):
        s = view_state(parse(batch(state)), elapsed=10, eta=20, eta_is_estimate=True, cancelling=True)
        assert s["state"] == shown and s["eta"] is None and not s["eta_is_estimate"]
        assert s["error_code"] == s["error_message"] == "" and s["result"] == []  # no error until done
    frame = to_dataframe([parse(batch("BATCH_STATE_SUCCEEDED"))])
    assert frame["state"].iloc[0] == "succeeded" and not frame["done"].iloc[0]


def test_batch_counts_in_the_result_are_counts() -> None:
    done = batch("BATCH_STATE_SUCCEEDED", done=True, response={})
    assert result_items(parse(done)) == [{"label": "requests:", "text": "38 succeeded, 2 failed of 100"}]
    done["metadata"]["batchStats"] = {"requestCount": 10**5000, "successfulRequestCount": "x", "failedRequestCount": 2}
    assert result_items(parse(done)) == [{"label": "requests:", "text": "? succeeded, 2 failed of ?"}]
    done["metadata"]["batchStats"] = {"requestCount": "4"}  # proto3 omits zero counts
    assert result_items(parse(done)) == [{"label": "requests:", "text": "0 succeeded, 0 failed of 4"}]


# -- anything in those fields --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "1", "0", "-1", "1e400"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
video_box = st.fixed_dictionaries({}, optional={
    "raiMediaFilteredCount": json_values, "raiMediaFilteredReasons": json_values,
    "generatedSamples": json_values, "videos": json_values,
})


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(gvr=video_box | json_values, top=video_box, state=json_values, done=st.sampled_from([True, False, None]),
       vertex=st.booleans(), name=st.sampled_from(["models/veo-3.0/operations/a", "batches/b", "operations/o"]))
def test_any_json_in_these_fields_never_raises(
    gvr: Any, top: dict[str, Any], state: Any, done: bool | None, vertex: bool, name: str
) -> None:
    data = {"name": name, "done": done, "metadata": {"@type": V1MAIN, "state": state},
            "response": {"generateVideoResponse": gvr, **top}}
    op = parse(data, vertex=vertex)
    assert op.state in State
    assert op.filtered == (op.state is State.FILTERED)
    assert all(isinstance(r, str) and 0 < len(r) <= 500 for r in op.filter_reasons) and len(op.filter_reasons) <= 10
    assert op.batch_state is None or isinstance(op.batch_state, str)
    s = view_state(op, elapsed=None, eta=None, eta_is_estimate=False)
    assert all(isinstance(v, str) for item in s["result"] for v in item.values())
    to_dataframe([op])


# -- the emulator sends the same shapes ------------------------------------------------------------


def test_emulator_filtered_videos_and_batch_states_read_as_these_states(emu: Any) -> None:
    filtered = parse(emu.get_operation(emu.create("video", duration=0, outcome="filtered")))
    assert filtered.state is State.FILTERED and filtered.filter_reasons and filtered.video_uris == []
    assert parse(emu.get_operation(emu.create("video", duration=0))).state is State.SUCCEEDED
    running = parse(emu.get_operation(emu.create("batch", duration=3600)))
    assert running.kind == "batch" and running.state is State.RUNNING and not running.done
    assert running.batch_state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
    assert running.metadata["@type"].endswith(".v1main.GenerateContentBatch")
    name = emu.create("batch", duration=3600)
    emu.complete(name)
    done = parse(emu.get_operation(name))
    assert done.state is State.SUCCEEDED and done.batch_state == "BATCH_STATE_SUCCEEDED"


def test_no_video_uri_becomes_a_link_in_the_synced_state() -> None:
    from ops_widgets.widgets._view import result_items

    def video(uri: str) -> Operation:
        return Operation.from_api_response({"name": "models/veo/operations/v", "done": True, "response": {
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}})

    # A link to the service's URI opens a 403 (the key stays in the kernel); a server's
    # javascript: or data: "URI" must never be one either. All are shown as text.
    for uri in ("https://x/v.mp4", "javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,<b>x</b>", "//evil"):
        assert result_items(video(uri)) == [{"label": "video 1:", "text": uri}]
