#!/usr/bin/env bash
# Runs the main job locally on the bundled example files, with no AWS and no services
# (README: "Set-up"): `sluice run` takes every file in examples/ through quarantine, sanitize,
# transform and delivery with the same stage code as the Lambdas, a folder standing in for the
# buckets (out/buckets/), in-process queues and the embedded status store. The requests that
# would go to each dataset's API are written to out/requests/<dataset>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sluice-cli
rm -rf out
set +e
# No services: an exported DATABASE_URL is not used.
env -u DATABASE_URL target/release/sluice run examples/ --out out
code=$?
set -e
# 3 means every file was delivered or rejected: examples/orders/not-a-csv.xlsx, a broken
# spreadsheet (a zip package that holds no workbook), is rejected on purpose.
if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then
  echo "sluice run failed with exit code $code" >&2
  exit "$code"
fi
echo "clean files and reports: out/buckets/clean/; requests: $(ls out/requests/*.jsonl | tr '\n' ' ')"
