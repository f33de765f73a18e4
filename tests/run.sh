#!/usr/bin/env bash
# The whole test suite, exactly as a new user and CI run it:  bash tests/run.sh
# It installs what it needs into the active Python (set PYTHON to choose another), then runs
# pytest. Extra arguments go to pytest (e.g. bash tests/run.sh -k emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== installing ops-widgets with its test dependencies"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "== unit, integration and notebook tests"
# pytest exits 5 when it collects nothing: with set -e that fails the run, as it should.
"$PY" -m pytest "$@"
