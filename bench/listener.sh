#!/usr/bin/env bash
# One listener run over a drop of N objects (default 10,000) in moto server, status in
# PostgreSQL (both started here if down): seconds for the references (a plain listing of the
# drop; every object copied with CopyObject alone, 8 in flight), for the run that copies every
# object into quarantine, for a second run that finds them all known, and the peak RSS of the
# process that ran them.
#
#   bench/listener.sh [OBJECTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
# shellcheck source=../scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=../scripts/lib/moto.sh
source scripts/lib/moto.sh
trap stop_moto EXIT
ensure_postgres >&2
ensure_moto >&2
export RUST_LOG=${RUST_LOG:-error}
cargo build --release --locked -p sluice-e2e --example listener_bench >&2
# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
id=$$
drop=sluice-bench-drop-$id quarantine=sluice-bench-quarantine-$id schema=sluice_bench_listener_$id
for bucket in "$drop" "$quarantine"; do
  .venv/bin/python - "$bucket" <<'PY'
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=sys.argv[1])
PY
done
psql "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" -qc "CREATE SCHEMA $schema"
echo "seeding $n drop objects" >&2
target/release/examples/listener_bench seed "$drop" "$n"
/usr/bin/time -f "peak RSS           %M KB" \
  target/release/examples/listener_bench run "$drop" "$quarantine" "$schema"
PGOPTIONS='--client-min-messages=warning' \
  psql "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" -qc "DROP SCHEMA $schema CASCADE"
