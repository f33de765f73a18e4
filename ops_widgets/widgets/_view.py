"""What a widget shows of an operation (pure functions from snapshots to synced state), and
Throttle, the ten-updates-a-second cap both widgets send through."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._progress import as_number
from .._text import format_duration, summary_line
from .._types import Operation, State

# format_duration and summary_line live in _text (the engine's repr uses them too); re-exported.
__all__ = [
    "LIST_ROW_KEYS", "Throttle", "display_state", "error_text", "filter_text", "format_duration", "kind_label",
    "list_summary", "poll_status", "result_items", "shown_error", "summary_line", "view_state",
]

# What the services say when a cancel went through: the "cancelled" badge says it already.
_JUST_CANCELLED = re.compile(r"\s*(the\s+)?operation\s+(was\s+|has\s+been\s+)?cancell?ed\.?\s*", re.IGNORECASE)


def display_state(state: str, cancelling: bool) -> str:
    """The state shown on screen: a running operation with a cancel sent reads "cancelling"."""
    return "cancelling" if state == "running" and cancelling else state


def kind_label(kind: str) -> str:
    """What a kind is called on screen; the front-end has no list of kinds of its own."""
    return "operation" if kind == "other" else kind


def filter_text(op: Operation) -> str:
    """Why the safety checks withheld a video, as plain text (the front-end sets it as text)."""
    reasons = op.filter_reasons
    return "; ".join(reasons) if reasons else "by safety checks (no reason given)"


def result_items(op: Operation) -> list[dict[str, str]]:
    """A short result for a finished operation: video URIs (or why there are none), the tuned
    model, the document, a batch's counts. Plain text: the front-end never reads it as HTML, and
    makes no link of it."""
    if not op.succeeded:  # filtered ones are done without an error too
        return []
    if op.filtered:
        return [{"label": "filtered:", "text": filter_text(op)}]
    kind, response, meta = op.kind, op.response or {}, op.metadata
    if kind == "video":
        uris = op.video_uris
        if not uris:
            return [{"label": "no video:", "text": "the response holds no video"}]
        # Text, not links: the service answers a browser that opens one with 403 (it needs the key,
        # which never leaves the kernel); the player and its Save button fetch it through the kernel.
        items = [{"label": f"video {i}:", "text": uri} for i, uri in enumerate(uris, 1)]
        if op.filter_reasons:  # some videos came, others were withheld
            items.append({"label": "filtered:", "text": filter_text(op)})
        return items
    if kind == "tuning":
        name = response.get("name") or meta.get("tunedModel")
        return [{"label": "tuned model:", "text": str(name)}] if name else []
    if kind == "import":
        doc = response.get("documentName") or response.get("name")
        return [{"label": "document:", "text": str(doc)}] if doc else []
    if kind == "batch":
        stats = meta.get("batchStats")
        if isinstance(stats, Mapping):
            ok, bad, total = (_count(stats.get(k), d) for k, d in (
                ("successfulRequestCount", "0"), ("failedRequestCount", "0"), ("requestCount", "?")))
            return [{"label": "requests:", "text": f"{ok} succeeded, {bad} failed of {total}"}]
    return []


def _count(value: Any, default: str) -> str:
    """An int64 count as text ("12", sent as a string or a number); ``default`` if absent (proto3
    omits 0) and "?" if it is no count (a 5000-digit int cannot even become text)."""
    if value is None:
        return default
    number = as_number(value)
    if number is None or number != int(number) or abs(number) >= 2**63:
        return "?"
    return str(int(number))


def shown_error(state: str, message: str) -> str:
    """The error message a view shows: a cancel's stock message only repeats the badge."""
    return "" if state == State.CANCELLED.value and _JUST_CANCELLED.fullmatch(message) else message


def error_text(op: Operation) -> tuple[str, str]:
    """(message in plain words, code name for a tooltip) of a failed or cancelled operation."""
    error = op.error if op.failed else None
    if error is None:
        return "", ""
    return shown_error(op.state.value, error.message), f"{error.code_name} ({error.code})"


def poll_status(done: bool, polling: bool, error: object | None) -> tuple[str, str]:
    """(poll_error, stopped) of a handle: "still trying" only while polling goes on after errors;
    once nothing polls an operation that is not done, why it stopped."""
    if done:
        return "", ""
    if not polling:
        return "", str(error) if error is not None else "nothing polls it any more"
    return ("" if error is None else f"Polling keeps failing, still trying: {error}"), ""


