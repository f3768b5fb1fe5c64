#!/usr/bin/env bash
# End-to-end speed and memory of `sluice sanitize` on generated orders files, beside its
# reference measured in the same run: a plain csv-crate parse-and-write of the same file
# (crates/core/examples/csv_copy.rs, no checks at all). The issue's target is a ratio of at
# least 0.9 (Sluice's MB/s over the reference's) with a peak RSS of at most 16 MB.
#
#   bench/sanitize.sh [SIZE ...]      default: 100M 1G; RUNS=5 runs each, alternating
#
# Files are generated once into bench/data/ (gen_orders.py: quoted, BOM, CRLF, unicode, a few
# hostile cells). Output goes to OUT_DIR (default bench/data/out; use a tmpfs such as /dev/shm
# to take the disk out of the figure). Times are wall clock (bash's EPOCHREALTIME); peak RSS
# comes from /usr/bin/time. Best and median of the runs are shown; the ratio is of medians.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100M 1G)
runs=${RUNS:-5}
out_dir=${OUT_DIR:-bench/data/out}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
cargo build --release --locked -p sluice-cli >&2
cargo build --release --locked -p sluice-core --example csv_copy >&2
mkdir -p bench/data "$out_dir"

# stats BYTES SECONDS...: prints "best_MB/s median_MB/s"
stats() {
  local bytes=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v b="$bytes" '{ t[NR] = $1 }
    END { printf "%.0f %.0f\n", b / 1e6 / t[1], b / 1e6 / t[int((NR + 1) / 2)] }'
}

printf '%-6s %11s | %9s %9s %8s %-8s | %9s %9s %8s | %s\n' size bytes \
  sluice_best median RSS_MB verdict csv_best median RSS_MB "ratio (median)"
for size in "${sizes[@]}"; do
  input=bench/data/orders-$size.csv
  [ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"
  bytes=$(stat -c %s "$input")
  sluice_secs=() csv_secs=() sluice_kb=0 csv_kb=0
  for _ in $(seq "$runs"); do
    read -r secs kb < <(timed target/release/sluice sanitize "$input" \
      --output "$out_dir/clean.csv" --report "$out_dir/report.json")
    sluice_secs+=("$secs"); [ "$kb" -gt "$sluice_kb" ] && sluice_kb=$kb
    read -r secs kb < <(timed target/release/examples/csv_copy "$input" "$out_dir/copy.csv")
    csv_secs+=("$secs"); [ "$kb" -gt "$csv_kb" ] && csv_kb=$kb
  done
  verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' \
    "$out_dir/report.json")
  read -r s_best s_median < <(stats "$bytes" "${sluice_secs[@]}")
  read -r c_best c_median < <(stats "$bytes" "${csv_secs[@]}")
  printf '%-6s %11s | %9s %9s %8.1f %-8s | %9s %9s %8.1f | %.2f\n' "$size" "$bytes" \
    "$s_best" "$s_median" "$(awk -v k="$sluice_kb" 'BEGIN { print k / 1024 }')" "$verdict" \
    "$c_best" "$c_median" "$(awk -v k="$csv_kb" 'BEGIN { print k / 1024 }')" \
    "$(awk -v a="$s_median" -v b="$c_median" 'BEGIN { print a / b }')"
done
rm -f "$out_dir/clean.csv" "$out_dir/copy.csv"
