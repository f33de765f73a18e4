"""Operation, OperationError, State, ListOperationsResponse: frozen data, no I/O."""

from __future__ import annotations

import base64
import binascii
import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeGuard

from ._exceptions import MalformedOperationError
from ._progress import as_number, progress_from_metadata, time_from_metadata

__all__ = [
    "JOB_STATES", "KINDS", "ListOperationsResponse", "Operation", "OperationError", "OperationFields", "RawOperation",
    "RawPage", "State", "batch_state_of", "id_of", "is_failed", "is_filtered", "job_state_of", "kind_of", "model_of",
    "read_list_page", "read_operation", "state_of",
]

CANCELLED_CODE = 1  # google.rpc.Code.CANCELLED
_INT32 = range(-(2**31), 2**31)  # google.rpc.Status.code is an int32
GRPC_CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
# How many filter reasons an Operation hands on, and how much of each: server text of any size.
MAX_FILTER_REASONS = 10
MAX_FILTER_REASON_CHARS = 500


class State(str, enum.Enum):
    """What became of an operation. The order is the frame's category order and the table's."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FILTERED = "filtered"  # a video the safety checks withheld: done, no error, no video

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class OperationError:
    """The google.rpc.Status of a finished operation. ``code`` is a gRPC code, not HTTP."""

    code: int
    message: str
    details: list[Any] = field(default_factory=list)

    @property
    def code_name(self) -> str:
        """The google.rpc.Code name ("INTERNAL"), or "CODE_<n>" for one it does not know."""
        return GRPC_CODE_NAMES.get(self.code, f"CODE_{self.code}")

    @classmethod
    def from_api_response(cls, data: Any) -> OperationError:
        if not isinstance(data, Mapping):
            raise MalformedOperationError(f"operation 'error' must be an object, got {_kind(data)}")
        # proto3 JSON omits defaults, and reads null as the default: both mean 0, "" and [].
        code = _or_default(data, "code", 0)
        if isinstance(code, bool) or not isinstance(code, int) or code not in _INT32:
            raise MalformedOperationError(f"operation error 'code' must be an int32, got {_kind(code)}")
        message = _or_default(data, "message", "")
        if not isinstance(message, str):
            raise MalformedOperationError(f"operation error 'message' must be a string, got {_kind(message)}")
        details = _or_default(data, "details", [])
        if not isinstance(details, list):
            raise MalformedOperationError(f"operation error 'details' must be a list, got {_kind(details)}")
        return cls(code, message, list(details))


@dataclass(frozen=True, repr=False)
class Operation:
    """One snapshot of a google.longrunning.Operation, as the service sent it."""

    name: str
    done: bool
    metadata: dict[str, Any]
    response: dict[str, Any] | None
    error: OperationError | None
    raw: dict[str, Any] = field(compare=False)
    vertex: bool = field(default=False, compare=False)
    # A Vertex AI job resource (tuningJobs, batchPredictionJobs: a JOB_STATE_*), not an Operation.
    job: bool = field(default=False, compare=False)

    @classmethod
    def from_api_response(cls, data: Any, *, vertex: bool = False) -> Operation:
        """Build from the JSON the API answered; raise MalformedOperationError if it is not one.

        A Vertex AI job (a tuningJobs or batchPredictionJobs resource: a ``state`` JOB_STATE_*
        where an Operation has ``done``) reads into the same model, see ``job_state``."""
        return cls.from_fields(read_operation(data, vertex=vertex))

    @classmethod
    def from_fields(cls, fields: RawOperation) -> Operation:
        """The Operation of fields read_operation() checked: its own copies of the dicts."""
        if fields.job:
            job = dict(fields.raw)  # a job is its own metadata, and once it succeeded its response
            return cls(name=fields.name, done=fields.done, metadata=job,
                       response=None if fields.response is None else job, error=fields.error,
                       raw=dict(fields.raw), vertex=True, job=True)
        return cls(
            name=fields.name,
            done=fields.done,
            metadata=dict(fields.metadata),
            response=None if fields.response is None else dict(fields.response),
            error=fields.error,
            raw=dict(fields.raw),
            vertex=fields.vertex,
        )

    @property
    def job_state(self) -> str | None:
        """A Vertex AI job's own state, as sent ("JOB_STATE_RUNNING"); None for an Operation, and
        for a job whose state is absent or not a string."""
        return job_state_of(self)

    @property
    def partial(self) -> bool:
        """A Vertex job that succeeded partially (JOB_STATE_PARTIALLY_SUCCEEDED): some results
        may be missing. ``succeeded`` is True for it too."""
        return self.job_state == "JOB_STATE_PARTIALLY_SUCCEEDED"

    @property
    def cancelling(self) -> bool:
        """A cancel is under way (JOB_STATE_CANCELLING, BATCH_STATE_CANCELLING): still running."""
        return not self.done and (self.job_state or self.batch_state or "").endswith("_CANCELLING")

    @property
    def id(self) -> str:
        return id_of(self.name)

    @property
    def kind(self) -> str:
        """"video", "tuning", "import", "batch" or "other", from the name and metadata @type."""
        return kind_of(self.name, self.metadata)

    @property
    def model(self) -> str | None:
        """The model it runs on ("models/veo-3.0-generate-001"), when its name or metadata says."""
        return model_of(self.name, self.metadata)

    @property
    def complete(self) -> bool:
        return self.done

    @property
    def running(self) -> bool:
        return not self.done

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None

    @property
    def failed(self) -> bool:
        """Done with an error; a cancelled operation has failed too."""
        return is_failed(self)

    @property
    def cancelled(self) -> bool:
        return self.done and self.error is not None and self.error.code == CANCELLED_CODE

    @property
    def state(self) -> State:
        """Running until done; then cancelled (error code 1), failed (any other error), filtered
        (a video withheld by the safety checks, see ``filtered``) or succeeded.

        A Gemini API batch that is not done yet reports its own state in metadata.state
        (BATCH_STATE_*), which can be final before the operation is: that state is used then.
        """
        return state_of(self)

    @property
    def batch_state(self) -> str | None:
        """A batch's own state, as sent ("BATCH_STATE_RUNNING"); None for other kinds, or when
        metadata.state is absent or not a string."""
        return batch_state_of(self)

    @property
    def filtered(self) -> bool:
        """Done without an error, with no video, and the safety checks say they withheld some
        (a raiMediaFilteredCount above 0, or reasons). ``succeeded`` is True for it too: the
        operation itself did not fail."""
        return is_filtered(self)

    @property
    def filter_reasons(self) -> list[str]:
        """Why the safety checks withheld videos (raiMediaFilteredReasons), as the service wrote
        them; [] if it gave none. Set on a filtered operation, and on a done one where only some
        of the videos were withheld. Strings only: at most 10, each cut at 500 characters."""
        if not self.done or self.error is not None or not self.response:
            return []
        for box in _video_boxes(self.response, self.vertex):
            reasons = _reasons(box)
            if reasons:
                return reasons
        return []

    @property
    def progress(self) -> float | None:
        """Percent complete (0..100) from the metadata, or None if it reports none."""
        return progress_from_metadata(self.metadata)

    # Each time is parsed when asked for, and only its own field: a frame of 100,000 rows reads
    # both once per row, and a cache here would cost more (an extra GC-tracked tuple per row).
    @property
    def create_time(self) -> datetime | None:
        """metadata.createTime (or genericMetadata.createTime), aware; None if absent or unreadable."""
        return time_from_metadata(self.metadata, "createTime")

    @property
    def update_time(self) -> datetime | None:
        """metadata.updateTime (or genericMetadata.updateTime), aware; None if absent or unreadable."""
        return time_from_metadata(self.metadata, "updateTime")

    def run_seconds(self, now: float) -> float | None:
        """How long it ran (done: updateTime - createTime) or has run so far (``now``, epoch
        seconds, - createTime), from its own times; None when they do not say. The one rule."""
        create = self.create_time
        if create is None:
            return None
        if self.done:
            update = self.update_time
            return None if update is None else max(0.0, (update - create).total_seconds())
        return max(0.0, now - create.timestamp())

    @property
    def video_uris(self) -> list[str]:
        """URIs of the generated videos of a done video operation; [] otherwise.

        A safety-filtered generation is done with no error and no samples: [] too (see ``filtered``).
        """
        if not self.done or not self.response:
            return []
        if self.vertex:
            items, key = self.response.get("videos"), "gcsUri"
        else:
            gvr = self.response.get("generateVideoResponse")
            items = gvr.get("generatedSamples") if isinstance(gvr, Mapping) else None
            items = [s.get("video") for s in items if isinstance(s, Mapping)] if isinstance(items, list) else None
            key = "uri"
        if not isinstance(items, list):
            return []
        return [v[key] for v in items if isinstance(v, Mapping) and isinstance(v.get(key), str)]

    @property
    def video_data(self) -> list[bytes]:
        """Videos a done Vertex AI video operation sent inline (response.videos[].bytesBase64Encoded,
        when no storageUri was asked for), decoded; [] otherwise. Undecodable items are skipped."""
        if not self.done or not self.response:
            return []
        items = self.response.get("videos")
        out = []
        for item in items if isinstance(items, list) else []:
            data = item.get("bytesBase64Encoded") if isinstance(item, Mapping) else None
            if isinstance(data, str):
                try:
                    out.append(base64.b64decode(data, validate=True))
                except (binascii.Error, ValueError):
                    continue
        return out

    def summary(self) -> str:
        """One line of text: name, state, progress."""
        p = self.progress
        return f"{self.name}  {self.state.value}" + ("" if p is None else f"  {p:.0f}%")

    def __str__(self) -> str:
        """The one text form every view writes: "name  state  42%  1m 12s" (how long it ran, by
        its own times; one still running, until now by the wall clock, as the terminal says)."""
        from ._text import summary_line  # _text builds on this module

        return summary_line(self, self.run_seconds(time.time()))

    def __repr__(self) -> str:
        return f"<Operation {self}>"


@dataclass(frozen=True)
class ListOperationsResponse:
    """One page of a list call."""

    operations: list[Operation]
    next_page_token: str | None = None
    unreachable: list[str] = field(default_factory=list)

    @property
    def has_more_pages(self) -> bool:
        return self.next_page_token is not None

    @classmethod
    def from_api_response(cls, data: Any, *, vertex: bool = False) -> ListOperationsResponse:
        return cls.from_page(read_list_page(data, vertex=vertex))

    @classmethod
    def from_page(cls, page: RawPage) -> ListOperationsResponse:
        """The page read_list_page() checked, each operation an Operation."""
        return cls(operations=[Operation.from_fields(o) for o in page.operations],
                   next_page_token=page.next_page_token, unreachable=page.unreachable)

    def __repr__(self) -> str:
        more = f", next_page_token={self.next_page_token!r}" if self.next_page_token else ""
        return f"ListOperationsResponse({len(self.operations)} operations{more})"


# -- reading the wire, and the rules over what was read ------------------------------------------
# The rules are functions over OperationFields, which an Operation is and a RawOperation (the light,
# uncopied view a listing lays into a frame) is too: Operation's properties and the DataFrame call
# the same functions, so each decision is written once.


class OperationFields(Protocol):
    """What the rules read: an Operation, or a RawOperation."""

    @property
    def name(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...
    @property
    def response(self) -> Mapping[str, Any] | None: ...
    @property
    def error(self) -> OperationError | None: ...
    @property
    def raw(self) -> Mapping[str, Any]: ...
    @property
    def vertex(self) -> bool: ...
    @property
    def job(self) -> bool: ...


class RawOperation(NamedTuple):
    """One operation's fields as read_operation() checked them, the server's dicts not copied
    (a frame of 100,000 rows needs no Operation, nor a copy of every dict, per row)."""

    name: str
    done: bool
    metadata: Mapping[str, Any]
    response: Mapping[str, Any] | None
    error: OperationError | None
    raw: Mapping[str, Any]
    vertex: bool
    job: bool


class RawPage(NamedTuple):
    """One list page as read_list_page() checked it."""

    operations: list[RawOperation]
    next_page_token: str | None
    unreachable: list[str]


def _is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # JSON objects are dicts: the exact check first, the (slower) abc check for other mappings.
    return type(value) is dict or isinstance(value, Mapping)


def read_operation(data: Any, *, vertex: bool = False) -> RawOperation:
    """The one reading of an operation's JSON: its fields, checked (MalformedOperationError if it
    is not an operation). A Vertex AI job reads as one too (``job``, see Operation.job_state)."""
    if not _is_map(data):
        raise MalformedOperationError(f"an operation must be a JSON object, got {_kind(data)}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedOperationError(f"an operation needs a string 'name', got {_kind(name)}")
    get = data.get
    done, metadata, response, error = get("done"), get("metadata"), get("response"), get("error")
    if done is None and metadata is None and response is None and _is_job(name, data):
        return _read_job(name, data)
    # proto3 omits false (a running operation has no "done" key), and null means the default
    # too: missing and null are both "not done", as the seed's .NET `bool? Done` reads them.
    if done is None:
        done = False
    elif type(done) is not bool:
        raise MalformedOperationError(f"{_where(name)}: 'done' must be a boolean, got {_kind(done)}")
    if metadata is None:
        metadata = {}
    elif not _is_map(metadata):
        raise MalformedOperationError(f"{_where(name)}: 'metadata' must be an object, got {_kind(metadata)}")
    if response is not None and not _is_map(response):
        raise MalformedOperationError(f"{_where(name)}: 'response' must be an object, got {_kind(response)}")
    return RawOperation(name, done, metadata, response, _read_error(name, error), data, vertex, False)


def _where(name: str) -> str:
    return name if len(name) <= 100 else name[:100] + "..."  # server text of any length


def _read_error(name: str, error: Any) -> OperationError | None:
    try:
        return None if error is None else OperationError.from_api_response(error)
    except MalformedOperationError as exc:
        raise MalformedOperationError(f"{_where(name)}: {exc}") from None


def _read_job(name: str, data: Mapping[str, Any]) -> RawOperation:
    """A Vertex job: done and the outcome from its state (JOB_STATES); its error; the job itself
    as the metadata (times, completionStats) and, once it succeeded, as the response."""
    state = data.get("state")
    outcome = JOB_STATES.get(state) if isinstance(state, str) else None
    done = outcome is not None and outcome is not State.RUNNING
    parsed = _read_error(name, data.get("error"))
    if outcome is State.SUCCEEDED:
        parsed = None  # a partial success may carry an error; it stays in raw
    elif done and (parsed is None or (parsed.code == CANCELLED_CODE) != (outcome is State.CANCELLED)):
        # A job that ended badly says so in its state; an error that says otherwise is kept as the message.
        code = CANCELLED_CODE if outcome is State.CANCELLED else 4 if state == "JOB_STATE_EXPIRED" else 2
        message = parsed.message if parsed is not None and parsed.message else f"The job ended in {state}."
        parsed = OperationError(code, message, [] if parsed is None else parsed.details)
    return RawOperation(name, done, data, data if outcome is State.SUCCEEDED else None, parsed, data, True, True)


def read_list_page(data: Any, *, vertex: bool = False) -> RawPage:
    """The one reading of a list answer: its operations (read_operation), the next page's token
    (None on the last page) and the unreachable locations; MalformedOperationError if it is not one."""
    if not _is_map(data):
        raise MalformedOperationError(f"a list answer must be a JSON object, got {_kind(data)}")
    # A Vertex AI job listing names its list after the collection: each job reads as one operation.
    key = next((k for k in _JOB_LISTS if data.get(k) is not None and data.get("operations") is None), "operations")
    ops = _or_default(data, key, [])
    if not isinstance(ops, list):
        raise MalformedOperationError(f"{key!r} must be a list, got {_kind(ops)}")
    token = data.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise MalformedOperationError(f"'nextPageToken' must be a string, got {_kind(token)}")
    unreachable = _or_default(data, "unreachable", [])
    if not isinstance(unreachable, list):
        raise MalformedOperationError(f"'unreachable' must be a list, got {_kind(unreachable)}")
    return RawPage([read_operation(o, vertex=vertex) for o in ops],
                   token or None,  # "" and absent both mean: last page
                   [str(u) for u in unreachable])


def id_of(name: str) -> str:
    """The last part of an operation's name ("abc" of "models/veo/operations/abc")."""
    return name.rsplit("/", 1)[-1]


