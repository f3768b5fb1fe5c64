#!/usr/bin/env bash
# Runs the book's walkthrough (docs/src/walkthrough.md), exactly as written (the block between
# <!-- walkthrough:start --> and <!-- walkthrough:end -->), and checks what it printed.
# scripts/test.sh runs it after the cargo tests (which built the binaries it uses).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/walkthrough.log
script=$(awk '/<!-- walkthrough:start -->/{on=1; next} /<!-- walkthrough:end -->/{on=0} on && !/^```/' docs/src/walkthrough.md)
[ -n "$script" ] || { echo "no walkthrough block in docs/src/walkthrough.md" >&2; exit 1; }
trap './scripts/local-stack.sh down --wipe >/dev/null 2>&1 || true' EXIT
./scripts/local-stack.sh down --wipe >/dev/null 2>&1 || true
# As an operator's shell would be: none of the test run's AWS or database settings.
if ! env -u DATABASE_URL -u AWS_ENDPOINT_URL -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
  timeout 900 bash -euo pipefail -c "$script" >"$out" 2>&1; then
  echo "the walkthrough failed; its output:" >&2
  tail -n 60 "$out" >&2
  exit 1
fi
expect() {
  grep -qF -- "$1" "$out" || { echo "walkthrough: expected \"$1\" in $out" >&2; tail -n 60 "$out" >&2; exit 1; }
}
expect "status    delivered"
expect "status    failed (at forwarder)"
expect 'the API answered: {"error": "record 2: customer.email is required"}'
expect "orders-evening.csv"
expect "would replay"
expect "local stack down"
echo "walkthrough: every step ran and said what the book says"
