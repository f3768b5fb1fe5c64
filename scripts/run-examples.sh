#!/usr/bin/env bash
# Runs the main job locally on the bundled example files, no AWS needed (README: "Set-up").
# Each file is sanitized; an accepted one is transformed into JSON records, and the records
# are delivered in batches to a stand-in API on this machine (scripts/example_api.py), with
# the same delivery code, headers and retries as the forwarder Lambda. Clean files, records
# and reports land in out/; what the API received is in out/api-received.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sluice-cli
sluice=target/release/sluice
mkdir -p out
rm -f out/api-received.jsonl

# The stand-in API, on a free port; stopped when this script ends.
coproc API { exec python3 scripts/example_api.py out/api-received.jsonl; }
trap 'kill "$API_PID" 2>/dev/null || true' EXIT
read -r port <&"${API[0]}" || { echo "the stand-in API (scripts/example_api.py) did not start" >&2; exit 1; }
api="http://127.0.0.1:$port/ingest"
# The orders dataset takes its bearer token from the environment (never from the config).
export ORDERS_API_TOKEN=${ORDERS_API_TOKEN:-example-token}

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
      deliver "$name" "$2"
      echo "    -> out/$name.clean.csv, out/$name.records.jsonl and their reports"
      ;;
    3) echo "    -> rejected, kept out of the pipeline; see out/$name.report.json" ;;
    *) echo "sluice failed with exit code $code" >&2; exit "$code" ;;
  esac
}

deliver() { # NAME DATASET
  if [ "$2" = train_movements ]; then
    # Its API key lives in Secrets Manager, which a local run does not read: write the
    # requests it would send instead.
    "$sluice" forward "out/$1.records.jsonl" --dataset "$2" --config pipelines.toml \
      --output "out/$1.requests.jsonl" --report "out/$1.delivery.json"
  else
    "$sluice" forward "out/$1.records.jsonl" --dataset "$2" --config pipelines.toml \
      --api "$api" --report "out/$1.delivery.json"
  fi
}

run examples/orders-messy.csv orders
run examples/train-movements-1252.csv train_movements
run examples/not-a-csv.xlsx orders
echo "the API received: $(wc -l < out/api-received.jsonl) request(s), see out/api-received.jsonl"
