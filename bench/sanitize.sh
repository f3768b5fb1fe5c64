#!/usr/bin/env bash
# End-to-end speed and memory of `sluice sanitize` on generated orders files.
#
#   bench/sanitize.sh [SIZE ...]      default: 100M 1G; RUNS=3 runs each, best and median shown
#
# Files are generated once into bench/data/ (gen_orders.py: quoted, BOM, CRLF, unicode, a few
# hostile cells). Output goes to OUT_DIR (default bench/data/out; use a tmpfs such as /dev/shm
# to take the disk out of the figure). Peak RSS comes from /usr/bin/time -v.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100M 1G)
runs=${RUNS:-3}
out_dir=${OUT_DIR:-bench/data/out}

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time for peak-RSS measurement" >&2
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
cargo build --release --locked -p sluice-cli >&2
mkdir -p bench/data "$out_dir"

printf '%-8s %12s %10s %10s %12s %s\n' size bytes best_MB/s median_MB/s peak_RSS_MB verdict
for size in "${sizes[@]}"; do
  input=bench/data/orders-$size.csv
  [ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"
  bytes=$(stat -c %s "$input")
  rates=() rss=0 verdict=
  for _ in $(seq "$runs"); do
    log=$(mktemp)
    /usr/bin/time -v target/release/sluice sanitize "$input" \
      --output "$out_dir/clean.csv" --report "$out_dir/report.json" 2>"$log" || true
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0;
                                                  for (i = 1; i <= n; i++) s = s * 60 + t[i];
                                                  print s }' "$log")
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")
    rates+=("$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.0f", b / 1e6 / s }')")
    [ "$kb" -gt "$rss" ] && rss=$kb
    verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' \
      "$out_dir/report.json")
    rm -f "$log"
  done
  sorted=($(printf '%s\n' "${rates[@]}" | sort -n))
  best=${sorted[-1]}
  median=${sorted[$(( ${#sorted[@]} / 2 ))]}
  printf '%-8s %12s %10s %10s %12.1f %s\n' "$size" "$bytes" "$best" "$median" \
    "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$verdict"
done
rm -f "$out_dir/clean.csv"
