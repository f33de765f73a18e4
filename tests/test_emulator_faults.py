"""The emulator's fault modes (Faults), seen by a plain httpx client and a raw socket over loopback,
in-process through httpx.ASGITransport, and from the ``ops-widgets emulator`` command line."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ops_widgets import VirtualClock
from ops_widgets.emulator import Emulator, Faults

HOUR = 3600.0
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator.start(random_seed=5) as emulator:
        yield emulator


@pytest.fixture()
def emu(server: Emulator) -> Iterator[Emulator]:
    server.clear_faults()
    server.reset_stats()
    yield server
    server.clear_faults()


@pytest.fixture()
def api(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emu.base_url}/v1beta", headers={"x-goog-api-key": emu.api_key}) as client:
        yield client


def raw(emu: Emulator, method: str, path: str) -> bytes:
    """Everything the server sends for one request on a fresh socket, until it closes it."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-goog-api-key: {emu.api_key}\r\n"
                     f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def outcome(api: httpx.Client, path: str) -> str:
    """What one GET came to, in a word: its status, "json?" for a 200 that does not parse, or the
    transport error."""
    try:
        r = api.get(path)
    except httpx.TransportError as exc:
        return type(exc).__name__
    if r.status_code == 200:
        try:
            r.json()
        except ValueError:
            return "bad-json"
    return str(r.status_code)