def is_failed(op: OperationFields) -> bool:
    """Done with an error; a cancelled operation has failed too."""
    return op.done and op.error is not None


def job_state_of(op: OperationFields) -> str | None:
    """A Vertex AI job's own state, as sent; None for an Operation, or one absent or not a string."""
    if not op.job:
        return None
    value = op.raw.get("state")
    return value if isinstance(value, str) else None


def batch_state_of(op: OperationFields) -> str | None:
    """A batch's own state, as sent (metadata.state); None for other kinds, or absent or not a string."""
    value = op.metadata.get("state")
    if not isinstance(value, str) or kind_of(op.name, op.metadata) != "batch":
        return None
    return value


def state_of(op: OperationFields) -> State:
    """What became of it: see Operation.state."""
    if op.job:
        state = op.raw.get("state")
        return JOB_STATES.get(state, State.RUNNING) if isinstance(state, str) else State.RUNNING
    if not op.done:
        return _batch_state(batch_state_of(op))
    if op.error is not None:
        return State.CANCELLED if op.error.code == CANCELLED_CODE else State.FAILED
    return State.FILTERED if is_filtered(op) else State.SUCCEEDED


def is_filtered(op: OperationFields) -> bool:
    """A video the safety checks withheld: see Operation.filtered."""
    if not op.done or op.error is not None or not op.response:
        return False
    boxes = _video_boxes(op.response, op.vertex)
    if any(_has_samples(box.get(key)) for box in boxes for key in ("generatedSamples", "videos")):
        return False
    return any(_filtered_count(box) > 0 or _reasons(box) for box in boxes)


