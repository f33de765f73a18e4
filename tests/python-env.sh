# Sourced by the README's two commands (tests/run.sh, notebooks/demo.sh): picks the Python to
# install into and sets PY. It is the active Python (a virtual environment, conda, pyenv, or
# $PYTHON), unless that one is a system Python marked externally managed (PEP 668, as on Debian 12
# and Ubuntu 23.04+): then a project-local virtual environment in .venv, made once and reused.
# Quiet: one line says what it chose. `quietly` runs a step with its output in a log that is shown
# only if the step fails.

quietly() {
    # quietly "what it does" command...: silent on success, the command's output if it fails.
    local what=$1 log status=0
    shift
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$log" >&2
        echo "ERROR: $what failed (exit status $status)" >&2
    fi
    rm -f "$log"
    return "$status"
}

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "ERROR: $PY not found: install Python 3.10 or newer (apt-get install python3)." >&2
    exit 1
fi

_externally_managed() {
    # pip's own rule: a marker beside the standard library, outside any virtual environment.
    "$PY" - <<'PYCODE'
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.isfile(marker) else 1)
PYCODE
}

if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ] && _externally_managed; then
    if [ ! -x .venv/bin/python ]; then
        if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
            # Debian splits venv out of the interpreter: python3-venv (or python3.X-venv).
            ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            SUDO=""
            [ "$(id -u)" -ne 0 ] && SUDO=sudo
            echo "== installing python${ver}-venv with apt-get (this Python is externally managed)"
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python${ver}-venv" >/dev/null ||
                { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive \
                    apt-get install -y -q "python${ver}-venv" >/dev/null; }
        fi
        "$PY" -m venv .venv
        echo "== made a project virtual environment in .venv ($PY is externally managed); it is reused next time"
    else
        echo "== using the project virtual environment in .venv ($PY is externally managed)"
    fi
    PY=$PWD/.venv/bin/python
    quietly "upgrading pip in .venv" "$PY" -m pip install --disable-pip-version-check --upgrade pip
fi
