#!/usr/bin/env bash
# The demo, as the README's quick start runs it:  bash notebooks/demo.sh
# It installs ops-widgets with JupyterLab into the active Python (on an externally managed system
# Python, into a project venv in .venv), then opens the quickstart notebook against the embedded
# emulator. Extra arguments go to `ops-widgets demo` (e.g. --execute).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/python-env.sh

start=$SECONDS
quietly "installing ops-widgets with JupyterLab" \
    "$PY" -m pip install --disable-pip-version-check --no-input -e '.[demo]'
echo "== ops-widgets and JupyterLab are installed in $("$PY" -c 'import sys; print(sys.prefix)') ($((SECONDS - start)) s)"
exec "$PY" -m ops_widgets demo "$@"
