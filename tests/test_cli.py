"""The `ops-widgets` console command, run as a user runs it: in a subprocess, against a loopback
emulator, the key in GEMINI_API_KEY."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

import ops_widgets
from ops_widgets.emulator import Emulator

LONG = 3600.0  # emulated seconds: nothing finishes by itself during a test
FAST = ("--interval", "0.05")


def env_for(emu: Emulator | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update(NO_COLOR="1", PYTHONWARNINGS="error", **extra)
    if emu is not None:
        env["GEMINI_API_KEY"] = emu.api_key
    return env


def cli(emu: Emulator | None, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    where = ["--base-url", emu.base_url] if emu is not None else []
    return subprocess.run([sys.executable, "-m", "ops_widgets", *where, *args], env=env_for(emu),
                          capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    r = cli(None, "--version")
    assert r.returncode == 0 and r.stdout.split() == ["ops-widgets", ops_widgets.__version__]


def test_help_is_plain_text_and_every_option_has_help() -> None:
    commands = ["list", "get", "watch", "wait", "cancel", "delete", "history", "resume", "emulator", "demo"]
    for command in [None, *commands]:
        r = cli(None, *([command] if command else []), "--help")
        assert r.returncode == 0, r.stderr
        assert "``" not in r.stdout and "\x1b" not in r.stdout
        lines = r.stdout.splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            # An option alone on its line has its help on the next one (argparse's layout).
            if stripped.startswith("-") and "  " not in stripped:
                assert i + 1 < len(lines) and lines[i + 1].startswith(" " * 10), (command, line)
    top = cli(None, "--help").stdout
    for command in commands:
        assert command in top
    assert "GEMINI_API_KEY" in top and "--api-key" not in top


def test_no_key_flag_and_no_key_is_a_clear_error() -> None:
    r = cli(None, "list")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "GEMINI_API_KEY" in r.stderr and "--emulator" in r.stderr
    assert cli(None, "list", "--api-key", "k").returncode == 2  # argparse: unknown option


def test_list_table_and_json(fresh_emu: Emulator) -> None:
    names = [fresh_emu.create("batch", duration=LONG), fresh_emu.create("video", duration=LONG),
             fresh_emu.create("tuning", duration=LONG)]
    fresh_emu.complete(names[0])
    r = cli(fresh_emu, "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["name", "kind", "state", "progress", "duration"]
    assert sorted(row.split()[0] for row in rows) == sorted(names)
    row = next(row for row in rows if row.startswith(names[0]))
    assert row.split()[1:4] == ["batch", "succeeded", "100%"]

    array = json.loads(cli(fresh_emu, "list", "--json").stdout)
    assert sorted(op["name"] for op in array) == sorted(names)
    assert next(op for op in array if op["name"] == names[0])["done"] is True
    lines = cli(fresh_emu, "list", "--jsonl", "--parent", "batches").stdout.splitlines()
    assert [json.loads(line)["name"] for line in lines] == [names[0]]
    running = json.loads(cli(fresh_emu, "list", "--json", "--filter", "done=false").stdout)
    assert sorted(op["name"] for op in running) == sorted(names[1:])
    assert len(json.loads(cli(fresh_emu, "list", "--json", "--max", "2").stdout)) == 2


def test_get_line_and_json(emu: Emulator) -> None:
    name = emu.create("batch", duration=LONG)
    r = cli(emu, "get", name)
    assert r.returncode == 0 and r.stdout.split()[:2] == [name, "running"]
    assert r.stdout.count("\n") == 1
    body = json.loads(cli(emu, "get", name, "--json").stdout)
    assert body["name"] == name and body.get("done") in (None, False)
    missing = cli(emu, "get", "batches/nope")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize(("outcome", "status", "state"), [
    ("success", 0, "succeeded"), ("failure", 1, "failed"), ("filtered", 4, "filtered"),
])
def test_wait_exit_status_says_how_it_ended(emu: Emulator, outcome: str, status: int, state: str) -> None:
    name = emu.create("video", duration=LONG, outcome=outcome)
    emu.complete(name)
    r = cli(emu, "wait", name, *FAST)
    assert r.returncode == status, r.stderr
    assert r.stdout.split()[:2] == [name, state]


def test_wait_cancelled_batch_exits_2(emu: Emulator) -> None:
    name = emu.create("batch", duration=LONG)
    assert cli(emu, "cancel", name).returncode == 0
    r = cli(emu, "wait", name, *FAST)
    assert r.returncode == 2 and r.stdout.split()[:2] == [name, "cancelled"]


def test_wait_timeout_exits_3_and_the_operation_goes_on(emu: Emulator) -> None:
    name = emu.create("video", duration=LONG)
    r = cli(emu, "wait", name, "--timeout", "0.3", *FAST)
    assert r.returncode == 3 and r.stdout.split()[:2] == [name, "running"]
    assert "not done after 0.3s" in r.stderr
    assert not (emu.get_operation(name) or {}).get("done")


def test_wait_error_exits_5(emu: Emulator) -> None:
    r = cli(emu, "wait", "batches/nope", *FAST)
    assert r.returncode == 5 and "Traceback" not in r.stderr


def test_cancel_and_delete(emu: Emulator) -> None:
    batch, video = emu.create("batch", duration=LONG), emu.create("video", duration=LONG)
    emu.reset_stats()
    refused = cli(emu, "cancel", batch, video)  # one cannot be cancelled: nothing is sent at all
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert f"{video}: " in refused.stderr and "cannot cancel" in refused.stderr and "Traceback" not in refused.stderr
    assert emu.stats()["total"] == 0 and not (emu.get_operation(batch) or {}).get("done")

    r = cli(emu, "cancel", batch)
    assert r.returncode == 0 and batch in r.stdout
    assert cli(emu, "delete", video).returncode == 1
    assert emu.get_operation(video) is not None
    r = cli(emu, "delete", batch)
    assert r.returncode == 0 and emu.get_operation(batch) is None


def test_watch_prints_changes_until_all_are_done(emu: Emulator) -> None:
    a, b = emu.create("batch", duration=LONG), emu.create("video", duration=LONG, outcome="failure")
    proc = subprocess.Popen([sys.executable, "-m", "ops_widgets", "--base-url", emu.base_url, "watch", a, b, *FAST],
                            env=env_for(emu), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = {proc.stdout.readline().split()[0] for _ in range(2)}  # each one's first line
        assert first == {a, b}
        emu.complete(a)
        emu.complete(b)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    final = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert final == {a: "succeeded", b: "failed"}


def test_ctrl_c_stops_watch_cleanly(emu: Emulator) -> None:
    name = emu.create("video", duration=LONG)
    proc = subprocess.Popen([sys.executable, "-m", "ops_widgets", "--base-url", emu.base_url, "watch", name, *FAST],
                            env=env_for(emu), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(name)  # it is watching
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_emulator_option_lists_a_seeded_emulator_quietly() -> None:
    r = cli(None, "--emulator", "list", "--json")
    assert r.returncode == 0 and r.stderr == ""
    ops: list[dict[str, Any]] = json.loads(r.stdout)
    assert ops and all("name" in op for op in ops)
    table = cli(None, "list", "--emulator")  # after the command's name too
    assert table.returncode == 0 and table.stdout.startswith("name") and table.stderr == ""
    verbose = cli(None, "--emulator", "--verbose", "list")
    assert "emulator at http://127.0.0.1:" in verbose.stderr and "emulator-key" not in verbose.stderr


def test_api_version_is_passed_on(emu: Emulator) -> None:
    name = emu.create("tuning", duration=LONG)
    assert cli(emu, "cancel", name).returncode == 1  # v1beta cancels batches only
    r = cli(emu, "--api-version", "v1", "cancel", name)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_watch_redraws_its_lines_in_place_on_a_terminal(emu: Emulator) -> None:
    import pty

    names = [emu.create("batch", duration=LONG), emu.create("batch", duration=LONG)]
    primary, secondary = pty.openpty()
    env = env_for(emu, TERM="xterm-256color", COLUMNS="120", LINES="30")
    del env["NO_COLOR"]
    proc = subprocess.Popen([sys.executable, "-m", "ops_widgets", "--base-url", emu.base_url, "watch", *names, *FAST],
                            env=env, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        completed = False
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the command has exited
                break
            seen += chunk
            if not completed and seen.count(b"running") >= 6:  # both lines redrawn a few times
                for name in names:
                    emu.complete(name)
                completed = True
        proc.wait(timeout=20)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    # In place: each redraw goes back up to the first line and erases the lines before writing them.
    assert seen.count(b"running") >= 6
    assert seen.count(b"\r\x1b[2K\x1b[1A\x1b[2K") >= 2
    assert b"\x1b[?25l" in seen and b"\x1b[?25h" in seen  # the cursor hidden, then shown again
    assert b"succeeded" in seen and b"Traceback" not in seen
