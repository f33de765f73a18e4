"""Typing HTTP error answers (pure: ApiError.from_response)."""

from __future__ import annotations

import json

import pytest
from wiredata import wire

import ops_widgets as ow
from ops_widgets import ApiError


def from_wire(status: int, name: str) -> ApiError:
    return ApiError.from_response(status, json.dumps(wire(name)).encode(), "application/json")


def test_bad_key_is_authentication_error() -> None:
    err = from_wire(400, "error_400_bad_key")
    assert type(err) is ow.AuthenticationError
    assert (err.status_code, err.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in err.message and len(err.details) == 2


def test_plain_400_is_bad_request() -> None:
    body = b'{"error": {"code": 400, "message": "bad filter", "status": "INVALID_ARGUMENT"}}'
    err = ApiError.from_response(400, body, "application/json")
    assert type(err) is ow.BadRequestError and str(err) == "400 INVALID_ARGUMENT: bad filter"


def test_403_404() -> None:
    assert type(from_wire(403, "error_403_no_key")) is ow.PermissionDeniedError
    err = from_wire(404, "error_404")
    assert type(err) is ow.NotFoundError and err.status == "NOT_FOUND"


def test_429_carries_retry_delay() -> None:
    err = from_wire(429, "error_429")
    assert type(err) is ow.RateLimitError and err.retry_delay == 47.0
    assert err.status == "RESOURCE_EXHAUSTED"


def test_429_without_retry_info() -> None:
    err = ApiError.from_response(429, b"{}", "application/json")
    assert isinstance(err, ow.RateLimitError) and err.retry_delay is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_is_server_error(status: int) -> None:
    assert type(ApiError.from_response(status, b"", "")) is ow.ServerError


def test_other_4xx_is_plain_api_error() -> None:
    err = ApiError.from_response(409, b'{"error": {"message": "exists", "status": "ALREADY_EXISTS"}}')
    assert type(err) is ApiError and err.status == "ALREADY_EXISTS"


def test_html_body_still_typed_with_short_excerpt() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>" + b"x" * 5000 + b"</body></html>"
    err = ApiError.from_response(502, html, "text/html; charset=utf-8")
    assert type(err) is ow.ServerError
    assert "502 Bad Gateway" in err.message and "<title>" not in err.message
    assert len(err.message) < 300 and err.status is None and err.details == []


def test_broken_json_error_body() -> None:
    err = ApiError.from_response(404, b'{"error": {"code": 404, "mess', "application/json")
    assert type(err) is ow.NotFoundError and "non-JSON" in err.message


def test_hierarchy() -> None:
    assert issubclass(ow.InvalidNameError, ValueError) and issubclass(ow.InvalidNameError, ow.OpsError)
    assert issubclass(ow.MalformedOperationError, ValueError)
    assert issubclass(ow.WaitTimeout, TimeoutError)
    for cls in (ow.BadRequestError, ow.AuthenticationError, ow.PermissionDeniedError, ow.NotFoundError,
                ow.RateLimitError, ow.ServerError):
        assert issubclass(cls, ApiError)
    assert issubclass(ow.TransportError, ow.OpsError) and not issubclass(ow.TransportError, ApiError)


@pytest.mark.parametrize("type_", [None, 7, ["x"], {"a": 1}])
def test_error_details_with_any_type_field(type_: object) -> None:
    body = {"error": {"code": 400, "message": "bad", "details": [{"@type": type_, "reason": "API_KEY_INVALID"}]}}
    err = ApiError.from_response(400, json.dumps(body).encode(), "application/json")
    assert type(err) is ow.BadRequestError and err.details == body["error"]["details"]


@pytest.mark.parametrize(("delay", "expected"), [
    ("47s", 47.0),
    ("0.5s", 0.5),
    ("-3s", 0.0),
    ({"seconds": "47", "nanos": 500000000}, 47.5),
    ("1e400s", None),  # not finite
    ("nans", None),
    ("1e300s", None),  # beyond a protobuf Duration: no advice rather than a 1e300 s sleep
    ({"seconds": 10**400}, None),  # no float holds it
    ({"seconds": [1]}, None),
    ("47", None),  # a Duration always ends in "s"
    (47, None),
])
def test_retry_delay_is_finite_or_none(delay: object, expected: float | None) -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    body = {"error": {"code": 429, "details": [retry_info]}}
    err = ApiError.from_response(429, json.dumps(body).encode(), "application/json")
    assert isinstance(err, ow.RateLimitError) and err.retry_delay == expected


def test_long_and_non_text_messages_are_not_echoed_whole() -> None:
    err = ApiError.from_response(500, json.dumps({"error": {"message": "m" * 100_000}}).encode(), "application/json")
    assert type(err) is ow.ServerError and len(err.message) < 2100 and err.message.endswith("...")
    err = ApiError.from_response(500, json.dumps({"error": {"message": list(range(10_000))}}).encode())
    assert err.message == "HTTP 500"


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b"<" * 1_000_000, b"\xff\xfe\x00{", b'{"error": 1' + b"0" * 5000 + b"}"]
)
def test_hostile_bodies_still_typed_quickly(body: bytes) -> None:
    err = ApiError.from_response(502, body, "text/html")
    assert type(err) is ow.ServerError and "non-JSON" in err.message and len(err.message) < 400
