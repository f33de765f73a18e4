"""A Gemini API batch's results as rows: pure parsing, no I/O.

A succeeded batch (GenerateContentBatchOutput) holds its results either inline,
``inlinedResponses.inlinedResponses[]`` (each {response | error, metadata}), or in a JSON-lines
responses file (``responsesFile: "files/..."``, each line {"key", "response" | "error"}).
``ResultRows`` turns either into typed columns: byte chunks are split into lines here, parsed one
line at a time, and every ``CHUNK_ROWS`` rows become typed arrays, so that neither the file's
bytes nor its parsed objects are ever held whole. A line that cannot be read never stops the
read: it becomes a row whose ``error_message`` says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CHUNK_ROWS", "COLUMNS", "MAX_LINE_BYTES", "ResultRows", "download_path", "inlined_items"]

COLUMNS = ("key", "text", "finish_reason", "prompt_tokens", "output_tokens", "total_tokens", "error_code",
           "error_message")
_STRINGS = ("key", "text", "finish_reason", "error_message")
CHUNK_ROWS = 10_000  # rows parsed into Python lists before they become typed arrays
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line is not parsed (its row says so)
_MESSAGE_MAX = 2000  # characters of a server message kept
_INT64 = (-(2**63), 2**63 - 1)
_FILE = re.compile(r"files/[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def download_path(file_name: object) -> str:
    """The path of a responses file's media under /download/{version}/: "files/abc:download".

    ``file_name`` is server text: anything but "files/<id>" is refused (ValueError)."""
    if not isinstance(file_name, str) or not _FILE.fullmatch(file_name):
        raise ValueError(f"not a file name (files/<id>): {str(file_name)[:100]!r}")
    return f"{file_name}:download"


def inlined_items(output: Mapping[str, Any]) -> list[Any] | None:
    """The InlinedResponse items of a GenerateContentBatchOutput, or None if it has none."""
    box = output.get("inlinedResponses")
    items = box.get("inlinedResponses") if isinstance(box, Mapping) else None
    if isinstance(items, list):
        return items
    return [] if isinstance(box, Mapping) else None  # proto3: an empty list is omitted


def _int64(value: object) -> int | None:
    """An int64 field: a JSON number or (proto3 JSON) a decimal string; NA when out of range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():  # also inf and nan
            return None
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", text):
            return None
        value = int(text)
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    return None


def _string(value: object, limit: int | None = None) -> str | None:
    if isinstance(value, str):
        return value if limit is None or len(value) <= limit else value[:limit] + "..."
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a key written as a number
    return None


