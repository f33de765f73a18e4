"""Simulated operations: the records, their wire JSON computed from the clock, and the ordered store.

Nothing here runs in the background: an operation is a creation time, a duration and an outcome,
and its state (progress, done, result) is computed whenever somebody reads it. Times are wall-clock
epoch seconds; `speed` only shrinks durations (emulated seconds / speed = real seconds), so the
createTime/updateTime a client sees agree with its own clock.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import random
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# --- answers and errors, shared by both services' surfaces ---------------------------------------
# status, content type, body, extra headers; a body that is not bytes is streamed chunk by chunk.
Response = tuple[int, str, bytes | Iterable[bytes], dict[str, str]]

JSON_TYPE = "application/json; charset=UTF-8"

# Canonical google.rpc.Code names for the HTTP statuses we answer with.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

class ApiError(Exception):
    """A Google-shaped error answer: {"error": {code, message, status, details?}}."""

    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.headers = code, message, details, headers or {}
        self.status = status

    def response(self) -> Response:
        return error_response(self.code, self.message, self.details, self.headers, self.status)


def error_response(code: int, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None, status: str | None = None) -> Response:
    err: dict[str, Any] = {"code": code, "message": message, "status": status or STATUS_NAMES.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return code, JSON_TYPE, json.dumps({"error": err}, indent=2).encode(), headers or {}



def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is {}), or a 400 ApiError."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "Invalid JSON payload received.") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "Invalid JSON payload received: expected an object.")
    return parsed


API_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta."
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."  # what batches really carry
# Every kind of operation the Gemini API has: Veo videos, tuning, batches, file search imports and
# uploads. (No top-level "operations/..." kind: neither API version binds a GET for one.)
KINDS = ("video", "tuning", "batch", "import", "upload")
OUTCOMES = ("success", "failure", "filtered")
# Realistic emulated durations per kind, in seconds (lo, hi).
DURATIONS: dict[str, tuple[float, float]] = {
    "video": (60, 360), "tuning": (600, 10800), "import": (5, 120), "batch": (60, 3600), "upload": (3, 60),
}
ID_LENGTHS = {"video": 12, "tuning": 12, "batch": 24, "import": 16, "upload": 16}
FAILURE_MESSAGES = {
    "video": "Video generation failed due to an internal error. Please try again later.",
    "tuning": "Tuning failed: the training data could not be processed.",
    "batch": "Batch processing failed due to an internal error.",
    "import": "Failed to import file: the document could not be parsed.",
    "upload": "Failed to upload file: the document could not be parsed.",
}
FILTERED_REASON = (
    "The video could not be generated because it may violate our usage guidelines. "
    "You have not been charged for this request."
)
VIDEO_MODELS = ("veo-3.1-generate-preview", "veo-3.0-generate-001", "veo-3.0-fast-generate-001")
CANCELLED_ERROR = {"code": 1, "message": "Operation was cancelled."}
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN = re.compile(r"seq:(\d+)")
# Every generated video is this real clip: 2 s of ffmpeg's testsrc2 at 192x108, VP9 in MP4 (7.6 KB),
# a codec every Chromium plays (Debian's build has no H.264). Made once with
#   ffmpeg -f lavfi -i testsrc2=size=192x108:rate=12:duration=2 -c:v libvpx-vp9 -b:v 0 -crf 50
#          -pix_fmt yuv420p -an -map_metadata -1 -fflags +bitexact -movflags +faststart veo_sample.mp4
_SAMPLE_VIDEO = Path(__file__).with_name("veo_sample.mp4")


def rfc3339(t: float) -> str:
    """Google's timestamp form: UTC, microseconds, 'Z' (listings format ~10 per operation: keep it cheap)."""
    seconds, micros = divmod(int(t * 1_000_000), 1_000_000)
    return f"{_second(seconds)}.{micros:06d}Z"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))  # a third of datetime's cost


def video_bytes(file_id: str) -> bytes:
    """The bytes of a generated video: the same small real clip for every file id."""
    return _sample_video()


@lru_cache(maxsize=1)
def _sample_video() -> bytes:
    return _SAMPLE_VIDEO.read_bytes()


def encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).rstrip(b"=").decode()


