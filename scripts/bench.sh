#!/usr/bin/env bash
# Runs the benchmarks (BENCHMARKS.md): installs wrk if missing, builds the binary in
# the `profiling` profile (release optimisations plus line tables, so `perf` can
# attribute samples; the memory scenario runs it as a separate process), then
# `cargo bench` in the same profile.
# Usage: scripts/bench.sh [amplification|catchup|hotpath|memory|freshness ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --profile profiling --locked
cargo bench --profile profiling --locked --bench bench -- "$@"
