#!/usr/bin/env bash
# Wall time of the test suite, per test binary and in total, warm (the build is timed
# apart, first), with the load average at the start and the end: the machine may be
# shared, and a loaded machine's figures are not comparable with a quiet one's.
#
#   scripts/test-times.sh            cargo test -- --include-ignored, per binary
#   scripts/test-times.sh --ci       the same, then the whole .ci/run with each stage's time
#   scripts/test-times.sh -- ARGS    extra arguments for cargo test (e.g. -- --test it)
#
# Per binary: the `finished in` figure libtest prints for each binary (its own wall time,
# its tests running in parallel); doc-tests are one more row. Total: the wall time of the
# whole `cargo test` run, binaries one after another.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

ci=0
cargo_args=()
while (($#)); do
  case "$1" in
    --ci) ci=1 ;;
    --) shift; cargo_args=("$@"); break ;;
    *) echo "usage: $0 [--ci] [-- cargo test arguments]" >&2; exit 2 ;;
  esac
  shift
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)  (nproc $(nproc))"
start=$(date +%s.%N)
cargo test --locked --no-run "${cargo_args[@]}" >/dev/null 2>&1
built=$(date +%s.%N)
printf 'build (cargo test --no-run): %.1f s\n' "$(echo "$built - $start" | bc)"

start=$(date +%s.%N)
status=0
cargo test --locked --no-fail-fast "${cargo_args[@]}" -- --include-ignored >"$log" 2>&1 || status=$?
end=$(date +%s.%N)

# "Running tests/x.rs (target/debug/deps/x-…)" / "Doc-tests powertail", then that
# binary's "test result: … finished in 1.23s".
awk '
  /^ *Running / { name = $2; if (name ~ /^unittests/) name = "lib/bin " $3; next }
  /^ *Doc-tests / { name = "doc-tests " $2; next }
  /^test result:/ {
    t = $NF; sub(/s$/, "", t)
    n = $4 + 0
    printf "%8.2f s  %5d passed  %s\n", t, n, name
  }
' "$log" | sort -rn
printf 'total (cargo test, warm): %.1f s, %d binaries\n' "$(echo "$end - $start" | bc)" "$(grep -c '^test result:' "$log")"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((status != 0)); then
  grep -E '^(failures:|    [a-z_:]+$|test .* FAILED)' "$log" | head -40 >&2
  echo "cargo test failed (exit $status); log kept at $log.failed" >&2
  cp "$log" "$log.failed"
  exit "$status"
fi

if ((ci)); then
  echo "== .ci/run"
  # .ci/run prints `== <stage>: N s` after each stage and `== total: N s (exit S)`.
  ci_status=0
  .ci/run >"$log" 2>&1 || ci_status=$?
  grep -E '^== .*: [0-9]+ s' "$log" || true
  if ((ci_status != 0)); then
    cp "$log" "$log.failed"
    echo ".ci/run failed (exit $ci_status); log kept at $log.failed" >&2
    exit "$ci_status"
  fi
fi
