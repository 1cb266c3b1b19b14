#!/usr/bin/env bash
# Property-based API fuzzing: schemathesis (PyPI) against the running demo, driven by
# the service's own /openapi.json. Fails on any 5xx and on any answer that does not
# match the documented schema. Installs schemathesis into a virtualenv when missing.
# Usage: scripts/api-fuzz.sh [path to the powertail binary]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/powertail}
VENV=${SCHEMATHESIS_VENV:-/tmp/powertail-schemathesis}
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis>=4,<5"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" demo --listen "127.0.0.1:$PORT" > /tmp/powertail-fuzz-demo.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${FUZZ_EXAMPLES:-60}" \
  --request-timeout 40 \
  --exclude-path /llm/logs/{instanceId}/stream \
  --no-color