def decode_token(token: str) -> int:
    """The sequence number a page token resumes after; ValueError for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except Exception as exc:  # binascii.Error, UnicodeDecodeError
        raise ValueError("bad page token") from exc
    match = _TOKEN.fullmatch(raw)
    if not match:
        raise ValueError("bad page token")
    return int(match.group(1))


def done_filter(text: str) -> bool | None:
    """An operations listing's filter: ``done=true`` or ``done=false`` (None for none). Google
    documents no more of its grammar for these lists, so anything else is refused (400), not
    ignored: an emulator that ignored it would answer what the filter asked to leave out."""
    if not text.strip():
        return None
    match = re.fullmatch(r"\s*done\s*=\s*(true|false)\s*", text, re.IGNORECASE)
    if match is None:
        raise ApiError(400, f"Invalid filter: {text!r}. Supported: done=true, done=false.")
    return match.group(1).lower() == "true"


def parent_of(name: str) -> str:
    """The list a name belongs to besides the top level: 'models/x', 'batches', 'fileSearchStores/s'."""
    if name.startswith("batches/"):
        return "batches"
    head, sep, _ = name.rpartition("/operations/")
    return head if sep else ""


@dataclass(slots=True, eq=False)
class Op:
    name: str
    kind: str
    created: float  # wall-clock epoch seconds
    duration: float  # real seconds from creation to the outcome
    outcome: str = "success"
    error_code: int = 13
    error_message: str | None = None
    ended: float | None = None  # set by cancel/complete: the outcome happened early
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    create_ts: str = ""  # cached rfc3339(created): listings format it 100,000 times

    @property
    def end(self) -> float:
        return self.ended if self.ended is not None else self.created + self.duration

    def fraction(self, now: float) -> float:
        """Share of the work done at `now`, 0..1 (frozen once the operation ended)."""
        end = self.end
        if now >= end and not self.cancelled and self.outcome != "failure":
            return 1.0
        p = max(0.0, min(1.0, (min(now, end) - self.created) / self.duration)) if self.duration > 0 else 1.0
        return p * 0.7 if self.outcome == "failure" else p  # failures give up part-way


def render(op: Op, now: float, base_url: str) -> dict[str, Any]:
    """The google.longrunning.Operation JSON the API answers at `now` (proto3: defaults omitted)."""
    done = now >= op.end
    out: dict[str, Any] = {"name": op.name}
    metadata = _METADATA[op.kind](op, now, done)
    if metadata is not None:
        out["metadata"] = metadata
    if not done:
        return out  # running: no "done" key at all
    out["done"] = True
    if op.cancelled:
        out["error"] = dict(CANCELLED_ERROR)
    elif op.outcome == "failure":
        out["error"] = {"code": op.error_code, "message": op.error_message or FAILURE_MESSAGES[op.kind]}
    else:
        out["response"] = _RESPONSE[op.kind](op, base_url, metadata)
    return out


def _times(op: Op, now: float, done: bool) -> dict[str, str]:
    if not op.create_ts:
        op.create_ts = rfc3339(op.created)
    return {"createTime": op.create_ts, "updateTime": rfc3339(op.end if done else now)}


def _video_meta(op: Op, now: float, done: bool) -> None:
    return None  # Veo reports no progress at all


def _video_response(op: Op, base_url: str, meta: Any) -> dict[str, Any]:
    if op.outcome == "filtered":
        result: dict[str, Any] = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTERED_REASON]}
    else:
        uri = f"{base_url}/v1beta/files/{op.extra['file']}:download?alt=media"
        result = {"generatedSamples": [{"video": {"uri": uri}}]}
    return {"@type": API_TYPE + "PredictLongRunningResponse", "generateVideoResponse": result}


def _snapshots(op: Op, steps: int) -> list[dict[str, Any]]:
    total = op.extra["steps"]
    # complete() finishes early: squeeze the steps into the time it really took.
    span = op.end - op.created if op.ended is not None and not op.cancelled else op.duration
    epochs = op.extra["hyper"].get("epochCount", 5)
    every = max(1, total // 4)  # a handful, like the real service
    out = []
    for step in sorted({1, *range(every, steps + 1, every), steps} - {0}):
        if step > steps:
            continue
        out.append({
            "step": step,
            "epoch": 1 + (step - 1) * epochs // total,
            "meanLoss": round(8.3 * math.exp(-5 * step / total) + 0.02, 4),
            "computeTime": rfc3339(op.created + span * step / total),
        })
    return out


def _tuning_meta(op: Op, now: float, done: bool) -> dict[str, Any]:
    total = op.extra["steps"]
    p = op.fraction(now)
    steps = total if p >= 1.0 else int(p * total)
    meta: dict[str, Any] = {"@type": API_TYPE + "CreateTunedModelMetadata", "totalSteps": total}
    if steps:  # proto3 JSON omits zero values, so a fresh job has neither field
        meta["completedSteps"] = steps
        meta["completedPercent"] = _number(100.0 * steps / total)
        meta["snapshots"] = _snapshots(op, steps)
    meta["tunedModel"] = parent_of(op.name)
    meta.update(_times(op, now, done))
    return meta


def _tuning_response(op: Op, base_url: str, meta: Any) -> dict[str, Any]:
    snaps, times = meta["snapshots"], _times(op, op.end, True)
    return {
        "@type": API_TYPE + "TunedModel",
        "name": parent_of(op.name),
        "baseModel": op.extra["base"],
        "displayName": op.extra["display"],
        "state": "ACTIVE",
        **times,
        "tuningTask": {
            "startTime": times["createTime"],
            "completeTime": times["updateTime"],
            "snapshots": snaps,
            "hyperparameters": op.extra["hyper"],
        },
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
    }


def _batch_meta(op: Op, now: float, done: bool) -> dict[str, Any]:
    total = op.extra["requests"]
    p = op.fraction(now)
    final_failed = batch_failed(op)
    succeeded, failed = int(p * (total - final_failed)), int(p * final_failed)
    counts = {"requestCount": total, "successfulRequestCount": succeeded, "failedRequestCount": failed,
              "pendingRequestCount": total - succeeded - failed}
    if done:
        state = "CANCELLED" if op.cancelled else "FAILED" if op.outcome == "failure" else "SUCCEEDED"
    else:
        state = "PENDING" if p < 0.1 else "RUNNING"
    return {
        "@type": BATCH_TYPE + "GenerateContentBatch",
        "model": op.extra["model"],
        "name": op.name,
        "displayName": op.extra["display"],
        **_times(op, now, done),
        # int64 counts travel as JSON strings; zero counts are omitted like proto3 does.
        "batchStats": {k: str(v) for k, v in counts.items() if v},
        "state": "BATCH_STATE_" + state,
        # A succeeded batch says where its results are in its own `output` too (the SDK reads
        # BatchJob.dest from there); the operation's response is the same GenerateContentBatchOutput.
        **({"output": _batch_output(op)} if state == "SUCCEEDED" else {}),
    }


def _batch_response(op: Op, base_url: str, meta: Any) -> dict[str, Any]:
    output = meta.get("output") if isinstance(meta, dict) else None
    return {"@type": BATCH_TYPE + "GenerateContentBatchOutput", **(output or _batch_output(op))}


def _batch_output(op: Op) -> dict[str, Any]:
    """GenerateContentBatchOutput: the responses inline for a batch of inline requests (in their
    order, each with the request's metadata), else the JSON-lines file that holds them."""
    out: dict[str, Any] = {}
    inline = op.extra.get("inline")
    if inline is None:
        out["responsesFile"] = "files/" + op.extra["file"]
        return out
    plan = BatchPlan.of(op)
    items = []
    for i, metadata in enumerate(inline):
        item = plan.result(i)
        item.pop("key")
        if metadata is not None:
            item["metadata"] = metadata
        items.append(item)
    out["inlinedResponses"] = {"inlinedResponses": items}
    return out


_WORDS = ("the", "answer", "is", "blue", "seven", "because", "light", "scatters", "water", "quickly",
          "every", "small", "model", "reads", "one", "line")
_REQUEST_ERRORS = ((3, "Request contains an invalid argument."), (13, "Internal error encountered."),
                   (8, "Resource has been exhausted (e.g. check quota)."))


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What each request of a succeeded batch answered: a pure function of the batch's name (itself
    a function of the seed) and of the request's position. A snapshot: it can stream the responses
    file with no lock held."""

    name: str
    model: str
    count: int
    failed: int  # requests that answered an error (batchStats.failedRequestCount when done)
    salt: int

    @classmethod
    def of(cls, op: Op) -> BatchPlan:
        total = int(op.extra["requests"])
        return cls(op.name, op.extra["model"], total, batch_failed(op), zlib.crc32(op.name.encode()))

    def result(self, i: int) -> dict[str, Any]:
        """Request ``i``'s line of the responses file: {"key", "response"} or {"key", "error"}."""
        h = zlib.crc32(i.to_bytes(8, "little"), self.salt)
        key = f"request-{i + 1}"
        # (i * P + salt) mod count permutes the positions: exactly `failed` of them fail.
        p = 1_000_003 if math.gcd(1_000_003, self.count) == 1 else 1
        if (i * p + self.salt) % self.count < self.failed:
            code, message = _REQUEST_ERRORS[h % len(_REQUEST_ERRORS)]
            return {"key": key, "error": {"code": code, "message": message}}
        words = [_WORDS[(h >> shift) % len(_WORDS)] for shift in range(0, 4 * (3 + h % 4), 4)]
        text = f"Answer {i + 1}: {' '.join(words)}."
        prompt, output = 4 + h % 60, len(words) + 3
        return {"key": key, "response": {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": output,
                              "totalTokenCount": prompt + output},
            "modelVersion": self.model.removeprefix("models/"),
        }}

    def lines(self, per_chunk: int = 1000) -> Iterator[bytes]:
        """The responses file, JSON lines, ``per_chunk`` lines at a time, made as they are read."""
        for start in range(0, self.count, per_chunk):
            chunk = [json.dumps(self.result(i), separators=(",", ":")) for i in range(start, min(start + per_chunk,
                                                                                               self.count))]
            yield ("\n".join(chunk) + "\n").encode()


