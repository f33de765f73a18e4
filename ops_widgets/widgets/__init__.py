"""Jupyter widgets: OperationWidget (one operation, live), OperationsList (what watch_all shows:
one row per operation, a summary, cancel all running) and OperationsTable (many operations:
filter, select, cancel; it loads pandas, so only when asked)."""

from typing import Any

from ._list import OperationsList, watch_all
from ._operation import OperationWidget

__all__ = ["OperationWidget", "OperationsList", "OperationsTable", "watch_all"]


def __getattr__(name: str) -> Any:
    if name == "OperationsTable":
        from ._table import OperationsTable

        return OperationsTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
