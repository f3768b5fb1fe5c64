#!/usr/bin/env bash
# `sluice upload` of many small files to moto server (started here): files/s and peak RSS at
# the concurrency used, and the second run's (everything skipped).
#
#   bench/upload.sh [FILES] [CONCURRENCY]      (defaults 10000, 16)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-10000}
concurrency=${2:-16}
if [ ! -x /usr/bin/time ]; then
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
cargo build --release --locked -p sluice-cli >&2
source scripts/lib/moto.sh
trap stop_moto EXIT
ensure_moto >&2
dir=bench/data/upload-$files
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  python3 - "$dir" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    sub = os.path.join(root, f"{i // 1000:03d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"orders-{i:06d}.csv"), "w") as f:
        f.write("order_id,sku,qty\n" + "".join(f"A-{i}-{j},SKU-{j},1\n" for j in range(20)))
PY
fi
bucket=sluice-bench-upload-$$
.venv/bin/python -c "import boto3,sys; boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL', region_name='us-east-1').create_bucket(Bucket=sys.argv[1])" "$bucket"
state=$(mktemp -d)
for run in first second; do
  log=$(mktemp)
  summary=$(/usr/bin/time -f '%e %M' -o "$log" target/release/sluice upload "$dir" --dataset orders \
    --bucket "$bucket" --concurrency "$concurrency" --state "$state" 2>/dev/null | tail -n 1 || true)
  echo "  $summary"
  read -r secs kb < <(tail -n 1 "$log")
  printf '%-7s run: %d files in %s s = %.0f files/s, peak RSS %.1f MB (concurrency %d)\n' \
    "$run" "$files" "$secs" "$(awk -v n="$files" -v s="$secs" 'BEGIN { print n / s }')" \
    "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" "$concurrency"
  rm -f "$log"
done
rm -rf "$state"
