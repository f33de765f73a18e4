"""Where requests go: URL templates, auth headers and name validation. Pure, no I/O.

Names are checked before they are put in a URL path, so that a name can never smuggle in a
query string, a fragment, ``..`` or another host.

Both services' backends have one shape, so that the client does not branch on the service:
``read``/``cancel``/``delete``/``wait`` give the Call (verb, URL, JSON body) that does it,
``list_url``/``list_params`` a listing, ``can(action, name)`` what the service binds, and
``parse``/``read_list`` read what it answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from . import _capabilities as caps
from ._capabilities import BINDINGS, allowed, describe, list_path, listable_parents
from ._exceptions import InvalidNameError, UnsupportedError
from ._types import Operation, RawPage, read_list_page

__all__ = ["VIDEO_MAX_BYTES", "Call", "GeminiBackend", "VertexBackend", "validate_name", "validate_parent",
           "validate_vertex_name", "vertex_host"]

# The default cap on one downloaded video: an 8 s Veo clip in 1080p is a few MB, a 4K one some tens.
VIDEO_MAX_BYTES = 200_000_000

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


# Google's resource names are short (a Veo operation's is ~60 characters); a name past this is a
# mistake, and a URL past a few kilobytes is refused by servers and proxies anyway.
MAX_NAME_LENGTH = 1024


def _segments(value: Any, what: str) -> list[str]:
    if not isinstance(value, str):
        raise InvalidNameError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidNameError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} is {len(value):,} characters long; names are at most {MAX_NAME_LENGTH}")
    parts = value.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidNameError(f"{what} {value[:120]!r} has an empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(part):
            raise InvalidNameError(
                f"{what} {value[:120]!r} has a segment with characters outside [A-Za-z0-9._~-]"
            )
    return parts


def validate_name(name: str) -> str:
    """Return ``name`` if it names an operation: ``.../operations/<id>`` or ``batches/<id>``."""
    parts = _segments(name, "operation name")
    is_op = len(parts) >= 2 and parts[-2] == "operations"
    is_batch = len(parts) == 2 and parts[0] == "batches"
    if not (is_op or is_batch):
        raise InvalidNameError(
            f"{name[:120]!r} is not an operation name: expected 'operations/<id>', "
            "'<parent>/operations/<id>' (e.g. 'models/veo-3.0-generate-001/operations/abc') "
            "or 'batches/<id>'"
        )
    return name


def validate_parent(parent: str) -> str:
    """Return ``parent`` if it can hold an operations collection (``models/x``, ``tunedModels/y``)."""
    parts = _segments(parent, "parent")
    if parts[-1] == "operations":
        raise InvalidNameError(
            f"parent {parent!r} should name the resource that holds the operations, "
            f"without '/operations' (e.g. {'/'.join(parts[:-1]) or 'None'!r})"
        )
    return parent


@dataclass(frozen=True)
class Call:
    """One request to send: the verb, the URL and a JSON body (None: no body)."""

    verb: str
    url: str
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class GeminiBackend:
    """The Gemini API (generativelanguage): key in the x-goog-api-key header."""

    base_url: str
    api_version: str
    service: ClassVar[str] = "gemini"

    def __post_init__(self) -> None:
        _segments(self.api_version, "api_version")

    @property
    def title(self) -> str:
        return f"the Gemini API ({self.api_version})"

    @property
    def root(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}"

    def operation_url(self, name: str) -> str:
        return f"{self.root}/{validate_name(name)}"

    def cancel_url(self, name: str) -> str:
        return f"{self.operation_url(name)}:cancel"

    def read(self, name: str) -> Call:
        """How to read the operation ``name`` now."""
        return Call("GET", self.operation_url(name))

    def cancel(self, name: str) -> Call:
        return Call("POST", self.cancel_url(name))

    def delete(self, name: str) -> Call:
        return Call("DELETE", self.operation_url(name))

    def wait(self, name: str, timeout: float) -> Call:
        """The Gemini API has no :wait: UnsupportedError (can("wait", name) is False)."""
        validate_name(name)
        raise UnsupportedError(f"{self.title} has no long-poll (:wait); poll with GET")

    def supported(self, action: str, name: str) -> None:
        """UnsupportedError, saying what can, unless the service binds ``action`` for ``name``."""
        if not self.can(action, name):
            raise UnsupportedError(
                f"{name[:200]}: {self.title} cannot {action} this operation; "
                f"it can {action} {describe(self.api_version, action)}"
            )

    def listing_parent(self, name: str) -> str | None:
        """The collection whose list pages show ``name`` (for list sweeps), or None."""
        return caps.listing_parent(self.api_version, name) if self.api_version in BINDINGS else None

    @staticmethod
    def parse(data: Any) -> Operation:
        return Operation.from_api_response(data)

    @staticmethod
    def read_list(data: Any) -> RawPage:
        """A list answer as checked fields (what list_dataframe lays out without Operations)."""
        return read_list_page(data)

    def list_url(self, parent: str | None) -> str:
        """Where ``parent``'s operations are listed ("operations" for the top level). Where the
        version binds no such list: UnsupportedError, naming what can be listed."""
        target = "operations" if parent is None else validate_parent(parent)
        if self.api_version not in BINDINGS:  # a version we have no table for: the usual shape
            return f"{self.root}/{target if parent is None else target + '/operations'}"
        path = list_path(self.api_version, target)
        if path is None:
            what = "top-level list" if parent is None else f"list of {target!r}"
            raise UnsupportedError(
                f"the Gemini API ({self.api_version}) has no {what}; it lists "
                f"{', '.join(listable_parents(self.api_version))} (list_all() with no parent reads them all)"
            )
        return f"{self.root}/{path}"

    def can(self, action: str, name: str) -> bool:
        """Whether the service binds ``action`` for the operation ``name`` (False for a bad name)."""
        try:
            validate_name(name)
        except InvalidNameError:
            return False
        if action not in caps.ACTIONS:
            return False
        # A version we have no table for (say a future v1alpha): the service will say.
        return self.api_version not in BINDINGS or allowed(self.api_version, action, name)

    @staticmethod
    def list_params(page_size: int | None, page_token: str | None, filter: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if page_size is not None:
            if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
                raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
            params["pageSize"] = str(page_size)
        if page_token:
            params["pageToken"] = page_token
        if filter:
            params["filter"] = filter
        return params

    def keyed(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the key: only on this service's own origin
        (scheme, host and port of base_url), never to a host a response or redirect names."""
        own = _origin(self.base_url)
        return own is not None and _origin(url) == own

    def media_url(self, uri: str) -> str:
        """A video URI from a response, checked before anything is sent with the key: only one on
        this service's origin is fetched. A gs:// URI (Vertex AI writes videos to Cloud Storage)
        or another host: UnsupportedError that says what to do instead."""
        if not isinstance(uri, str) or not uri:
            raise UnsupportedError("the response names no video URI")
        _not_in_storage(uri)
        if not self.keyed(uri):
            raise UnsupportedError(
                f"{uri[:300]} is not on {self.base_url}: it is not fetched with this client's key")
        return uri

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}


