#!/usr/bin/env bash
# Runs the main job locally on the bundled example files, no AWS needed (README: "Set-up").
# Each file is sanitized, and an accepted one is transformed into JSON records (the
# forwarder's delivery is still to come); clean files, records and reports land in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sluice-cli
sluice=target/release/sluice
mkdir -p out

run() { # FILE DATASET
  local name; name=$(basename "${1%.*}")
  set +e
  "$sluice" sanitize "$1" --dataset "$2" --config pipelines.toml \
    --output "out/$name.clean.csv" --report "out/$name.report.json"
  local code=$?
  set -e
  case $code in
    0)
      "$sluice" transform "out/$name.clean.csv" --dataset "$2" --config pipelines.toml \
        --output "out/$name.records.jsonl" --report "out/$name.transform.json" || true
      echo "    -> out/$name.clean.csv, out/$name.records.jsonl and their reports"
      ;;
    3) echo "    -> rejected, kept out of the pipeline; see out/$name.report.json" ;;
    *) echo "sluice failed with exit code $code" >&2; exit "$code" ;;
  esac
}

run examples/orders-messy.csv orders
run examples/train-movements-1252.csv train_movements
run examples/not-a-csv.xlsx orders
