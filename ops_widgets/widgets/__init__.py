"""Jupyter widgets: OperationWidget (one operation, live) and watch_all (a compact list)."""

from ._operation import OperationWidget, watch_all

__all__ = ["OperationWidget", "watch_all"]
