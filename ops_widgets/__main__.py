"""The ``ops-widgets`` command: ``emulator`` serves the local Operations API; ``demo`` opens
(or, with --execute, runs) the quickstart notebook against the embedded emulator."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops-widgets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    emu = sub.add_parser("emulator", help="serve the local Operations API emulator in the foreground")
    emu.add_argument("--port", type=int, default=8000)
    emu.add_argument("--speed", type=float, default=1.0, help="emulated seconds per real second")
    emu.add_argument("--random-seed", type=int, default=None)
    emu.add_argument("--api-key", default="emulator-key")
    emu.add_argument("--seed", type=int, default=0, help="create this many operations at start")
    emu.set_defaults(func=_emulator)
    demo = sub.add_parser("demo", help="open the quickstart notebook in JupyterLab (emulator inside)")
    demo.add_argument("--execute", action="store_true", help="run it top to bottom without a browser and exit")
    demo.add_argument("--notebook", default="quickstart.ipynb")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
