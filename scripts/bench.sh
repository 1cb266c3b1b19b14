#!/usr/bin/env bash
# Runs the benchmarks (BENCHMARKS.md): installs wrk if missing, builds the binary in
# the `profiling` profile (release optimisations plus line tables, so `perf` can
# attribute samples; the memory scenario runs it as a separate process), then
# `cargo bench` in the same profile.
# Usage: scripts/bench.sh [amplification|catchup|hotpath|memory|freshness|followcost ...]
#        scripts/bench.sh push   (issue 19: push-freshness, push-throughput; or one of them)
#        scripts/bench.sh --cluster [cluster-upstream|cluster-hotpath|cluster-memory|
#                                    cluster-takeover|cluster-wakeup|cluster-readload ...]
# --cluster: the scenarios of issue 12 (replicas on Redis; all of them when none is
# named). They start their own redis-server (Debian's, installed here when missing) on a
# free loopback port; the default run needs no Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=0
if [[ "${1:-}" == "--cluster" ]]; then
  cluster=1
  shift
fi
missing=()
command -v wrk >/dev/null || missing+=(wrk)
if ((cluster)) && [[ ! -x /usr/bin/redis-server ]]; then
  missing+=(redis-server)
fi
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package may start Debian's own redis-server on 6379; the bench does not use it.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    service redis-server stop >/dev/null 2>&1 || true
  fi
fi
if ((cluster)) && (($# == 0)); then
  set -- cluster
fi
cargo build --profile profiling --locked
cargo bench --profile profiling --locked --bench bench -- "$@"
