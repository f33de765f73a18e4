"""Jupyter widgets: OperationWidget (one operation, live), watch_all (a compact list) and
OperationsTable (many operations: filter, select, cancel)."""

from ._operation import OperationWidget, watch_all
from ._table import OperationsTable

__all__ = ["OperationWidget", "OperationsTable", "watch_all"]