# --- each mode over loopback HTTP --------------------------------------------------------------
def test_error_rate_answers_google_json_5xx_and_the_server_does_not_act(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    emu.set_faults(Faults(error_rate=1.0, seed=1))
    statuses = set()
    for _ in range(12):
        r = api.post(f"/{name}:cancel")
        assert r.status_code in (500, 503) and r.headers["content-type"].startswith("application/json")
        err = r.json()["error"]
        assert err["code"] == r.status_code and err["message"]
        assert err["status"] == {500: "INTERNAL", 503: "UNAVAILABLE"}[r.status_code]
        statuses.add(r.status_code)
    assert statuses == {500, 503}  # both, from the seeded stream
    emu.clear_faults()
    assert "done" not in api.get(f"/{name}").json()  # no cancel went through
    assert emu.stats()["faults"] == {"error": 12}


def test_html_error_rate_answers_a_proxys_502_page(emu: Emulator, api: httpx.Client) -> None:
    emu.set_faults(Faults(html_error_rate=1.0))
    r = api.get("/batches")
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!DOCTYPE html>") and "502" in r.text
    with pytest.raises(ValueError):
        r.json()
    assert emu.stats()["faults"] == {"html_error": 1} and emu.stats()["by_status"] == {502: 1}


def test_storm_of_n_requests_carries_retry_info_then_ends(emu: Emulator, api: httpx.Client) -> None:
    emu.set_faults(Faults(storm_requests=3, storm_retry_delay=1.5))
    for _ in range(3):
        r = api.get("/batches")
        assert r.status_code == 429
        err = r.json()["error"]
        assert err["status"] == "RESOURCE_EXHAUSTED"
        assert {"@type": RETRY_INFO, "retryDelay": "1.5s"} in err["details"]
    assert api.get("/batches").status_code == 200  # the storm is over
    assert emu.stats()["faults"] == {"rate_limit": 3}


def test_storm_for_a_window_of_emulator_time() -> None:
    now = [1_800_000_000.0]
    with Emulator.start(random_seed=2, clock=lambda: now[0], faults=Faults(storm_seconds=60)) as emu, \
            httpx.Client(base_url=f"{emu.base_url}/v1beta", headers={"x-goog-api-key": emu.api_key}) as api:
        assert [api.get("/batches").status_code for _ in range(4)] == [429] * 4
        now[0] += 59.0
        assert api.get("/batches").status_code == 429
        now[0] += 1.0  # the window is over: no more 429s, whatever the clock does next
        assert api.get("/batches").status_code == 200
        now[0] -= 30.0
        assert api.get("/batches").status_code == 200
        assert emu.stats()["faults"] == {"rate_limit": 5}


def test_drop_before_closes_the_socket_before_any_byte_and_nothing_happens(emu: Emulator,
                                                                           api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    emu.set_faults(Faults(drop_before_rate=1.0))
    assert raw(emu, "POST", f"/v1beta/{name}:cancel") == b""  # closed, not one byte answered
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        api.post(f"/{name}:cancel")
    emu.clear_faults()
    assert "done" not in api.get(f"/{name}").json()  # neither cancel reached the server
    stats = emu.stats()
    assert stats["faults"] == {"drop_before": 2} and stats["by_status"] == {200: 1}  # drops answer no status


def test_drop_after_the_server_acted_closes_mid_body(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    emu.set_faults(Faults(drop_after_rate=1.0))
    data = raw(emu, "GET", f"/v1beta/{name}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < length  # closed half-way
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        api.post(f"/{name}:cancel")
    emu.clear_faults()
    done = api.get(f"/{name}").json()
    assert done["done"] is True and done["metadata"]["state"] == "BATCH_STATE_CANCELLED"  # the cancel happened
    assert emu.stats()["faults"] == {"drop_after": 2}


def test_truncated_200_parses_as_broken_json_with_an_honest_length(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("tuning", duration=HOUR)
    emu.set_faults(Faults(truncated_rate=1.0))
    r = api.get(f"/{name}")
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    emu.clear_faults()
    whole = api.get(f"/{name}").content
    assert whole.startswith(r.content) and len(r.content) == len(whole) // 2
    missing = api.get("/batches/missing")
    emu.set_faults(Faults(truncated_rate=1.0))
    assert api.get("/batches/missing").content == missing.content  # only 200s are cut
    assert emu.stats()["faults"] == {"truncated": 1}


def test_slow_body_trickles_in_pieces(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=HOUR)
    emu.set_faults(Faults(slow_body_rate=1.0, slow_body_seconds=0.4))
    with api.stream("GET", f"/{name}") as r:
        assert r.status_code == 200
        pieces = list(r.iter_raw())
    assert json.loads(b"".join(pieces))["name"] == name and len(pieces) > 1  # 8 pieces, 50 ms apart
    assert emu.stats()["faults"] == {"slow_body": 1}


def test_slow_body_takes_emulator_time_in_process() -> None:
    clock = VirtualClock()
    emu = Emulator.in_process(clock, random_seed=3, faults=Faults(slow_body_rate=1.0, slow_body_seconds=30))
    name = emu.create("video", duration=HOUR)

    async def get() -> tuple[int, float]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url="http://emu",
                                     headers={"x-goog-api-key": emu.api_key}) as api:
            t0 = clock.monotonic()
            r = await api.get(f"/v1beta/{name}")
            return r.status_code, clock.monotonic() - t0

    assert clock.run(get()) == (200, 30.0)  # virtual seconds: the test itself takes none


def test_streamed_responses_file_breaks_off_or_ends_short(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("batch", duration=10, requests=3000)
    emu.complete(name)
    file = emu.get_operation(name)["response"]["responsesFile"]  # type: ignore[index]
    url = f"{emu.base_url}/download/v1beta/{file}:download?alt=media"
    whole = api.get(url).content
    assert whole.count(b"\n") == 3000
    emu.set_faults(Faults(drop_after_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        api.get(url)
    emu.set_faults(Faults(truncated_rate=1.0))
    short = api.get(url)
    assert short.status_code == 200 and 0 < len(short.content) < len(whole) and whole.startswith(short.content)
    assert emu.stats()["faults"] == {"drop_after": 1, "truncated": 1}


# --- in process: drops raise what httpx raises over a socket -------------------------------------
def test_in_process_drops_raise_httpx_remote_protocol_errors() -> None:
    clock = VirtualClock()
    emu = Emulator.in_process(clock, random_seed=3)
    name = emu.create("batch", duration=HOUR)

    async def post(faults: Faults) -> None:
        emu.set_faults(faults)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url="http://emu",
                                     headers={"x-goog-api-key": emu.api_key}) as api:
            await api.post(f"/v1beta/{name}:cancel")

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        clock.run(post(Faults(drop_before_rate=1.0)))
    assert "done" not in emu.get_operation(name)  # type: ignore[operator]
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        clock.run(post(Faults(drop_after_rate=1.0)))
    assert emu.get_operation(name)["metadata"]["state"] == "BATCH_STATE_CANCELLED"  # type: ignore[index]
    assert emu.stats()["faults"] == {"drop_before": 1, "drop_after": 1}


# --- seeds, counters, scope --------------------------------------------------------------------
def test_a_mix_is_reproducible_with_its_seed_and_the_counters_match(emu: Emulator, api: httpx.Client) -> None:
    name = emu.create("tuning", duration=HOUR)

    def run(seed: int) -> list[str]:
        emu.reset_stats()
        emu.set_faults(Faults.mix(0.6, seed=seed))
        return [outcome(api, f"/{name}") for _ in range(60)]

    first = run(4)
    counters = emu.stats()["faults"]
    assert run(4) == first and run(5) != first
    seen = Counter(first)
    assert set(counters) == {"error", "html_error", "drop_before", "drop_after", "truncated"}
    assert seen["500"] + seen["503"] == counters["error"]
    assert seen["502"] == counters["html_error"]
    assert seen["RemoteProtocolError"] == counters["drop_before"] + counters["drop_after"]
    assert seen["bad-json"] == counters["truncated"]
    assert seen["200"] == 60 - sum(counters.values()) > 0


def test_faults_never_touch_the_admin_routes(emu: Emulator) -> None:
    emu.set_faults(Faults(drop_before_rate=0.5, error_rate=0.5, storm_requests=100))
    with httpx.Client(base_url=f"{emu.base_url}/_emulator") as admin:
        for _ in range(10):
            assert admin.post("/operations", json={"kind": "video"}).status_code == 200
            assert admin.get("/stats").status_code == 200
    assert emu.stats()["faults"] == {}


def test_set_faults_live_over_the_admin_route_and_clear(emu: Emulator, api: httpx.Client) -> None:
    with httpx.Client(base_url=f"{emu.base_url}/_emulator") as admin:
        assert admin.post("/faults:set", json={"error_rate": 1.0, "seed": 9}).json() == {}
        assert emu.faults == Faults(error_rate=1.0, seed=9)
        assert admin.get("/faults").json() == Faults(error_rate=1.0, seed=9).to_dict()
        assert api.get("/batches").status_code in (500, 503)
        bad = admin.post("/faults:set", json={"error_rte": 1.0})
        assert bad.status_code == 400 and "error_rte" in bad.json()["error"]["message"]
        assert admin.delete("/faults").json() == {}
    assert emu.faults == Faults() and api.get("/batches").status_code == 200


def test_scripted_faults_come_first_and_are_counted(emu: Emulator, api: httpx.Client) -> None:
    emu.set_faults(Faults(html_error_rate=1.0))
    emu.fail_next(1, status=503)
    assert [api.get("/batches").status_code for _ in range(2)] == [503, 502]
    assert emu.stats()["faults"] == {"scripted": 1, "html_error": 1}


@pytest.mark.parametrize("kwargs", [
    {"error_rate": 1.5}, {"drop_after_rate": -0.1}, {"error_rate": 0.6, "truncated_rate": 0.5},
    {"slow_body_seconds": -1}, {"storm_requests": -1}, {"storm_requests": 1.5}, {"storm_seconds": float("inf")},
])
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults(**kwargs)


def test_mix_shares_the_rate_and_keeps_changes() -> None:
    mix = Faults.mix(0.2, seed=1, truncated_rate=0.1)
    assert mix.error_rate == mix.html_error_rate == mix.drop_before_rate == mix.drop_after_rate == pytest.approx(0.04)
    assert mix.truncated_rate == 0.1 and mix.slow_body_rate == 0 and mix.seed == 1
    assert Faults.from_dict(mix.to_dict()) == mix


# --- the command line --------------------------------------------------------------------------
FLAGS = ("--fault-rate", "--error-rate", "--html-error-rate", "--drop-before-rate", "--drop-after-rate",
         "--truncated-rate", "--slow-body-rate", "--slow-body-seconds", "--storm-requests", "--storm-seconds",
         "--storm-retry-delay", "--fault-seed")


def test_cli_help_lists_every_fault_option() -> None:
    out = subprocess.run([sys.executable, "-m", "ops_widgets", "emulator", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for flag in FLAGS:
        assert re.search(rf"^\s+{flag} \S+\s+\S", out, re.MULTILINE), flag  # listed, with help


@pytest.mark.parametrize("args", [["--fault-rate", "2"], ["--error-rate", "0.6", "--html-error-rate", "0.6"],
                                  ["--storm-requests", "-3"]])
def test_cli_refuses_bad_fault_settings(args: list[str]) -> None:
    run = subprocess.run([sys.executable, "-m", "ops_widgets", "emulator", "--port", "0", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "ops-widgets emulator" in run.stderr and not run.stdout


def test_cli_serves_the_faults_its_flags_ask_for() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ops_widgets", "emulator", "--port", "0", "--seed", "3",
                             "--storm-requests", "2", "--storm-retry-delay", "2", "--error-rate", "1",
                             "--fault-seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        base = re.search(r"at (http://127\.0\.0\.1:\d+)", first).group(1)  # type: ignore[union-attr]
        assert "error_rate=1" in proc.stdout.readline()
        with httpx.Client(base_url=base, headers={"x-goog-api-key": "emulator-key"}) as api:
            storm = [api.get("/v1beta/batches") for _ in range(2)]
            assert [r.status_code for r in storm] == [429, 429]
            assert {"@type": RETRY_INFO, "retryDelay": "2s"} in storm[0].json()["error"]["details"]
            assert api.get("/v1beta/batches").status_code in (500, 503)
            assert api.get("/_emulator/stats").json()["faults"] == {"rate_limit": 2, "error": 1}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
