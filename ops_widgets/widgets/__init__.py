"""Jupyter widgets: OperationWidget (one operation, live), watch_all (a compact list, an
OperationsList) and OperationsTable (many operations: filter, select, cancel; it loads pandas, so
only when asked)."""

from typing import Any

from ._operation import OperationsList, OperationWidget, watch_all

__all__ = ["OperationWidget", "OperationsList", "OperationsTable", "watch_all"]


def __getattr__(name: str) -> Any:
    if name == "OperationsTable":
        from ._table import OperationsTable

        return OperationsTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
