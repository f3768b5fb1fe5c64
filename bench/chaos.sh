#!/usr/bin/env bash
# The chaos soak at size (tests/support/chaos.rs; CI runs a 40-file version in tests/chaos.rs):
# FILES files (default 1000) of 23 rows through the sanitize, transform, forward and re-drive
# stages over PostgreSQL, with invocations killed part way (18%), database backends terminated
# every 0.7 s, 5% of object-store and queue calls failing and 10% of POSTs failing, hanging or
# taken and answered late. Prints its figures; exits 1 if a file did not end final, a row was
# lost, a record went under two idempotency keys, a batch was POSTed after its recorded 2xx, or
# a counter disagrees with api_call.
#
#   bench/chaos.sh [FILES] [SEED]          DATABASE_URL (default: the local test db)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
ensure_postgres >&2
cargo run --quiet --locked -p sluice-e2e --example chaos -- "${1:-1000}" "${2:-7}"
