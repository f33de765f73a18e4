"""EmulatorApp: a raw ASGI app speaking the Gemini API's operations surface, plus an admin surface.

API routes, under /v1beta and /v1 exactly as Google binds them in each (the table in
ops_widgets/_capabilities.py, checked against Google's own bindings by tests/test_bindings.py);
everything else answers 404. Key in `x-goog-api-key` or `?key=`.

    GET    {v}/{name}                 batches/*, models/*/operations/*, tunedModels/*/operations/*,
                                      fileSearchStores/*[/upload]/operations/* (v1beta)
    GET    {v}/batches, {v}/models/*/operations, {v}/tunedModels/*/operations; v1: {v}/operations
    POST   {v}/batches/*:cancel       (v1: also tunedModels/*/operations/*:cancel)   -> {}
    DELETE {v}/batches/*              -> {}
    GET    {v}/models                 the models, with supportedGenerationMethods
    GET    v1beta/tunedModels         the tuned models the tuning operations made
    POST   v1beta/models/{model}:predictLongRunning   starts a video operation
    POST   {v}/models/{model}:batchGenerateContent    starts a batch
    POST   v1beta/fileSearchStores/{store}:importFile starts a file import
    POST   v1beta/tunedModels         starts a tuning operation
    GET    {v}/files/{id}:download    the generated video's bytes
    GET    /download/v1beta/files/{id}:download   a file's media (?alt=media): a batch's responses
    POST   /upload/v1beta/fileSearchStores/{s}:uploadToFileSearchStore   resumable: the upload operation
                                      file (JSON lines, streamed as they are made) or a video's bytes

Vertex AI, on the same server (ops_widgets/emulator/_vertex.py, which lists its routes): paths under
/v1 and /v1beta1 that start with projects/ or publishers/, with a bearer token from POST /token.
Its operations' ``:wait`` long-polls unless ``vertex_wait=False`` (then 404, as for an unbound method).

Admin routes (no key, never faulted): POST /_emulator/seed, POST /_emulator/operations,
GET /_emulator/operations/{name}, POST /_emulator/operations/{name}:complete, POST /_emulator/faults
(scripted: fail_next/fail_for), POST /_emulator/faults:set (random: a Faults as JSON),
GET /_emulator/faults, DELETE /_emulator/faults, GET /_emulator/stats, POST /_emulator/stats:reset.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

from .. import _capabilities as caps
from . import _vertex
from ._faults import AFTER, Faults
from ._state import (
    JSON_TYPE,
    KINDS,
    VIDEO_MODELS,
    ApiError,
    BatchPlan,
    Response,
    Store,
    decode_token,
    done_filter,
    encode_token,
    error_response,
    json_object,
    parent_of,
    render,
    slug,
    video_bytes,
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
VERSIONS = ("v1beta", "v1")
DEFAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "Internal error encountered.",
    502: "Bad gateway.",
    503: "The service is currently unavailable.",
    504: "Deadline expired before operation could complete.",
}
# What a reverse proxy answers when its backend failed (our own words, in the usual shape).
PROXY_502 = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Error 502 (Server Error)</title></head>
<body><h1>502. That's an error.</h1>
<p>The server encountered a temporary error and could not complete your request.
Please try again in 30 seconds.</p></body></html>
"""
SLOW_PIECES = 8  # a slow body arrives in this many pieces, evenly spread over its time
NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). "
          "Please use API Key or other form of API consumer identity to call this API.")
BAD_KEY = "API key not valid. Please pass a valid API key."

