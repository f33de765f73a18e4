#!/usr/bin/env bash
# The whole test suite, exactly as a new user and CI run it:  bash tests/run.sh
# It installs what it needs into the active Python (set PYTHON to choose another; on an externally
# managed system Python, into a project venv in .venv), checks the code with ruff and mypy, then
# runs pytest. Extra arguments go to pytest (e.g. bash tests/run.sh -k emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/python-env.sh

start=$SECONDS
quietly "installing ops-widgets with its test dependencies" \
    "$PY" -m pip install --disable-pip-version-check --no-input -e '.[dev]'
echo "== ops-widgets and its test dependencies are installed in $("$PY" -c 'import sys; print(sys.prefix)') ($((SECONDS - start)) s)"

# ruff and mypy --strict, both configured in pyproject.toml: what they find, or one line.
quietly "ruff check" "$PY" -m ruff check
quietly "mypy" "$PY" -m mypy
echo "== ruff and mypy --strict: no findings"

echo "== unit, integration and notebook tests"
# pytest exits 5 when it collects nothing: with set -e that fails the run, as it should.
"$PY" -m pytest "$@"

echo "== browser tests (JupyterLab, Notebook 7, headless Chromium)"
# Debian's chromium: Playwright's own browser download is not relied on. OPS_WIDGETS_CHROMIUM
# points the tests at another Chromium binary.
CHROMIUM=${OPS_WIDGETS_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 && SUDO=sudo || SUDO=none
    fi
    if [ "$SUDO" != none ]; then
        echo "== installing chromium with apt-get (about a minute)"
        # A failed install is reported just below, where CI and local runs differ.
        $SUDO apt-get update -q || true
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || true
    fi
fi
if [ ! -x "$CHROMIUM" ]; then
    if [ "${CI:-}" = true ]; then
        echo "ERROR: $CHROMIUM is missing and could not be installed: the browser tests cannot run." >&2
        exit 1
    fi
    echo "" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    echo "!! WARNING: $CHROMIUM is missing and could not be installed:" >&2
    echo "!! the browser tests were SKIPPED. Install it (apt-get install chromium) and run this again." >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 0
fi
# Their own process: Playwright's sync API keeps an event loop running in the test thread. The
# later -m replaces addopts' -m 'not browser'. Screenshots go to test-artifacts/browser/.
status=0
OPS_WIDGETS_CHROMIUM="$CHROMIUM" "$PY" -m pytest -m browser tests/browser "$@" || status=$?
if [ "$status" -eq 5 ] && [ "$#" -gt 0 ]; then
    status=0  # extra arguments (e.g. -k emulator) may rightly select no browser test
fi
exit "$status"
