"""The terminal commands of ``ops-widgets``: list, get, watch, wait, cancel, delete, history, resume.

Output goes through rich (tables, colours, the live lines of watch): colours only on a terminal
(and never with NO_COLOR), plain text into a pipe. The key comes from the environment only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import (
    AuthenticationError,
    Operation,
    Operations,
    OpsError,
    State,
    Tracked,
    UnsupportedError,
    WaitTimeout,
    __version__,
)
from ._text import format_duration, summary_line

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["EXIT_CODES", "add_commands", "add_global_options", "checked", "run_command"]

T = TypeVar("T")

PROG = "ops-widgets"
# What `wait` exits with. 5: it could not find out (no key, not found, the network...).
EXIT_CODES = {State.SUCCEEDED: 0, State.FAILED: 1, State.CANCELLED: 2, State.FILTERED: 4}
EXIT_TIMEOUT = 3
EXIT_WAIT_ERROR = 5
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EMULATOR_SEED = 12  # operations a fresh --emulator starts with
EMULATOR_SPEED = 30.0  # emulated seconds per real second: its running operations finish in minutes
REDRAW = 0.25  # seconds between two redraws of `watch`
STYLES = {State.RUNNING: "cyan", State.SUCCEEDED: "green", State.FAILED: "red", State.CANCELLED: "yellow",
          State.FILTERED: "magenta"}


# --- the parser ---------------------------------------------------------------------------------

def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The options every client command takes, before or after its name. ``suppress``: for the
    subcommands' copy, which must not overwrite a value given before the command's name."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection (the key comes from GEMINI_API_KEY, else GOOGLE_API_KEY)")
    group.add_argument("--emulator", action="store_true", default=default(False),
                       help="start a fresh local emulator, seeded with a few operations, and use it "
                            "(no account, key or network needed)")
    group.add_argument("--base-url", metavar="URL", default=default(None),
                       help="the API's root URL (default: https://generativelanguage.googleapis.com)")
    group.add_argument("--api-version", choices=("v1beta", "v1"), default=default("v1beta"),
                       help="the API version to call (default: v1beta)")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False),
                       help="say what the command connects to (on stderr)")


def checked(convert: Callable[[str], T], accept: Callable[[T], bool], requirement: str) -> Callable[[str], T]:
    """An argparse ``type``: ``convert`` the text, then refuse what ``accept`` does not, saying
    what it ``must be``. (Every numeric option of ops-widgets is read this way.)"""
    noun = "whole number" if convert is int else "number"

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {noun}: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value

    return parse


_positive = checked(float, lambda v: v > 0 and v != float("inf"), "a number of seconds above 0")
_count = checked(int, lambda v: v >= 1, "1 or more")


def add_commands(sub: Any) -> None:
    """Add list, get, watch, wait, cancel, delete, history and resume to ``sub`` (argparse subparsers)."""
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)

    def command(name: str, func: Callable[[argparse.Namespace, Operations], int], help: str,
                description: str, epilog: str | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=help, description=description, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=run_command, client_command=func, error_status=EXIT_ERROR)
        return p

    p = command("list", _list, "list operations in a table (or as JSON)",
                "List operations: name, kind, state, progress and how long each ran. With no --parent,\n"
                "every collection the key can list (on v1beta: batches, each model's and each tuned\n"
                "model's operations).")
    p.add_argument("--parent", metavar="P",
                   help="list only this collection, e.g. batches or models/veo-3.0-generate-001")
    p.add_argument("--filter", metavar="F", help='a server-side filter, e.g. "done=true" or "done=false"')
    p.add_argument("--max", metavar="N", type=_count, help="stop after N operations")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the operations as sent, as one JSON array")
    fmt.add_argument("--jsonl", action="store_true", help="print the operations as sent, one JSON object a line")

    p = command("get", _get, "show one operation",
                "Show one operation on one line: name, state, progress, how long it ran.")
    p.add_argument("name", metavar="NAME", help="the operation's name, e.g. batches/abc123")
    p.add_argument("--json", action="store_true", help="print the operation as sent, as JSON")

    p = command("watch", _watch, "follow operations live until they are all done",
                "Follow operations live, one line each, until all are done (Ctrl-C stops).\n"
                "On a terminal the lines are redrawn in place; into a pipe, a line is printed\n"
                "whenever an operation's state or progress changes.")
    p.add_argument("names", nargs="+", metavar="NAME", help="the operations' names")
    p.add_argument("--interval", metavar="S", type=_positive,
                   help="poll at least every S seconds (default: adaptive, from the kind's typical durations)")

    p = command("wait", _wait, "wait for one operation; the exit status says how it ended",
                "Wait until an operation is done, print its final line, and exit with a status that\n"
                "says how it ended.",
                "exit status:\n  0  succeeded\n  1  failed\n  2  cancelled\n  3  timed out (it goes on)\n"
                "  4  filtered (a video the safety checks withheld)\n"
                "  5  could not tell (no key, not found, network error...)\n  130  interrupted (Ctrl-C)")
    p.set_defaults(error_status=EXIT_WAIT_ERROR)
    p.add_argument("name", metavar="NAME", help="the operation's name")
    p.add_argument("--timeout", metavar="S", type=_positive, help="give up after S seconds (default: no limit)")
    p.add_argument("--interval", metavar="S", type=_positive,
                   help="poll at least every S seconds (default: adaptive, from the kind's typical durations)")

    for verb, func, what in (("cancel", _cancel, "Ask the service to cancel operations"),
                             ("delete", _delete, "Forget finished operations on the service")):
        p = command(verb, func, f"{what.lower()}",
                    f"{what}. Where the service has no such method for an operation (on the Gemini\n"
                    f"API: anything but a batch), nothing is sent and the exit status is 1.")
        p.add_argument("names", nargs="+", metavar="NAME", help="the operations' names")

    p = command("history", _history, "the operations tracked on this service, from the local history",
                "Show every operation tracked on this service (the --base-url and --api-version's), in\n"
                "this process or any earlier one, from the local history: its last known state, how\n"
                "long it ran and when it was last seen, the most recent first. The history is kept in\n"
                "OPS_WIDGETS_HOME (else the user data folder); OPS_WIDGETS_HISTORY=0 turns it off.")
    p.add_argument("--all", action="store_true", help="every service's operations, not only this one's")
    p.add_argument("--unfinished", action="store_true", help="only those not done when last seen")
    p.add_argument("--max", metavar="N", type=_count, help="only the N most recently seen")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON array")

    p = command("resume", _resume, "follow again what the history saw unfinished, until done",
                "Track again every operation of this service that the history saw not done (a kernel\n"
                "or a command that was stopped, a machine that restarted) and follow them live, as\n"
                "watch does. One the service no longer has is marked vanished and not asked for again.")
    p.add_argument("--interval", metavar="S", type=_positive,
                   help="poll at least every S seconds (default: adaptive, from the kind's typical durations)")


# --- running a command ---------------------------------------------------------------------------

def run_command(args: argparse.Namespace) -> int:
    """Connect (to --emulator, --base-url or Google), run the command, close everything."""
    err = _err()
    func: Callable[[argparse.Namespace, Operations], int] = args.client_command
    try:
        with _connected(args, err) as ops:
            return func(args, ops)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except AuthenticationError as exc:
        hint = "" if args.emulator else " (or try the commands with --emulator)"
        err.print(Text(f"{PROG}: error: {exc}{hint}"))
        return int(args.error_status)
    except OpsError as exc:
        err.print(Text(f"{PROG}: error: {exc}"))
        return int(args.error_status)


@contextmanager
def _connected(args: argparse.Namespace, err: Console) -> Iterator[Operations]:
    emu: Emulator | None = None
    options: dict[str, Any] = {"api_version": args.api_version}
    try:
        if args.emulator:
            from .emulator import Emulator

            emu = Emulator.start(speed=EMULATOR_SPEED)
            emu.seed(EMULATOR_SEED)
            options.update(api_key=emu.api_key, base_url=emu.base_url, time_scale=emu.speed)
            if args.verbose:
                err.print(Text(f"emulator at {emu.base_url} with {EMULATOR_SEED} operations "
                               f"({EMULATOR_SPEED:g} emulated seconds per second)"))
        elif args.base_url:
            options["base_url"] = args.base_url
        ops = Operations(**options)
        if args.verbose:
            err.print(Text(f"using {ops!r}"))
        try:
            yield ops
        finally:
            ops.close()
    finally:
        if emu is not None:
            emu.stop()


def _elapsed(op: Operation, now: float | None = None) -> float | None:
    """How long it ran (runs), from its own times; None when they are not known."""
    return op.run_seconds(time.time() if now is None else now)


def _line(op: Operation, elapsed: float | None) -> Text:
    """The one text form, its state in colour."""
    text = Text(summary_line(op, elapsed))
    start = len(op.name) + 2
    text.stylize(STYLES.get(op.state, ""), start, start + len(op.state.value))
    return text


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 100_000  # into a pipe or a file: no column is folded or cut
    return console


def _list(args: argparse.Namespace, ops: Operations) -> int:
    found = ops.list_all(parent=args.parent, filter=args.filter, max_items=args.max)
    if args.json:
        print(json.dumps([op.raw for op in found], indent=2))
        return 0
    if args.jsonl:
        for op in found:
            print(json.dumps(op.raw))
        return 0
    console = _out()
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("kind")
    table.add_column("state")
    table.add_column("progress", justify="right")
    table.add_column("duration", justify="right")
    now = time.time()
    for op in found:
        p = op.progress
        table.add_row(op.name, op.kind, Text(op.state.value, style=STYLES.get(op.state, "")),
                      "" if p is None else f"{p:.0f}%", format_duration(_elapsed(op, now)))
    console.print(table)
    if not found:
        _err().print("no operations")
    return 0


def _get(args: argparse.Namespace, ops: Operations) -> int:
    op = ops.get(args.name)
    if args.json:
        print(json.dumps(op.raw, indent=2))
    else:
        _out().print(_line(op, _elapsed(op)))
    return 0


def _watch(args: argparse.Namespace, ops: Operations) -> int:
    _follow(ops.track_all(args.names, poll_interval=args.interval))
    return 0


def _follow(handles: Sequence[Tracked]) -> None:
    """Show ``handles`` until each is done: live lines on a terminal, plain lines elsewhere;
    then drop them (watch and resume)."""
    console = _out()
    try:
        if console.is_terminal and not console.is_dumb_terminal:
            _watch_live(handles, console)
        else:
            _watch_lines(handles, console)
    finally:
        for h in handles:
            h.close()


def _watch_live(handles: Sequence[Tracked], console: Console) -> None:
    def render() -> Group:
        return Group(*(_handle_line(h) for h in handles))

    with Live(render(), console=console, auto_refresh=False, transient=False) as live:
        while not all(h.operation.done for h in handles):
            time.sleep(REDRAW)
            live.update(render(), refresh=True)
        live.update(render(), refresh=True)


def _watch_lines(handles: Sequence[Tracked], console: Console) -> None:
    """Not a terminal: a line each time an operation's state or progress changes."""
    shown: dict[int, str] = {}
    while True:
        for i, h in enumerate(handles):
            op = h.operation
            if shown.get(i) != op.summary():
                shown[i] = op.summary()
                console.print(_handle_line(h))
        console.file.flush()
        if all(h.operation.done for h in handles):
            return
        time.sleep(REDRAW)


