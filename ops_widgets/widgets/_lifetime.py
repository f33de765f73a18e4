"""What keeps a widget alive, and how it goes.

- A widget lives until it is closed: ipywidgets keeps every open one in its registry and the
  kernel's comm manager holds its comm (whose handlers are the widget's bound methods), so a cell
  re-run 10 times would hold 10 tables and their frames. The front-end names the cell in each
  execute_request (metadata "cellId": JupyterLab, Notebook 7, VS Code) and each run is a new
  request: ``supersede`` closes what the cell's last run made. Outside a kernel, or with a
  front-end that names no cell, nothing is tracked.
- Even closed, anywidget (0.9 to 0.11 at least, manzt/anywidget#929) keeps every instance whose
  ``_esm``/``_css`` is a file: each instance connects a lambda that holds it to the class's
  FileContents.changed signal, which lives as long as the class. ``watch_files_weakly`` gives
  the instance those traits first (so anywidget connects nothing) and follows file changes
  (ANYWIDGET_HMR) through bound methods, which psygnal holds weakly.
"""

from __future__ import annotations

import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import traitlets as t

__all__ = ["CellRuns", "current_cell_run", "supersede", "watch_files_weakly"]


class Closable(Protocol):
    def close(self) -> None: ...


class CellRuns:
    """The widgets each cell's latest run made (weakly: a dropped widget is not kept alive here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[str, tuple[str, list[weakref.ref[Closable]]]] = {}

    def add(self, cell: str, run: str, widget: Closable) -> list[Closable]:
        """Record that run ``run`` of ``cell`` made ``widget``; returns the widgets an earlier
        run of the same cell made, still alive, for the caller to close (a cell that makes two
        widgets in one run keeps both)."""
        with self._lock:
            last_run, refs = self._cells.get(cell, ("", []))
            old = [w for w in (r() for r in refs) if w is not None] if last_run != run else []
            if last_run != run:
                refs = []
            refs.append(weakref.ref(widget))
            self._cells[cell] = (run, refs)
        return old


_runs = CellRuns()


def current_cell_run() -> tuple[str, str] | None:
    """(cell id, request id) of the cell running now in this kernel, or None (no kernel, no cell id)."""
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    get_parent: Callable[[], Any] | None = getattr(kernel, "get_parent", None)
    if get_parent is None:
        return None
    try:
        parent = get_parent()
    except Exception:  # an older or unusual kernel: track nothing rather than fail to build
        return None
    if not isinstance(parent, dict):
        return None
    header = parent.get("header") or {}
    if header.get("msg_type") != "execute_request":  # a comm message, or nothing yet
        return None
    cell = (parent.get("metadata") or {}).get("cellId")
    run = header.get("msg_id")
    if not isinstance(cell, str) or not cell or not isinstance(run, str) or not run:
        return None
    return cell, run


def supersede(widget: Closable) -> None:
    """Close the widgets an earlier run of the current cell made, and remember ``widget`` as
    this run's."""
    here = current_cell_run()
    if here is None:
        return
    for old in _runs.add(here[0], here[1], widget):
        old.close()


def _set_esm(widget: t.HasTraits, text: str) -> None:
    widget.set_trait("_esm", text)


def _set_css(widget: t.HasTraits, text: str) -> None:
    widget.set_trait("_css", text)


def watch_files_weakly(widget: t.HasTraits) -> None:
    """Before anywidget's __init__: ``_esm``/``_css`` as synced traits of this instance, their
    file changes followed without keeping the instance alive (see the module docstring)."""
    for key, setter in (("_esm", _set_esm), ("_css", _set_css)):
        contents = getattr(type(widget), key, None)
        if contents is None or widget.has_trait(key):
            continue
        widget.add_traits(**{key: t.Unicode(str(contents)).tag(sync=True)})
        changed = getattr(contents, "changed", None)
        if changed is not None and hasattr(changed, "connect"):
            # A bound method: psygnal keeps only a weak reference to the widget.
            changed.connect(types.MethodType(setter, widget))
