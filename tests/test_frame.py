"""to_dataframe on every wire shape (dtypes included), list_dataframe against the emulator,
and the bulk actions."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
from wiredata import wire

import ops_widgets as ow
from ops_widgets import ListOperationsResponse, Operation, to_dataframe
from ops_widgets._frame import COLUMNS, FrameBuilder, ListingProgress
from ops_widgets._types import read_list_page
from ops_widgets.emulator import EmulatorApp

DTYPES = {
    "id": "string", "kind": "string", "state": "category", "done": "bool", "progress": "Float64",
    "create_time": "datetime64[ns, UTC]", "update_time": "datetime64[ns, UTC]",
    "duration": "timedelta64[ns]", "error_code": "Int64", "error_message": "string",
    "parent": "string", "model": "string",
}
SHAPES = ["veo_running", "veo_done", "tuning_running", "tuning_done", "failed", "cancelled"]


def ops(*names: str) -> list[Operation]:
    return [Operation.from_api_response(wire(n)) for n in names]


def check_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    for col, dtype in DTYPES.items():
        assert str(frame[col].dtype) == dtype, col
    assert list(frame["state"].cat.categories) == ["running", "succeeded", "failed", "cancelled", "filtered"]
    assert frame.index.name == "name"


def test_empty_input_has_the_same_columns_and_dtypes() -> None:
    frame = to_dataframe([])
    assert frame.empty and list(frame.columns) == COLUMNS
    check_dtypes(frame)


def test_every_wire_shape() -> None:
    page = [*ops(*SHAPES), *ow.ListOperationsResponse.from_api_response(wire("list_page1")).operations,
            *ow.ListOperationsResponse.from_api_response(wire("list_page2")).operations]
    frame = to_dataframe(page)
    check_dtypes(frame)
    assert len(frame) == len(page) and list(frame.index) == [o.name for o in page]

    video = frame.loc["models/veo-3.1-generate-preview/operations/vz341u0pmdlc"].iloc[-1]  # the done one
    assert video["kind"] == "video" and video["state"] == "succeeded"
    assert video["model"] == "models/veo-3.1-generate-preview" and video["parent"] == "models/veo-3.1-generate-preview"
    assert pd.isna(video["progress"]) and pd.isna(video["create_time"]) and pd.isna(video["duration"])

    tuning = frame.loc["tunedModels/number-generator-model-dzlmi0gswwqb/operations/bvl8dymw0fhw"]
    assert list(tuning["progress"]) == pytest.approx([39.473682, 100.0])
    assert list(tuning["metadata.totalSteps"]) == [38, 38]

    failed = frame.loc["models/veo-3.1-generate-preview/operations/q1w2e3r4t5y6"]
    assert failed["state"] == "failed" and failed["error_code"] == 13 and "internal error" in failed["error_message"]

    batch = frame.loc["batches/k3w9xq7mv2rt8yzp4c6d1hn0"]
    assert batch["kind"] == "batch" and batch["parent"] == "batches" and pd.isna(batch["model"])
    assert batch["progress"] == pytest.approx(40.0) and batch["metadata.batchStats.requestCount"] == "100"
    assert batch["create_time"] == pd.Timestamp("2026-08-21T08:00:03.118207Z")
    assert pd.isna(batch["error_code"]) and pd.isna(batch["error_message"])
    # running: duration is now - create_time
    assert batch["duration"] > timedelta(days=1)
    cancelled = frame.loc["batches/c4n5c3l7e8d9x0y1z2a3b4c5"].iloc[0]
    assert cancelled["state"] == "cancelled" and cancelled["error_code"] == 1
    assert cancelled["duration"] == pd.Timedelta("0 days 00:41:24.433886")  # done: update - create

    assert frame["done"].tolist() == [o.done for o in page]
    assert (frame["state"] == "running").sum() == sum(o.running for o in page)


@pytest.mark.parametrize("generic", [False, True])
def test_time_columns_are_the_operations_times(generic: bool) -> None:
    # One reading of createTime/updateTime: the frame holds Operation.create_time/update_time,
    # NaT exactly where those are None (pandas alone would read some of these differently).
    odd = [
        "2024-13-01T00:00:00Z",  # month 13
        "2024-01-01T00:00:00+99:00",  # offset beyond 23:59
        "2024-01-01T00:00:00",  # no zone: not RFC 3339 (pandas would take it as UTC)
        "2024-01-01T00:00:00.123456789123Z",  # 12 fraction digits: kept to the microsecond
        "2024-01-01 00:00:00+05:30",
        "2024-01-01T00:00:00-00:00",
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits
        "2026-08-21T08:00:03.118207Z",
        20240101, None, ["2024-01-01T00:00:00Z"], {"seconds": 0},
    ]
    page = []
    for i, value in enumerate(odd):
        times = {"createTime": value, "updateTime": odd[-1 - i]}
        page.append(Operation.from_api_response(
            {"name": f"operations/{i}", "done": True, "metadata": {"genericMetadata": times} if generic else times}))
    frame = to_dataframe(page)
    check_dtypes(frame)
    for col in ("create_time", "update_time"):
        expected = [getattr(op, col) for op in page]
        assert frame[col].isna().tolist() == [t is None for t in expected], col
        assert all(got == want for got, want in zip(frame[col], expected, strict=True) if want is not None), col
    assert frame["create_time"].notna().sum() == 4


def test_times_a_datetime64_ns_cannot_hold_are_nat() -> None:
    page = [Operation.from_api_response({"name": f"operations/{i}", "metadata": {"createTime": t}})
            for i, t in enumerate(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "2262-04-11T00:00:00Z"])]
    assert page[0].create_time == datetime(1, 1, 1, tzinfo=timezone.utc)  # the Operation reads it
    frame = to_dataframe(page)
    assert frame["create_time"].isna().tolist() == [True, True, False]
    check_dtypes(frame)


def test_non_string_model_is_missing() -> None:
    op = Operation.from_api_response({"name": "projects/p/locations/l/publishers/google/models/veo-3/operations/a",
                                      "metadata": {"model": {"id": 3}}}, vertex=True)
    assert op.kind == "video" and pd.isna(to_dataframe([op])["model"].iloc[0])


def test_without_metadata_columns() -> None:
    frame = to_dataframe(ops("tuning_running"), flatten_metadata=False)
    assert list(frame.columns) == COLUMNS


def test_metadata_paths_are_flattened() -> None:
    frame = to_dataframe(ops("tuning_running"))
    expected = {"metadata.@type", "metadata.completedSteps", "metadata.snapshots", "metadata.tunedModel"}
    assert expected <= set(frame.columns)
    assert isinstance(frame["metadata.snapshots"].iloc[0], list)  # lists stay values


def test_list_dataframe_equals_to_dataframe_of_list_all(fresh_emu: Any) -> None:
    # The emulator's clock runs: running operations that report progress would differ between
    # two listings. Finished ones and running videos (which report nothing) stay put.
    fresh_emu.seed(2400, running_fraction=0.0)
    for _ in range(100):
        fresh_emu.create("video", duration=3600)
    with fresh_emu.client() as client:
        listed = client.list_all(page_size=300)
        frame = client.list_dataframe(page_size=300, progress=False)
        expected = to_dataframe(listed)
    check_dtypes(frame)
    assert len(frame) == len(listed) and 1500 < len(frame) < 2500  # imports and uploads are not listed
    pd.testing.assert_frame_equal(frame, expected)
    assert (frame["state"] == "running").sum() == 100


def test_list_dataframe_filters_and_stops_at_max_items(fresh_emu: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fresh_emu.seed(500)
    with fresh_emu.client() as client:
        running = client.list_dataframe(filter="done=false", page_size=100)
        few = client.list_dataframe(page_size=100, max_items=150, progress=False)
    assert len(running) > 0 and (running["state"] == "running").all()
    assert len(few) == 150
    err = capsys.readouterr().err
    assert "listed" in err and "operations" in err  # the terminal progress line


def test_cancel_many_and_delete_many_never_abort(fresh_emu: Any) -> None:
    live = [fresh_emu.create("batch", duration=3600) for _ in range(5)]
    with fresh_emu.client() as client:
        client.delete(live[1])  # already gone
        targets = [live[0], live[1], "batches/never-existed", "not a name", *live[2:]]
        out = client.cancel_many(targets, concurrency=2)
        assert list(out.columns) == ["name", "ok", "error"]
        assert out["ok"].tolist() == [True, False, False, False, True, True, True]
        assert out["error"].isna().tolist() == out["ok"].tolist()
        assert "NotFoundError" in out["error"][1] and "InvalidNameError" in out["error"][3]
        for name in [live[0], *live[2:]]:
            assert fresh_emu.get_operation(name)["error"]["code"] == 1  # really cancelled
        frame = client.list_dataframe(progress=False)
        gone = client.delete_many(frame[frame["state"] == "cancelled"])
        assert gone["ok"].all() and len(gone) == 4
        again = client.delete_many(gone["name"].tolist())
        assert not again["ok"].any() and again["error"].str.contains("NotFoundError").all()
        assert client.list_all() == []


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_listing_progress_into_a_file_is_plain_lines_and_on_a_terminal_goes_away() -> None:
    """Redirected stderr gets whole lines (no carriage returns piling up), the last one saying
    where it ended; a terminal gets one line redrawn in place and erased at the end."""
    plain = io.StringIO()
    shown = ListingProgress(stream=plain)
    for pages in range(1, 40):
        shown.update(pages * 100, pages)
    shown.close(3_950, 40)
    text = plain.getvalue()
    assert "\r" not in text and "\x1b" not in text and text.endswith("\n")
    assert text.splitlines()[-1] == "listed 3,950 operations (40 pages)"
    tty = Tty()
    shown = ListingProgress(stream=tty)
    shown.update(100, 1, last=True)
    shown.close(100, 1)
    assert tty.getvalue() == "\rlisted 100 operations (1 page)\x1b[K\r\x1b[K"
    quiet = io.StringIO()
    off = ListingProgress(False, stream=quiet)
    off.update(1, 1)
    off.close(1, 1)
    assert quiet.getvalue() == ""


@pytest.mark.timeout(120)
def test_listing_progress_leaves_nothing_in_a_notebook(tmp_path: Any) -> None:
    """In a kernel it is an output that empties itself: the saved notebook keeps no progress text."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from ops_widgets.emulator import Emulator\n"
        "with Emulator.start(random_seed=3) as emu:\n"
        "    emu.seed(300)\n"
        "    with emu.client() as ops:\n"
        "        df = ops.list_dataframe(page_size=20)\n"
        "print(len(df), 'rows')\n")]
    NotebookClient(nb, timeout=100, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    streams = [o["text"] for o in outputs if o["output_type"] == "stream"]
    assert len(streams) == 1 and streams[0].endswith(" rows\n") and int(streams[0].split()[0]) > 100
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert [o["data"] for o in shown] == [{"text/plain": ""}]  # emptied when it was done
    assert "listing" not in nbformat.writes(nb) and "listed" not in nbformat.writes(nb)


# -- the frame from raw page dicts (what list_dataframe builds) equals the frame from Operations --
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)  # one "now" for both durations


