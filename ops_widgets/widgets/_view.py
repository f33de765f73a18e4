"""What a widget shows of an operation (pure functions from snapshots to synced state), and
Throttle, the ten-updates-a-second cap both widgets send through."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._types import Operation

__all__ = ["Throttle", "format_duration", "kind_label", "result_items", "summary_line", "view_state"]


# The widget's JavaScript (formatDuration in js/widgets.js) mirrors this step for step, so repr()
# and the screen show the same text; tests/test_frontend.py runs both on the same inputs.
MAX_SECONDS = 2**53  # past this a JS number is no exact integer: its digits would drift from these


def format_duration(seconds: float | None) -> str:
    """Like "1h05m", "1m12s" or "7s": rounded half up to whole seconds, negatives as 0, "" if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    # Half up, exactly like JS Math.round; round() goes half to even (2.5 -> 2), and floor(x + 0.5)
    # is one off at 0.49999999999999994. x - floor(x) is exact in floats.
    whole = math.floor(seconds)
    s = min(MAX_SECONDS, max(0, whole + (seconds - whole >= 0.5)))
    h, m, r = s // 3600, s % 3600 // 60, s % 60
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{r:02d}s" if m else f"{r}s"


def kind_label(kind: str) -> str:
    """What a kind is called on screen; the front-end has no list of kinds of its own."""
    return "operation" if kind == "other" else kind


def summary_line(op: Operation, elapsed: float | None = None) -> str:
    """The text form of a widget: "models/veo/operations/abc  running  42%  1m12s"."""
    line = op.summary()
    return line if elapsed is None else f"{line}  {format_duration(elapsed)}"


def result_items(op: Operation) -> list[dict[str, str]]:
    """A short result for a finished operation: video links, the tuned model, the document."""
    if not op.succeeded:
        return []
    kind, response, meta = op.kind, op.response or {}, op.metadata
    if kind == "video":
        uris = op.video_uris
        if not uris:
            return [{"label": "no video:", "text": "filtered by safety checks (no samples returned)"}]
        return [{"label": f"video {i}:", "text": uri, "href": uri} for i, uri in enumerate(uris, 1)]
    if kind == "tuning":
        name = response.get("name") or meta.get("tunedModel")
        return [{"label": "tuned model:", "text": str(name)}] if name else []
    if kind == "import":
        doc = response.get("documentName") or response.get("name")
        return [{"label": "document:", "text": str(doc)}] if doc else []
    if kind == "batch":
        stats = meta.get("batchStats")
        if isinstance(stats, Mapping):
            ok, bad = stats.get("successfulRequestCount", 0), stats.get("failedRequestCount", 0)
            return [{"label": "requests:", "text": f"{ok} succeeded, {bad} failed of {stats.get('requestCount', '?')}"}]
    return []


def view_state(
    op: Operation,
    *,
    elapsed: float | None,
    eta: float | None,
    eta_is_estimate: bool,
    cancelling: bool = False,
    poll_error: str = "",
    cancel_error: str = "",
) -> dict[str, Any]:
    """Every synced trait of an OperationWidget, from one snapshot and its handle's figures."""
    state = op.state.value
    if state == "running" and cancelling:
        state = "cancelling"
    error = op.error if op.failed else None
    progress = op.progress
    return {
        "name": op.name,
        "op_id": op.id,
        "kind": op.kind,
        "state": state,
        "progress": None if progress is None else round(progress, 2),
        "elapsed": None if elapsed is None else round(elapsed, 1),
        "eta": None if eta is None or op.done else round(eta, 1),
        "eta_is_estimate": bool(eta_is_estimate) and not op.done,
        "error_code": "" if error is None else f"{error.code_name} ({error.code})",
        "error_message": "" if error is None else error.message,
        "result": result_items(op),
        "poll_error": poll_error,
        "cancel_error": cancel_error,
    }


class Throttle:
    """At most one send per ``interval`` seconds; later changes are folded into one trailing send."""

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] | None = None) -> None:
        self.interval = interval
        self._clock = clock or time.monotonic
        self._last = float("-inf")
        self._pending = False
        self._lock = threading.Lock()

    def delay(self) -> float:
        """0 to send now (and it is counted as sent), else how long to wait before sending."""
        now = self._clock()
        wait = self._last + self.interval - now
        if wait <= 0:
            self._last = now
            self._pending = False
            return 0.0
        return wait

    def run(self, send: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        """``send()`` now if allowed; else once, when the interval is over, on ``loop``.

        Callable from any thread: calls made while a trailing send is booked only join it.
        """
        with self._lock:
            wait = self.delay()
            if wait and self._pending:
                return
            self._pending = bool(wait)
        if not wait:
            send()
            return

        def trailing() -> None:
            with self._lock:
                self._pending = False
                self._last = self._clock()
            send()

        try:
            loop.call_soon_threadsafe(loop.call_later, wait, trailing)
        except RuntimeError:
            pass  # the loop is gone: nothing will change any more
