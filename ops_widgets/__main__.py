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
    from .emulator import serve_forever

    serve_forever(args.port, speed=args.speed, random_seed=args.random_seed, api_key=args.api_key, seed=args.seed)
    return 0


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
