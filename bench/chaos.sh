#!/usr/bin/env bash
# The chaos soaks at size. CI runs small versions of both (tests/chaos.rs, tests/lambda_soak.rs).
#
#   bench/chaos.sh [FILES] [SEED]            the stages in one process (tests/support/chaos.rs)
#   bench/chaos.sh --lambda [FILES] [SEED]   the release Lambda binaries under an emulated
#                                            Lambda service (tests/support/lambda_soak.rs)
#
# In-process: FILES files (default 1000) of 23 rows through the sanitize, transform, forward
# and re-drive stages over PostgreSQL, with invocations killed part way (18%), database
# backends terminated every 0.7 s, 5% of object-store and queue calls failing and 10% of POSTs
# failing, hanging or taken and answered late.
#
# --lambda: FILES files (default 1000) of 23 rows uploaded to moto; the sanitizer,
# transformer, forwarder and listener release binaries run as warm containers of an emulated
# Lambda service (event source mappings with batch item failures, queues with visibility and
# redrive policies, the listener every 5 s), with 18% of invocations killed mid-way, database
# backends terminated every 6 s and 5% of connections refused, 3% of S3 connections answered
# 503, 10% of POSTs failing, hanging or taken late, 10% of "Object Created" events lost, and
# one forwarder behind a slow API (a backlog longer than the 60 s stale time). The functions'
# JSON logs go to target/lambda-soak-logs/.
#
# Both print their figures and exit 1 if a file did not end final, a row was lost, a record
# went under two idempotency keys, a batch was POSTed after its recorded 2xx, or a counter
# disagrees with api_call. DATABASE_URL defaults to the local test database.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
ensure_postgres >&2
if [ "${1:-}" != "--lambda" ]; then
  exec cargo run --quiet --locked -p sluice-e2e --example chaos -- "${1:-1000}" "${2:-7}"
fi
shift
source scripts/lib/moto.sh
trap stop_moto EXIT
ensure_moto
cargo build --quiet --locked --release -p sluice-sanitizer -p sluice-transformer \
  -p sluice-forwarder -p sluice-listener
target=${CARGO_TARGET_DIR:-target}
rm -rf "$target/lambda-soak-logs"
cargo run --quiet --locked --release -p sluice-e2e --example lambda_soak -- \
  "$target/release" "${1:-1000}" "${2:-7}" "$target/lambda-soak-logs"
