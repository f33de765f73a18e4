"""The emulator's Vertex AI surface: operations, Veo predictions, tuning and batch prediction jobs,
bearer tokens and the OAuth2 token endpoint. Served by EmulatorApp on the same server as the Gemini
API (a path under /v1 or /v1beta1 that starts with projects/ or publishers/ is Vertex AI's).

Routes are exactly the Vertex bindings of ops_widgets/_capabilities.py (checked against Google's
discovery documents by tests/test_vertex_bindings.py); anything else answers 404, a GET on a
publisher-model (Veo) operation included:

    GET    {v}/{name}                      operations of the bound collections; tuningJobs/*, batchPredictionJobs/*
    GET    {v}/{parent}/operations         the bound collections' lists (not publisher models)
    POST   {v}/{name}:cancel | :wait       operations (and jobs' :cancel); :wait?timeout=30s long-polls
    DELETE {v}/{name}                      operations -> {}; batchPredictionJobs/* -> a done delete Operation
    GET|POST {v}/projects/*/locations/*/tuningJobs | batchPredictionJobs   list | create
    POST   {v}/.../publishers/google/models/veo-*:predictLongRunning | :fetchPredictOperation
    POST   /token                          OAuth2 JWT-bearer grant (a service account's signed assertion)

Auth: ``Authorization: Bearer <token>``, a token /token issued and that has not expired (emulator
clock), else 401 UNAUTHENTICATED as Google words it. An API key (``x-goog-api-key``, the emulator's
key) is accepted only where Vertex AI express mode takes one here: predictLongRunning and
fetchPredictOperation on ``publishers/*/models/*`` with no project in the path.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import random
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .. import _capabilities as caps
from ._state import (
    ApiError,
    Op,
    backdate,
    decode_token,
    done_filter,
    encode_token,
    json_object,
    rfc3339,
    video_bytes,
)

VERSIONS = ("v1", "v1beta1")
KINDS = ("video", "tuning", "batch", "import", "generic")
DEFAULT_PROJECT = "emulator-project"
DEFAULT_LOCATION = "us-central1"
VIDEO_MODELS = ("veo-3.1-generate-preview", "veo-3.0-generate-001", "veo-3.0-fast-generate-001",
                "veo-2.0-generate-001")
TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."
VIDEO_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
DURATIONS: dict[str, tuple[float, float]] = {
    "video": (60, 360), "tuning": (1800, 10800), "batch": (300, 3600), "import": (10, 300), "generic": (5, 120),
}
FAILURES = {
    "video": "Video generation failed due to an internal error. Please try again later.",
    "tuning": "Tuning failed: the training dataset could not be read.",
    "batch": "Batch prediction failed: the input could not be read.",
    "import": "Failed to import files: the source could not be read.",
    "generic": "Internal error encountered.",
}
FILTERED_REASON = ("The video could not be generated because it may violate Vertex AI's usage guidelines. "
                   "Please try rephrasing the prompt.")
CANCEL_SECONDS = 5.0  # emulated seconds a job spends in JOB_STATE_CANCELLING
MAX_WAIT = 60.0  # an operation's :wait never holds longer (Google: the HTTP/RPC deadline)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/aiplatform")
_SEE = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. "
        "See https://developers.google.com/identity/sign-in/web/devconsole-project.")
NO_CREDENTIALS = "Request is missing required authentication credential. " + _SEE
BAD_CREDENTIALS = "Request had invalid authentication credentials. " + _SEE
NO_API_KEYS = ("API keys are not supported by this API. Expected OAuth2 access token or other authentication "
               "credentials that assert a principal. See https://cloud.google.com/docs/authentication")
NOT_FOUND = "Requested entity was not found."
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def _unauthenticated(message: str, reason: str) -> ApiError:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": "aiplatform.googleapis.com"}}
    return ApiError(401, message, [info], {"www-authenticate": 'Bearer realm="https://accounts.google.com/"'},
                    status="UNAUTHENTICATED")


@dataclass
class _Account:
    email: str
    lifetime: float  # seconds an access token lives (emulator clock)


@dataclass
class Route:
    """A bound Vertex method for one request: the stats template, the handler, and whether an
    express-mode API key may call it."""

    template: str
    handler: str
    target: str  # the name, parent or model the method acts on
    express: bool = False


@dataclass
class VertexState:
    """Vertex AI's records. Not thread-safe: EmulatorApp holds its lock around every call."""

    speed: float
    rng: random.Random
    ops: dict[str, Op] = field(default_factory=dict, repr=False)
    # Each list's members (a parent's operations, a location's jobs of one collection), as sequence
    # numbers in creation order, so that a page is a bisect and not a scan.
    index: dict[str, list[int]] = field(default_factory=dict, repr=False)
    by_seq: dict[int, Op] = field(default_factory=dict, repr=False)
    # Credentials stay out of the repr: token -> (account, expiry); the accounts' RSA private key,
    # made when first asked for.
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    accounts: dict[str, _Account] = field(default_factory=dict, repr=False)
    _seq: int = 0
    _key: Any = field(default=None, repr=False)

    # --- records -------------------------------------------------------------------------------
    def new_op(self, kind: str, now: float, *, project: str, location: str, duration: float | None = None,
               outcome: str = "success", model: str | None = None, express: bool = False,
               extra: dict[str, Any] | None = None) -> Op:
        if kind not in KINDS:
            raise ValueError(f"unknown Vertex kind {kind!r}; expected one of {KINDS}")
        allowed = {"video": ("success", "failure", "filtered"), "batch": ("success", "failure", "partial")}
        if outcome not in allowed.get(kind, ("success", "failure")):
            raise ValueError(f"bad outcome {outcome!r} for Vertex kind {kind!r}")
        for what, value in (("project", project), ("location", location)):
            if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
                raise ValueError(f"{what} must be one path segment of [A-Za-z0-9._~-], got {value!r}")
        rng, extra = self.rng, dict(extra or {})
        loc = f"projects/{project}/locations/{location}"
        number = str(rng.randrange(10**18, 10**19))
        if kind == "video":
            model = (model or rng.choice(VIDEO_MODELS)).removeprefix("models/")
            base = f"publishers/google/models/{model}"
            name = f"{base if express else loc + '/' + base}/operations/{uuid.UUID(int=rng.getrandbits(128))}"
        elif kind == "tuning":
            name = f"{loc}/tuningJobs/{number}"
            extra.setdefault("base", "gemini-2.5-flash")
            extra.setdefault("display", f"tuned-model-{number[-4:]}")
        elif kind == "batch":
            name = f"{loc}/batchPredictionJobs/{number}"
            extra.setdefault("model", "publishers/google/models/gemini-2.5-flash")
            extra.setdefault("display", f"batch-{number[-4:]}")
            extra.setdefault("instances", rng.randint(10, 5000))
            extra.setdefault("output", f"gs://{project}-batch/output")
        elif kind == "import":
            name = f"{loc}/ragCorpora/{rng.randrange(10**18, 10**19)}/operations/{number}"
            extra.setdefault("files", rng.randint(1, 200))
        else:
            name = f"{loc}/operations/{number}"
        if duration is None:
            duration = rng.uniform(*DURATIONS[kind])
        return Op(name=name, kind=kind, created=now, duration=duration / self.speed, outcome=outcome, extra=extra)

    def add(self, op: Op) -> None:
        self._seq += 1
        op.seq = self._seq
        self.ops[op.name] = op
        self.by_seq[op.seq] = op
        self.index.setdefault(list_of(op.name), []).append(op.seq)  # seqs only grow: stays sorted

    def remove(self, name: str) -> None:
        op = self.ops.pop(name)
        del self.by_seq[op.seq]
        seqs = self.index.get(list_of(name), [])
        i = bisect.bisect_left(seqs, op.seq)
        if i < len(seqs) and seqs[i] == op.seq:
            del seqs[i]

    def page(self, parent: str, size: int, after: int,
             keep: Callable[[Op], bool] | None = None) -> tuple[list[Op], int | None]:
        """Up to ``size`` of ``parent``'s list after sequence ``after`` (those ``keep`` keeps); the
        seq to resume after, or None."""
        seqs = self.index.get(parent, [])
        start = bisect.bisect_right(seqs, after)
        if keep is None:
            found = [self.by_seq[seq] for seq in seqs[start:start + size + 1]]
        else:
            found = []
            for seq in seqs[start:]:
                if keep(op := self.by_seq[seq]):
                    found.append(op)
                    if len(found) > size:
                        break
        return found[:size], (found[size - 1].seq if len(found) > size else None)

    # --- credentials -----------------------------------------------------------------------------
    def key(self) -> Any:
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    def service_account(self, project: str, lifetime: float, token_uri: str) -> dict[str, Any]:
        """A service-account key file (as the Cloud console downloads it) for a new account of the
        emulator, whose tokens live ``lifetime`` seconds."""
        from cryptography.hazmat.primitives import serialization

        if not lifetime > 0:
            raise ValueError(f"lifetime must be > 0 seconds, got {lifetime!r}")
        number = len(self.accounts) + 1
        email = f"emulator-{number}@{project}.iam.gserviceaccount.com"
        self.accounts[email] = _Account(email, float(lifetime))
        pem = self.key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": project, "private_key_id": f"emulator-key-{number}",
                "private_key": pem, "client_email": email, "client_id": str(10**20 + number),
                "token_uri": token_uri, "auth_uri": "https://accounts.google.com/o/oauth2/auth"}


