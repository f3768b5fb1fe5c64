#!/usr/bin/env bash
# Re-uploads of a keyed dataset (issue: "deliver only what changed"): the transform stage on
# a clean orders file (default from a 153M export: 1.37 M rows) against PostgreSQL,
# without a record key (the reference), with one and an empty record state, and with one
# again once every record is recorded delivered (the re-upload case). Prints rows/s, seconds
# and peak RSS of each, and the re-upload's ratio to the reference from the same run.
#
#   bench/delta.sh [SIZE]     DATABASE_URL (default: the local test database)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-153M}
source scripts/lib/postgres.sh
ensure_postgres
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}

cargo build --release --locked -p sluice-cli -p sluice-e2e --example delta_bench >&2
mkdir -p bench/data/orders
input=bench/data/orders/orders-$size.csv
[ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"
clean=bench/data/orders-$size.clean.csv
if [ ! -f "$clean" ]; then
  target/release/sluice sanitize "$input" --dataset orders --config pipelines.toml \
    --output "$clean" --report "$clean.report.json" >&2 || [ $? -eq 3 ]
fi
target/release/examples/delta_bench "$clean" pipelines.toml
