"""Transport: carries requests and nothing else. Auth header, request retries, typed errors, JSON.

It knows nothing of polling, frames or widgets. One httpx.AsyncClient (one pool) per Transport,
created on the event loop that first sends and refused on any other; closed by ``aclose()``,
after which the Transport refuses to send, as httpx does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from . import _schedule
from ._clock import Clock, Pause
from ._exceptions import (
    ApiError,
    AuthenticationError,
    BrokenAnswerError,
    RateLimitError,
    TooLargeError,
    TransportError,
)

__all__ = ["RETRYABLE_STATUS", "Auth", "Secret", "StaticAuth", "Transport", "is_retryable", "redact_json"]

logger = logging.getLogger("ops_widgets")

# Request retry (not polling cadence): short, jittered, capped.
_RETRY_INITIAL = 0.5
_RETRY_MAX = 30.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# How long a call that retries keeps waiting out 429s (each for the server's retryDelay) before
# they count against its max_retries.
RATE_LIMIT_PATIENCE = 120.0
_ERROR_BODY_MAX = 65536  # bytes of a streamed error answer read
_RETRYABLE_TRANSPORT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# Everything httpx raises, some of which are not httpx.HTTPError (a URL it cannot build, a stream
# read twice): all become a TransportError.
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


class _QueryShield(logging.Filter):
    """Keeps the query of a URL being downloaded from off the service (a signed URL: its query is a
    credential) out of httpx's and httpcore's own logs. httpx logs every request's full URL at INFO,
    which a script's logging.basicConfig(level=logging.INFO) prints: only the URLs registered here
    lose their query there. httpcore logs every answer's headers at DEBUG, a redirect's Location
    with them: while a download hop is in flight, its Location lines lose their query."""

    def __init__(self) -> None:
        super().__init__()
        self._urls: Counter[str] = Counter()
        self._hops = 0
        self._lock = threading.Lock()  # downloads run on more than one engine loop at once

    @contextmanager
    def hiding(self, url: str | None) -> Iterator[None]:
        """One download hop in flight; ``url``'s query is hidden too (None: a URL on the service,
        whose query is no secret)."""
        key = None if url is None else str(httpx.URL(url))  # as httpx will print it
        with self._lock:
            self._hops += 1
            if key is not None:
                self._urls[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._hops -= 1
                if key is not None:
                    self._urls[key] -= 1
                    if self._urls[key] <= 0:
                        del self._urls[key]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("httpcore"):
            # httpcore formats its message itself (headers as a repr of bytes pairs): no args.
            if self._hops and isinstance(record.msg, str):
                record.msg = _LOCATION.sub(_location_without_query, record.msg)
            return True
        args = record.args
        if self._urls and isinstance(args, tuple):
            shown = [str(a) for a in args]
            if any(s in self._urls for s in shown):
                record.args = tuple(_no_query(s) if s in self._urls else a for s, a in zip(shown, args, strict=True))
        return True


# A Location header as httpcore logs it, the repr of a bytes pair: (b'Location', b'https://h/p?q').
# The value's quote is whichever repr chose (a ' inside makes it "): matched up to the same one.
_LOCATION = re.compile(r"""(\(b(['"])location\2, b(['"]))((?:\\.|(?!\3).)*)""", re.IGNORECASE)


def _location_without_query(match: re.Match[str]) -> str:
    return match.group(1) + match.group(4).split("?", 1)[0]


_SHIELD = _QueryShield()
# A logger's filters see only its own records, not its children's: each httpcore logger that logs
# an answer's headers gets the filter.
for _name in ("httpx", "httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_SHIELD)


class Secret:
    """Holds a credential so that no repr, log or traceback locals dump shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class Auth(Protocol):
    """Where a request's credentials come from: asked before every attempt."""

    async def headers(self) -> dict[str, Secret]:
        """The auth headers to send now (a token may be refreshed first)."""
        ...

    async def rejected(self, sent: dict[str, Secret]) -> bool:
        """The service answered 401 to ``sent``: True when there are new credentials to try once
        more (a refreshed token), False when sending again would not help."""
        ...

    def secrets(self) -> list[Secret]:
        """The credential values to cut out of any server text that echoes them."""
        ...

    def explain(self, error: AuthenticationError) -> AuthenticationError:
        """The error, saying what to do about it for this kind of credential."""
        ...

    async def aclose(self) -> None:
        """The client is closing: stop any work in flight (a token refresh)."""
        ...


class StaticAuth:
    """Fixed headers (an API key), with a hint added to a 401's message."""

    def __init__(self, headers: dict[str, Secret], hint: str = "") -> None:
        self._headers, self._hint = headers, hint

    async def headers(self) -> dict[str, Secret]:
        return self._headers

    async def rejected(self, sent: dict[str, Secret]) -> bool:
        return False

    def secrets(self) -> list[Secret]:
        return list(self._headers.values())

    def explain(self, error: AuthenticationError) -> AuthenticationError:
        if self._hint and error.status_code == 401:
            error.message = f"{error.message} ({self._hint})"
            error.args = (error.message,)
        return error

    async def aclose(self) -> None:
        pass


def is_retryable(error: Exception) -> bool:
    """Worth sending again: 429, 5xx, requests that got no answer or a broken one."""
    if isinstance(error, BrokenAnswerError):
        return True
    if isinstance(error, ApiError):
        return error.status_code in RETRYABLE_STATUS
    return isinstance(error.__cause__, _RETRYABLE_TRANSPORT)


class Transport:
    """Sends one request with retries and returns the decoded JSON, or raises a typed error."""

    def __init__(
        self,
        headers: dict[str, Secret] | Auth,
        *,
        clock: Clock,
        timeout: float | None = 30.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: Callable[[], float] = random.random,
        pause: Pause | None = None,
        max_connections: int = 100,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        # Asked for the headers before every attempt: a token can be refreshed between two.
        self.auth: Auth = StaticAuth(headers) if isinstance(headers, dict) else headers
        self.clock = clock
        self.max_retries = max_retries
        self.timeout = timeout
        # Long-polls hold a connection each for up to a minute: the pool must have room for as many
        # as the engine lets run, and for short requests beside them.
        self._max_connections = max_connections
        self._transport = transport
        self._rand = rand
        # A 429 holds every request of the client, not just the one that met it.
        self.pause = pause or Pause(clock)
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which must be this transport's (the first one it ran on)."""
        if self.closed:
            raise RuntimeError("this client was closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            if not self.clock.owns(loop):
                raise RuntimeError(f"this client's clock ({self.clock!r}) does not run this event loop; "
                                   "use a loop from clock.new_loop()")
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this client is in use on another event loop (or was, and that loop is gone): create one "
                "client per loop, or use the blocking Operations, which is safe from any thread"
            )
        return loop

    def _client(self) -> httpx.AsyncClient:
        self.bind()
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), transport=self._transport, follow_redirects=False,
                limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=20),
            )
        return self._http

    async def request(
        self, method: str, url: str, params: dict[str, str] | None = None, *, retries: int | None = None,
        body: Any = None, timeout: float | None = None,
    ) -> Any:
        """Send with retries (``body``: a JSON body); return the decoded JSON or raise a typed error.
        ``timeout``: this request's HTTP timeout in seconds, instead of the client's (None: the
        client's), for a request the server holds on purpose (a long-poll).

        A 401 gets one more try, not counted as a retry, when the auth has new credentials (a
        token refreshed because the service said the one sent had expired)."""
        http = self._client()
        reauthorized = False
        delays = _schedule.backoff(_RETRY_INITIAL, _RETRY_MAX, 2.0, rand=self._rand)
        retries = self.max_retries if retries is None else retries
        began = self.clock.monotonic()
        attempt = 0  # retries used up
        for tried in itertools.count():
            await self.pause.wait()
            sent = await self.auth.headers()
            headers = {k: v.value for k, v in sent.items()}
            started = self.clock.monotonic()
            error: ApiError | TransportError | BrokenAnswerError
            try:
                resp = await http.request(method, url, params=params, headers=headers, json=body,
                                          timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
            except _HTTPX_ERRORS as exc:
                error = TransportError(f"{method} {url}: {type(exc).__name__}: {exc or 'no details'}")
                error.__cause__ = exc  # as `raise ... from exc` would, once we raise it below
            else:
                logger.debug(
                    "%s %s -> %s in %.0f ms", method, resp.request.url, resp.status_code,
                    1000 * (self.clock.monotonic() - started),
                )
                if resp.is_success:
                    try:
                        return _decode(resp, method, url)
                    except BrokenAnswerError as exc:
                        error = exc
                elif method == "DELETE" and tried > 0 and resp.status_code == 404:
                    # An earlier attempt deleted it and only its answer was lost: that is a delete.
                    logger.info("DELETE %s: gone on retry, so the earlier attempt deleted it", url)
                    return {}
                else:
                    error = self._scrubbed(ApiError.from_response(
                        resp.status_code, resp.content, resp.headers.get("content-type", "")
                    ))
                    if resp.status_code == 401 and not reauthorized and await self.auth.rejected(sent):
                        reauthorized = True
                        logger.info("%s %s: 401, sending again with new credentials", method, url)
                        continue
            if isinstance(error, AuthenticationError):
                error = self.auth.explain(error)
            # A 429 storm is ridden out (for a while) without using up the retries meant for faults.
            free = (isinstance(error, RateLimitError) and retries > 0
                    and self.clock.monotonic() - began < RATE_LIMIT_PATIENCE)
            if not is_retryable(error) or (attempt >= retries and not free):
                raise error
            await self._before_retry(error, next(delays), f"{method} {url}", attempt, retries)
            attempt += 0 if free else 1
        raise AssertionError("unreachable")  # pragma: no cover

    async def _before_retry(self, error: Exception, delay: float, what: str, attempt: int, retries: int) -> None:
        """Wait before the next attempt. A 429 pauses the whole client, for the server's
        retryDelay when it gave one (jitter would only be early), and this attempt waits it out."""
        if isinstance(error, RateLimitError):
            delay = error.retry_delay if error.retry_delay is not None else delay
            self.pause.extend(delay)
        logger.info("%s failed (%s); retry %d/%d in %.2fs", what, error, attempt + 1, retries, delay)
        if not isinstance(error, RateLimitError):
            await asyncio.sleep(delay)

    async def stream(
        self, method: str, url: str, params: dict[str, str] | None = None, *, chunk_size: int = 64 * 1024
    ) -> AsyncIterator[bytes]:
        """The answer's body as byte chunks, as they arrive (never whole in memory), or a typed error.

        Opening (up to the status) is retried as request() is; once bytes have been handed over,
        a broken answer is a TransportError: nothing is retried mid-stream.
        """
        http = self._client()
        delays = _schedule.backoff(_RETRY_INITIAL, _RETRY_MAX, 2.0, rand=self._rand)
        for attempt in range(self.max_retries + 1):
            await self.pause.wait()
            headers = {k: v.value for k, v in (await self.auth.headers()).items()}
            started = False
            error: ApiError | TransportError
            try:
                async with http.stream(method, url, params=params, headers=headers) as resp:
                    logger.debug("%s %s -> %s (streamed)", method, resp.request.url, resp.status_code)
                    if resp.is_success:
                        started = True
                        async for chunk in resp.aiter_bytes(chunk_size):
                            yield chunk
                        return
                    error = await self._streamed_error(resp)
            except _HTTPX_ERRORS as exc:
                where = "while reading the answer" if started else "no answer"
                error = TransportError(f"{method} {url}: {where}: {type(exc).__name__}: {exc or 'no details'}")
                error.__cause__ = exc
                if started:
                    raise error from exc
            if attempt >= self.max_retries or not is_retryable(error):
                raise error
            await self._before_retry(error, next(delays), f"{method} {url}", attempt, self.max_retries)

    async def exchange(self, method: str, url: str, *, content: bytes | None,
                       headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One plain request through this transport's pool: no auth headers, no retries, no
        typed errors (httpx's own). For google-auth's token requests, which its own
        Request adapter sends and reads."""
        resp = await self._client().request(method, url, content=content, headers=headers)
        return resp.status_code, dict(resp.headers), resp.content

    async def download(self, url: str, *, max_bytes: int, keyed: Callable[[str], bool]) -> bytes:
        """GET a file whole, at most ``max_bytes`` of it: TooLargeError past that (before any
        byte is read when the server announces a Content-Length that is too big).

        Redirects (up to MAX_REDIRECTS) are followed here, not by httpx, so that the credential
        headers go only where ``keyed(url)`` allows (the service's own origin), never to the host a
        redirect names; a redirect from https to http is refused. Where a redirect leads is kept
        out of messages and logs but for its host and path (a signed URL's query is a credential).
        Opening is retried as request() is; a broken body is not.
        """
        shown = url
        for _hop in range(MAX_REDIRECTS + 1):
            answer = await self._fetch(url, shown, max_bytes, keyed(url))
            if isinstance(answer, bytes):
                return answer
            target = urljoin(url, answer)
            if urlsplit(target).scheme != "https" and not (urlsplit(url).scheme == "http" and keyed(target)):
                raise TransportError(f"GET {shown}: redirected to {_no_query(target)}, which is not https")
            url, shown = target, _no_query(target)
        raise TransportError(f"GET {shown}: more than {MAX_REDIRECTS} redirects")

    async def _fetch(self, url: str, shown: str, max_bytes: int, keyed: bool) -> bytes | str:
        """One hop of download(): the body, or where a redirect points (its Location)."""
        http = self._client()
        headers = {k: v.value for k, v in (await self.auth.headers()).items()} if keyed else {}
        delays = _schedule.backoff(_RETRY_INITIAL, _RETRY_MAX, 2.0, rand=self._rand)
        for attempt in range(self.max_retries + 1):
            await self.pause.wait()
            error: ApiError | TransportError
            try:
                # Off the service the URL is likely a signed one: httpx's own log line shows no query;
                # a redirect's Location (where a signed URL comes from) shows none in httpcore's lines.
                with _SHIELD.hiding(None if keyed else url):
                    async with http.stream("GET", url, headers=headers) as resp:
                        logger.debug("GET %s -> %s (download)", shown, resp.status_code)
                        location: str | None = resp.headers.get("location")
                        if resp.status_code in _REDIRECTS and location:
                            return location
                        if resp.is_success:
                            return await _read_capped(resp, shown, max_bytes)
                        error = await self._streamed_error(resp)
            except _HTTPX_ERRORS as exc:
                error = TransportError(f"GET {shown}: {type(exc).__name__}: {exc or 'no details'}")
                error.__cause__ = exc
            if attempt >= self.max_retries or not is_retryable(error):
                raise error
            await self._before_retry(error, next(delays), f"GET {shown}", attempt, self.max_retries)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _streamed_error(self, resp: httpx.Response) -> ApiError:
        """The typed error of a streamed answer that failed, from the head of its body (an error
        page can be big: its head says enough)."""
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_MAX:
                break
        return self._scrubbed(ApiError.from_response(resp.status_code, bytes(body),
                                                     resp.headers.get("content-type", "")))

    def _scrubbed(self, error: ApiError) -> ApiError:
        """The error with this client's own credentials cut out of the server's text: a server (or
        proxy) that echoes the key back must not put it into exceptions, logs or widgets."""
        secrets = [v.value for v in self.auth.secrets() if len(v.value) >= 4]
        if not any(secret in error.message or secret in repr(error.details) for secret in secrets):
            return error
        error.message = _redact(error.message, secrets)
        error.details = json.loads(_redact(json.dumps(error.details), [json.dumps(x)[1:-1] for x in secrets]))
        error.args = (error.message,)
        return error

    async def aclose(self) -> None:
        """Close the pool; the transport refuses to send from now on."""
        self.closed = True
        await self.auth.aclose()  # a refresh in flight sends through the pool: stopped first
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


def _decode(resp: httpx.Response, method: str, url: str) -> Any:
    try:
        return resp.json() if resp.content else {}
    except ValueError:
        excerpt = " ".join(resp.text[:120].split())
        raise BrokenAnswerError(
            f"{method} {url}: the answer (HTTP {resp.status_code}) is not JSON: {excerpt!r}"
        ) from None


async def _read_capped(resp: httpx.Response, shown: str, max_bytes: int) -> bytes:
    """The body, or TooLargeError as soon as it is known to be past ``max_bytes``."""
    announced = resp.headers.get("content-length")
    size = int(announced) if announced and announced.isdigit() else None
    if size is not None and size > max_bytes:
        raise TooLargeError(f"GET {shown}: {_mb(size)} is more than the {_mb(max_bytes)} allowed",
                            limit=max_bytes, size=size)
    body = bytearray()
    try:
        async for chunk in resp.aiter_bytes(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise TooLargeError(f"GET {shown}: more than the {_mb(max_bytes)} allowed", limit=max_bytes)
    except _HTTPX_ERRORS as exc:
        raise TransportError(f"GET {shown}: while reading the answer: {type(exc).__name__}: {exc or 'no details'}") \
            from exc
    return bytes(body)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def _no_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def redact_json(text: str, secrets: list[Secret]) -> str:
    """JSON text with each secret cut out, as written and as JSON escapes it: for what is kept
    (the local history), so that a server that echoes a key back does not get it stored."""
    values = [s.value for s in secrets if len(s.value) >= 4]
    return _redact(text, values + [json.dumps(v)[1:-1] for v in values])