KINDS = ("video", "tuning", "import", "batch", "other")


def kind_of(name: str, metadata: Mapping[str, Any]) -> str:
    """What an operation is for, so schedules, widgets and tables can treat kinds apart."""
    type_ = metadata.get("@type")
    if not isinstance(type_, str):
        type_ = ""
    if name.startswith("batches/") or type_.endswith("Batch") or "/batchPredictionJobs/" in name:
        return "batch"
    if name.startswith("tunedModels/") or "Tun" in type_.rsplit(".", 1)[-1] or "/tuningJobs/" in name:
        return "tuning"
    if "Import" in type_ or "Upload" in type_ or "/ragCorpora/" in name:
        return "import"
    if name.startswith(("fileSearchStores/", "corpora/")):
        return "import"
    if "PredictLongRunning" in type_ or "GenerateVideo" in type_ or name.startswith("models/veo") \
            or "/models/veo" in name:
        return "video"
    return "other"


def model_of(name: str, metadata: Mapping[str, Any]) -> str | None:
    """The model an operation runs on: the collection of a model's operations
    ("models/veo-3.0-generate-001/operations/x"), else metadata.model (a batch's); else None."""
    head, sep, _ = name.rpartition("/operations/")
    if sep and head.startswith("models/") and head.count("/") == 1:
        return head
    model = metadata.get("model")
    return model if isinstance(model, str) and model else None