def view_state(
    op: Operation,
    *,
    elapsed: float | None,
    eta: float | None,
    eta_is_estimate: bool,
    cancelling: bool = False,
    can_cancel: bool = True,
    polling: bool = True,
    poll_error: str = "",
    stopped: str = "",
    cancel_error: str = "",
    progress_rate: float | None = None,
) -> dict[str, Any]:
    """Every synced trait of an OperationWidget, from one snapshot and its handle's figures.

    ``stopped`` is why nothing polls it any more although it is not done ("" while polled): then
    it shows no ETA and no "still trying". While a cancel is under way there is no ETA either.
    """
    # A batch can report its end (metadata.state) before the operation is done: it has ended then.
    ended = op.done or op.state is not State.RUNNING
    state = display_state(op.state.value, cancelling)
    stopped = "" if op.done else stopped
    no_eta = ended or bool(stopped) or state == "cancelling"
    message, code = error_text(op)
    progress = op.progress
    return {
        "name": op.name,
        "op_id": op.id,
        "kind": op.kind,
        "kind_label": kind_label(op.kind),
        "can_cancel": can_cancel,
        "polling": bool(polling) or op.done,
        "state": state,
        "progress": None if progress is None else round(progress, 2),
        "elapsed": None if elapsed is None else round(elapsed, 1),
        "eta": None if eta is None or no_eta else round(eta, 1),
        "eta_is_estimate": bool(eta_is_estimate) and not no_eta,
        "error_code": code,
        "error_message": message,
        "result": result_items(op),
        "poll_error": "" if stopped or ended else poll_error,
        "stopped": stopped,
        "cancel_error": cancel_error,
        # Percent per second, for the front-end to move the bar between polls (0: it does not).
        "progress_rate": 0.0 if no_eta or not progress_rate or progress_rate < 0 else round(progress_rate, 6),
    }


# What a row of the list view (watch_all) carries of view_state: no result, no compact flag.
LIST_ROW_KEYS = (
    "name", "op_id", "kind_label", "state", "progress", "elapsed", "eta", "eta_is_estimate", "error_code",
    "error_message", "poll_error", "stopped", "cancel_error", "can_cancel",
)
_ENDED = {State.SUCCEEDED.value, State.FAILED.value, State.CANCELLED.value, State.FILTERED.value}


def list_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line over a list of operations: "37/120 done · 3 failed · ETA 4m 00s". The ETA is the
    longest of the running ones (they run side by side), "unknown" if any has none."""
    done = sum(r["state"] in _ENDED for r in rows)
    parts = [f"{done}/{len(rows)} done"]
    for state in (State.FAILED.value, State.CANCELLED.value, State.FILTERED.value):
        count = sum(r["state"] == state for r in rows)
        if count:
            parts.append(f"{count} {state}")
    stopped = sum(bool(r["stopped"]) for r in rows)
    if stopped:
        parts.append(f"{stopped} stopped")
    cancelling = sum(r["state"] == "cancelling" for r in rows)
    if cancelling:
        parts.append(f"{cancelling} cancelling")
    running = [r for r in rows if r["state"] == "running" and not r["stopped"]]
    if running:
        etas = [r["eta"] for r in running]
        if all(e is not None for e in etas):
            guess = "~" if any(r["eta_is_estimate"] for r in running) else ""
            parts.append(f"ETA {guess}{format_duration(max(etas))}")
        else:
            parts.append("ETA unknown")
    return " · ".join(parts)


class Throttle:
    """At most one send per ``interval`` seconds; later changes are folded into one trailing send.

    Used on one thread (the engine's); ``clock`` is the engine's monotonic clock.
    """

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._pending = False

    def delay(self) -> float:
        """0 to send now (and it is counted as sent), else how long to wait before sending."""
        now = self._clock()
        wait = self._last + self.interval - now
        if wait <= 0:
            self._last = now
            self._pending = False
            return 0.0
        return wait

    def run(self, send: Callable[[], None], call_later: Callable[[float, Callable[[], None]], None]) -> None:
        """``send()`` now if allowed; else once, when the interval is over (calls made while a
        trailing send is booked only join it)."""
        wait = self.delay()
        if not wait:
            send()
            return
        if self._pending:
            return
        self._pending = True

        def trailing() -> None:
            self._pending = False
            self._last = self._clock()
            send()

        call_later(wait, trailing)
