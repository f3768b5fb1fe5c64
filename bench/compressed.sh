#!/usr/bin/env bash
# Speed and memory of `sluice sanitize` on a gzipped orders file, beside its reference
# measured in the same run: `gzip -dc FILE > /dev/null` (decompression alone, no checks).
# Issue 29's target: at least 0.8 of gzip's speed, with a flat peak RSS of at most 32 MB.
#
#   bench/compressed.sh [SIZE]      default 1G (of CSV before compression); RUNS=3
#
# The CSV is generated once into bench/data/ (gen_orders.py) and gzipped (-6) beside it.
# Output goes to OUT_DIR (default /dev/shm when it exists: the disk is not what is measured).
# Speeds are of the CSV's bytes per second; the ratio is of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1G}
runs=${RUNS:-3}
out_dir=${OUT_DIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo bench/data/out )}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
cargo build --release --locked -p sluice-cli >&2
mkdir -p bench/data "$out_dir"
csv=bench/data/orders-$size.csv
[ -f "$csv" ] || python3 bench/gen_orders.py "$csv" "$size"
gz=$csv.gz
[ -f "$gz" ] || gzip -6 -k -c "$csv" >"$gz"
bytes=$(stat -c %s "$csv")

median() { printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }
sluice_secs=() gzip_secs=() sluice_kb=0
for _ in $(seq "$runs"); do
  read -r secs kb < <(timed target/release/sluice sanitize "$gz" \
    --output "$out_dir/clean.csv" --report "$out_dir/report.json")
  sluice_secs+=("$secs"); [ "$kb" -gt "$sluice_kb" ] && sluice_kb=$kb
  read -r secs _ < <(timed sh -c "gzip -dc '$gz' >/dev/null")
  gzip_secs+=("$secs")
done
python3 - "$out_dir/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verdict"] == "accepted" and r["compression"] == "gzip", r.get("reason")
PY
s=$(median "${sluice_secs[@]}") g=$(median "${gzip_secs[@]}")
awk -v b="$bytes" -v s="$s" -v g="$g" -v kb="$sluice_kb" -v c="$(stat -c %s "$gz")" 'BEGIN {
  printf "csv %d bytes, gzip %d bytes\n", b, c
  printf "sluice sanitize: %.2f s median, %.0f MB/s, peak RSS %.1f MB\n", s, b / 1e6 / s, kb / 1024
  printf "gzip -dc:        %.2f s median, %.0f MB/s\n", g, b / 1e6 / g
  printf "ratio (sluice speed / gzip speed): %.2f\n", g / s
}'
rm -f "$out_dir/clean.csv" "$out_dir/report.json"