def batch_failed(op: Op) -> int:
    """How many of a batch's requests fail by the end (a third when the batch itself fails)."""
    total = int(op.extra["requests"])
    return total // 3 if op.outcome == "failure" else total // 50


def _no_meta(op: Op, now: float, done: bool) -> None:
    return None  # file search imports and uploads report nothing while they run: no progress, no times


def _import_response(op: Op, base_url: str, meta: Any) -> dict[str, Any]:
    store = op.extra["store"]
    return {"@type": API_TYPE + "ImportFileResponse", "parent": store,
            "documentName": f"{store}/documents/{op.extra['doc']}"}


def _upload_response(op: Op, base_url: str, meta: Any) -> dict[str, Any]:
    store = op.extra["store"]
    return {"@type": API_TYPE + "UploadToFileSearchStoreResponse", "parent": store,
            "documentName": f"{store}/documents/{op.extra['doc']}"}


def _number(x: float) -> float | int:
    """Percentages as protobuf JSON prints them: 100 not 100.0, a few decimals otherwise."""
    x = round(x, 4)
    return int(x) if x == int(x) else x


_METADATA: dict[str, Any] = {"video": _video_meta, "tuning": _tuning_meta, "batch": _batch_meta,
                             "import": _no_meta, "upload": _no_meta}
