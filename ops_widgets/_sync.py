"""Operations: the blocking facade. Each method runs the AsyncOperations method on the engine thread.

No logic lives here: sync and async share one implementation (see tests/test_facade.py), and
each method's docstring is the async method's (help() shows it).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._client import VIDEO_MAX_BYTES, AsyncOperations, NameOrOperation, ProgressCallback
from ._clock import Clock
from ._engine import Tracked
from ._loop import thread_for
from ._types import ListOperationsResponse, Operation

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from .widgets import OperationsList, OperationWidget

__all__ = ["Operations"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_List = list  # `list` is a method name below


def _doc(fn: F) -> F:
    """The blocking method says what its async twin says."""
    fn.__doc__ = getattr(AsyncOperations, fn.__name__).__doc__
    return fn


class Operations:
    """Get, list, wait for, cancel and delete long-running operations (blocking).

    Safe in scripts, inside Jupyter cells (a running loop is no obstacle) and from many threads.
    ``on_progress`` callbacks and subscribers run on the engine thread. The arguments are
    AsyncOperations'.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        vertexai: bool | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: Any = None,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float | None = 30.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_concurrency: int = 16,
        poll_rate: float | None = 10.0,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        history: bool = True,
    ) -> None:
        self._async = AsyncOperations(
            api_key, vertexai=vertexai, project=project, location=location, credentials=credentials,
            base_url=base_url, api_version=api_version, timeout=timeout,
            max_retries=max_retries, transport=transport, poll_concurrency=poll_concurrency,
            poll_rate=poll_rate, clock=clock, time_scale=time_scale, history=history,
        )
        self._thread = thread_for(self._async.clock)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._thread.run(coro)

    @property
    def clock(self) -> Clock:
        """The clock this client reads and waits on."""
        return self._async.clock

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncOperations", "Operations", 1)

    def close(self) -> None:
        """Stop this client's pollers (their waiters get an error) and close the connection pool.
        A closed client refuses to be used again."""
        self._run(self._async.aclose())

    def __enter__(self) -> Operations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_doc
    def get(self, name: NameOrOperation) -> Operation:
        return self._run(self._async.get(name))

    @_doc
    def track(self, name: NameOrOperation, *, poll_interval: float | None = None) -> Tracked:
        return Tracked(self._run(self._async.track(name, poll_interval=poll_interval)))

    @_doc
    def track_all(self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None) -> _List[Tracked]:
        return [Tracked(h) for h in self._run(self._async.track_all(names, poll_interval=poll_interval))]

    @_doc
    def as_completed(
        self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None, timeout: float | None = None
    ) -> Iterator[Operation]:
        steps = self._async.as_completed(names, poll_interval=poll_interval, timeout=timeout)  # on the engine thread

        async def step() -> Operation | None:
            return await anext(steps, None)

        try:
            while (op := self._run(step())) is not None:
                yield op
        finally:
            self._run(steps.aclose())

    @_doc
    def watch(
        self, name: NameOrOperation, *, poll_interval: float | None = None, notify: bool = False
    ) -> OperationWidget:
        from .widgets import OperationWidget  # lazy: anywidget and ipywidgets only when wanted

        return OperationWidget(self.track(name, poll_interval=poll_interval), close_handle=True, notify=notify)

    @_doc
    def watch_all(
        self, names: Iterable[NameOrOperation], *, poll_interval: float | None = None, notify: bool = False
    ) -> OperationsList:
        from .widgets import OperationsList

        return OperationsList(self.track_all(names, poll_interval=poll_interval), close_handles=True, notify=notify)

    @_doc
    def history(self, *, all_services: bool = False, flatten_metadata: bool = False) -> pd.DataFrame:
        return self._run(self._async.history(all_services=all_services, flatten_metadata=flatten_metadata))

    @_doc
    def track_unfinished(self, *, poll_interval: float | None = None) -> _List[Tracked]:
        return [Tracked(h) for h in self._run(self._async.track_unfinished(poll_interval=poll_interval))]

    @_doc
    def resume(self, *, poll_interval: float | None = None) -> OperationsList:
        from .widgets import OperationsList

        return OperationsList(self.track_unfinished(poll_interval=poll_interval), close_handles=True)

    @_doc
    def list(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListOperationsResponse:
        return self._run(
            self._async.list(parent=parent, page_size=page_size, page_token=page_token, filter=filter)
        )

    @_doc
    def list_all(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        filter: str | None = None,
        max_items: int | None = None,
    ) -> _List[Operation]:
        return self._run(
            self._async.list_all(parent=parent, page_size=page_size, filter=filter, max_items=max_items)
        )

    @_doc
    def list_dataframe(
        self,
        *,
        parent: str | None = None,
        page_size: int | None = None,
        filter: str | None = None,
        max_items: int | None = None,
        flatten_metadata: bool = True,
        progress: bool = True,
    ) -> pd.DataFrame:
        return self._run(
            self._async.list_dataframe(
                parent=parent, page_size=page_size, filter=filter, max_items=max_items,
                flatten_metadata=flatten_metadata, progress=progress,
            )
        )

    @_doc
    def batch_results(self, name: NameOrOperation) -> pd.DataFrame:
        return self._run(self._async.batch_results(name))

    @_doc
    def download_video(self, name: NameOrOperation, index: int = 0, *, max_bytes: int = VIDEO_MAX_BYTES) -> bytes:
        return self._run(self._async.download_video(name, index, max_bytes=max_bytes))

    @_doc
    def cancel_many(
        self, names: Iterable[NameOrOperation] | pd.DataFrame, *, concurrency: int = 8
    ) -> pd.DataFrame:
        return self._run(self._async.cancel_many(names, concurrency=concurrency))

    @_doc
    def delete_many(
        self, names: Iterable[NameOrOperation] | pd.DataFrame, *, concurrency: int = 8
    ) -> pd.DataFrame:
        return self._run(self._async.delete_many(names, concurrency=concurrency))

    @_doc
    def can_cancel(self, name: NameOrOperation) -> bool:
        return self._async.can_cancel(name)

    @_doc
    def can_delete(self, name: NameOrOperation) -> bool:
        return self._async.can_delete(name)

    @_doc
    def cancel(self, name: NameOrOperation) -> None:
        self._run(self._async.cancel(name))

    @_doc
    def delete(self, name: NameOrOperation) -> None:
        self._run(self._async.delete(name))

    @_doc
    def wait(
        self,
        name: NameOrOperation,
        *,
        poll_interval: float = 10.0,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Operation:
        return self._run(
            self._async.wait(name, poll_interval=poll_interval, timeout=timeout, on_progress=on_progress)
        )

    @_doc
    def wait_with_backoff(
        self,
        name: NameOrOperation,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        multiplier: float = 2.0,
        timeout: float | None = 3600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Operation:
        return self._run(
            self._async.wait_with_backoff(
                name, initial_delay=initial_delay, max_delay=max_delay, multiplier=multiplier,
                timeout=timeout, on_progress=on_progress,
            )
        )