# Besides the operations methods (routed by the capability table, exactly as Google binds them):
# (pattern, method, stats template, handler, versions that have it).
_ROUTES: list[tuple[re.Pattern[str], str, str, str, tuple[str, ...]]] = [
    (re.compile(r"models"), "GET", "models", "_models", VERSIONS),
    (re.compile(r"tunedModels"), "GET", "tunedModels", "_tuned_models", ("v1beta",)),
    (re.compile(r"tunedModels"), "POST", "tunedModels", "_tune", ("v1beta",)),
    (re.compile(r"models/[^/:]+:predictLongRunning"), "POST", "models/{model}:predictLongRunning", "_predict",
     ("v1beta",)),
    (re.compile(r"models/[^/:]+:batchGenerateContent"), "POST", "models/{model}:batchGenerateContent", "_batch",
     VERSIONS),
    (re.compile(r"fileSearchStores/[^/:]+:importFile"), "POST", "fileSearchStores/{store}:importFile", "_import",
     ("v1beta",)),
    (re.compile(r"files/[^/:]+:download"), "GET", "files/{file}:download", "_download", VERSIONS),
]
# Media downloads live outside the API's path: GET /download/{v}/files/{id}:download?alt=media.
_MEDIA = re.compile(r"files/[^/:]+:download")
_UPLOAD = re.compile(r"fileSearchStores/[^/:]+:uploadToFileSearchStore")
_STREAM_CHUNK = 64 * 1024  # bytes of a streamed body sent per ASGI message (about)
# Models the emulator lists (GET {v}/models), with the methods they support.
MODELS = [
    *({"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["predictLongRunning"]}
      for m in VIDEO_MODELS),
    {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
     "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]},
    {"name": "models/gemini-embedding-001", "displayName": "Gemini Embedding 001",
     "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]},
]


def _operations_route(version: str, method: str, rest: str) -> tuple[str, str] | None:
    """(stats template, handler) of an operations method bound for this path, else None."""
    if method == "GET":
        if caps.allowed(version, "get", rest):
            return "{name}", "_get"
        parent = caps.listed_parent(version, rest)
        if parent is not None:
            return (rest if parent == rest else "{parent}/operations"), "_list"
    elif method == "POST" and rest.endswith(":cancel") and caps.allowed(version, "cancel", rest[:-7]):
        return "{name}:cancel", "_cancel"
    elif method == "DELETE" and caps.allowed(version, "delete", rest):
        return "{name}", "_delete"
    return None


_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def _json(obj: Any, status: int = 200) -> Response:
    return status, JSON_TYPE, _COMPACT(obj).encode(), {}


def _list_answer(items: Iterable[dict[str, Any]], token: str | None) -> Response:
    """A ListOperationsResponse, each operation encoded as soon as it is rendered: the page's dicts
    die young instead of living until one dumps of the page, so a big store's listing does not set
    off the full GC collections that rescan every stored operation (a third of a page's time)."""
    ops = ",".join([_COMPACT(item) for item in items])
    fields = ([f'"operations":[{ops}]'] if ops else []) + ([f'"nextPageToken":{_COMPACT(token)}'] if token else [])
    return 200, JSON_TYPE, ("{" + ",".join(fields) + "}").encode(), {}


def _duration(seconds: float) -> str:
    return f"{seconds:.9g}s"  # google.protobuf.Duration JSON: "0.2s", "47s"


@dataclass
class _Fault:
    status: int
    body: str | None
    content_type: str
    retry_delay: float | None
    path: str | None
    remaining: int | None = None  # fail_next: answers left
    until: float | None = None  # fail_for: end of the window (clock time)

    def response(self) -> Response:
        if self.body is not None:
            return self.status, self.content_type, self.body.encode(), {}
        details = None
        if self.retry_delay is not None:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(self.retry_delay)}]
        message = DEFAULT_MESSAGES.get(self.status, f"Injected error {self.status}.")
        return error_response(self.status, message, details)


@dataclass
class _Exchange:
    """One request's random fault, picked once its route is counted (None: a healthy exchange)."""

    fault: str | None = None
    status: int = 0  # an "error" fault's status: 500 or 503


class _Drop(Exception):
    """The request is dropped before the server acts on it."""


class EmulatorApp:
    """The ASGI callable. Thread-safe: admin methods may be called from any thread while it serves."""

    def __init__(self, *, speed: float = 1.0, random_seed: int | None = None, api_key: str = "emulator-key",
                 latency: float | tuple[float, float] = 0.0, clock: Callable[[], float] = time.time,
                 faults: Faults | None = None, vertex_wait: bool = True) -> None:
        self.api_key = api_key
        # False: Vertex AI's :wait is not served (404, as a method the service does not bind),
        # to see clients fall back to GETs. May be changed while it serves.
        self.vertex_wait = vertex_wait
        self.latency: tuple[float, float] = latency if isinstance(latency, tuple) else (latency, latency)
        self.base_url = "http://127.0.0.1"  # for get_operation(); requests use their own Host header
        self._clock = clock  # wall-clock epoch seconds; injectable so tests can step time
        self._lock = threading.Lock()
        self._store = Store(speed=speed, random_seed=random_seed)
        self._latency_rng = random.Random(random_seed)  # separate: latency must not shift ids
        self._faults: list[_Fault] = []
        self._uploads: dict[str, str] = {}  # resumable upload sessions: id -> file search store
        self._by_route: Counter[str] = Counter()
        self._by_name: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._by_fault: Counter[str] = Counter()
        self._random_faults = Faults()
        self._fault_rng = random.Random()
        self._storm_left: int | None = None  # requests left in the 429 storm (None: no count limit)
        self._storm_until: float | None = None  # end of its window, emulator clock
        self._storm_on = False
        self.vertex = _vertex.VertexSurface(self._lock, clock, speed=speed, random_seed=random_seed,
                                            api_key=api_key)
        if faults is not None:
            self.set_faults(faults)

    def __repr__(self) -> str:
        return f"<EmulatorApp {len(self._store.ops)} operations, speed={self._store.speed}>"

    # --- Python admin API (each also reachable under /_emulator/) ---------------------------
    def seed(self, count: int, kinds: Sequence[str] | None = None, *, running_fraction: float = 0.3,
             failed_fraction: float = 0.1, service: str = "gemini", project: str | None = None,
             location: str | None = None) -> list[str]:
        """Create `count` operations of mixed kinds and states (some done, failed, cancelled, running);
        ``service="vertex"``: Vertex AI operations and jobs in ``project``/``location``."""
        if service == "vertex":
            return self.vertex.seed(count, tuple(kinds or _vertex.KINDS), project=project, location=location,
                                    running_fraction=running_fraction, failed_fraction=failed_fraction)
        if service != "gemini" or project is not None or location is not None:
            raise ValueError("project= and location= are for service='vertex'" if service == "gemini"
                             else f"unknown service {service!r}; choose 'gemini' or 'vertex'")
        kinds = KINDS if kinds is None else kinds
        with self._lock:
            return self._store.seed(count, tuple(kinds), self._clock(), running_fraction=running_fraction,
                                    failed_fraction=failed_fraction)

    def create(self, kind: str = "video", *, duration: float | None = None, outcome: str = "success",
               error_message: str | None = None, error_code: int = 13, model: str | None = None,
               parent: str | None = None, requests: int | None = None, service: str = "gemini",
               project: str | None = None, location: str | None = None) -> str:
        """One operation with exactly this behaviour; `duration` is in emulated seconds. Returns its name.

        ``requests``: a batch's request count (lines of its responses file); random when None.
        ``service="vertex"``: a Vertex AI operation or job in ``project``/``location`` (kinds
        "video" on a publisher model, "tuning" job, "batch" prediction job, "import" of RAG files,
        "generic" projects/*/locations/*/operations/*; outcome "partial" for a batch)."""
        if service == "vertex":
            if parent is not None or requests is not None:
                raise ValueError("parent= and requests= are for the Gemini API's operations")
            return self.vertex.create(kind, project=project, location=location, duration=duration, outcome=outcome,
                                      error_message=error_message, error_code=error_code, model=model)
        if service != "gemini":
            raise ValueError(f"unknown service {service!r}; choose 'gemini' or 'vertex'")
        if project is not None or location is not None:
            raise ValueError("project= and location= are for service='vertex'")
        if model is not None and kind == "video":
            parent = model if model.startswith("models/") else f"models/{model}"
        extra: dict[str, Any] = {}
        if requests is not None:
            if kind != "batch":
                raise ValueError(f"requests= is for batches, not {kind!r}")
            if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
                raise ValueError(f"requests must be an integer >= 1, got {requests!r}")
            extra["requests"] = requests
        with self._lock:
            op = self._store.new_op(kind, self._clock(), duration=duration, outcome=outcome, parent=parent,
                                    extra=extra)
            op.error_message, op.error_code = error_message, error_code
            self._store.add(op)
            return op.name

    def complete(self, name: str) -> None:
        """Finish `name` now, as its outcome says (no-op if already done). KeyError if unknown."""
        with self._lock:
            if self.vertex.complete(name):
                return
            op = self._store.ops[name]
            now = self._clock()
            if now < op.end:
                op.ended = now

    def get_operation(self, name: str) -> dict[str, Any] | None:
        """The JSON GET {v}/{name} would answer now, or None if there is no such operation (for a
        Vertex AI video operation: what fetchPredictOperation answers)."""
        vertex = self.vertex.get(name)
        if vertex is not None:
            return vertex
        with self._lock:
            op = self._store.ops.get(name)
            return None if op is None else render(op, self._clock(), self.base_url)

    def fail_next(self, count: int = 1, *, status: int = 503, body: str | None = None,
                  content_type: str = "application/json", retry_delay: float | None = None,
                  path: str | None = None) -> None:
        """Answer the next `count` API requests (whose path contains `path`, if given) with `status`."""
        with self._lock:
            self._faults.append(_Fault(status, body, content_type, retry_delay, path, remaining=count))

    def fail_for(self, seconds: float, *, status: int = 429, retry_delay: float | None = None,
                 path: str | None = None, body: str | None = None,
                 content_type: str = "application/json") -> None:
        """Answer every API request with `status` for the next `seconds` (real seconds): a storm."""
        with self._lock:
            self._faults.append(_Fault(status, body, content_type, retry_delay, path,
                                       until=self._clock() + seconds))

    def set_faults(self, faults: Faults) -> None:
        """Inject ``faults`` from now on (replacing earlier ones): their random stream restarts
        from ``faults.seed`` and their 429 storm, if any, starts now. Scripted faults (fail_next,
        fail_for) stay and come first."""
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        with self._lock:
            self._random_faults = faults
            self._fault_rng = random.Random(faults.seed)
            self._storm_on = faults.storm
            self._storm_left = faults.storm_requests or None
            self._storm_until = self._clock() + faults.storm_seconds if faults.storm_seconds else None

    @property
    def faults(self) -> Faults:
        """The random faults injected now (``Faults()`` when none)."""
        with self._lock:
            return self._random_faults

    def clear_faults(self) -> None:
        """No more faults: neither scripted (fail_next, fail_for) nor random (set_faults)."""
        with self._lock:
            self._faults.clear()
            self._random_faults = Faults()
            self._storm_on = False

    def stats(self) -> dict[str, Any]:
        """Request counts: total, per route template, GETs per operation name, per status answered
        (a drop before the server acted has none), and per fault injected ("scripted" for fail_next/fail_for;
        "error", "html_error", "rate_limit", "drop_before", "drop_after", "truncated", "slow_body")."""
        with self._lock:
            return {"total": sum(self._by_route.values()), "by_route": dict(self._by_route),
                    "by_name": dict(self._by_name), "by_status": dict(self._by_status),
                    "faults": dict(self._by_fault)}

    def reset_stats(self) -> None:
        with self._lock:
            self._by_fault.clear()
            self._by_route.clear()
            self._by_name.clear()
            self._by_status.clear()

    # --- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True).items()}
        response: Response
        exchange = _Exchange()
        try:
            if path.startswith("/_emulator/"):
                response = self._admin(scope["method"], path[len("/_emulator/"):], body)
            elif path == "/token" and scope["method"] == "POST":
                response = self._token(scope, body)
            else:
                try:
                    answer = self._api(scope, path, query, body, exchange)
                    response = await answer if inspect.isawaitable(answer) else answer
                except ApiError as exc:
                    response = exc.response()
                except _Drop:
                    await _drop(send)
                    return
                if exchange.fault in AFTER:
                    response, applied = _after(exchange.fault, response)
                    exchange.fault = exchange.fault if applied else None
                with self._lock:
                    self._by_status[response[0]] += 1
                    if exchange.fault is not None and exchange.fault in AFTER:
                        self._by_fault[exchange.fault] += 1
                if self.latency[1] > 0:
                    await asyncio.sleep(self._latency_rng.uniform(*self.latency))
        except ApiError as exc:
            response = exc.response()
        await self._respond(send, response, exchange.fault)

    async def _respond(self, send: Send, response: Response, fault: str | None) -> None:
        status, content_type, payload, extra = response
        headers = [(b"content-type", content_type.encode())]
        if isinstance(payload, bytes):
            headers.append((b"content-length", str(len(payload)).encode()))
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # Streamed bodies are made as they are sent, a chunk at a time (never whole in memory).
        if isinstance(payload, bytes) and fault is None:
            await send({"type": "http.response.body", "body": payload})
            return
        parts = iter((payload,)) if isinstance(payload, bytes) else _coalesce(payload)
        if fault == "drop_after":  # the server acted; its answer stops half-way
            first = next(parts, b"")
            half = first[: len(first) // 2]
            if half:
                await send({"type": "http.response.body", "body": half, "more_body": True})
            await _drop(send, sent=len(half), expected=len(payload) if isinstance(payload, bytes) else None)
            return
        if fault == "slow_body":
            # Sleeps on the serving loop: virtual time in-process on a VirtualClock, else real time.
            delay = self._random_faults.slow_body_seconds / SLOW_PIECES
            if isinstance(payload, bytes):
                size = max(1, -(-len(payload) // SLOW_PIECES))
                parts = iter([payload[i:i + size] for i in range(0, len(payload), size)] or [b""])
            for i, part in enumerate(parts):
                if i < SLOW_PIECES:
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _token(self, scope: Scope, body: bytes) -> Response:
        """POST /token, the OAuth2 token endpoint of the emulator's service accounts (Vertex AI)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token_uri = f"{scope.get('scheme', 'http')}://{headers.get('host', '127.0.0.1')}/token"
        status, answer = self.vertex.token(body, token_uri)
        with self._lock:
            self._by_route["POST /token"] += 1
            self._by_status[status] += 1
        return _json(answer, status)

    def _api(self, scope: Scope, path: str, query: dict[str, str], body: bytes,
             exchange: _Exchange) -> Response | Awaitable[Response]:
        media = path.startswith("/download/")  # the upload/download paths sit beside the API's
        upload = path.startswith("/upload/")
        version, _, rest = path.removeprefix("/download").removeprefix("/upload").lstrip("/").partition("/")
        # Vertex AI's names start with projects/ (or publishers/, express mode): never the Gemini API's.
        vertex = (not media and not upload and version in _vertex.VERSIONS
                  and (version == "v1beta1" or rest.startswith(("projects/", "publishers/"))))
        if version not in VERSIONS and not vertex:
            raise ApiError(404, f"The requested URL {path} was not found on this server.")
        method = scope["method"]
        route: tuple[str, str] | None
        vertex_route = _vertex.route(version, method, rest, wait=self.vertex_wait) if vertex else None
        if vertex:
            route = None if vertex_route is None else (vertex_route.template, vertex_route.handler)
        elif media:  # the Files service (DownloadFile) is bound in v1beta only
            route = (("files/{file}:download", "_media")
                     if method == "GET" and version == "v1beta" and _MEDIA.fullmatch(rest) else None)
        elif upload:  # file search stores, v1beta: a resumable upload whose last step answers the operation
            route = (("fileSearchStores/{store}:uploadToFileSearchStore", "_upload")
                     if method == "POST" and version == "v1beta" and _UPLOAD.fullmatch(rest) else None)
        else:
            route = _operations_route(version, method, rest) or next(
                ((r[2], r[3]) for r in _ROUTES if r[1] == method and version in r[4] and r[0].fullmatch(rest)),
                None)
        prefix = "/download" if media else "/upload" if upload else ""
        template = f"{method} {prefix}/{version}/{route[0] if route else '(unmatched)'}"
        with self._lock:
            self._by_route[template] += 1
            if route and route[1] == "_get":
                self._by_name[rest] += 1
            elif vertex_route is not None and (polled := self.vertex.polled_name(vertex_route, body)):
                self._by_name[polled] += 1
            fault = self._take_fault(path)
            if fault is not None:
                self._by_fault["scripted"] += 1
            else:
                self._pick_fault(exchange)
        if fault is not None:
            return fault.response()
        if exchange.fault == "rate_limit":
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": _duration(self._random_faults.storm_retry_delay)}
            return error_response(429, DEFAULT_MESSAGES[429], [retry])
        if exchange.fault == "error":
            return error_response(exchange.status, DEFAULT_MESSAGES[exchange.status])
        if exchange.fault == "html_error":
            return 502, "text/html; charset=UTF-8", PROXY_502.encode(), {}
        if exchange.fault == "drop_before":
            raise _Drop
        if route is None:  # what Google does not bind (in this version) does not exist
            raise ApiError(404, f"The requested URL {path} was not found on this server.")
        if vertex_route is not None:
            lowered = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            self.vertex.authorize(lowered, vertex_route)
            return self._vertex_answer(self.vertex.handle(vertex_route, query, body))
        if not (upload and query.get("upload_id")):  # a session URL is its own credential, as at Google
            self._check_key(scope, query)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        base_url = f"{scope.get('scheme', 'http')}://{headers.get('host', '127.0.0.1')}"
        if upload:
            return self._upload(rest, query, headers, base_url)
        handler: Callable[[str, dict[str, str], bytes, str], Response] = getattr(self, route[1])
        return handler(rest, query, body, base_url)

    @staticmethod
    def _vertex_answer(answer: Any) -> Response | Awaitable[Response]:
        if not inspect.isawaitable(answer):
            return _json(answer)

        async def later() -> Response:
            return _json(await answer)

        return later()

    def _upload(self, rest: str, query: dict[str, str], headers: dict[str, str], base_url: str) -> Response:
        """uploadToFileSearchStore, resumable as Google does it: "start" answers the session URL in
        x-goog-upload-url; "upload" steps are acknowledged; "upload, finalize" starts the upload
        operation (no metadata; documentName once done) and answers it."""
        command = {k.lower(): v for k, v in headers.items()}.get("x-goog-upload-command", "").lower()
        steps = {c.strip() for c in command.split(",") if c.strip()}
        store = rest.removesuffix(":uploadToFileSearchStore")
        if "start" in steps:
            token = secrets.token_hex(8)  # a session id: not part of any seeded scenario
            with self._lock:
                self._uploads[token] = store
            url = f"{base_url}/upload/v1beta/{rest}?upload_id={token}"
            return 200, JSON_TYPE, b"{}", {"x-goog-upload-url": url, "x-goog-upload-status": "active"}
        with self._lock:
            known = self._uploads.get(query.get("upload_id", ""))
        if known != store or not steps <= {"upload", "finalize"} or not steps:
            raise ApiError(400, "Invalid upload request: start a resumable upload first.")
        if "finalize" not in steps:
            return 200, JSON_TYPE, b"", {"x-goog-upload-status": "active"}
        with self._lock:
            del self._uploads[query["upload_id"]]
            now = self._clock()
            op = self._store.new_op("upload", now, parent=store)
            self._store.add(op)
            payload = json.dumps(render(op, now, base_url)).encode()
        return 200, JSON_TYPE, payload, {"x-goog-upload-status": "final"}

    def _pick_fault(self, exchange: _Exchange) -> None:
        """The random fault of one API request, lock held: the 429 storm first, then one draw."""
        faults = self._random_faults
        if self._storm_on:
            left, until = self._storm_left, self._storm_until
            if (left is not None and left <= 0) or (until is not None and self._clock() >= until):
                self._storm_on = False  # over: it does not come back until set_faults again
            else:
                if left is not None:
                    self._storm_left = left - 1
                self._by_fault["rate_limit"] += 1
                exchange.fault = "rate_limit"
                return
        if not faults.random:
            return
        exchange.fault = faults.choose(self._fault_rng.random())
        if exchange.fault == "error":
            exchange.status = self._fault_rng.choice((500, 503))
        if exchange.fault is not None and exchange.fault not in AFTER:
            self._by_fault[exchange.fault] += 1  # the others count once they are applied

    def _take_fault(self, path: str) -> _Fault | None:
        now = self._clock()
        self._faults = [f for f in self._faults if (f.remaining is None or f.remaining > 0)
                        and (f.until is None or f.until > now)]
        for fault in self._faults:
            if fault.path is None or fault.path in path:
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def _check_key(self, scope: Scope, query: dict[str, str]) -> None:
        key = next((v.decode() for k, v in scope.get("headers", []) if k.lower() == b"x-goog-api-key"), None)
        key = key if key is not None else query.get("key")
        if not key:
            raise ApiError(403, NO_KEY)
        if key != self.api_key:
            raise ApiError(400, BAD_KEY, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": BAD_KEY},
            ])

    # --- API handlers (rest = path after the version) --------------------------------------------
    def _list(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """ListOperationsResponse. The top level lists ALL operations of every kind, oldest first;
        nested parents and /batches list only their own. Tokens encode the last item's sequence
        number, so pages stay correct while operations are created or deleted in between."""
        try:
            size = int(query.get("pageSize") or 0)
        except ValueError:
            raise ApiError(400, f"Invalid value for pageSize: {query['pageSize']!r}") from None
        if size < 0:
            raise ApiError(400, "pageSize must not be negative.")
        size = min(size or 50, 1000)
        try:
            after = decode_token(query["pageToken"]) if query.get("pageToken") else 0
        except ValueError:
            raise ApiError(400, "Invalid page token.") from None
        done = done_filter(query.get("filter", ""))
        parent = "" if rest == "operations" else rest.removesuffix("/operations")
        with self._lock:
            now = self._clock()
            ops, next_after = self._store.page(parent, size, after, done, now)
            return _list_answer((render(op, now, base_url) for op in ops),
                                None if next_after is None else encode_token(next_after))

    def _get(self, name: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        with self._lock:
            op = self._store.ops.get(name)
            if op is None:
                raise ApiError(404, "Requested entity was not found.")
            return _json(render(op, self._clock(), base_url))

    def _cancel(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        with self._lock:
            op = self._store.ops.get(rest.removesuffix(":cancel"))
            if op is None:
                raise ApiError(404, "Requested entity was not found.")
            now = self._clock()
            if now < op.end:  # a done operation stays as it is
                op.ended, op.cancelled = now, True
        return _json({})

    def _delete(self, name: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        with self._lock:
            if self._store.remove(name) is None:
                raise ApiError(404, "Requested entity was not found.")
        return _json({})

    def _predict(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """Starts a video operation; API-started operations always succeed (use create() for others)."""
        request = json_object(body)
        instances = request.get("instances")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise ApiError(400, "Invalid request: 'instances' must be a non-empty list of objects.")
        with self._lock:
            op = self._store.new_op("video", self._clock(), parent=rest.removesuffix(":predictLongRunning"))
            op.extra["prompt"] = str(instances[0].get("prompt", ""))
            self._store.add(op)
        return _json({"name": op.name})

    def _tune(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """Starts a tuning operation and answers it (with CreateTunedModelMetadata)."""
        request = json_object(body)
        base = request.get("baseModel")
        if not isinstance(base, str) or not base:
            raise ApiError(400, "Invalid request: 'baseModel' is required.")
        display = str(request.get("displayName") or "tuned model")
        task = request.get("tuningTask")
        if not isinstance(task, dict):
            task = {}
        hyper = {"epochCount": 5, "batchSize": 4, "learningRate": 0.001, **(task.get("hyperparameters") or {})}
        examples = ((task.get("trainingData") or {}).get("examples") or {}).get("examples") or []
        extra: dict[str, Any] = {"display": display, "base": base, "hyper": hyper}
        if examples:
            extra["steps"] = max(1, -(-len(examples) * int(hyper["epochCount"]) // int(hyper["batchSize"])))
        with self._lock:
            parent = None
            if query.get("tunedModelId"):
                parent = f"tunedModels/{slug(query['tunedModelId'])}"
                if self._store.index.get(parent):
                    raise ApiError(409, f"Tuned model {parent} already exists.")
            now = self._clock()
            op = self._store.new_op("tuning", now, parent=parent, extra=extra)
            self._store.add(op)
            return _json(render(op, now, base_url))

    def _batch(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """models/{m}:batchGenerateContent: starts a batch; answers its Operation (batches/{id})."""
        request = json_object(body).get("batch")
        if not isinstance(request, dict):
            raise ApiError(400, "Invalid request: 'batch' is required.")
        config = request.get("inputConfig") or {}
        if not isinstance(config, dict):
            raise ApiError(400, "Invalid request: 'inputConfig' must be an object.")
        requests = (config.get("requests") or {}).get("requests") if isinstance(config.get("requests"), dict) else None
        extra: dict[str, Any] = {"model": rest.removesuffix(":batchGenerateContent"),
                                 "display": str(request.get("displayName") or "batch")}
        if isinstance(requests, list) and requests:
            # Inline requests answer inline, in order, each with its request's metadata (its key).
            extra["requests"] = len(requests)
            extra["inline"] = [r["metadata"] if isinstance(r, dict) and isinstance(r.get("metadata"), dict)
                               else None for r in requests]
        # else inputConfig.fileName (or nothing): the responses go to a file, files/batch-{id}
        with self._lock:
            now = self._clock()
            op = self._store.new_op("batch", now, extra=extra)
            self._store.add(op)
            return _json(render(op, now, base_url))

    def _import(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """fileSearchStores/{s}:importFile: starts an import; answers its Operation (no metadata)."""
        file_name = json_object(body).get("fileName")
        if not isinstance(file_name, str) or not file_name.startswith("files/"):
            raise ApiError(400, "Invalid request: 'fileName' must name a file (files/...).")
        with self._lock:
            now = self._clock()
            op = self._store.new_op("import", now, parent=rest.removesuffix(":importFile"))
            self._store.add(op)
            return _json(render(op, now, base_url))

    def _models(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        return _json({"models": MODELS})

    def _tuned_models(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """Every tuned model a tuning operation made: CREATING while it runs, then ACTIVE or FAILED."""
        with self._lock:
            now = self._clock()
            models = []
            for op in self._store.ops.values():
                if op.kind != "tuning":
                    continue
                done = now >= op.end
                state = "CREATING" if not done else "FAILED" if op.outcome == "failure" or op.cancelled else "ACTIVE"
                models.append({"name": parent_of(op.name), "baseModel": op.extra["base"],
                               "displayName": op.extra["display"], "state": state})
        return _json({"tunedModels": models} if models else {})

    def _download(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        file_id = rest[len("files/"):].removesuffix(":download")
        with self._lock:
            name = self._store.files.get(file_id)
            op = self._store.ops.get(name) if name else None
            ready = op is not None and self._clock() >= op.end and op.outcome == "success" and not op.cancelled
        if not ready:
            raise ApiError(404, "Requested entity was not found.")
        return 200, "video/mp4", video_bytes(file_id), {}

    def _media(self, rest: str, query: dict[str, str], body: bytes, base_url: str) -> Response:
        """A file's bytes at /download/{v}/files/{id}:download?alt=media: a done batch's responses
        file (one JSON line per request, made while it is sent) or a video."""
        if query.get("alt") != "media":
            raise ApiError(400, "Invalid request: this path serves media only (alt=media).")
        file_id = rest[len("files/"):].removesuffix(":download")
        with self._lock:
            name = self._store.files.get(file_id)
            op = self._store.ops.get(name) if name else None
            ready = op is not None and self._clock() >= op.end and op.outcome == "success" and not op.cancelled
            plan = BatchPlan.of(op) if ready and op is not None and op.kind == "batch" else None
        if not ready:
            raise ApiError(404, "Requested entity was not found.")
        if plan is not None:
            return 200, "application/jsonl; charset=UTF-8", plan.lines(), {}
        return 200, "video/mp4", video_bytes(file_id), {}

    # --- admin ------------------------------------------------------------------------------------
    def _admin(self, method: str, rest: str, body: bytes) -> Response:
        try:
            args = json_object(body) if method == "POST" else {}
            if (method, rest) == ("POST", "seed"):
                if "kinds" in args:
                    args["kinds"] = tuple(args["kinds"])
                return _json({"names": self.seed(**args)})
            if (method, rest) == ("POST", "operations"):
                return _json({"name": self.create(**args)})
            if rest.startswith("operations/"):
                name = rest[len("operations/"):]
                if method == "POST" and name.endswith(":complete"):
                    self.complete(name.removesuffix(":complete"))
                    return _json(self.get_operation(name.removesuffix(":complete")))
                if method == "GET":
                    op = self.get_operation(name)
                    if op is None:
                        raise ApiError(404, "Requested entity was not found.")
                    return _json(op)
            if (method, rest) == ("POST", "faults"):
                if "seconds" in args:
                    self.fail_for(**args)
                else:
                    self.fail_next(**args)
                return _json({})
            if (method, rest) == ("POST", "faults:set"):
                self.set_faults(Faults.from_dict(args))
                return _json({})
            if (method, rest) == ("GET", "faults"):
                return _json(self.faults.to_dict())
            if (method, rest) in (("DELETE", "faults"), ("POST", "faults:clear")):
                self.clear_faults()
                return _json({})
            if (method, rest) == ("GET", "stats"):
                return _json(self.stats())
            if (method, rest) == ("POST", "stats:reset"):
                self.reset_stats()
                return _json({})
        except KeyError:
            raise ApiError(404, "Requested entity was not found.") from None
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"Invalid admin request: {exc}") from None
        raise ApiError(404, f"No admin route {method} /_emulator/{rest}.")


def _coalesce(parts: Iterable[bytes]) -> Iterator[bytes]:
    """A streamed body in pieces of about _STREAM_CHUNK bytes (one ASGI message each)."""
    pending: list[bytes] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= _STREAM_CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _after(fault: str, response: Response) -> tuple[Response, bool]:
    """A fault that strikes once the server has acted: (the answer to send, whether it applies).
    Truncation cuts a 200's body in half (Content-Length follows: only the JSON parse fails)."""
    if fault != "truncated":
        return response, True
    status, content_type, payload, extra = response
    if status != 200:
        return response, False
    first = payload if isinstance(payload, bytes) else next(iter(payload), b"")
    if len(first) < 2:
        return response, False
    return (status, content_type, first[: len(first) // 2], extra), True


async def _drop(send: Send, sent: int | None = None, expected: int | None = None) -> None:
    """Close the connection as a failing network does, ``sent`` body bytes into the answer (None:
    before any byte). Under uvicorn that is its socket; in-process (httpx.ASGITransport, which
    passes an app's exception to the client as it is) the error httpx raises when a server does it."""
    cycle = getattr(send, "__self__", None)  # uvicorn's send is a bound method of its request cycle
    transport = getattr(cycle, "transport", None)
    if isinstance(transport, asyncio.Transport):
        transport.close()  # what was sent is flushed first, then the socket closes
        # Return once uvicorn has seen the close, so that it does not try to answer a 500 itself.
        for i in range(400):
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0 if i < 10 else 0.005)
        return
    if sent is None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    detail = f"received {sent} bytes, expected {expected}" if expected is not None else "incomplete chunked read"
    raise httpx.RemoteProtocolError(f"peer closed connection without sending complete message body ({detail})")