# google.ai.generativelanguage BatchState, by its JSON name. Anything else (UNSPECIFIED, a name
# added later, a number, null) reads as still running: the operation's done decides then.
_BATCH_STATES = {
    "BATCH_STATE_PENDING": State.RUNNING,
    "BATCH_STATE_RUNNING": State.RUNNING,
    "BATCH_STATE_SUCCEEDED": State.SUCCEEDED,
    "BATCH_STATE_FAILED": State.FAILED,
    "BATCH_STATE_EXPIRED": State.FAILED,
    "BATCH_STATE_CANCELLED": State.CANCELLED,
}


# google.cloud.aiplatform JobState, by its JSON name: what a Vertex job's state means. Anything else
# (UNSPECIFIED, absent, a name added later) reads as still running, not done.
JOB_STATES: dict[str, State] = {
    "JOB_STATE_QUEUED": State.RUNNING,
    "JOB_STATE_PENDING": State.RUNNING,
    "JOB_STATE_RUNNING": State.RUNNING,
    "JOB_STATE_PAUSED": State.RUNNING,
    "JOB_STATE_UPDATING": State.RUNNING,
    "JOB_STATE_CANCELLING": State.RUNNING,  # see Operation.cancelling
    "JOB_STATE_SUCCEEDED": State.SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": State.SUCCEEDED,  # see Operation.partial
    "JOB_STATE_FAILED": State.FAILED,
    "JOB_STATE_EXPIRED": State.FAILED,
    "JOB_STATE_CANCELLED": State.CANCELLED,
}
_JOB_LISTS = ("tuningJobs", "batchPredictionJobs")  # ListTuningJobsResponse, ListBatchPredictionJobsResponse
_JOB_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/(?:tuningJobs|batchPredictionJobs)/[^/]+")


