"""Displaying a widget so that its saved output says something: the one text form and a static
HTML snapshot beside the live view, under a display id, rewritten when the widget's operations
end while the kernel lives (JupyterLab saves the rewrite; nbclient keeps the one made at the end
of the running cell). I/O on the IPython kernel's output channel; the snapshots themselves are
widgets._snapshot's (pure)."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Sightings", "publish", "refresh", "with_snapshot"]

logger = logging.getLogger("ops_widgets")


def with_snapshot(bundle: Any, text: str, snapshot: str) -> Any:
    """A widget's mime bundle with the one text form and a static HTML snapshot beside the view."""
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if isinstance(data, dict):
        data["text/plain"] = text
        data["text/html"] = snapshot
    return bundle


def publish(bundle: Any, display_id: str, *, update: bool = False) -> bool:
    """Display (or update) ``bundle`` under ``display_id`` in the running IPython kernel; False
    when there is none (a script). Any thread: the kernel's output channel is thread-safe."""
    try:
        from IPython.core.getipython import get_ipython
        from IPython.display import publish_display_data
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    _hook(shell)
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
    # An update comes from the engine thread, whose callbacks carry the context of the cell that
    # scheduled them, and with it that cell's parent header: a front-end (nbclient, for one)
    # listening to the cell running now would drop it. An empty context makes ipykernel use the
    # latest parent instead.
    context = contextvars.Context() if update else contextvars.copy_context()
    try:
        context.run(publish_display_data, data, metadata or {}, transient={"display_id": display_id}, update=update)
    except Exception:  # a kernel shutting down: the live view has said everything already
        logger.debug("could not refresh the saved output of a widget", exc_info=True)
        return False
    return True


# Saved outputs to rewrite once more at the end of the cell that runs now (display id: bundle).
_pending: dict[str, Callable[[], Any]] = {}
_pending_lock = threading.Lock()
_hooked: list[object] = []  # the shell our post_run_cell hook is registered with


def refresh(display_id: str, bundle: Callable[[], Any]) -> None:
    """Rewrite a displayed widget's saved output: now (from the engine thread: JupyterLab
    applies it whatever cell it comes with), and again when the cell running now ends, on the
    kernel's thread. The second one is what nbclient (nbconvert --execute) keeps when the first
    came while no cell ran, and nothing is lost otherwise: the rewrite is idempotent."""
    _republish(display_id, bundle)
    with _pending_lock:
        _pending[display_id] = bundle


def _republish(display_id: str, bundle: Callable[[], Any]) -> None:
    try:
        data = bundle()
    except Exception:  # closed since (it has no model any more): its output stays as it was
        logger.debug("no bundle to refresh a saved output with", exc_info=True)
        return
    publish(data, display_id, update=True)


def _after_cell(*_args: Any) -> None:
    with _pending_lock:
        todo = list(_pending.items())
        _pending.clear()
    for display_id, bundle in todo:
        _republish(display_id, bundle)


def _hook(shell: Any) -> None:
    if shell is not None and not any(s is shell for s in _hooked):
        shell.events.register("post_run_cell", _after_cell)
        _hooked.append(shell)


class Sightings:
    """Which front-end views of a widget are in sight now (each view reports for itself, by id):
    a widget is on screen while any of them is. Any thread."""

    def __init__(self) -> None:
        self._views: set[str] = set()
        self._lock = threading.Lock()

    def report(self, view: object, visible: bool) -> bool:
        """Take one view's report; whether any view is in sight now."""
        with self._lock:
            (self._views.add if visible else self._views.discard)(str(view))
            return bool(self._views)
