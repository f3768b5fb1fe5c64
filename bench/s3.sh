#!/usr/bin/env bash
# S3 to S3: the sanitizer's byte path (GET in, sanitize, multipart PUT out) with R ranged GETs
# and W part uploads in flight (R/W; 1/4 is the default, SLUICE_S3_RANGES_IN_FLIGHT and
# SLUICE_S3_PARTS_IN_FLIGHT), beside the server's own ceiling measured in the same run with
# the same SDK client (tests/examples/s3_bench.rs: one streaming GET into a multipart PUT, no
# Sluice code, 4 parts in flight). The issue's target is at least 0.8 of the ceiling with a
# peak RSS of at most 64 MB.
#
#   bench/s3.sh [SIZE] [SERVER ...]    default: 100M moto s3s-fs; RUNS=3 runs each
#
# Servers: moto (from the project's .venv, as the tests use it) and s3s-fs (an S3 server
# over a folder, `cargo install`ed into bench/data/tools on first use). Both run on this
# machine, sharing its two cores with the client. Times are wall clock; the ratio is of
# medians.
set -euo pipefail
cd "$(dirname "$0")/.."

size=${1:-100M}
shift || true
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(moto s3s-fs)
runs=${RUNS:-3}

# shellcheck source=lib.sh
source bench/lib.sh
ensure_gnu_time
cargo build --release --locked -p sluice-e2e --example s3_bench >&2
bench=target/release/examples/s3_bench
mkdir -p bench/data
input=bench/data/orders-$size.csv
[ -f "$input" ] || python3 bench/gen_orders.py "$input" "$size"
bytes=$(stat -c %s "$input")

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf bench/data/s3s' EXIT

start_server() {
  local port
  port=$(free_port)
  case $1 in
    moto)
      if [ ! -x .venv/bin/moto_server ]; then
        python3 -m venv .venv
        .venv/bin/pip install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
      fi
      .venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
      ;;
    s3s-fs)
      if [ ! -x bench/data/tools/bin/s3s-fs ]; then
        echo "installing s3s-fs into bench/data/tools" >&2
        cargo install --quiet --root bench/data/tools s3s-fs@0.14.1 --features binary >&2
      fi
      rm -rf bench/data/s3s && mkdir -p bench/data/s3s
      bench/data/tools/bin/s3s-fs --host 127.0.0.1 --port "$port" --access-key test \
        --secret-key testtesttest bench/data/s3s >/dev/null 2>&1 &
      ;;
    *) echo "unknown server $1 (moto or s3s-fs)" >&2; return 1 ;;
  esac
  server_pid=$!
  wait_port "$port"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=test SLUICE_S3_PATH_STYLE=true
  if [ "$1" = s3s-fs ]; then export AWS_SECRET_ACCESS_KEY=testtesttest; else export AWS_SECRET_ACCESS_KEY=test; fi
}

# timed ARGS...: one run of the bench binary; prints "seconds peak_kb"
timed() {
  local log out
  log=$(mktemp)
  out=$(/usr/bin/time -f '%M' -o "$log" "$bench" "$@")
  echo "$(cut -d' ' -f1 <<<"$out") $(tail -n 1 "$log")"
  rm -f "$log"
}

median() { printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }
max() { printf '%s\n' "$@" | sort -n | tail -n 1; }

printf '%-7s %-22s %9s %9s %8s %s\n' server run median_s MB/s RSS_MB "of ceiling"
for server in "${servers[@]}"; do
  start_server "$server"
  bucket=sluice-bench-$$
  "$bench" put "$bucket" orders.csv "$input" >/dev/null
  declare -A secs=() kbs=()
  modes=("copy 4" "sanitize 1/1" "sanitize 1/4" "sanitize 2/4" "sanitize 4/4")
  for _ in $(seq "$runs"); do
    for mode in "${modes[@]}"; do
      read -r -a m <<<"$mode"
      read -r s kb < <(timed "${m[0]}" "$bucket" orders.csv "${m[1]}")
      secs[$mode]="${secs[$mode]:-} $s"
      kbs[$mode]="${kbs[$mode]:-} $kb"
    done
  done
  # shellcheck disable=SC2086
  ceiling=$(median ${secs["copy 4"]})
  for mode in "${modes[@]}"; do
    # shellcheck disable=SC2086
    s=$(median ${secs[$mode]}) kb=$(max ${kbs[$mode]})
    label="sanitize ${mode#* } R/W"
    [ "${mode% *}" = copy ] && label="ceiling: GET+PUT (4)"
    printf '%-7s %-22s %9.3f %9.0f %8.1f %.2f\n' "$server" "$label" "$s" \
      "$(awk -v b="$bytes" -v s="$s" 'BEGIN { print b / 1e6 / s }')" \
      "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" \
      "$(awk -v a="$ceiling" -v b="$s" 'BEGIN { print a / b }')"
  done
  unset secs kbs
  stop_server
done