def _handle_line(h: Tracked) -> Text:
    line = _line(h.operation, h.elapsed)
    if h.last_error is not None and not h.operation.done:
        line.append(f"  ({h.last_error})", style="dim")
    return line


def _wait(args: argparse.Namespace, ops: Operations) -> int:
    handle = ops.track(args.name, poll_interval=args.interval)
    try:
        op = handle.wait(args.timeout)
    except WaitTimeout as exc:
        last = exc.operation or handle.operation
        _out().print(_line(last, handle.elapsed))
        _err().print(
            Text(f"{PROG} wait: not done after {args.timeout:g}s; it goes on"))
        return EXIT_TIMEOUT
    finally:
        handle.close()
    _out().print(_line(op, handle.elapsed))
    return EXIT_CODES.get(op.state, EXIT_ERROR)


def _cancel(args: argparse.Namespace, ops: Operations) -> int:
    return _act(args, ops, "cancel", ops.can_cancel, ops.cancel, "cancel requested")


def _delete(args: argparse.Namespace, ops: Operations) -> int:
    return _act(args, ops, "delete", ops.can_delete, ops.delete, "deleted")


def _act(args: argparse.Namespace, ops: Operations, verb: str, can: Callable[[str], bool],
         do: Callable[[str], None], done: str) -> int:
    """Every name is checked first: if the service cannot do it to one of them, nothing is sent."""
    err = _err()
    refused = [n for n in args.names if not can(n)]
    for name in refused:
        err.print(Text(f"{PROG} {verb}: {name}: the service ({args.api_version}) cannot {verb} this "
                       "operation; nothing was sent"))
    if refused:
        return EXIT_ERROR
    for name in args.names:
        try:
            do(name)
        except UnsupportedError as exc:  # the check above says it cannot happen; the message if it does
            err.print(Text(f"{PROG} {verb}: {name}: {exc}"))
            return EXIT_ERROR
        print(f"{done}: {name}")
    return 0


