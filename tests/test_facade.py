"""The blocking Operations facade: same surface as AsyncOperations, works everywhere."""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ops_widgets as ow
from ops_widgets import AsyncOperations, Operations


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(cls).items()
        if callable(fn) and not name.startswith("_") and name not in ("close", "aclose")
    }


def test_same_public_methods_and_signatures() -> None:
    sync, async_ = public_methods(Operations), public_methods(AsyncOperations)
    assert sync.keys() == async_.keys()
    assert {"get", "list", "list_all", "cancel", "delete", "wait", "wait_with_backoff"} <= sync.keys()
    # The blocking twin of each handle: only the handle type may differ in return annotations.
    twins = {"AsyncTracked": "Tracked", "_List[AsyncTracked]": "_List[Tracked]",
             "AsyncGenerator[Operation, None]": "Iterator[Operation]"}
    for name in sync:
        assert sync[name].parameters == async_[name].parameters, name
        ret = async_[name].return_annotation
        assert sync[name].return_annotation == twins.get(ret, ret), name
        # Every method that does I/O is a coroutine on AsyncOperations (or an async generator);
        # pure ones are plain on both.
        pure = name in ("can_cancel", "can_delete")
        method = getattr(AsyncOperations, name)
        io = inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)
        assert io is not pure, name
    assert inspect.signature(Operations.__init__) == inspect.signature(AsyncOperations.__init__)


def test_every_method_against_the_emulator(emu: Any) -> None:
    with emu.client() as ops:
        name = emu.create("tuning", duration=0.4)
        assert ops.get(name).running
        seen: list[ow.Operation] = []
        assert ops.wait(name, poll_interval=0.05, on_progress=seen.append).succeeded
        assert seen[-1].done
        other = emu.create("video", duration=0.2, model="veo-3.1-generate-preview")
        assert ops.wait_with_backoff(other, initial_delay=0.02, max_delay=0.05).video_uris
        page = ops.list(parent="models/veo-3.1-generate-preview", page_size=1)
        assert len(page.operations) == 1
        assert other in {o.name for o in ops.list_all(parent="models/veo-3.1-generate-preview")}
        victim = emu.create("batch", duration=3600)
        ops.cancel(victim)
        assert ops.get(victim).cancelled
        ops.delete(victim)
        with pytest.raises(ow.NotFoundError):
            ops.get(victim)
        with pytest.raises(ow.WaitTimeout):
            ops.wait(emu.create("video", duration=3600), poll_interval=0.05, timeout=0.2)


def test_inside_a_running_event_loop(emu: Any) -> None:
    """What a Jupyter cell does: call the blocking API while the kernel's loop runs."""
    name = emu.create("video", duration=60)
    ops = emu.client()

    async def cell() -> str:
        asyncio.get_running_loop()  # a loop is running, as in ipykernel
        return ops.get(name).name

    assert asyncio.run(cell()) == name
    ops.close()


def test_from_eight_threads_at_once(emu: Any) -> None:
    names = [emu.create("batch", duration=0.3) for _ in range(8)]
    ops = emu.client()
    barrier = threading.Barrier(8)

    def work(name: str) -> tuple[str, bool]:
        barrier.wait()
        got = ops.get(name)
        done = ops.wait(name, poll_interval=0.05, timeout=30)
        ops.list(parent="batches", page_size=5)
        return got.name, done.done

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, names))
    assert results == [(n, True) for n in names]
    ops.close()


def test_errors_cross_the_thread_boundary_typed(emu: Any) -> None:
    with emu.client() as ops:
        with pytest.raises(ow.NotFoundError):
            ops.get("operations/nope")
        with pytest.raises(ow.InvalidNameError):
            ops.get("nope")


def test_blocking_call_from_a_callback_on_the_engine_thread_is_refused(emu: Any) -> None:
    ops = emu.client()
    name = emu.create("video", duration=0.1)

    def on_progress(op: ow.Operation) -> None:
        ops.get(op.name)

    with pytest.raises(RuntimeError, match="engine thread"):
        ops.wait(name, poll_interval=0.05, on_progress=on_progress)
    ops.close()


def test_reprs_are_short() -> None:
    assert repr(Operations("k", base_url="http://x")) == "Operations(base_url='http://x', api_version='v1beta')"


def test_help_shows_what_each_method_does() -> None:
    """Every public method documents itself on both clients; the blocking one says the same."""
    for name in public_methods(AsyncOperations):
        doc = getattr(AsyncOperations, name).__doc__
        assert doc and len(doc.strip()) > 20, name
        assert getattr(Operations, name).__doc__ == doc, name
    assert "poll_interval" in (Operations.wait.__doc__ or "")
