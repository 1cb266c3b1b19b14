#!/usr/bin/env bash
# The Python client's checks (clients/python, package `powertail-client`): a virtualenv
# with the package installed editable with its `test` extras, `mypy --strict` over the
# package, then pytest, whose session fixture starts `powertail demo` from the given
# binary on a free port (scaled to run a vLLM start-up in seconds) and stops it at the end.
# The virtualenv is target/python-client-venv (in the work directory, ignored by git).
# Needs `python3 -m venv` (Debian: the python3-venv package; .ci/run installs it).
# Usage: scripts/python-client-tests.sh [path to the powertail binary]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/powertail}")
[ -x "$BIN" ] || { echo "$BIN is not an executable: run cargo build first" >&2; exit 1; }
VENV=${PYTHON_CLIENT_VENV:-target/python-client-venv}
[ -x "$VENV/bin/pip" ] || python3 -m venv --clear "$VENV"
VENV=$(realpath "$VENV")
"$VENV/bin/pip" install -q --disable-pip-version-check -e 'clients/python[test]'
cd clients/python
echo "== mypy --strict (clients/python: the package and its tests)"
"$VENV/bin/python" -m mypy
echo "== pytest (clients/python) against $BIN demo"
POWERTAIL_BIN=$BIN "$VENV/bin/python" -m pytest -p no:cacheprovider