def version_string() -> str:
    return f"{PROG} {__version__}"



def _history(args: argparse.Namespace, ops: Operations) -> int:
    frame = ops.history(all_services=args.all)
    if args.unfinished:
        frame = frame[~frame["done"] & ~frame["vanished"]]
    if args.max is not None:
        frame = frame.head(args.max)
    if args.json:
        print(json.dumps([_history_record(name, row) for name, row in frame.iterrows()], indent=2))
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", no_wrap=True)
    if args.all:
        table.add_column("service")
    for column in ("kind", "state", "duration", "last seen"):
        table.add_column(column, justify="right" if column == "duration" else "left")
    for name, row in frame.iterrows():
        state = State(row["state"])
        shown = Text(state.value, style=STYLES.get(state, ""))
        if row["vanished"]:
            shown = Text(f"{state.value}, gone", style="dim")  # 404 when last asked: not polled again
        duration = row["duration"]
        cells = [str(name), *([str(row["service"])] if args.all else []), str(row["kind"]), shown,
                 "" if _missing(duration) else format_duration(duration.total_seconds()),
                 row["last_seen"].tz_convert(None).strftime("%Y-%m-%d %H:%M:%S UTC")]
        table.add_row(*cells)
    _out().print(table)
    if frame.empty:
        _err().print("no operations in the history" + ("" if args.all else " of this service (try --all)"))
    return 0


def _history_record(name: Any, row: Any) -> dict[str, Any]:
    """One history row as JSON: the frame's own values, times in RFC 3339, durations in seconds."""
    def value(v: Any) -> Any:
        if _missing(v):
            return None
        if hasattr(v, "total_seconds"):
            return v.total_seconds()
        if hasattr(v, "isoformat"):
            return str(v.isoformat()).replace("+00:00", "Z")
        return v.item() if hasattr(v, "item") else v

    keys = ("service", "kind", "model", "state", "done", "progress", "duration", "error_code", "error_message",
            "first_seen", "last_seen", "vanished")
    return {"name": str(name), **{k: value(row[k]) for k in keys}}


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value)) if not isinstance(value, (list, dict)) else False


def _resume(args: argparse.Namespace, ops: Operations) -> int:
    before = ops.history()
    wanted = set(before.index[~before["done"] & ~before["vanished"]])
    handles = ops.track_unfinished(poll_interval=args.interval)
    err = _err()
    for name in sorted(wanted - {h.name for h in handles}):
        err.print(Text(f"{PROG} resume: {name}: the service no longer has it (marked vanished)"))
    if not handles:
        err.print(Text(f"{PROG} resume: nothing to resume"))
        return 0
    _follow(handles)
    return 0