_RESPONSE: dict[str, Any] = {"video": _video_response, "tuning": _tuning_response, "batch": _batch_response,
                             "import": _import_response, "upload": _upload_response}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "model"


def backdate(op: Op, r: float, running_fraction: float, now: float, rng: random.Random, *,
             cancellable: bool = True) -> None:
    """Place a seeded operation in time by its draw ``r``: below ``running_fraction`` still running
    (started a fraction of its duration ago), else finished some time in the last three days, a
    few of those (when ``cancellable``) cancelled part-way."""
    if r < running_fraction:
        op.created = now - rng.uniform(0.0, 0.95) * op.duration
    else:
        op.created = now - op.duration - rng.uniform(1.0, 3 * 86400.0)
        if cancellable and r < running_fraction + 0.05 * (1 - running_fraction):
            op.cancelled, op.ended = True, op.created + rng.uniform(0.05, 0.9) * op.duration


class Store:
    """Operations in creation order, with one sorted sequence index per parent for fast paging.

    Not thread-safe by itself: EmulatorApp holds its lock around every call.
    """

    def __init__(self, *, speed: float, random_seed: int | None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.rng = random.Random(random_seed)  # ids, durations, outcomes: reproducible per seed
        self.ops: dict[str, Op] = {}
        self.by_seq: dict[int, Op] = {}
        # "" is the top level (everything); sequence numbers only grow, so appends keep these sorted.
        self.index: dict[str, list[int]] = {"": []}
        self.files: dict[str, str] = {}  # file id (a video; a batch's responses) -> operation name
        self._next_seq = 1
        self._stores = [f"fileSearchStores/store-{self._id(10)}" for _ in range(4)]

    # --- building operations ---------------------------------------------------------------
    def _id(self, n: int) -> str:
        return "".join(self.rng.choices(_ALPHABET, k=n))

    def new_op(self, kind: str, now: float, *, duration: float | None = None, outcome: str = "success",
               parent: str | None = None, extra: dict[str, Any] | None = None) -> Op:
        """A fresh record (not yet added): a unique name under `parent` and the kind's defaults."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        if outcome not in OUTCOMES or (outcome == "filtered" and kind != "video"):
            raise ValueError(f"bad outcome {outcome!r} for kind {kind!r}")
        rng, extra = self.rng, dict(extra or {})
        if duration is None:
            duration = rng.uniform(*DURATIONS[kind])
        if kind in ("import", "upload"):
            # A file search store's operations: its parent is the store.
            store = parent.strip("/").removesuffix("/upload") if parent else rng.choice(self._stores)
            extra["store"] = store
            prefix = store + ("/operations/" if kind == "import" else "/upload/operations/")
        elif kind == "batch":
            prefix = "batches/"
        elif parent:
            prefix = parent.strip("/") + "/operations/"
        elif kind == "video":
            prefix = f"models/{rng.choice(VIDEO_MODELS)}/operations/"
        else:  # tuning
            extra.setdefault("display", f"tuned model {rng.randrange(1000)}")
            prefix = f"tunedModels/{slug(extra['display'])}-{self._id(12)}/operations/"
        name = prefix + self._id(ID_LENGTHS[kind])
        while name in self.ops:
            name = prefix + self._id(ID_LENGTHS[kind])
        if kind == "video":
            extra["file"] = self._id(12)
        elif kind == "tuning":
            extra.setdefault("display", "tuned model")
            extra.setdefault("base", "models/gemini-1.5-flash-001-tuning")
            extra.setdefault("hyper", {"epochCount": 5, "batchSize": 4, "learningRate": 0.001})
            extra.setdefault("steps", rng.randint(20, 400))
        elif kind == "batch":
            extra.setdefault("model", "models/gemini-2.5-flash")
            extra.setdefault("display", f"batch-{rng.randrange(10000)}")
            extra.setdefault("requests", rng.randint(1, 1000))
            if "inline" not in extra:  # no inline requests: the responses go to a file
                extra["file"] = "batch-" + name[len(prefix):]
        elif kind in ("import", "upload"):
            extra["doc"] = self._id(16)
        return Op(name=name, kind=kind, created=now, duration=duration / self.speed, outcome=outcome, extra=extra)

    def add(self, op: Op) -> None:
        op.seq, self._next_seq = self._next_seq, self._next_seq + 1
        self.ops[op.name] = op
        self.by_seq[op.seq] = op
        self.index[""].append(op.seq)
        parent = parent_of(op.name)
        if parent:
            self.index.setdefault(parent, []).append(op.seq)
        if "file" in op.extra:
            self.files[op.extra["file"]] = op.name

    def remove(self, name: str) -> Op | None:
        op = self.ops.pop(name, None)
        if op is None:
            return None
        del self.by_seq[op.seq]
        for key in {"", parent_of(name)}:
            seqs = self.index.get(key)
            if seqs is not None:
                i = bisect.bisect_left(seqs, op.seq)
                if i < len(seqs) and seqs[i] == op.seq:
                    del seqs[i]
        self.files.pop(op.extra.get("file", ""), None)
        return op

    def seed(self, count: int, kinds: Sequence[str], now: float, *, running_fraction: float,
             failed_fraction: float) -> list[str]:
        """Many operations in mixed states; added oldest first so the listing order is by createTime."""
        if count < 0 or not kinds:
            raise ValueError("count must be >= 0 and kinds non-empty")
        rng, ops = self.rng, []
        for _ in range(count):
            kind = rng.choice(kinds)
            r = rng.random()
            failing = rng.random() < failed_fraction
            outcome = "failure" if failing else "filtered" if kind == "video" and rng.random() < 0.04 else "success"
            op = self.new_op(kind, now, outcome=outcome)
            if failing and rng.random() < 0.2:
                op.error_code = 3
            backdate(op, r, running_fraction, now, rng)
            ops.append(op)
        ops.sort(key=lambda o: o.created)
        for op in ops:
            self.add(op)
        return [op.name for op in ops]

    # --- reading ------------------------------------------------------------------------------
    def page(self, parent: str, size: int, after: int, done: bool | None, now: float) -> tuple[list[Op], int | None]:
        """Up to `size` operations after sequence `after`; the seq to resume after, or None at the end.

        Scans forward from the token position only as far as the page (plus one look-ahead) needs.
        """
        seqs = self.index.get(parent, [])
        by_seq = self.by_seq
        found: list[Op] = []
        for i in range(bisect.bisect_right(seqs, after), len(seqs)):
            op = by_seq[seqs[i]]
            if done is not None and (now >= op.end) != done:
                continue
            if len(found) == size:  # one more match exists: there is a next page
                return found, found[-1].seq
            found.append(op)
        return found, None
