#!/usr/bin/env bash
# The local stack: Sluice's AWS side on this machine, for trying the operator commands end to
# end (the book: docs/src/walkthrough.md).
#
#   scripts/local-stack.sh up          builds sluice and the Lambda binaries (debug), and starts
#                                      moto server (S3, SQS, Secrets Manager) on 127.0.0.1:4566,
#                                      PostgreSQL database `sluice_local` (migrated), the
#                                      template's buckets, queues (with dead-letter queues) and
#                                      secret, the example API on 127.0.0.1:8765, and
#                                      target/local-stack/env for `. target/local-stack/env`
#   scripts/local-stack.sh lambdas     the shipped Lambda binaries under an emulated Lambda
#                                      service, in the foreground (Ctrl-C stops them)
#   scripts/local-stack.sh api [--require-email]
#                                      restarts the example API (with --require-email it
#                                      refuses order batches with a record without an e-mail)
#   scripts/local-stack.sh down        stops moto, the API and the lambdas (the database stays;
#                                      `down --wipe` drops it)
#
# SLUICE_LOCAL_MOTO_PORT and SLUICE_LOCAL_API_PORT move the ports. Installs what it needs as
# scripts/test.sh does (moto into .venv, PostgreSQL with apt when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
state=target/local-stack
moto_port=${SLUICE_LOCAL_MOTO_PORT:-4566}
api_port=${SLUICE_LOCAL_API_PORT:-8765}
mkdir -p "$state/logs"

stop_pid() { # FILE
  if [ -f "$1" ]; then
    kill "$(cat "$1")" 2>/dev/null || true
    rm -f "$1"
  fi
}

start_api() {
  stop_pid "$state/api.pid"
  python3 scripts/example_api.py "$state/api-requests.jsonl" --port "$api_port" "$@" \
    >"$state/logs/api.log" 2>&1 &
  echo $! >"$state/api.pid"
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $api_port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  echo "example API at http://127.0.0.1:$api_port ${*:-}(requests in $state/api-requests.jsonl)"
}

up() {
  # Never the database or AWS of the caller's shell.
  unset DATABASE_URL AWS_PROFILE AWS_SESSION_TOKEN
  # shellcheck source=lib/postgres.sh
  . scripts/lib/postgres.sh
  ensure_postgres
  local admin="${DATABASE_URL%/test?sslmode=disable}/postgres?sslmode=disable"
  if ! psql "$admin" -Atqc "select 1 from pg_database where datname = 'sluice_local'" | grep -q 1; then
    psql "$admin" -qc 'CREATE DATABASE sluice_local'
  fi
  local db="${DATABASE_URL%/test?sslmode=disable}/sluice_local?sslmode=disable"

  if [ ! -x .venv/bin/moto_server ]; then
    echo "installing moto server into .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
  fi
  if ! python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/')" 2>/dev/null; then
    # A new moto has empty buckets: upload state kept for the old ones would skip files.
    rm -rf "$state/uploads"
    .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$state/logs/moto.log" 2>&1 &
    echo $! >"$state/moto.pid"
    for _ in $(seq 100); do
      python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$moto_port/moto-api/')" 2>/dev/null && break
      sleep 0.1
    done
  fi
  echo "moto server (S3, SQS, Secrets Manager) at http://127.0.0.1:$moto_port"
  .venv/bin/python scripts/lib/local_stack.py "http://127.0.0.1:$moto_port" "$state" "$db" \
    "http://127.0.0.1:$api_port"
  start_api
  # Everything `lambdas` runs is built now, so the Lambdas start at once.
  cargo build --quiet --locked -p sluice-cli -p sluice-sanitizer -p sluice-transformer \
    -p sluice-forwarder -p sluice-listener
  cargo build --quiet --locked -p sluice-e2e --example lambda_service
  DATABASE_URL="$db" target/debug/sluice migrate
  echo
  echo "ready: . $state/env   (then sluice ..., or target/debug/sluice ...)"
}

lambdas() {
  # shellcheck source=/dev/null
  . "$state/env"
  # Built by `up`; this only checks they are current.
  cargo build --quiet --locked -p sluice-sanitizer -p sluice-transformer -p sluice-forwarder \
    -p sluice-listener
  cargo build --quiet --locked -p sluice-e2e --example lambda_service
  local target=${CARGO_TARGET_DIR:-target}
  exec "$target/debug/examples/lambda_service" "$target/debug" "$state/logs"
}

down() {
  stop_pid "$state/api.pid"
  stop_pid "$state/moto.pid"
  pkill -f "examples/lambda_service" 2>/dev/null || true
  rm -f "$state/env"
  if [ "${1:-}" = "--wipe" ]; then
    rm -rf "$state/uploads"
    # shellcheck source=lib/postgres.sh
    unset DATABASE_URL
    . scripts/lib/postgres.sh
    ensure_postgres >/dev/null
    psql "${DATABASE_URL%/test?sslmode=disable}/postgres?sslmode=disable" -qc 'DROP DATABASE IF EXISTS sluice_local'
    echo "database sluice_local dropped"
  fi
  echo "local stack down"
}

case "${1:-}" in
  up) up ;;
  lambdas) lambdas ;;
  api) shift; start_api "$@" ;;
  down) shift; down "$@" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
