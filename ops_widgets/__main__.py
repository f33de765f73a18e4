"""The ops-widgets command: list, get, watch, wait for, cancel and delete long-running operations
from a terminal; emulator serves the local Operations API; demo opens (or, with --execute, runs)
the quickstart notebook against the embedded emulator."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._cli import add_commands, add_global_options, version_string

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _emulator(args: argparse.Namespace) -> int:
    from .emulator import Faults, serve_forever

    # --fault-rate shares a rate out; a mode's own flag, when given, sets that mode's rate.
    chosen = {f"{mode}_rate": getattr(args, f"{mode}_rate") for mode in FAULT_MODES}
    settings = {k: v for k, v in chosen.items() if v is not None}
    settings.update(slow_body_seconds=args.slow_body_seconds, storm_requests=args.storm_requests,
                    storm_seconds=args.storm_seconds, storm_retry_delay=args.storm_retry_delay,
                    seed=args.fault_seed)
    try:
        faults = Faults.mix(args.fault_rate, **settings)
    except ValueError as exc:
        print(f"ops-widgets emulator: {exc}", file=sys.stderr)
        return 2
    serve_forever(args.port, speed=args.speed, random_seed=args.random_seed, api_key=args.api_key, seed=args.seed,
                  faults=faults)
    return 0


FAULT_MODES = {
    "error": "answer 500/503 with Google's JSON error body",
    "html_error": "answer a proxy's HTML 502 page",
    "drop_before": "close the connection before the server acts (no byte answered)",
    "drop_after": "let the server act (a cancel happens), then close the connection mid-answer",
    "truncated": "cut a 200's body short (its Content-Length agrees: only the JSON breaks)",
    "slow_body": "trickle the answer in pieces over the slow-body seconds",
}


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _requests(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "faults (API routes only, never /_emulator/; each request gets at most one; the rates add up to 1 at most)")
    group.add_argument("--fault-rate", metavar="P", type=_rate, default=0.0,
                       help="fault this share of requests, shared equally by 5xx, HTML 502, drops before and "
                            "after the server acted, and truncated bodies (default: 0)")
    for mode, what in FAULT_MODES.items():
        group.add_argument(f"--{mode.replace('_', '-')}-rate", metavar="P", type=_rate, default=None,
                           help=f"{what}, for this share of requests " + (
                               "(not part of the fault rate)" if mode == "slow_body" else
                               "(instead of its share of the fault rate)"))
    group.add_argument("--slow-body-seconds", metavar="S", type=_seconds, default=2.0,
                       help="how long a slow body takes to arrive (default: 2)")
    group.add_argument("--storm-requests", metavar="N", type=_requests, default=0,
                       help="a 429 storm at start: the next N requests answer 429 RESOURCE_EXHAUSTED (default: 0)")
    group.add_argument("--storm-seconds", metavar="S", type=_seconds, default=0.0,
                       help="a 429 storm at start lasting S seconds (with a request count too: whichever ends first)")
    group.add_argument("--storm-retry-delay", metavar="S", type=_seconds, default=1.0,
                       help="the retryDelay of the storm's google.rpc.RetryInfo (default: 1)")
    group.add_argument("--fault-seed", metavar="N", type=int, default=None,
                       help="seed which requests are faulted, for the same faults every run")


def _demo(args: argparse.Namespace) -> int:
    notebook = NOTEBOOKS / args.notebook
    if not notebook.is_file():
        print(f"ops-widgets demo: {notebook} not found (run it from a clone of the repository)", file=sys.stderr)
        return 2
    if args.execute:
        return execute_notebook(notebook)
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print("ops-widgets demo needs JupyterLab: pip install 'ops-widgets[demo]'", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--ServerApp.root_dir={NOTEBOOKS}",
           str(notebook)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    print("Opening", notebook.name, "in JupyterLab (Ctrl-C to stop). It runs against the embedded emulator:")
    print("no account, no key, no network needed.")
    return subprocess.call(cmd)


def execute_notebook(path: Path, timeout: int = 600) -> int:
    """Run every cell in a fresh kernel; print the text each cell shows; 0 if none failed."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        print("ops-widgets demo --execute needs nbclient: pip install 'ops-widgets[demo]'", file=sys.stderr)
        return 2
    nb = nbformat.read(path, as_version=4)
    # Widget state is never stored: it would write live state into the file.
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
        failed = None
    except CellExecutionError as exc:
        failed = exc
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                sys.stdout.write(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                sys.stdout.write(out["data"]["text/plain"] + "\n")
    if failed is not None:
        print(f"\n{path.name}: a cell failed:\n{failed}", file=sys.stderr)
        return 1
    print(f"\n{path.name}: all {sum(c.cell_type == 'code' for c in nb.cells)} code cells ran.")
    return 0


DESCRIPTION = """\
Google long-running operations (Gemini API) from a terminal: list, get, watch, wait for, cancel
and delete them. The key comes from GEMINI_API_KEY (else GOOGLE_API_KEY); with no key, try any
command with --emulator. "ops-widgets COMMAND --help" tells more about each command."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops-widgets", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_string(),
                        help="print the version and exit")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub)
    emu = sub.add_parser("emulator", help="serve the local Operations API emulator in the foreground",
                         description="Serve the local Operations API emulator on 127.0.0.1 until Ctrl-C.")
    emu.add_argument("--port", type=int, default=8000, help="the port to listen on (default: 8000)")
    emu.add_argument("--speed", type=float, default=1.0, help="emulated seconds per real second (default: 1)")
    emu.add_argument("--random-seed", type=int, default=None,
                     help="seed its random choices, for the same names and outcomes every run")
    emu.add_argument("--api-key", default="emulator-key",
                     help="the made-up key it accepts (default: emulator-key)")
    emu.add_argument("--seed", type=int, default=0, help="create this many operations at start (default: 0)")
    _add_fault_options(emu)
    emu.set_defaults(func=_emulator)
    demo = sub.add_parser("demo", help="open the quickstart notebook in JupyterLab (emulator inside)",
                          description="Open the quickstart notebook in JupyterLab, against the embedded emulator.")
    demo.add_argument("--execute", action="store_true", help="run it top to bottom without a browser and exit")
    demo.add_argument("--notebook", default="quickstart.ipynb",
                      help="which notebook of notebooks/ (default: quickstart.ipynb)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