def _not_in_storage(uri: str) -> None:
    if uri.startswith("gs://"):
        raise UnsupportedError(
            f"{uri[:300]} is in Cloud Storage: download it with Google Cloud credentials "
            "(gcloud storage cp, or google-cloud-storage); this client does not read buckets")


# --- Vertex AI ------------------------------------------------------------------------------------
VERTEX_GLOBAL_HOST = "https://aiplatform.googleapis.com"
# Multi-region locations are served from their own regional endpoints (as google-genai does).
_MULTI_REGIONS = frozenset({"us", "eu"})
_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_VERTEX_EXAMPLES = (
    "'projects/<p>/locations/<l>/operations/<id>', '<...>/ragCorpora/<id>/operations/<id>', "
    "'projects/<p>/locations/<l>/tuningJobs/<id>' (or batchPredictionJobs/<id>), or a Veo operation "
    "'projects/<p>/locations/<l>/publishers/google/models/<model>/operations/<id>'"
)


def vertex_host(location: str) -> str:
    """The Vertex AI endpoint that serves ``location``: regional, or the global one."""
    if location == "global":
        return VERTEX_GLOBAL_HOST
    if location in _MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    if not isinstance(location, str) or not _LOCATION.fullmatch(location):
        raise InvalidNameError(f"location {str(location)[:80]!r} is not a Google Cloud location "
                               "(e.g. 'us-central1', 'europe-west4', 'global')")
    return f"https://{location}-aiplatform.googleapis.com"


