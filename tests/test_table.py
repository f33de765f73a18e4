"""OperationsTable's Python side (recorded comm) and its pure view functions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import traitlets
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_widget import RecordingComm, Sim, recorded_comm, sim  # noqa: F401  (the fixtures are reused)

from ops_widgets import Operation, OperationsTable, to_dataframe
from ops_widgets.widgets._table_view import TableIndex, page_rows


def make_frame() -> pd.DataFrame:
    def op(name: str, **kw: Any) -> Operation:
        return Operation.from_api_response({"name": name, **kw})

    return to_dataframe([
        op("models/veo-3.0-generate-001/operations/v1", metadata={"createTime": "2026-01-01T00:00:03Z"}),
        op("tunedModels/t/operations/t1", metadata={"createTime": "2026-01-01T00:00:01Z", "completedPercent": 40}),
        op("batches/b1", done=True, error={"code": 13, "message": "quota <b>exceeded</b>"},
           metadata={"createTime": "2026-01-01T00:00:02Z", "updateTime": "2026-01-01T00:10:00Z"}),
        op("operations/g1", done=True, response={}),
        op("operations/g2", done=True, error={"code": 1, "message": "Operation was cancelled."}),
    ])


def test_the_state_filter_sees_cancelling() -> None:
    f = make_frame()
    v1 = "models/veo-3.0-generate-001/operations/v1"
    running = TableIndex(f).matching(states=["running"], cancelling={v1, "operations/g1"})
    assert list(running) == ["tunedModels/t/operations/t1"]
    assert list(TableIndex(f).matching(states=["cancelling"], cancelling={v1, "operations/g1"})) == [v1]  # g1 is done
    assert len(TableIndex(f).matching(cancelling={v1})) == 5


def test_matching_filters_and_sorts() -> None:
    f = make_frame()
    assert list(TableIndex(f).matching()) == ["models/veo-3.0-generate-001/operations/v1", "batches/b1",
                                 "tunedModels/t/operations/t1", "operations/g1",
                                 "operations/g2"]  # newest first, NaT last
    assert list(TableIndex(f).matching(states=["running"], sort_by="id", descending=False)) == [
        "tunedModels/t/operations/t1", "models/veo-3.0-generate-001/operations/v1"]
    assert list(TableIndex(f).matching(kinds=["batch", "other"], sort_by="name", descending=False)) == [
        "batches/b1", "operations/g1", "operations/g2"]
    assert list(TableIndex(f).matching(search="QUOTA")) == ["batches/b1"]  # error messages, any case
    assert list(TableIndex(f).matching(search="tunedmodels/t")) == ["tunedModels/t/operations/t1"]  # names
    assert list(TableIndex(f).matching(search="<b>")) == ["batches/b1"]  # plain text, not a pattern
    assert list(TableIndex(f).matching(sort_by="progress", descending=True))[0] == "tunedModels/t/operations/t1"
    assert list(TableIndex(f).matching(sort_by="state", descending=False))[0] == "operations/g2"  # "cancelled" first
    with pytest.raises(ValueError):
        TableIndex(f).matching(sort_by="nope")


# Short texts from a small alphabet (ties are common), with the cases that trip byte-level
# search and sorting: "ß" (upper() makes it two letters), NUL, a non-BMP emoji, a surrogate.
_TEXT = st.text(alphabet=st.sampled_from(["a", "B", "b", "/", "ß", "S", "\x00", "\U0001f600", "\ud800", "é"]),
                max_size=6)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(_TEXT, min_size=1, max_size=40, unique=True),
       errors=st.lists(st.none() | _TEXT, min_size=40, max_size=40), descending=st.booleans())
@example(names=["b", "a", "B"], errors=[None, "x", "x"] + [None] * 37, descending=True)
def test_the_index_sorts_and_searches_as_python_does(names: list[str], errors: list[str | None],
                                                     descending: bool) -> None:
    """Its numpy sort and byte search give what pandas' stable sort and Python's `in` give."""
    frame = pd.DataFrame({"id": pd.array(names, dtype="string"),
                          "error_message": pd.array(errors[:len(names)], dtype="string")},
                         index=pd.Index(names, dtype="string"))
    index = TableIndex(frame)
    for column in ("id", "error_message", "name"):
        keys = frame.index.to_series() if column == "name" else frame[column]
        expected = keys.reset_index(drop=True).sort_values(ascending=not descending, na_position="last",
                                                           kind="stable").index.to_numpy()
        assert index.order(column, descending).tolist() == expected.tolist(), column
    for needle in {"a", "B", "SS", "ß", "/A", "\x00", "\U0001f600", "É", *names[:3]}:
        want = [needle.upper() in n.upper() or (isinstance(e, str) and needle.upper() in e.upper())
                for n, e in zip(names, errors, strict=False)]
        if "\x00" in needle:  # a NUL is taken for a space in the text searched
            continue
        assert index.search(needle).tolist() == want, needle


def test_a_search_never_matches_across_two_strings() -> None:
    frame = pd.DataFrame({"error_message": pd.array(["xyz", None], dtype="string")},
                         index=pd.Index(["abc", "zzz"], dtype="string"))
    index = TableIndex(frame)
    assert not index.search("cx").any() and not index.search("CXY").any()
    assert index.search("bc").tolist() == [True, False] and index.search("yz").tolist() == [True, False]
    assert np.array_equal(index.search(""), [True, True])


def test_page_rows_are_plain_json() -> None:
    f = make_frame()
    rows = page_rows(f, ["batches/b1", "models/veo-3.0-generate-001/operations/v1"],
                     selected={"batches/b1"}, cancelling={"models/veo-3.0-generate-001/operations/v1"})
    json.dumps(rows)
    assert rows[0] == {"name": "batches/b1", "id": "b1", "kind": "batch", "state": "failed", "progress": None,
                       "create_time": "2026-01-01T00:00:02Z", "duration": 598.0,
                       "error": "quota <b>exceeded</b>", "selected": True}
    assert rows[1]["state"] == "cancelling" and rows[1]["selected"] is False and rows[1]["error"] == ""
    cancelled, failed = page_rows(f, ["operations/g2", "batches/b1"], selected=(), cancelling=())
    assert cancelled["state"] == "cancelled" and cancelled["error"] == ""  # its stock message repeats the badge
    assert failed["error"] == "quota <b>exceeded</b>"


def test_only_the_visible_page_travels() -> None:
    names = [Operation.from_api_response({"name": f"operations/o{i:06d}"}) for i in range(100_000)]
    table = OperationsTable(names)
    state = table.get_state()
    assert table.total == 100_000 and len(state["rows"]) == 50
    assert len(json.dumps(state["rows"])) < 20_000
    table.page = 3
    assert table.rows[0]["name"] == table.filtered.index[150]
    table.page = 10**6  # past the end: the last page
    assert table.page == 1999 and len(table.rows) == 50
    table.close()


def test_filters_reset_the_page_and_sorting_is_validated() -> None:
    table = OperationsTable(make_frame(), page_size=2)
    table.page = 2
    table.state_filter = ["running"]
    assert table.page == 0 and table.matching == 2 and {r["state"] for r in table.rows} == {"running"}
    table.kind_filter = ["tuning"]
    assert [r["id"] for r in table.rows] == ["t1"]
    with pytest.raises(traitlets.TraitError):
        table.sort_by = "password"
    table.close()


def test_selection_messages_and_frames() -> None:
    table = OperationsTable(make_frame())
    table.comm.from_front({"type": "select", "names": ["batches/b1", "not-in-table"], "selected": True})
    assert table.selected_count == 1 and list(table.selected.index) == ["batches/b1"]
    table.state_filter = ["running"]
    table.comm.from_front({"type": "select_matching"})
    assert table.selected_count == 3 and set(table.selected.index) >= set(table.filtered.index)
    table.comm.from_front({"type": "select", "names": ["batches/b1"], "selected": False})
    assert table.selected_count == 2
    table.comm.from_front({"type": "clear_selection"})
    assert table.selected_count == 0 and table.selected.empty
    table.comm.from_front({"type": "ping"})
    assert {"type": "pong"} in table.comm.customs()
    table.close()


def test_synced_state_has_no_secrets(emu: Any) -> None:
    with emu.client() as client:  # closed here: nothing (not even the table) keeps it open for ever
        table = OperationsTable(make_frame(), client)
        assert emu.api_key not in json.dumps(table.get_state(), default=str)
        assert "api_key" not in table.get_state() and emu.api_key not in repr(table)
        assert table.wait_idle(10)  # its first look at the running rows
        table.close()


def test_cancel_selected_against_the_emulator(sim: Sim) -> None:
    emu = sim.emu
    running = [emu.create("batch", duration=3600) for _ in range(6)]
    videos = [emu.create("video", duration=3600) for _ in range(2)]  # the service cannot cancel these
    done = [emu.create("batch", duration=0.01) for _ in range(3)]
    sim.advance(1)
    client = sim.client()
    table = OperationsTable(client.list_dataframe(progress=False), client, page_size=4)
    client.delete(running[5])  # gone on the server meanwhile: that one fails, the rest go on
    table.state_filter = ["running"]
    assert table.matching == 8
    table.comm.from_front({"type": "select_matching"})
    assert table.selected_count == 8 and table.cancellable_count == 6 and table.deletable_count == 6
    assert table.wait_idle(10)
    emu.reset_stats()
    table.comm.from_front({"type": "action", "action": "cancel"})
    assert table.wait_idle(10)  # the bulk action ran on its worker thread
    assert not table.busy and "Cancel sent for 5 operations" in table.message and "1 failed" in table.message
    assert "2 selected the service cannot cancel were left alone" in table.message
    assert emu.stats()["by_route"].get("POST /v1beta/{name}:cancel") == 6  # none for the videos
    for name in videos:
        assert "error" not in emu.get_operation(name)
    assert table.outcomes is not None and table.outcomes["ok"].sum() == 5
    for name in running[:5]:
        assert emu.get_operation(name)["error"]["code"] == 1
    for name in done:
        assert "error" not in emu.get_operation(name)
    # The filter is applied again: the cancelled ones left "running" at once, and the count with them.
    assert table.matching == 3 and {r["name"] for r in table.rows} == {*videos, running[5]}
    assert table.selected_count == 3  # the one that failed, and the two it could not cancel
    assert "Cancel sent" in table.message
    table.state_filter = []  # a new filter: the message was about the old one
    assert table.message == "" and table.matching == 11
    table.state_filter = ["cancelling", "cancelled"]
    assert table.matching == 5
    # Rows on screen are tracked: they turn cancelled once the engine sees it.
    sim.advance(15)
    assert table.wait_idle(10)
    sim.advance(15)
    assert [r["state"] for r in table.rows] == ["cancelled"] * 4 and table.matching == 5
    table.close()


def test_a_cancel_sent_elsewhere_shows_in_the_table() -> None:
    """One state across both widgets: a row whose poller says a cancel went through (a widget on
    the same client sent it) reads "cancelling" here too, and leaves a "running" filter."""
    from types import SimpleNamespace

    table = OperationsTable(make_frame(), state_filter=["running"])
    v1 = "models/veo-3.0-generate-001/operations/v1"
    handle: Any = SimpleNamespace(cancel_requested=True, elapsed=None, call_later=lambda _delay, fn: fn())
    table._on_live(Operation.from_api_response({"name": v1}), handle=handle)
    assert [r["name"] for r in table.rows] == ["tunedModels/t/operations/t1"] and table.matching == 1
    table.state_filter = []
    assert next(r for r in table.rows if r["name"] == v1)["state"] == "cancelling"
    table.close()


def test_a_row_that_ends_leaves_the_running_filter(sim: Sim) -> None:
    name = sim.emu.create("tuning", duration=60)
    other = sim.emu.create("tuning", duration=3600)
    client = sim.client()
    table = OperationsTable(client.list_all(), client, state_filter=["running"])
    assert table.matching == 2 and table.wait_idle(10)
    sim.advance_until(lambda: table.matching == 1, step=30)
    assert [r["name"] for r in table.rows] == [other] and table.frame.loc[name, "state"] == "succeeded"
    table.close()


def test_delete_selected_removes_rows(sim: Sim) -> None:
    names = [sim.emu.create("batch", duration=0.01) for _ in range(5)]
    sim.advance(1)
    client = sim.client()
    table = OperationsTable(client.list_all(), client)
    table.comm.from_front({"type": "select", "names": names[:3], "selected": True})
    table.run_action("delete")
    assert table.wait_idle(10) and not table.busy
    assert table.total == 2 and set(table.frame.index) == set(names[3:])
    assert all(sim.emu.get_operation(n) is None for n in names[:3])
    table.run_action("delete")
    assert table.message == "Nothing is selected."
    table.close()


def test_live_rows_follow_the_engine(sim: Sim) -> None:
    name = sim.emu.create("tuning", duration=600)
    client = sim.client()
    table = OperationsTable(client.list_all(), client)
    assert table.rows[0]["state"] == "running"
    assert table.wait_idle(10)  # its first look at the running row
    sim.advance_until(lambda: table.rows[0]["state"] == "succeeded", step=30)
    assert table.frame.loc[name, "progress"] == 100
    took = table.frame.loc[name, "duration"]  # refreshed from the live update, not the listing
    assert took == pd.Timedelta(seconds=600)
    updates = [u for u in table.comm.updates() if "rows" in u]
    assert 1 <= len(updates) <= 60  # one per poll that changed something, throttled
    table.close()


def test_no_client_no_action() -> None:
    table = OperationsTable(make_frame())
    table.comm.from_front({"type": "select_matching"})
    table.run_action("cancel")
    assert "No client" in table.message and not table.busy
    with pytest.raises(ValueError):
        table.run_action("explode")
    table.close()


def live_update(table: OperationsTable, name: str, **fields: Any) -> None:
    """What the engine hands the table when a poll of ``name`` answers ``fields``."""
    from types import SimpleNamespace

    handle: Any = SimpleNamespace(cancel_requested=False, elapsed=None, call_later=lambda _delay, fn: fn())
    table._on_live(Operation.from_api_response({"name": name, **fields}), handle=handle)


def big_frame(n: int) -> pd.DataFrame:
    return to_dataframe([Operation.from_api_response({
        "name": f"batches/b{i:06d}",
        "metadata": {"createTime": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"},
        **({"done": True, "error": {"code": 13, "message": f"quota {i}"}} if i % 7 == 0 else {}),
    }) for i in range(n)])


def test_the_table_keeps_its_index_across_filters_sorts_and_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sort key's order is sorted once, and the search buffer built once, however often
    the filters, the sort or the search change: a round trip never re-sorts every row."""
    table = OperationsTable(big_frame(2_000))
    import ops_widgets.widgets._table_view as view

    sorts: list[str] = []
    real_sort = view._sorted_positions

    def counting_sort(keys: pd.Series, descending: bool) -> Any:
        sorts.append(str(keys.name))
        return real_sort(keys, descending)

    monkeypatch.setattr(view, "_sorted_positions", counting_sort)
    for _ in range(3):
        table.sort_by = "id"
        table.state_filter = ["failed"]
        table.search = "QUOTA 7"
        table.state_filter = []
        table.search = ""
        table.sort_by = "create_time"
        table.sort_desc = not table.sort_desc
        table.kind_filter = ["batch"]
        table.kind_filter = []
    # Once per key and direction: id both ways, create_time ascending (descending was made at start).
    assert sorted(sorts) == ["create_time", "id", "id"], sorts
    buffer = table._index._searchable()
    table.search = "b00012"
    assert table._index._searchable() is buffer and table.matching == 10
    fresh = TableIndex(table.frame)  # built anew: what the kept one must agree with
    assert list(table.filtered.index) == list(fresh.matching(search="b00012", sort_by="create_time",
                                                             descending=table.sort_desc))
    table.close()


