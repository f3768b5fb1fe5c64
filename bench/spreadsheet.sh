#!/usr/bin/env bash
# Speed and memory of `sluice sanitize` on an orders workbook, beside the reference measured in
# the same run: pandas.read_excel (openpyxl) reading the same file into a DataFrame. Issue 29's
# target: at least 10 times faster. Peak RSS of both is shown: calamine holds the workbook and
# its sheet in memory, which is what sanitize.limits.max_spreadsheet_bytes bounds.
#
#   bench/spreadsheet.sh [SIZE]      default 50M (of workbook); RUNS=3 (pandas runs once)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-50M}
runs=${RUNS:-3}
out_dir=${OUT_DIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo bench/data/out )}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
venv=.venv-bench
if ! "$venv/bin/python" -c 'import pandas, openpyxl, xlsxwriter' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check pandas openpyxl XlsxWriter
fi
cargo build --release --locked -p sluice-cli >&2
mkdir -p bench/data "$out_dir"
book=bench/data/orders-$size.xlsx
[ -f "$book" ] || "$venv/bin/python" bench/spreadsheet.py "$book" "$size"
bytes=$(stat -c %s "$book")

median() { printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }
secs=() kb_max=0
for _ in $(seq "$runs"); do
  read -r s kb < <(timed target/release/sluice sanitize "$book" \
    --output "$out_dir/clean.csv" --report "$out_dir/report.json")
  secs+=("$s"); [ "$kb" -gt "$kb_max" ] && kb_max=$kb
done
rows=$(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["verdict"] == "accepted", r["reason"]; print(r["rows_out"])' "$out_dir/report.json")
read -r p pkb < <(timed "$venv/bin/python" -c \
  "import pandas, sys; print(len(pandas.read_excel(sys.argv[1], engine='openpyxl')))" "$book")
s=$(median "${secs[@]}")
awk -v b="$bytes" -v s="$s" -v kb="$kb_max" -v p="$p" -v pkb="$pkb" -v rows="$rows" 'BEGIN {
  printf "workbook %d bytes, %d rows\n", b, rows
  printf "sluice sanitize:                %7.2f s median, peak RSS %7.1f MB\n", s, kb / 1024
  printf "pandas.read_excel (openpyxl):   %7.2f s,        peak RSS %7.1f MB\n", p, pkb / 1024
  printf "ratio (pandas time / sluice time): %.1f\n", p / s
}'
rm -f "$out_dir/clean.csv" "$out_dir/report.json"