def list_of(name: str) -> str:
    """The list ``name`` is listed in: a job's collection ("projects/p/locations/l/tuningJobs"), an
    operation's parent ("projects/p/locations/l" for projects/p/locations/l/operations/o)."""
    head, sep, _ = name.rpartition("/operations/")
    return head if sep else name.rpartition("/")[0]


# --- wire JSON -----------------------------------------------------------------------------------
def _done(op: Op, now: float) -> bool:
    return now >= op.end


def _generic_meta(op: Op, now: float) -> dict[str, str]:
    return {"createTime": rfc3339(op.created), "updateTime": rfc3339(min(now, op.end))}


def render_operation(op: Op, now: float) -> dict[str, Any]:
    """A google.longrunning.Operation (video, import, generic, delete), proto3 defaults omitted."""
    out: dict[str, Any] = {"name": op.name}
    done = _done(op, now)
    if op.kind == "import":
        meta: dict[str, Any] = {"@type": TYPE + "ImportRagFilesOperationMetadata",
                                "genericMetadata": _generic_meta(op, now),
                                "ragCorpusId": op.name.split("/ragCorpora/")[1].split("/")[0]}
        percent = int(100 * op.fraction(now))
        if percent:
            meta["progressPercentage"] = percent
        out["metadata"] = meta
    elif op.kind in ("generic", "delete"):
        kind = "DeleteOperationMetadata" if op.kind == "delete" else "GenericOperationMetadata"
        generic = _generic_meta(op, now)
        out["metadata"] = ({"@type": TYPE + kind, "genericMetadata": generic} if op.kind == "delete"
                           else {"@type": TYPE + kind, **generic})
    if not done:
        return out  # running: no "done" key (Veo: just the name)
    out["done"] = True
    if op.cancelled:
        out["error"] = {"code": 1, "message": "Operation was cancelled."}
    elif op.outcome == "failure":
        out["error"] = {"code": op.error_code, "message": op.error_message or FAILURES[op.kind]}
    elif op.kind == "video":
        out["response"] = _video_response(op)
    elif op.kind == "import":
        out["response"] = {"@type": TYPE + "ImportRagFilesResponse",
                           "importedRagFilesCount": str(op.extra["files"])}
    else:
        out["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
    return out


def _video_response(op: Op) -> dict[str, Any]:
    if op.outcome == "filtered":
        return {"@type": VIDEO_TYPE, "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTERED_REASON]}
    op_id = op.name.rsplit("/", 1)[-1]
    count = int(op.extra.get("samples", 1))
    storage = op.extra.get("storage")
    if storage:  # parameters.storageUri: the videos are written there
        videos = [{"gcsUri": f"{storage.rstrip('/')}/{op_id}/sample_{i}.mp4", "mimeType": "video/mp4"}
                  for i in range(count)]
    else:  # no storageUri: the bytes come inline
        videos = [{"bytesBase64Encoded": base64.b64encode(video_bytes(f"{op_id}-{i}")).decode(),
                   "mimeType": "video/mp4"} for i in range(count)]
    return {"@type": VIDEO_TYPE, "raiMediaFilteredCount": 0, "videos": videos}


# The states a job listing's filter may name: the JobState enum of Google's discovery document
# (tests/test_emulator_vertex.py reads it from there and compares).
JOB_STATE_NAMES = frozenset({
    "JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED", "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED", "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING", "JOB_STATE_PARTIALLY_SUCCEEDED",
})
_STATE_TERM = re.compile(r'\s*state\s*(!=|=)\s*("?)([A-Z_]+)\2\s*')


def job_filter(text: str) -> Callable[[str], bool] | None:
    """A job listing's filter, as far as the emulator evaluates Google's documented grammar:
    ``state="JOB_STATE_..."`` and ``state!=...`` comparisons joined by AND. A test of a job's
    state (None for no filter); anything else is refused (400), never ignored."""
    if not text.strip():
        return None
    terms: list[tuple[bool, str]] = []
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _STATE_TERM.fullmatch(term)
        if match is None:
            raise ApiError(400, f"Invalid filter: {text!r}. The emulator evaluates state comparisons "
                                '(state="JOB_STATE_SUCCEEDED", state!=...) joined by AND.')
        if match.group(3) not in JOB_STATE_NAMES:
            raise ApiError(400, f"Invalid filter: {match.group(3)!r} is not a job state.")
        terms.append((match.group(1) == "=", match.group(3)))
    return lambda state: all((state == value) == equal for equal, value in terms)


def _kept_by(text: str, jobs: bool, now: float) -> Callable[[Op], bool] | None:
    """What a listing's filter keeps at ``now`` (None: everything): a job listing's by state, an
    operations listing's by done."""
    if jobs:
        states = job_filter(text)
        return None if states is None else (lambda op: states(job_state(op, now)))
    done = done_filter(text)
    return None if done is None else (lambda op: (now >= op.end) == done)


def job_state(op: Op, now: float) -> str:
    if op.cancelled:
        return "JOB_STATE_CANCELLED" if now >= op.end else "JOB_STATE_CANCELLING"
    if now < op.end:
        return "JOB_STATE_PENDING" if now < op.created + min(30.0, 0.05 * op.duration) else "JOB_STATE_RUNNING"
    if op.outcome == "failure":
        return "JOB_STATE_FAILED"
    return "JOB_STATE_PARTIALLY_SUCCEEDED" if op.outcome == "partial" else "JOB_STATE_SUCCEEDED"


def render_job(op: Op, now: float) -> dict[str, Any]:
    """A TuningJob or BatchPredictionJob resource at ``now``."""
    state = job_state(op, now)
    loc = op.name.split("/tuningJobs/")[0].split("/batchPredictionJobs/")[0]
    created = rfc3339(op.created)
    out: dict[str, Any] = {"name": op.name, "state": state, "createTime": created}
    if op.kind == "tuning":
        out.update(baseModel=op.extra["base"], tunedModelDisplayName=op.extra["display"],
                   supervisedTuningSpec={"trainingDatasetUri": op.extra.get("dataset", "gs://bucket/train.jsonl")})
    else:
        out.update(displayName=op.extra["display"], model=op.extra["model"],
                   outputConfig={"predictionsFormat": "jsonl",
                                 "gcsDestination": {"outputUriPrefix": op.extra["output"]}})
    if state != "JOB_STATE_PENDING":
        out["startTime"] = rfc3339(min(op.end, op.created + min(30.0, 0.05 * op.duration)))
    out["updateTime"] = rfc3339(min(now, op.end))
    final = state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_FAILED",
                      "JOB_STATE_CANCELLED")
    if final:
        out["endTime"] = rfc3339(op.end)
    if op.kind == "batch":
        total = int(op.extra["instances"])
        processed = int(total * op.fraction(now))
        failed = processed // 3 if op.outcome in ("failure", "partial") else processed // 100
        stats = {"successfulCount": processed - failed, "failedCount": failed, "incompleteCount": total - processed}
        out["completionStats"] = {k: str(v) for k, v in stats.items() if v}  # int64 as strings, zeros omitted
        if final and not op.cancelled and op.outcome != "failure":
            stamp = rfc3339(op.created).translate(str.maketrans("-:.", "___"))
            out["outputInfo"] = {"gcsOutputDirectory": f"{op.extra['output']}/prediction-model-{stamp}"}
    if state == "JOB_STATE_SUCCEEDED" and op.kind == "tuning":
        number = op.name.rsplit("/", 1)[-1]
        out["tunedModel"] = {"model": f"{loc}/models/{number}@1", "endpoint": f"{loc}/endpoints/{number}"}
    if state == "JOB_STATE_CANCELLED":
        out["error"] = {"code": 1, "message": "CANCELED"}
    elif state == "JOB_STATE_FAILED":
        out["error"] = {"code": op.error_code, "message": op.error_message or FAILURES[op.kind]}
    return out


def render(op: Op, now: float) -> dict[str, Any]:
    return render_job(op, now) if op.kind in ("tuning", "batch") else render_operation(op, now)


def is_job(op: Op) -> bool:
    return op.kind in ("tuning", "batch")


# --- routing -------------------------------------------------------------------------------------
def route(version: str, method: str, rest: str, *, wait: bool = True) -> Route | None:
    """The bound Vertex method that serves ``method`` on ``rest`` (the path after the version).
    ``wait=False``: no ``:wait`` (a service without it), so that it answers 404 as unbound."""
    def bound(action: str, name: str) -> bool:
        return caps.allowed(version, action, name, service="vertex")

    base, _, verb = rest.partition(":")
    if method == "GET" and not verb:
        if bound("get", rest):
            return Route("{name}", "get", rest)
        parent = caps.listed_parent(version, rest, service="vertex")
        if parent is not None:
            return Route("{parent}" if parent == rest else "{parent}/operations", "list", parent)
    elif method == "DELETE" and not verb and bound("delete", rest):
        return Route("{name}", "delete", rest)
    elif method == "POST" and not verb and bound("create", rest):
        return Route("{parent}", "create", rest)
    elif method == "POST" and (verb == "cancel" or (verb == "wait" and wait)) and bound(verb, base):
        return Route("{name}:" + verb, verb, base)
    elif method == "POST" and verb in ("predictLongRunning", "fetchPredictOperation"):
        action = "predict" if verb == "predictLongRunning" else "fetch"
        if bound(action, base):
            return Route("{model}:" + verb, action, base, express=not base.startswith("projects/"))
    return None


Handler = Callable[[str, dict[str, str], bytes], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class VertexSurface:
    """Vertex AI's handlers over a VertexState, under the app's lock and clock."""

    def __init__(self, lock: Any, clock: Callable[[], float], *, speed: float, random_seed: int | None,
                 api_key: str) -> None:
        self._lock, self._clock, self._api_key = lock, clock, api_key
        self.state = VertexState(speed=speed, rng=random.Random(None if random_seed is None else random_seed + 7))

    # --- admin ---------------------------------------------------------------------------------
    def create(self, kind: str, *, project: str | None, location: str | None, duration: float | None,
               outcome: str, error_message: str | None, error_code: int, model: str | None) -> str:
        with self._lock:
            op = self.state.new_op(kind, self._clock(), project=project or DEFAULT_PROJECT,
                                   location=location or DEFAULT_LOCATION, duration=duration, outcome=outcome,
                                   model=model)
            op.error_message, op.error_code = error_message, error_code
            self.state.add(op)
            return op.name

    def seed(self, count: int, kinds: tuple[str, ...], *, project: str | None, location: str | None,
             running_fraction: float, failed_fraction: float) -> list[str]:
        """Operations and jobs of mixed kinds and states, added oldest first: some running, some
        done, failed, cancelled (jobs) or filtered (videos)."""
        if count < 0 or not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"count must be >= 0 and kinds a non-empty selection of {KINDS}")
        with self._lock:
            state, now, made = self.state, self._clock(), []
            rng = state.rng
            for _ in range(count):
                kind = rng.choice(kinds)
                failing = rng.random() < failed_fraction
                outcome = ("failure" if failing else "filtered" if kind == "video" and rng.random() < 0.04
                           else "partial" if kind == "batch" and rng.random() < 0.1 else "success")
                op = state.new_op(kind, now, project=project or DEFAULT_PROJECT,
                                  location=location or DEFAULT_LOCATION, outcome=outcome)
                r = rng.random()
                backdate(op, r, running_fraction, now, rng, cancellable=kind != "video")
                made.append(op)
            made.sort(key=lambda o: o.created)
            for op in made:
                state.add(op)
            return [op.name for op in made]

    def service_account(self, project: str, lifetime: float, token_uri: str) -> dict[str, Any]:
        with self._lock:
            return self.state.service_account(project, lifetime, token_uri)

    # --- auth ----------------------------------------------------------------------------------
    def authorize(self, headers: dict[str, str], found: Route) -> None:
        """Raise the 401 Google answers unless the request carries a live token (or, where express
        mode takes one, the API key)."""
        auth = headers.get("authorization", "")
        key = headers.get("x-goog-api-key")
        if not auth:
            if key is not None and found.express and key == self._api_key:
                return
            if key is not None and not found.express:
                raise _unauthenticated(NO_API_KEYS, "CREDENTIALS_MISSING")
            if key is not None:  # express mode with a key that is not the emulator's
                raise ApiError(400, "API key not valid. Please pass a valid API key.", [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com", "metadata": {"service": "aiplatform.googleapis.com"}}],
                    status="INVALID_ARGUMENT")
            raise _unauthenticated(NO_CREDENTIALS, "CREDENTIALS_MISSING")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated(BAD_CREDENTIALS, "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        with self._lock:
            issued = self.state.tokens.get(token.strip())
            now = self._clock()
        if issued is None:
            raise _unauthenticated(BAD_CREDENTIALS, "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        if now >= issued[1]:
            raise _unauthenticated(BAD_CREDENTIALS, "ACCESS_TOKEN_EXPIRED")

    def token(self, body: bytes, token_uri: str) -> tuple[int, dict[str, Any]]:
        """POST /token: an OAuth2 JWT-bearer grant. The assertion must be signed by a service
        account of this emulator, for this token_uri (or Google's), with a cloud-platform scope."""
        from google.auth import exceptions, jwt

        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        assertion = form.get("assertion", "")
        from cryptography.hazmat.primitives import serialization

        with self._lock:
            public = self.state.key().public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        try:
            # google-auth addresses the assertion to Google's token endpoint whatever token_uri says.
            claims = jwt.decode(assertion, certs=public, audience=[token_uri, GOOGLE_TOKEN_URI],  # type: ignore[no-untyped-call]
                                clock_skew_in_seconds=30)
        except (exceptions.GoogleAuthError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        scopes = str(claims.get("scope", "")).split()
        if not any(s in SCOPES for s in scopes):
            return 400, {"error": "invalid_scope",
                         "error_description": "Invalid OAuth scope or ID token audience provided."}
        with self._lock:
            account = self.state.accounts.get(str(claims.get("iss")))
            if account is None:
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            now = self._clock()
            if len(self.state.tokens) > 1000:  # a client refreshing per request: forget the dead ones
                self.state.tokens = {t: v for t, v in self.state.tokens.items() if v[1] > now}
            token = "ya29.emulator-" + secrets.token_urlsafe(24)
            self.state.tokens[token] = (account.email, now + account.lifetime)
        return 200, {"access_token": token, "expires_in": int(account.lifetime), "token_type": "Bearer"}

    # --- API handlers ------------------------------------------------------------------------------
    def handle(self, found: Route, query: dict[str, str], body: bytes) -> Any:
        handler: Handler = getattr(self, "_" + found.handler)
        return handler(found.target, query, body)

    def _find(self, name: str) -> Op:
        op = self.state.ops.get(name)
        if op is None:
            raise ApiError(404, NOT_FOUND)
        return op

    def _get(self, name: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        with self._lock:
            return render(self._find(name), self._clock())

    def _list(self, parent: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        try:
            size = int(query.get("pageSize") or 0)
            after = decode_token(query["pageToken"]) if query.get("pageToken") else 0
        except ValueError:
            raise ApiError(400, "Invalid pageSize or pageToken.") from None
        if size < 0:
            raise ApiError(400, "pageSize must not be negative.")
        collection = parent.rsplit("/", 1)[-1]
        jobs = collection in caps.VERTEX_JOBS  # listed at the collection; operations under their parent
        with self._lock:
            now = self._clock()
            keep = _kept_by(query.get("filter", ""), jobs, now)
            page, last = self.state.page(parent, min(size or 50, 1000), after, keep)
            key = collection if jobs else "operations"
            out: dict[str, Any] = {key: [render(op, now) for op in page]} if page else {}
        if last is not None:
            out["nextPageToken"] = encode_token(last)
        return out

    def _cancel(self, name: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        with self._lock:
            op, now = self._find(name), self._clock()
            if is_job(op):
                state = job_state(op, now)
                if state not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
                    raise ApiError(400, f"Cannot cancel a job in state {state}.", status="FAILED_PRECONDITION")
                op.cancelled, op.ended = True, now + CANCEL_SECONDS / self.state.speed
            elif now < op.end:  # a done operation stays as it is
                op.cancelled, op.ended = True, now
        return {}

    def _delete(self, name: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        with self._lock:
            op, now = self._find(name), self._clock()
            if not is_job(op):
                self.state.remove(name)
                return {}
            state = job_state(op, now)
            if state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"):
                raise ApiError(400, f"The job is in state {state} and cannot be deleted; cancel it first.",
                               status="FAILED_PRECONDITION")
            self.state.remove(name)
            # DeleteBatchPredictionJob answers a (here already done) delete operation of the location.
            loc = name.split("/batchPredictionJobs/")[0]
            record = Op(name=f"{loc}/operations/{self.state.rng.randrange(10**18, 10**19)}", kind="delete",
                        created=now, duration=0.0)
            self.state.add(record)
            return render_operation(record, now)

    async def _wait(self, name: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        """Long-poll: the operation once done, or as it is when ``timeout`` (a Duration, at most
        MAX_WAIT) has passed on the serving loop's clock (the VirtualClock in-process)."""
        raw = query.get("timeout", "")
        try:
            timeout = min(MAX_WAIT, float(raw.removesuffix("s"))) if raw else MAX_WAIT
        except ValueError:
            raise ApiError(400, f"Invalid value for timeout: {raw[:40]!r}.") from None
        if not timeout >= 0:
            raise ApiError(400, "timeout must not be negative.")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                op, now = self._find(name), self._clock()
                if _done(op, now):
                    return render(op, now)
                until_done = op.end - now
            left = deadline - loop.time()
            if left <= 0:
                with self._lock:
                    return render(self._find(name), self._clock())
            # Wake at the end, the deadline, or every second (a cancel can end it early).
            await asyncio.sleep(max(0.0, min(left, until_done, 1.0)))

    def _create(self, parent: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        request = json_object(body)
        loc, _, collection = parent.rpartition("/")
        project, location = loc.split("/")[1], loc.split("/")[3]
        extra: dict[str, Any] = {}
        if collection == "tuningJobs":
            base = request.get("baseModel")
            spec = request.get("supervisedTuningSpec")
            if not isinstance(base, str) or not base:
                raise ApiError(400, "baseModel is required.")
            if not isinstance(spec, dict) or not isinstance(spec.get("trainingDatasetUri"), str):
                raise ApiError(400, "supervisedTuningSpec.trainingDatasetUri is required.")
            extra.update(base=base, dataset=spec["trainingDatasetUri"],
                         display=str(request.get("tunedModelDisplayName") or base + "-tuned"))
            kind = "tuning"
        else:
            model = request.get("model")
            output = ((request.get("outputConfig") or {}).get("gcsDestination") or {}).get("outputUriPrefix")
            if not isinstance(model, str) or not model:
                raise ApiError(400, "model is required.")
            if not isinstance(request.get("inputConfig"), dict):
                raise ApiError(400, "inputConfig is required.")
            extra.update(model=model, display=str(request.get("displayName") or "batch prediction"))
            if isinstance(output, str) and output:
                extra["output"] = output.rstrip("/")
            kind = "batch"
        with self._lock:
            now = self._clock()
            op = self.state.new_op(kind, now, project=project, location=location, extra=extra)
            self.state.add(op)
            return render_job(op, now)

    def _predict(self, model: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        request = json_object(body)
        instances = request.get("instances")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise ApiError(400, "Invalid request: 'instances' must be a non-empty list of objects.")
        short = model.rsplit("/", 1)[-1]
        if "/endpoints/" in f"/{model}":  # the emulator deploys no models to endpoints
            raise ApiError(404, f"Endpoint `{model}` not found.")
        if not model.rpartition("/models/")[0].endswith("publishers/google") or not short.startswith("veo-"):
            raise ApiError(404, f"Publisher Model `{model}` was not found or your project does not have "
                                   "access to it.")
        given = request.get("parameters")
        params: dict[str, Any] = given if isinstance(given, dict) else {}
        extra: dict[str, Any] = {"prompt": str(instances[0].get("prompt", ""))}
        if isinstance(params.get("storageUri"), str):
            extra["storage"] = params["storageUri"]
        samples = params.get("sampleCount")
        if isinstance(samples, int) and not isinstance(samples, bool) and 1 <= samples <= 4:
            extra["samples"] = samples
        parts = model.split("/")
        express = not model.startswith("projects/")
        with self._lock:
            op = self.state.new_op("video", self._clock(), project=DEFAULT_PROJECT if express else parts[1],
                                   location=DEFAULT_LOCATION if express else parts[3], model=short,
                                   express=express, extra=extra)
            self.state.add(op)
        return {"name": op.name}

    def _fetch(self, model: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        name = json_object(body).get("operationName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "operationName is required.")
        if name.rpartition("/operations/")[0] != model:
            raise ApiError(400, f"The operation {name[:200]} does not belong to {model}.")
        with self._lock:
            return render(self._find(name), self._clock())

    # --- reading for the app ---------------------------------------------------------------------
    @staticmethod
    def polled_name(found: Route, body: bytes) -> str | None:
        """The operation or job a read polls (for stats by name): GET's and :wait's name, the
        operationName of a fetchPredictOperation; None for other methods."""
        if found.handler in ("get", "wait"):
            return found.target
        if found.handler == "fetch":
            try:
                name = json.loads(body or b"{}").get("operationName")
            except (ValueError, AttributeError):
                return None
            return name if isinstance(name, str) else None
        return None

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            op = self.state.ops.get(name)
            return None if op is None else render(op, self._clock())

    def complete(self, name: str) -> bool:
        """Finish ``name`` now (False if it is not Vertex's). Lock held by the caller."""
        op = self.state.ops.get(name)
        if op is None:
            return False
        now = self._clock()
        if now < op.end:
            op.ended = now
        return True