def test_a_live_change_reaches_the_kept_orders_and_search() -> None:
    """The kept index is told what a live row changed: a later sort or search sees the new
    values, and a poll that changed nothing keeps every order."""
    names = ["tunedModels/t/operations/a", "tunedModels/t/operations/b", "tunedModels/t/operations/c"]
    table = OperationsTable(to_dataframe([Operation.from_api_response(
        {"name": n, "metadata": {"completedPercent": p}}) for n, p in zip(names, (10, 20, 30), strict=True)]),
        sort_by="progress")
    assert list(table.filtered.index) == names[::-1]
    kept = table._index.order("progress", True)
    live_update(table, names[0], metadata={"completedPercent": 10})  # nothing new
    assert table._index.order("progress", True) is kept
    live_update(table, names[0], metadata={"completedPercent": 90})
    table.sort_desc = False
    table.sort_desc = True
    assert list(table.filtered.index) == [names[0], names[2], names[1]]
    table.search = "disk full"
    assert table.matching == 0
    live_update(table, names[1], done=True, error={"code": 13, "message": "Disk full"})
    table.search = "DISK"
    assert list(table.filtered.index) == [names[1]]
    table.close()


def test_a_closed_table_lets_go_of_its_rows() -> None:
    import gc
    import weakref

    table = OperationsTable(big_frame(500))
    frame = weakref.ref(table._frame)
    table.close()
    gc.collect()
    assert frame() is None and table.total == 500 and table.frame.empty and repr(table) == "<OperationsTable (closed)>"
    table.state_filter = ["running"]  # a late change from anywhere: no error, nothing kept
    assert table.filtered.empty


