"""Static snapshots of the widgets: escaped HTML with inline colours and no script, for wherever
the live widget cannot run (a notebook on GitHub or nbviewer, nbconvert's HTML, a closed kernel).
Pure functions over the widgets' synced state.

Every piece of server text goes through html.escape, and none becomes a link (a video URI needs
the key: a link to it would only open a 403).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .._text import format_duration

__all__ = ["STATE_COLOURS", "list_html", "operation_html", "table_html"]

# The widgets' light-theme state colours (js/widgets.css), inline: a saved page has no stylesheet.
STATE_COLOURS = {
    "running": ("#1976d2", "#fff"),
    "cancelling": ("#f57c00", "#fff"),
    "succeeded": ("#388e3c", "#fff"),
    "failed": ("#d32f2f", "#fff"),
    "cancelled": ("#757575", "#fff"),
    "filtered": ("#ffa000", "#111"),
}
_BOX = ("font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;color:#1f1f1f;"
        "background:#fff;border:1px solid #e0e0e0;border-radius:4px;padding:6px 10px;margin:2px 0;max-width:760px")
_DIM = "color:#616161"
# pre-wrap: the text line's double spaces are part of it.
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;white-space:pre-wrap"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def badge(state: str) -> str:
    back, fore = STATE_COLOURS.get(state, ("#757575", "#fff"))
    return (f'<span style="background:{back};color:{fore};border-radius:8px;padding:0 7px;'
            f'font-size:11px;white-space:nowrap">{_e(state)}</span>')


def _progress_bar(progress: float, state: str) -> str:
    back = STATE_COLOURS.get(state, STATE_COLOURS["running"])[0]
    width = max(0.0, min(100.0, progress))
    return (f'<div style="background:#e0e0e0;height:5px;border-radius:3px;margin:4px 0">'
            f'<div style="width:{width:.1f}%;background:{back};height:5px;border-radius:3px"></div></div>')


def times_text(state: Mapping[str, Any]) -> str:
    """"42% · 1m 12s elapsed · ~3m 00s left", as the widget writes it (an ETA only while running)."""
    parts = []
    progress = state.get("progress")
    if progress is not None:
        parts.append(f"{progress:.0f}%")
    elapsed = state.get("elapsed")
    if elapsed is not None:
        parts.append(f"{format_duration(elapsed)} elapsed")
    eta = state.get("eta")
    if eta is not None and state.get("state") in ("running", "cancelling"):
        parts.append(f"{'~' if state.get('eta_is_estimate') else ''}{format_duration(eta)} left")
    return " · ".join(parts)


def _items(state: Mapping[str, Any]) -> str:
    out = []
    if state.get("error_code") or state.get("error_message"):
        colour = "#616161" if state.get("state") == "cancelled" else "#d32f2f"  # as the widget does
        out.append(f'<div style="color:{colour}">{_e(state.get("error_code", ""))} '
                   f'{_e(state.get("error_message", ""))}</div>')
    for item in state.get("result") or ():
        out.append(f'<div><span style="{_DIM}">{_e(item.get("label", ""))}</span> {_e(item.get("text", ""))}</div>')
    return "".join(out)


def operation_html(state: Mapping[str, Any], line: str) -> str:
    """One OperationWidget as static HTML: id, kind, state badge, progress bar, times, error or
    result, and the one-line text form. ``state``: its synced traits (view_state's keys)."""
    st = str(state.get("state", ""))
    progress = state.get("progress")
    bar = "" if progress is None else _progress_bar(float(progress), st)
    times = times_text(state)
    return (
        f'<div class="opw-snapshot" data-state="{_e(st)}" style="{_BOX}">'
        f'<div>{badge(st)} <b>{_e(state.get("op_id", ""))}</b> '
        f'<span style="{_DIM}">{_e(state.get("kind_label", ""))}</span></div>'
        f"{bar}"
        + (f'<div style="{_DIM}">{_e(times)}</div>' if times else "")
        + _items(state)
        + (f'<div style="{_DIM}">no longer followed: its client was closed</div>'
           if state.get("polling") is False and st in ("running", "cancelling") else "")
        + f'<div style="{_MONO};{_DIM};overflow-wrap:anywhere">{_e(line)}</div></div>'
    )


def list_html(rows: Sequence[tuple[str, str]]) -> str:
    """watch_all's rows, one line each: (state, the one-line text form)."""
    body = "".join(f'<div style="margin:2px 0">{badge(state)} <span style="{_MONO}">{_e(line)}</span></div>'
                   for state, line in rows)
    return f'<div class="opw-snapshot" style="{_BOX}">{body}</div>'


def table_html(title: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The table's visible page (page_rows' dicts) under a line of counts."""
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{h}</th>'
                   for h in ("id", "kind", "state", "progress", "created", "duration", "error"))
    cells = []
    for r in rows:
        progress = r.get("progress")
        cells.append(
            "<tr>"
            f'<td style="padding:2px 8px;{_MONO}" title="{_e(r.get("name", ""))}">{_e(r.get("id", ""))}</td>'
            f'<td style="padding:2px 8px">{_e(r.get("kind", ""))}</td>'
            f'<td style="padding:2px 8px">{badge(str(r.get("state", "")))}</td>'
            f'<td style="padding:2px 8px;text-align:right">{"" if progress is None else f"{progress:.0f}%"}</td>'
            f'<td style="padding:2px 8px">{_e(r.get("create_time", ""))}</td>'
            f'<td style="padding:2px 8px;text-align:right">{_e(format_duration(r.get("duration")))}</td>'
            f'<td style="padding:2px 8px">{_e(r.get("error", ""))}</td>'
            "</tr>")
    return (f'<div class="opt-snapshot" style="{_BOX};max-width:none"><div style="{_DIM}">{_e(title)}</div>'
            f'<table style="border-collapse:collapse;font-size:12px"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(cells)}</tbody></table></div>')
