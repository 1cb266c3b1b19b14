#!/usr/bin/env bash
# The Java client's checks (clients/java, io.powertail:powertail-client): `mvn verify`
# with every javac lint as an error (-Xlint:all -Werror in the pom), the JUnit 5 tests
# (the client against `powertail demo` started from the given binary on a free port,
# scaled to run a vLLM start-up in seconds; the pusher against an in-test HTTP server;
# the subprocess pump with real sh/python3 children), and the processor-side tests
# again on PowerJob 4.3.x's worker API (surefire execution `powerjob-4.3`); then the
# whole library and its tests compiled against 4.3.x (profile `powerjob-4.3`, lints as
# errors too), so that both supported worker APIs compile, not only link.
# Needs Java 17 and Maven (Debian: the maven package; .ci/run installs it). A warm
# ~/.m2 makes it offline-friendly; set MAVEN_OFFLINE=1 to forbid downloads.
# Usage: scripts/java-client-tests.sh [path to the powertail binary]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/powertail}")
[ -x "$BIN" ] || { echo "$BIN is not an executable: run cargo build first" >&2; exit 1; }
command -v mvn >/dev/null || { echo "mvn is missing (apt-get install maven)" >&2; exit 1; }
args=(-B -q -Dstyle.color=never clean verify "-Dpowertail.bin=$BIN")
[ "${MAVEN_OFFLINE:-0}" = 1 ] && args+=(-o)
echo "== mvn verify (clients/java) against $BIN demo"
cd clients/java
mvn "${args[@]}"
echo "== javac against tech.powerjob:powerjob-worker 4.3.x (profile powerjob-4.3)"
compile43=(-B -q -Dstyle.color=never -Ppowerjob-4.3 test-compile)
[ "${MAVEN_OFFLINE:-0}" = 1 ] && compile43+=(-o)
mvn "${compile43[@]}"
# Surefire's summary, in the plain form CI logs count.
python3 - <<'PY'
import glob, xml.etree.ElementTree as ET
t = f = e = s = 0
for path in glob.glob("target/surefire-reports*/TEST-*.xml"):
    r = ET.parse(path).getroot()
    t += int(r.get("tests", 0)); f += int(r.get("failures", 0)); e += int(r.get("errors", 0)); s += int(r.get("skipped", 0))
print(f"java: {t - f - e - s} passed, {f + e} failed, {s} skipped")
PY
