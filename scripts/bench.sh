#!/usr/bin/env bash
# Runs the benchmarks (BENCHMARKS.md): installs wrk if missing, builds the release
# binary (the memory scenario runs it as a separate process), then `cargo bench`.
# Usage: scripts/bench.sh [amplification|catchup|hotpath|memory|freshness ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked
cargo bench --locked --bench bench -- "$@"
