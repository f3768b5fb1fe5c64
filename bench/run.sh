#!/usr/bin/env bash
# `sluice run` end to end on a generated orders file (default 100M): seconds and peak RSS,
# beside the three-command path on the same file in the same run (`sluice sanitize`, then
# `sluice transform`, then `sluice forward --output`), whose total is the reference.
#
#   bench/run.sh [SIZE]     RUNS=3 runs each (best shown); OUT_DIR (default bench/data/run)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-100M}
runs=${RUNS:-3}
out=${OUT_DIR:-bench/data/run}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
cargo build --release --locked -p sluice-cli >&2
sluice=target/release/sluice
mkdir -p bench/data
# `sluice run` routes by folder: the file sits in a folder named for its dataset.
input=bench/data/orders/orders-$size.csv
mkdir -p "$(dirname "$input")"
[ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"

# timed CMD...: prints "seconds peak_kb" of one run
timed() {
  local log; log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" >/dev/null 2>&1 || true
  tail -n 1 "$log"; rm -f "$log"
}

best_run= best_three= rss_run=0 rss_three=0
for _ in $(seq "$runs"); do
  rm -rf "$out"; mkdir -p "$out"
  read -r secs kb < <(timed "$sluice" run "$input" --out "$out/run" --json)
  [ -z "$best_run" ] || awk -v a="$secs" -v b="$best_run" 'BEGIN { exit !(a < b) }' && best_run=$secs
  [ "$kb" -gt "$rss_run" ] && rss_run=$kb

  read -r s1 k1 < <(timed "$sluice" sanitize "$input" --dataset orders --config pipelines.toml \
    --output "$out/clean.csv" --report "$out/sanitize.json")
  read -r s2 k2 < <(timed "$sluice" transform "$out/clean.csv" --dataset orders \
    --config pipelines.toml --output "$out/records.jsonl" --report "$out/transform.json")
  read -r s3 k3 < <(timed "$sluice" forward "$out/records.jsonl" --dataset orders \
    --config pipelines.toml --output "$out/requests.jsonl")
  three=$(awk -v a="$s1" -v b="$s2" -v c="$s3" 'BEGIN { print a + b + c }')
  [ -z "$best_three" ] || awk -v a="$three" -v b="$best_three" 'BEGIN { exit !(a < b) }' && best_three=$three
  for k in "$k1" "$k2" "$k3"; do [ "$k" -gt "$rss_three" ] && rss_three=$k; done
done
status=$(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["files"][0]; print(f["status"], f["records"])' \
  <("$sluice" run "$input" --out "$out/check" --json 2>/dev/null || true) 2>/dev/null || echo "?")
bytes=$(stat -c %s "$input")
printf '%-28s %8s %10s %12s\n' path seconds MB/s peak_RSS_MB
printf '%-28s %8s %10.0f %12.1f\n' "sluice run" "$best_run" \
  "$(awk -v b="$bytes" -v s="$best_run" 'BEGIN { print b / 1e6 / s }')" \
  "$(awk -v k="$rss_run" 'BEGIN { print k / 1024 }')"
printf '%-28s %8s %10.0f %12.1f\n' "sanitize+transform+forward" "$best_three" \
  "$(awk -v b="$bytes" -v s="$best_three" 'BEGIN { print b / 1e6 / s }')" \
  "$(awk -v k="$rss_three" 'BEGIN { print k / 1024 }')"
printf 'ratio (run / three commands): %.2f   last run: %s\n' \
  "$(awk -v a="$best_run" -v b="$best_three" 'BEGIN { print a / b }')" "$status"
rm -rf "$out"
