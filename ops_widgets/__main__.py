"""The ops-widgets command: list, get, watch, wait for, cancel and delete long-running operations
from a terminal; emulator serves the local Operations API; demo opens (or, with --execute, runs)
the quickstart notebook against the embedded emulator."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._cli import add_commands, add_global_options, checked, version_string

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


_rate = checked(float, lambda v: 0.0 <= v <= 1.0, "a probability from 0 to 1")
_seconds = checked(float, lambda v: 0.0 <= v < float("inf"), "a number of seconds >= 0")
_requests = checked(int, lambda v: v >= 0, "0 or more")


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
    source = NOTEBOOKS / args.notebook
    if not source.is_file():
        print(f"ops-widgets demo: {source} not found (run it from a clone of the repository)", file=sys.stderr)
        return 2
    # A scratch copy: opening (and saving) the notebook never rewrites the clone's file.
    scratch = Path(tempfile.mkdtemp(prefix="ops-widgets-demo-"))
    notebook = scratch / source.name
    shutil.copyfile(source, notebook)
    if args.execute:
        try:
            return execute_notebook(notebook)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print("ops-widgets demo needs JupyterLab: pip install 'ops-widgets[demo]'", file=sys.stderr)
        return 2
    return serve_lab(notebook, scratch)


# JupyterLab asks "Would you like to get notified about official Jupyter news?" in a toast that
# covers the widgets; this plugin does it. Disabled for the demo's own server only (a config dir
# of its own, added in front of the user's, which stays as it is).
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"


def kernel_security() -> dict[str, str]:
    """KernelManager settings for kernels whose channels are encrypted (CurveZMQ keys handed out
    by the kernel manager, for kernels that declare support, as ipykernel 7.4 does): then the
    kernel has no "running over TCP without encryption" warning to print. Where pyzmq has no
    CurveZMQ, local sockets (ipc) do the same on POSIX."""
    import zmq

    if zmq.has("curve"):
        return {"transport_encryption": "auto"}
    return {"transport": "ipc"} if os.name == "posix" else {}


def serve_lab(notebook: Path, scratch: Path, startup_timeout: float = 120.0) -> int:
    """JupyterLab on 127.0.0.1 over ``scratch``, its log in a file there; prints one line, the
    URL that opens ``notebook`` itself (also where no browser opens: SSH, containers, WSL)."""
    config = scratch / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {NEWS_PLUGIN: True}}))
    runtime = scratch / "runtime"
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (str(config), env.get("JUPYTER_CONFIG_PATH")) if p)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)  # where the server says its port and token
    env.setdefault("JUPYTER_TOKEN", secrets.token_urlsafe(24))  # not on the command line (ps shows it)
    cmd = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--ServerApp.root_dir={scratch}",
           *(f"--KernelManager.{k}={v}" for k, v in kernel_security().items()), str(notebook)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = scratch / "jupyterlab.log"
    # `kill` (TERM) or a closed terminal (HUP) stop it as Ctrl-C does: the server goes too. (A
    # script's `cmd &` starts it with SIGINT ignored; TERM still reaches it.)
    for signum in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, _interrupt)
    with open(log_path, "wb") as log:
        # A session of its own: Ctrl-C reaches this process only, which stops the server cleanly
        # (JupyterLab would otherwise ask "Shutdown this Jupyter server?" into its log file).
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        info = _server_info(proc, runtime / f"jpserver-{proc.pid}.json", startup_timeout)
        if info is None:
            proc.terminate()
            _failed(f"JupyterLab did not start (its log: {log_path})", log_path)
            return 1
        base = f"http://127.0.0.1:{info['port']}{info.get('base_url', '/')}"
        url = f"{base}lab/tree/{notebook.name}?token={info['token']}"
        print(f"ops-widgets demo: open {url}  (a scratch copy in {scratch}; Ctrl-C stops)", flush=True)
        status = proc.wait()
        if status != 0:
            _failed(f"JupyterLab stopped with status {status} (its log: {log_path})", log_path)
        return status
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()  # it shuts its kernels down
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _server_info(proc: subprocess.Popen[bytes], path: Path, timeout: float) -> dict[str, Any] | None:
    """The server's own record of its port and token, once it is up; None if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            info: dict[str, Any] = json.loads(path.read_text())
            return info
        except (OSError, ValueError):  # not written yet, or half-written
            time.sleep(0.1)
    return None


def _failed(message: str, log_path: Path) -> None:
    print(f"ops-widgets demo: {message}", file=sys.stderr)
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
    except OSError:
        return
    print("\n".join(tail), file=sys.stderr)


def execute_notebook(path: Path, timeout: int = 600) -> int:
    """Run every cell in a fresh kernel; print the text each cell shows; 0 if none failed."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
        from traitlets.config import Config
    except ImportError:
        print("ops-widgets demo --execute needs nbclient: pip install 'ops-widgets[demo]'", file=sys.stderr)
        return 2
    nb = nbformat.read(path, as_version=4)
    # Widget state is never stored: it would write live state into the file.
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(path.parent)}},
                            config=Config({"KernelManager": kernel_security()}))
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