class ResultRows:
    """Rows of batch results, one per request, built column by column (see COLUMNS)."""

    def __init__(self, *, chunk_rows: int = CHUNK_ROWS, max_line: int = MAX_LINE_BYTES) -> None:
        self.chunk_rows, self.max_line = chunk_rows, max_line
        self.count = 0  # rows so far
        self.lines = 0  # lines read so far (blank ones included)
        self._cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        self._done: list[dict[str, Any]] = []  # typed arrays, one dict per chunk of rows
        self._tail: list[bytes] = []  # the part of a line not ended yet
        self._tail_size = 0
        self._too_long = False  # the current line outgrew max_line: skip to its end
        self._shared: dict[str, str] = {}  # repeated short strings (finish reasons) kept once

    # -- input -----------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Some bytes of a JSON-lines file; the lines they end are parsed now."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            piece = chunk[start:end]
            if self._tail or self._too_long:
                self._tail.append(piece)
                line = b"".join(self._tail)
                too_long = self._too_long or len(line) > self.max_line
                self._tail, self._tail_size, self._too_long = [], 0, False
                self._line(line, too_long)
            else:
                self._line(piece, len(piece) > self.max_line)
            start = end + 1
        rest = chunk[start:]
        if rest and not self._too_long:
            self._tail.append(rest)
            self._tail_size += len(rest)
            if self._tail_size > self.max_line:  # never hold more than one line's worth
                self._tail, self._tail_size, self._too_long = [], 0, True

    def finish(self) -> None:
        """The end of the file: a last line with no newline is a line too."""
        if self._tail or self._too_long:
            line, too_long = b"".join(self._tail), self._too_long
            self._tail, self._tail_size, self._too_long = [], 0, False
            self._line(line, too_long)

    def add_items(self, items: Iterable[Any]) -> None:
        """InlinedResponse items ({response | error, metadata: {key}}), in the batch's order."""
        for item in items:
            self.lines += 1
            if isinstance(item, Mapping):
                metadata = item.get("metadata")
                key = metadata.get("key") if isinstance(metadata, Mapping) else None
                self._result(item, key)
            else:
                self._unreadable(f"inlined response {self.lines} is not an object")

    def _line(self, line: bytes, too_long: bool) -> None:
        self.lines += 1
        if too_long:
            self._unreadable(f"line {self.lines} could not be read: longer than {self.max_line:,} bytes")
            return
        if not line.strip():
            return  # a blank line (or the "\r" of a CRLF file's last line) holds no request
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._unreadable(f"line {self.lines} could not be read: not UTF-8")
            return
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            self._unreadable(f"line {self.lines} could not be read: not JSON")
            return
        if not isinstance(record, dict):
            self._unreadable(f"line {self.lines} could not be read: not a JSON object")
            return
        self._result(record, record.get("key"))

    # -- rows --------------------------------------------------------------------------------
    def _result(self, record: Mapping[str, Any], key: object) -> None:
        text = finish = prompt = output = total = code = message = None
        response, error = record.get("response"), record.get("error")
        if isinstance(error, Mapping):
            code = _int64(error.get("code"))
            message = _string(error.get("message"), _MESSAGE_MAX)
            if code is None and message is None:
                message = "the result's error has no code and no message"
        elif isinstance(response, Mapping):
            candidates = response.get("candidates")
            first = candidates[0] if isinstance(candidates, list) and candidates else None
            if isinstance(first, Mapping):
                content = first.get("content")
                parts = content.get("parts") if isinstance(content, Mapping) else None
                if isinstance(parts, list):
                    texts = [p["text"] for p in parts
                             if isinstance(p, Mapping) and isinstance(p.get("text"), str) and not p.get("thought")]
                    text = "".join(texts) if texts else None
                reason = first.get("finishReason")
                if isinstance(reason, str):
                    finish = self._shared.setdefault(reason, reason) if len(reason) < 64 else reason
            usage = response.get("usageMetadata")
            if isinstance(usage, Mapping):
                prompt = _int64(usage.get("promptTokenCount"))
                output = _int64(usage.get("candidatesTokenCount"))
                total = _int64(usage.get("totalTokenCount"))
        elif response is None and error is None:
            message = "the result has neither a response nor an error"
        else:
            message = "the result's response or error is not an object"
        self._row(_string(key), text, finish, prompt, output, total, code, message)

    def _unreadable(self, message: str) -> None:
        self._row(None, None, None, None, None, None, None, message)

    def _row(self, *values: Any) -> None:
        for column, value in zip(self._cols.values(), values, strict=True):
            column.append(value)
        self.count += 1
        if len(self._cols["key"]) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        """The rows so far become typed arrays; the Python lists start again empty."""
        if not self._cols["key"]:
            return

        self._done.append({c: _typed(c, v) for c, v in self._cols.items()})
        self._cols = {c: [] for c in COLUMNS}

    def build(self) -> pd.DataFrame:
        """The rows as a DataFrame: key, text, finish_reason, error_message (string);
        prompt_tokens, output_tokens, total_tokens, error_code (Int64). In the file's order."""
        import pandas as pd

        self._flush()
        data: dict[str, Any] = {}
        for c in COLUMNS:
            parts = [chunk.pop(c) for chunk in self._done]  # each chunk's column let go as it is used
            data[c] = (pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True).array
                       if parts else _typed(c, []))
        self._done = []
        frame: pd.DataFrame = pd.DataFrame(data)
        return frame


def _typed(column: str, values: list[Any]) -> Any:
    import pandas as pd

    if column in _STRINGS:
        return pd.array(values, dtype="string")
    return pd.array(values, dtype="Int64")
