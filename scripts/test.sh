#!/usr/bin/env bash
# The project's test command (README: "Run the tests"); CI runs exactly this.
# Checks formatting and lints, starts what the tests need (PostgreSQL,
# moto server for S3 and SQS), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "services"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=lib/postgres_tls.sh
. scripts/lib/postgres_tls.sh
# shellcheck source=lib/moto.sh
. scripts/lib/moto.sh
log=$(mktemp)
trap 'stop_moto; stop_postgres_tls; rm -f "$log"' EXIT
ensure_postgres
ensure_postgres_tls
ensure_moto

step "cargo test"
cargo test --workspace --all-features --locked 2>&1 | tee "$log"

# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