def test_a_rerun_of_the_cell_closes_the_table_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-running a cell that makes a table closes the table its last run made: ipywidgets and
    the comm would keep it open, and its frame, for ever. A cell making two tables keeps both."""
    import gc
    import weakref

    import ipywidgets

    from ops_widgets.widgets import _lifetime

    here = {"cell": ("cell-a", "run-1")}
    monkeypatch.setattr(_lifetime, "current_cell_run", lambda: here["cell"])
    source = big_frame(500)

    def open_tables() -> list[OperationsTable]:
        return [w for w in ipywidgets.widgets.widget._instances.values() if isinstance(w, OperationsTable)]

    before = len(open_tables())
    first, second = OperationsTable(source), OperationsTable(source)  # one run, two tables
    refs = [weakref.ref(first), weakref.ref(first._frame), weakref.ref(second._frame)]
    here["cell"] = ("cell-b", "run-2")
    other = OperationsTable(source)  # another cell: left alone
    here["cell"] = ("cell-a", "run-3")  # cell a again
    third = OperationsTable(source)
    assert first.comm is None and second.comm is None and other.comm is not None and third.comm is not None
    del first, second
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert len(open_tables()) == before + 2
    assert source.shape == (500, len(source.columns)) and third.total == 500  # the caller's frame is untouched
    for table in (other, third):
        table.close()


def test_rerunning_a_table_cell_in_a_kernel_keeps_one_table(tmp_path: Any) -> None:
    """In a real kernel, as JupyterLab runs a cell (execute_request naming its cellId): a re-run
    of `table = OperationsTable(df)` closes the table of the run before and frees its frame, both
    when the cell shows it as its value (the shell's Out history then keeps a closed husk with no
    rows) and when it shows it with display() (then nothing keeps the old table at all)."""
    import os
    from pathlib import Path

    import jupyter_client

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.blocking_client()
    kc.start_channels()

    def run(code: str, cell_id: str) -> str:
        msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                 "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        msg["metadata"]["cellId"] = cell_id
        kc.shell_channel.send(msg)
        out: list[str] = []
        while True:
            reply = kc.get_iopub_msg(timeout=60)
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if reply["msg_type"] == "stream":
                out.append(reply["content"]["text"])
            elif reply["msg_type"] == "error":
                raise AssertionError("\n".join(reply["content"]["traceback"]))
            elif reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                return "".join(out)

    try:
        kc.wait_for_ready(timeout=60)
        run("import gc, json, weakref, ipywidgets\n"
            "from ops_widgets import Operation, OperationsTable, to_dataframe\n"
            "df = to_dataframe([Operation.from_api_response({'name': f'batches/b{i}'}) for i in range(2000)])\n"
            "def open_tables():\n"
            "    return sum(isinstance(w, OperationsTable) for w in ipywidgets.widgets.widget._instances.values())",
            "setup")
        shown_as_value = "table = OperationsTable(df)\ntable"
        run(shown_as_value, "value-cell")
        run("old, old_frame = weakref.ref(table), weakref.ref(table._frame)", "look-1")
        run(shown_as_value, "value-cell")
        run("from IPython.display import display\nshown = OperationsTable(df)\ndisplay(shown)", "display-cell")
        run("old_shown = weakref.ref(shown)", "look-2")
        for _ in range(3):
            run("from IPython.display import display\nshown = OperationsTable(df)\ndisplay(shown)", "display-cell")
        found = json.loads(run(
            "gc.collect()\n"
            "print(json.dumps({'frame': old_frame() is not None, 'closed': old().comm is None,\n"
            "    'rows': len(old().frame), 'shown': old_shown() is not None, 'open': open_tables(),\n"
            "    'new': table.comm is not None and len(table.frame)}))", "check"))
        assert found == {"frame": False, "closed": True, "rows": 0, "shown": False, "open": 2, "new": 2000}, found
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
