#!/usr/bin/env bash
# `sluice upload` of one large file to moto server (started here), killed at about half way,
# then run again: how many parts the second run sends, and how many of those the first run
# had already finished (the target: at most one part sent twice).
#
#   bench/upload_resume.sh [SIZE_MB] [PART_MB] [CONCURRENCY]     (defaults 1024, 16, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
part_mb=${2:-16}
concurrency=${3:-4}
cargo build --release --locked -p sluice-cli >&2
source scripts/lib/moto.sh
work=$(mktemp -d)
trap 'stop_moto; rm -rf "$work"' EXIT
ensure_moto >&2
mkdir -p "$work/drop" "$work/state"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$work/drop/big.csv"
parts=$(( (size_mb + part_mb - 1) / part_mb ))
bucket=sluice-bench-resume-$$
.venv/bin/python -c "import boto3,sys; boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL', region_name='us-east-1').create_bucket(Bucket=sys.argv[1])" "$bucket"
# An array, not a function: a function run in the background is a subshell, and killing it
# would leave the upload running.
upload=(target/release/sluice upload "$work/drop" --dataset orders --bucket "$bucket" \
    --state "$work/state" --multipart-threshold 64 --part-size "$part_mb" \
    --concurrency "$concurrency" --json)
saved_parts() {
  python3 - "$work/state" <<'PY'
import json, os, sys
n = 0
for f in os.listdir(sys.argv[1]):
    try:
        n = max(n, len(json.load(open(os.path.join(sys.argv[1], f))).get("parts", [])))
    except Exception:
        pass
print(n)
PY
}

started=$(date +%s.%N)
"${upload[@]}" >"$work/first.json" 2>/dev/null &
pid=$!
half=$((parts / 2))
while [ "$(saved_parts)" -lt "$half" ]; do
  kill -0 "$pid" 2>/dev/null || { echo "the upload finished before half way" >&2; exit 1; }
  sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
killed_at=$(saved_parts)
first_secs=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

started=$(date +%s.%N)
"${upload[@]}" >"$work/second.json" 2>/dev/null
second_secs=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
read -r total resumed < <(python3 -c '
import json, sys
line = next(json.loads(l) for l in open(sys.argv[1]) if "result" in l)
assert line["result"] == "uploaded", line
print(line["parts"], line["resumed_parts"])' "$work/second.json")
sent=$((total - resumed))
resent=$((killed_at > resumed ? killed_at - resumed : 0))
printf '%d MB in %d parts of %d MB (concurrency %d)\n' "$size_mb" "$total" "$part_mb" "$concurrency"
printf 'first run: killed after %s s with %d parts finished and saved\n' "$first_secs" "$killed_at"
printf 'second run: %s s, %d parts already there, %d sent; finished parts sent again: %d (target: at most 1)\n' \
  "$second_secs" "$resumed" "$sent" "$resent"
