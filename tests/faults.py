"""Faulty: an httpx transport between a client and the in-process emulator that misbehaves the
way networks, proxies and servers do, on a script the test writes (which request gets which fault)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import httpx

# What a fault does to one request. "drop_before": the connection breaks before the server sees
# it; "drop_after": the server acts, the answer is lost; "truncated": a 200 cut short; "html": a
# proxy's 502 page; "503"/"500": Google's error body; "429": RESOURCE_EXHAUSTED with RetryInfo;
# "slow": the answer comes after `slow_seconds` of the clock; "refuse_cancel": a strict server's
# 400 FAILED_PRECONDITION for a cancel of an operation that is already done or cancelling.
FAULTS = ("drop_before", "drop_after", "truncated", "html", "503", "500", "429", "slow", "refuse_cancel",
          "invalid_url")

Script = Callable[[httpx.Request], str | None]


def google_error(code: int, status: str, message: str, retry_delay: str | None = None) -> bytes:
    details = ([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
               if retry_delay else [])
    return json.dumps({"error": {"code": code, "message": message, "status": status, "details": details}}).encode()


class Faulty(httpx.AsyncBaseTransport):
    """Wraps ``inner``; ``script(request)`` names the fault for that request, or None to pass."""

    def __init__(self, inner: httpx.AsyncBaseTransport, script: Script, *, slow_seconds: float = 30.0) -> None:
        self.inner, self.script, self.slow_seconds = inner, script, slow_seconds
        self.injected: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.script(request)
        if fault is not None:
            self.injected[fault] = self.injected.get(fault, 0) + 1
        if fault == "drop_before":
            raise httpx.ConnectError("connection reset by peer", request=request)
        if fault == "invalid_url":
            raise httpx.InvalidURL("URL too long")
        if fault == "html":
            return httpx.Response(502, headers={"content-type": "text/html"},
                                  content=b"<html><body><h1>502 Bad Gateway</h1></body></html>")
        if fault in ("500", "503"):
            status = "INTERNAL" if fault == "500" else "UNAVAILABLE"
            return httpx.Response(int(fault), headers={"content-type": "application/json"},
                                  content=google_error(int(fault), status, "The service is currently unavailable."))
        if fault == "429":
            return httpx.Response(429, headers={"content-type": "application/json"},
                                  content=google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "2s"))
        if fault == "refuse_cancel":
            return httpx.Response(400, headers={"content-type": "application/json"}, content=google_error(
                400, "FAILED_PRECONDITION", "The operation is already in a terminal state or being cancelled."))
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        response = await self.inner.handle_async_request(request)
        if fault == "drop_after":
            await response.aread()
            raise httpx.ReadError("connection closed while reading the answer", request=request)
        if fault == "truncated" and response.status_code == 200:
            body = await response.aread()
            return httpx.Response(200, headers={"content-type": "application/json"}, content=body[: len(body) // 2])
        return response


def first_n(n: int, fault: str, match: Callable[[httpx.Request], bool] = lambda r: True) -> Script:
    """The first ``n`` matching requests get ``fault``."""
    left = [n]

    def script(request: httpx.Request) -> str | None:
        if left[0] > 0 and match(request):
            left[0] -= 1
            return fault
        return None

    return script


def random_faults(rate: float, seed: int, faults: tuple[str, ...] = ("drop_before", "drop_after", "truncated",
                                                                     "html", "503", "500")) -> Script:
    """Each request gets one of ``faults`` with probability ``rate`` (seeded: the same run every time)."""
    rng = random.Random(seed)

    def script(request: httpx.Request) -> str | None:
        return rng.choice(faults) if rng.random() < rate else None

    return script