def _is_job(name: str, data: Mapping[str, Any]) -> bool:
    """A Vertex job resource rather than an Operation: a JOB_STATE_* (or a job's name) and none of
    an Operation's own fields."""
    if "done" in data or "metadata" in data or "response" in data:
        return False
    state = data.get("state")
    return (isinstance(state, str) and state.startswith("JOB_STATE_")) or bool(_JOB_NAME.fullmatch(name))


def _batch_state(value: str | None) -> State:
    return State.RUNNING if value is None else _BATCH_STATES.get(value, State.RUNNING)


def _video_boxes(response: Mapping[str, Any], vertex: bool) -> list[Mapping[str, Any]]:
    """Where a video result keeps its samples and filter fields: the Gemini API in
    response.generateVideoResponse, Vertex AI in the response itself. Both are read either way
    (the flavour the operation was parsed as first), so one parsed as the other still reads."""
    gvr = response.get("generateVideoResponse")
    if not _is_map(gvr):
        return [response]
    return [response, gvr] if vertex else [gvr, response]


def _has_samples(value: Any) -> bool:
    """A list with at least one sample in it (a non-empty object: null or {} holds no video)."""
    return isinstance(value, list) and any(item and _is_map(item) for item in value)


def _filtered_count(box: Mapping[str, Any]) -> float:
    """raiMediaFilteredCount (an int32, maybe sent as a string); 0 if absent or unreadable."""
    count = as_number(box.get("raiMediaFilteredCount"))
    return 0.0 if count is None else count


def _reasons(box: Mapping[str, Any]) -> list[str]:
    """raiMediaFilteredReasons: the non-blank strings, capped in number and length."""
    value = box.get("raiMediaFilteredReasons")
    if isinstance(value, str):
        value = [value]  # one reason where a list belongs: still a reason
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, str) and item.strip():
            text = item.strip()
            out.append(text if len(text) <= MAX_FILTER_REASON_CHARS else text[: MAX_FILTER_REASON_CHARS - 1] + "…")
            if len(out) == MAX_FILTER_REASONS:
                break
    return out


def _or_default(data: Mapping[str, Any], key: str, default: Any) -> Any:
    """A field, or its default when it is missing or null (proto3 JSON reads null as the default)."""
    value = data.get(key)
    return default if value is None else value


def _kind(value: Any) -> str:
    """Name a JSON value's type for an error message without echoing big or secret values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int) and not -(10**15) < value < 10**15:
        return "a number too large to show"  # and repr() of a 5000-digit int raises ValueError
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r}{'...' if len(value) > 40 else ''})" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