def frames_from_both(pages: list[dict[str, Any]], *, vertex: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frame laid out from read_list_page's RawOperations (no Operation made), and the one
    to_dataframe lays out from the same pages' Operations (its builder, with a fixed now)."""
    raw, objects = FrameBuilder(), FrameBuilder()
    for page in pages:
        raw.add(read_list_page(page, vertex=vertex).operations)
        objects.add(ListOperationsResponse.from_api_response(page, vertex=vertex).operations)
    return raw.build(NOW), objects.build(NOW)


@pytest.mark.parametrize("vertex", [False, True])
def test_raw_frame_equals_operation_frame_on_the_wire_examples(vertex: bool) -> None:
    pages = [{"operations": [wire(n) for n in SHAPES]}, wire("list_page1"), wire("list_page2")]
    raw, objects = frames_from_both(pages, vertex=vertex)
    check_dtypes(raw)
    assert len(raw) == 6 + len(wire("list_page1")["operations"]) + len(wire("list_page2")["operations"])
    pd.testing.assert_frame_equal(raw, objects)
    # and to_dataframe itself (its own now: the running rows' durations aside)
    done = raw["done"].to_numpy()
    public = to_dataframe([Operation.from_api_response(o, vertex=vertex) for p in pages for o in p["operations"]])
    pd.testing.assert_frame_equal(raw.drop(columns="duration"), public.drop(columns="duration"))
    pd.testing.assert_series_equal(raw["duration"][done], public["duration"][done])


def emulator_pages(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pages of what the emulator answers for every kind and outcome it has, Gemini API and
    Vertex AI (operations and jobs, the jobs in their own list shapes), at a random moment."""
    rng = random.Random(seed)
    start = 1.79e9
    now = [start]
    app = EmulatorApp(random_seed=seed, clock=lambda: now[0])
    gemini = app.seed(rng.randint(50, 150))
    vertex = app.seed(rng.randint(50, 150), service="vertex")
    for kind in ("video", "tuning", "batch", "import", "upload"):
        for outcome in ("success", "failure", "filtered") if kind == "video" else ("success", "failure"):
            for duration in (rng.uniform(1, 600), rng.uniform(1, 7200), 86400):  # the last still runs
                gemini.append(app.create(kind, duration=duration, outcome=outcome))
    for kind, outcomes in (("video", ("success", "failure", "filtered")), ("tuning", ("success", "failure")),
                           ("batch", ("success", "failure", "partial")), ("import", ("success", "failure")),
                           ("generic", ("success", "failure"))):
        for outcome in outcomes:
            for duration in (rng.uniform(1, 600), rng.uniform(1, 7200), 86400):
                vertex.append(app.create(kind, duration=duration, outcome=outcome, service="vertex"))
    now[0] = start + rng.uniform(900, 4 * 3600)  # some done (the first of each three), some running
    for name in rng.sample(gemini, 5):
        app.complete(name)

    def pages(names: list[str]) -> list[dict[str, Any]]:
        bodies = [app.get_operation(n) for n in names]
        ops = [b for b in bodies if b is not None and "/tuningJobs/" not in b["name"]
               and "/batchPredictionJobs/" not in b["name"]]
        out = [{"operations": ops[i:i + 40], "nextPageToken": "t"} for i in range(0, len(ops), 40)]
        for jobs in ("tuningJobs", "batchPredictionJobs"):
            listed = [b for b in bodies if b is not None and f"/{jobs}/" in b["name"]]
            assert listed or jobs not in " ".join(names)
            out.append({jobs: listed})
        return out

    return pages(gemini), pages(vertex)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_raw_frame_equals_operation_frame_on_emulator_listings(seed: int) -> None:
    gemini, vertex = emulator_pages(seed)
    for pages, flavour in ((gemini, False), (vertex, True)):
        raw, objects = frames_from_both(pages, vertex=flavour)
        check_dtypes(raw)
        pd.testing.assert_frame_equal(raw, objects)
        # every kind, state and job shape was there to compare
        assert set(raw["kind"]) >= {"video", "tuning", "batch", "import"}
        assert set(raw["state"]) >= {"running", "succeeded", "failed"}
    assert {"filtered", "cancelled"} <= set(frames_from_both(gemini, vertex=False)[0]["state"])
    jobs = frames_from_both(vertex, vertex=True)[0]
    assert jobs.index.str.contains("/tuningJobs/").any() and jobs.index.str.contains("/batchPredictionJobs/").any()
