#!/usr/bin/env bash
# Property-based API fuzzing: schemathesis (PyPI) driven by the service's own
# /openapi.json, twice: against the running demo (no API tokens: open reads), and against
# a second powertail in front of the demo's simulator with `[[auth.tokens]]` configured,
# every request sending `Authorization: Bearer <token>`. Fails on any 5xx and on any
# answer that does not match the documented schema. Installs schemathesis into a
# virtualenv when missing.
# Everything it writes stays in the work directory, under target/ (ignored by git): the
# virtualenv, the servers' logs (target/api-fuzz/*.log, kept for a look after a failure)
# and schemathesis' example database.
# Usage: scripts/api-fuzz.sh [path to the powertail binary]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/powertail}
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
OUT=target/api-fuzz
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis>=4,<5"
fi
VENV=$(realpath "$VENV")
# What git sees before: the fuzzing must leave the work tree as it found it.
git_state() { git status --porcelain 2>/dev/null || true; }
BEFORE=$(git_state)
WORK=$(realpath "$(mktemp -d "$OUT/work.XXXXXX")")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_healthy() {
  for _ in $(seq 1 100); do
    curl -sf "$1/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "powertail at $1 did not start" >&2
  return 1
}
fuzz() {
  local base=$1
  shift
  # Run from $OUT: schemathesis keeps its database in ./.schemathesis.
  (cd "$OUT" && "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${FUZZ_EXAMPLES:-60}" \
    --request-timeout 40 \
    --exclude-path /llm/logs/{instanceId}/stream \
    --exclude-path /llm/logs/{instanceId}/ws \
    --no-color \
    "$@")
}

DEMO="http://127.0.0.1:$(free_port)"
"$BIN" demo --listen "${DEMO#http://}" > "$OUT/demo.log" 2>&1 &
PIDS+=($!)
wait_healthy "$DEMO"

# GET /llm/logs reads a real instance. With made-up ids every valid request names an
# instance PowerJob does not know (404) and every valid epoch is not the current one
# (410), so schemathesis would warn that the API rejects what the schema allows ("Schema
# validation mismatch") though the schema says exactly what the server checks. Its
# `instanceId` is therefore this instance's (the other routes still fuzz the id, whose
# parsing they share, and tests/it/api_errors.rs checks bad ids); `epoch` stays fuzzed.
# Likewise pushed lines (`/append`) go to that instance.
INSTANCE=$(curl -sf -X POST "$DEMO/llm/jobs/vllm-start/run" | python3 -c 'import json, sys; print(json.load(sys.stdin)["instanceId"])')
[ -n "$INSTANCE" ] || { echo "could not run vllm-start on the demo" >&2; exit 1; }
# A schema looser than the server's checks fails the run (the warning is an error here).
cat > "$WORK/schemathesis.toml" <<TOML
[warnings]
fail-on = ["validation_mismatch"]
[[operations]]
include-path = "/llm/logs"
parameters = { "query.instanceId" = "$INSTANCE" }
[[operations]]
include-path = "/llm/logs/{instanceId}/append"
parameters = { "path.instanceId" = "$INSTANCE" }
TOML

# The same API with tokens, in front of the demo's simulator.
SIM=$(grep -o 'simulated PowerJob server at http://[0-9.:]*' "$OUT/demo.log" | head -1 | sed 's/.* at //')
[ -n "$SIM" ] || { echo "no simulator address in $OUT/demo.log" >&2; exit 1; }
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
AUTHED="http://127.0.0.1:$(free_port)"
cat > "$WORK/config.toml" <<TOML
[server]
listen = "${AUTHED#http://}"
[powerjob]
addresses = ["$SIM"]
app_name = "llm-test-platform"
app_password = "secret"
# Generous: the fuzzer loads this machine, and a slow simulator must not read as a 504.
request_timeout_ms = 20000
log_cache_ms = 2000
worker_flush_ms = 1000
clock_skew_ms = 500
[logs]
refresh_interval_ms = 500
first_read_delay_ms = 1500
[jobs.vllm-start]
job_id = 12
[[auth.tokens]]
name = "fuzz"
token = "$TOKEN"
scopes = ["logs:read", "logs:push", "jobs:run", "jobs:control"]
TOML
"$BIN" --config "$WORK/config.toml" > "$OUT/authed.log" 2>&1 &
PIDS+=($!)
wait_healthy "$AUTHED"

echo "== schemathesis: demo, no API tokens"
fuzz "$DEMO"
echo "== schemathesis: API tokens configured, requests with a bearer token"
fuzz "$AUTHED" -H "Authorization: Bearer $TOKEN"
AFTER=$(git_state)
if [ "$BEFORE" != "$AFTER" ]; then
  echo "the fuzzing changed the work tree (write under target/ or ignore it):" >&2
  diff <(echo "$BEFORE") <(echo "$AFTER") >&2 || true
  exit 1
fi
