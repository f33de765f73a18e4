"""What a widget says about the videos it plays inline: how many there are, what a file is, what
it is called when saved, and what the page is told when one cannot be played. Pure."""

from __future__ import annotations

import re

from .._exceptions import TooLargeError
from .._types import Operation

__all__ = ["INLINE_VIDEO_MAX", "MAX_VIDEOS", "too_large_text", "video_count", "video_file", "video_message"]

# The largest video a widget sends to the page: it travels once per view, over the websocket.
INLINE_VIDEO_MAX = 64_000_000
MAX_VIDEOS = 16  # a Veo request makes at most 4; an index past this is no request of ours

_MAGIC = ((b"ftyp", 4, "video/mp4", "mp4"), (b"\x1aE\xdf\xa3", 0, "video/webm", "webm"))
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def video_count(op: Operation) -> int:
    """How many videos a succeeded operation has to play (inline ones, else URIs): 0 otherwise."""
    if not op.succeeded or op.kind != "video":
        return 0
    return len(op.video_data) or len(op.video_uris)


def video_file(op: Operation, index: int, data: bytes) -> tuple[str, str]:
    """(MIME type, file name to save it as): the type from the bytes themselves (MP4 or WebM),
    the name from the operation's id and the video's number, e.g. "vz341u0pmdlc-1.mp4"."""
    mime, ext = "video/mp4", "mp4"  # Veo's own
    for magic, at, kind, suffix in _MAGIC:
        if data[at:at + len(magic)] == magic:
            mime, ext = kind, suffix
            break
    stem = _SAFE.sub("-", op.id).strip("-.")[:80] or "video"
    return mime, f"{stem}-{index + 1}.{ext}"


def too_large_text(error: TooLargeError) -> str:
    """Why a video is not played inline, and how to get it anyway."""
    size = f"{error.size / 1e6:.0f} MB" if error.size is not None else "more than that"
    return (f"This video is too big to play here ({size}; the widget plays up to {error.limit / 1e6:.0f} MB). "
            "Get it with ops.download_video(name, max_bytes=...).")


def video_message(op: Operation, index: int, data: bytes | None, error: str = "") -> dict[str, object]:
    """The custom message that answers a view's request for video ``index``: the file's type and
    name when ``data`` goes with it as a buffer, else the error as text (shown as text)."""
    message: dict[str, object] = {"type": "video_file", "index": index, "count": video_count(op)}
    if data is None:
        message["error"] = error or "the video could not be fetched"
    else:
        message["mime"], message["filename"] = video_file(op, index, data)
        message["size"] = len(data)
    return message
