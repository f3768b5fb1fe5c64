#!/usr/bin/env bash
# Speed of `sluice transform` (the shipped `orders` mapping) on the clean file `sluice
# sanitize` makes of a generated orders file, beside the pandas way of the same mapping
# (bench/transform_pandas.py) measured in the same run. The issue's target: at least
# 2 M rows/s, 10x pandas.
#
#   bench/transform.sh [SIZE]     default 100M; RUNS=5 runs of Sluice, PANDAS_RUNS=1 of pandas
#
# pandas is installed into bench/data/.venv-pandas on first use (PyPI); set NO_PANDAS=1 to
# skip the reference. Output goes to OUT_DIR (default bench/data/out).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-100M}
runs=${RUNS:-5}
pandas_runs=${PANDAS_RUNS:-1}
out_dir=${OUT_DIR:-bench/data/out}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
cargo build --release --locked -p sluice-cli >&2
sluice=target/release/sluice
mkdir -p bench/data "$out_dir"
input=bench/data/orders-$size.csv
[ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"
clean=$out_dir/clean-$size.csv
"$sluice" sanitize "$input" --dataset orders --config pipelines.toml --output "$clean" \
  --report "$out_dir/sanitize.json" 2>/dev/null
rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows_out"])' \
  "$out_dir/sanitize.json")

median() { printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }

secs=() kb_max=0
for _ in $(seq "$runs"); do
  read -r s kb < <(timed "$sluice" transform "$clean" --dataset orders --config pipelines.toml \
    --output "$out_dir/records.jsonl" --report "$out_dir/transform.json")
  secs+=("$s"); [ "$kb" -gt "$kb_max" ] && kb_max=$kb
done
sluice_median=$(median "${secs[@]}")
records=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_out"])' \
  "$out_dir/transform.json")
printf '%-14s %9s rows %9s records  median %.3f s  %6.2f M rows/s  peak RSS %.1f MB\n' \
  "sluice" "$rows" "$records" "$sluice_median" \
  "$(awk -v r="$rows" -v s="$sluice_median" 'BEGIN { print r / s / 1e6 }')" \
  "$(awk -v k="$kb_max" 'BEGIN { print k / 1024 }')"

[ -z "${NO_PANDAS:-}" ] || exit 0
venv=bench/data/.venv-pandas
if [ ! -x "$venv/bin/python" ]; then
  echo "installing pandas into $venv for the reference" >&2
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q pandas; } >&2; then
    echo "pandas could not be installed: no reference this run" >&2
    rm -rf "$venv"; exit 0
  fi
fi
psecs=() pkb=0
for _ in $(seq "$pandas_runs"); do
  read -r s kb < <(timed "$venv/bin/python" bench/transform_pandas.py "$clean" "$out_dir/pandas.jsonl")
  psecs+=("$s"); [ "$kb" -gt "$pkb" ] && pkb=$kb
done
pandas_median=$(median "${psecs[@]}")
printf '%-14s %9s rows %9s records  median %.3f s  %6.2f M rows/s  peak RSS %.1f MB\n' \
  "pandas" "$rows" "$(wc -l < "$out_dir/pandas.jsonl")" "$pandas_median" \
  "$(awk -v r="$rows" -v s="$pandas_median" 'BEGIN { print r / s / 1e6 }')" \
  "$(awk -v k="$pkb" 'BEGIN { print k / 1024 }')"
printf 'ratio: sluice is %.1fx pandas (target: 10x, and at least 2 M rows/s)\n' \
  "$(awk -v a="$pandas_median" -v b="$sluice_median" 'BEGIN { print a / b }')"
