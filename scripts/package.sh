#!/usr/bin/env bash
# Builds the arm64 deployment zips of every function (what `sam build` packages for
# Architecture=arm64) with cargo-lambda and zig, and prints their sizes. Not part of every
# test run (a cold release cross-build takes many minutes); the book: docs/src/deploying.md.
#
#   scripts/package.sh [x86_64|arm64]      (default arm64) -> target/lambda/<function>/bootstrap.zip
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-arm64}
venv=.venv-lambda
if [ ! -x "$venv/bin/cargo-lambda" ]; then
  echo "installing cargo-lambda and ziglang into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check cargo-lambda ziglang
fi
# cargo-lambda finds zig through the first python3 on PATH: the venv's has ziglang.
export PATH="$PWD/$venv/bin:$PATH"
functions=(sluice-sanitizer sluice-transformer sluice-forwarder sluice-listener sluice-dashboard)
args=()
for f in "${functions[@]}"; do args+=(--bin "$f"); done
cargo lambda build --release "--$arch" --output-format zip "${args[@]}" >&2
printf '%-22s %10s\n' function zip_bytes
for f in "${functions[@]}"; do
  printf '%-22s %10s\n' "$f" "$(stat -c %s "target/lambda/$f/bootstrap.zip")"
done
