#!/usr/bin/env bash
# Delivery throughput of the forwarder's handler (tests/examples/forward_bench.rs): record
# batches in SQS events, POSTed to a local API that answers 200 after ~1 ms, every attempt
# recorded in PostgreSQL (started here if it is down).
#
#   bench/forward.sh [RECORDS] [BATCH_SIZES] [CONCURRENCIES] [MESSAGES_PER_EVENT]
#   e.g. bench/forward.sh 100000 100,250,500,1000 1,4,8 10
#   SLUICE_BENCH_API_MS=0 to take the API's answer time out of the figure (default 1 ms)
#   SLUICE_BENCH_API_URL=http://... to deliver to another API (its answers are not checked)
#
# The API, the handler and PostgreSQL share this machine's cores, so the figures are a floor
# for a Lambda talking to a remote API of the same latency.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/lib/postgres.sh
source scripts/lib/postgres.sh
ensure_postgres >&2
# No AWS call is made (batches are inline), but the SDK wants a region.
export AWS_REGION=${AWS_REGION:-us-east-1} RUST_LOG=${RUST_LOG:-error}
cargo build --release --locked -p sluice-e2e --example forward_bench >&2
# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
/usr/bin/time -f "peak RSS %M KB" target/release/examples/forward_bench "$@"