def _in_location(parts: list[str]) -> bool:
    return len(parts) >= 4 and parts[0] == "projects" and parts[2] == "locations"


def validate_vertex_name(name: str) -> str:
    """Return ``name`` if it names a Vertex AI operation or job: an operation of a location or of
    any resource in it, a tuning or batch prediction job, or a publisher model's (or endpoint's)
    operation, in a location or (express mode) without one."""
    parts = _segments(name, "operation name")
    located = _in_location(parts)
    is_op = len(parts) >= 2 and parts[-2] == "operations" and (
        (located and len(parts) >= 6) or parts[0] in ("publishers", "endpoints"))
    is_job = located and len(parts) == 6 and parts[4] in caps.VERTEX_JOBS
    if not (is_op or is_job):
        gemini = " (that looks like a Gemini API name: use a client without vertexai=True)" if (
            parts[0] in ("models", "tunedModels", "batches", "fileSearchStores", "operations")) else ""
        raise InvalidNameError(f"{name[:120]!r} is not a Vertex AI operation or job name{gemini}: "
                               f"expected {_VERTEX_EXAMPLES}")
    return name


@dataclass(frozen=True)
class VertexBackend:
    """Vertex AI (aiplatform): ``https://{location}-aiplatform.googleapis.com`` (the global
    endpoint for "global"), or ``base_url`` for every location (an emulator, a proxy). A name
    whose location is not the client's goes to its own location's host."""

    project: str | None
    location: str
    api_version: str = "v1"
    base_url: str | None = None
    service: ClassVar[str] = "vertex"

    def __post_init__(self) -> None:
        if self.api_version not in caps.VERTEX_BINDINGS:
            raise ValueError(f"unknown Vertex AI api_version {self.api_version!r}; "
                             f"choose one of {', '.join(caps.VERTEX_BINDINGS)}")
        vertex_host(self.location)  # a location that cannot be a host fails here
        if self.project is not None:
            _segments(self.project, "project")

    @property
    def title(self) -> str:
        return f"Vertex AI ({self.api_version})"

    def _root(self, location: str) -> str:
        host = self.base_url.rstrip("/") if self.base_url else vertex_host(location)
        return f"{host}/{self.api_version}"

    @property
    def root(self) -> str:
        return self._root(self.location)

    @staticmethod
    def keyed(url: str) -> bool:
        """Vertex AI answers with videos inline or in Cloud Storage: no URL gets credentials."""
        return False

    @staticmethod
    def media_url(uri: str) -> str:
        """Never a URL this client fetches (see keyed): UnsupportedError saying where it is."""
        if not isinstance(uri, str) or not uri:
            raise UnsupportedError("the response names no video URI")
        _not_in_storage(uri)
        raise UnsupportedError(
            f"{uri[:300]} is not a Vertex AI address: it is not fetched with this client's credentials")

    def root_for(self, name: str) -> str:
        """The root URL that serves ``name``: its own location's host (the client's for a name
        with no location: express mode)."""
        parts = name.split("/")
        return self._root(parts[3] if _in_location(parts) else self.location)

    def operation_url(self, name: str) -> str:
        return f"{self.root_for(validate_vertex_name(name))}/{name}"

    def read(self, name: str) -> Call:
        """GET {name}; for a publisher model's or endpoint's operation (Veo), which has no GET,
        POST {model}:fetchPredictOperation {"operationName": name}."""
        url = self.operation_url(name)
        model = caps.fetch_endpoint(self.api_version, name)
        if model is not None:
            return Call("POST", f"{self.root_for(name)}/{model}:fetchPredictOperation", {"operationName": name})
        self.supported("get", name)
        return Call("GET", url)

    def cancel(self, name: str) -> Call:
        url = self.operation_url(name)
        self.supported("cancel", name)
        return Call("POST", f"{url}:cancel")

    def delete(self, name: str) -> Call:
        url = self.operation_url(name)
        self.supported("delete", name)
        return Call("DELETE", url)

    def wait_url(self, name: str) -> str:
        """POST here (``?timeout=30s``) to long-poll ``name`` until done or the timeout; where
        the service binds :wait (see can("wait", name)), else UnsupportedError."""
        url = self.operation_url(name)
        self.supported("wait", name)
        return f"{url}:wait"

    def wait(self, name: str, timeout: float) -> Call:
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        return Call("POST", self.wait_url(name), params={"timeout": f"{timeout:g}s"})

    def can(self, action: str, name: str) -> bool:
        """Whether Vertex AI binds ``action`` for ``name`` (False for a bad name). ``get`` is
        False for a Veo operation: it is read with fetchPredictOperation (see read)."""
        try:
            validate_vertex_name(name)
        except InvalidNameError:
            return False
        return action in caps.VERTEX_ACTIONS and caps.allowed(self.api_version, action, name, service="vertex")

    def supported(self, action: str, name: str) -> None:
        if not self.can(action, name):
            what = "read" if action == "get" else action
            raise UnsupportedError(
                f"{name[:200]}: {self.title} cannot {what} this operation with {action}; it can {action} "
                f"{describe(self.api_version, action, service='vertex')[:600]}"
            )

    def default_parent(self) -> str:
        if self.project is None:
            raise UnsupportedError("no project: pass project=... (or set GOOGLE_CLOUD_PROJECT) to list "
                                   "a location's operations, or pass parent=...")
        return f"projects/{self.project}/locations/{self.location}"

    def list_url(self, parent: str | None) -> str:
        """Where ``parent``'s operations are listed: a location ("projects/p/locations/l", the
        default), a resource ("…/ragCorpora/123"), or a job collection ("…/tuningJobs",
        "…/batchPredictionJobs", listed at the collection itself)."""
        target = self.default_parent() if parent is None else validate_parent(parent)
        path = caps.list_path(self.api_version, target, service="vertex")
        if path is None:
            raise UnsupportedError(
                f"{self.title} has no list of {target[:200]!r}; it lists a location's operations "
                "('projects/<p>/locations/<l>'), its 'tuningJobs' and 'batchPredictionJobs', and the "
                "operations of most resources in it (e.g. '.../ragCorpora/<id>')")
        return f"{self.root_for(target)}/{path}"

    def sweep_parents(self) -> list[str]:
        """What list_all() with no parent reads: the location's operations and its jobs."""
        loc = self.default_parent()
        return [loc, *(f"{loc}/{jobs}" for jobs in caps.VERTEX_JOBS if
                       caps.allowed(self.api_version, "list", f"{loc}/{jobs}", service="vertex"))]

    def listing_parent(self, name: str) -> str | None:
        return caps.listing_parent(self.api_version, name, service="vertex")

    list_params = staticmethod(GeminiBackend.list_params)

    @staticmethod
    def parse(data: Any) -> Operation:
        return Operation.from_api_response(data, vertex=True)

    @staticmethod
    def read_list(data: Any) -> RawPage:
        return read_list_page(data, vertex=True)


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None for anything else (or a URL with a user)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)
