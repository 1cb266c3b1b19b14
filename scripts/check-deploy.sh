#!/usr/bin/env bash
# Checks the deployment examples in deploy/:
#   * deploy/powertail.service with `systemd-analyze verify` (any warning fails) and
#     `systemd-analyze security` (the exposure score must stay low);
#   * deploy/nginx.conf and deploy/nginx-replicas.conf with `nginx -t`, each included
#     under `http {}` of a throwaway main configuration, with a throwaway self-signed
#     certificate.
# Needs systemd, nginx and openssl (`.ci/run` installs them). Usage:
#   scripts/check-deploy.sh [path/to/powertail]     (default: target/debug/powertail)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/powertail}
[[ -x $binary ]] || { echo "check-deploy: $binary is missing: build it first (cargo build)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== systemd-analyze verify deploy/powertail.service"
# verify needs ExecStart's binary to exist: point the unit at a copy of ours.
cp "$binary" "$tmp/powertail"
sed "s#/usr/local/bin/powertail#$tmp/powertail#g" deploy/powertail.service >"$tmp/powertail.service"
grep -q "^ExecStart=$tmp/powertail " "$tmp/powertail.service"
if ! out=$(systemd-analyze verify "$tmp/powertail.service" 2>&1) || [[ -n $out ]]; then
  # Unknown keys are only warnings for systemd: fail on any output.
  echo "$out" >&2
  echo "check-deploy: systemd-analyze verify failed" >&2
  exit 1
fi
# Exposure 0.0 (locked down) .. 10.0 (no hardening), compared as 0..100: the unit scores
# 1.4 ("OK"); fail if a change weakens it past 2.0.
if ! systemd-analyze security --offline=true --threshold=20 "$tmp/powertail.service" >"$tmp/security.txt"; then
  grep -v '^✓' "$tmp/security.txt" >&2
  echo "check-deploy: deploy/powertail.service lost hardening (exposure above 2.0)" >&2
  exit 1
fi

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
mkdir -p "$tmp/logs"
for conf in deploy/nginx.conf deploy/nginx-replicas.conf; do
  echo "== nginx -t $conf"
  sed -e "s#/etc/nginx/tls/powertail.crt#$tmp/tls.crt#" -e "s#/etc/nginx/tls/powertail.key#$tmp/tls.key#" \
    "$conf" >"$tmp/powertail.conf"
  grep -q "ssl_certificate_key $tmp/tls.key;" "$tmp/powertail.conf"
  cat >"$tmp/nginx.conf" <<CONF
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events {}
http {
    access_log off;
    include $tmp/powertail.conf;
}
CONF
  nginx -t -q -e "$tmp/logs/error.log" -p "$tmp" -c "$tmp/nginx.conf"
done
echo "deploy/ checks passed"
