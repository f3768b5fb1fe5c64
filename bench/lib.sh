# Sourced by the bench scripts.

# GNU time measures peak RSS; Debian's package, installed on first use.
ensure_gnu_time() {
  if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time for peak-RSS measurement" >&2
    apt-get update -qq && apt-get install -y -qq time >/dev/null
  fi
}

# timed CMD...: runs it once (its output discarded), prints "seconds peak_kb"; the time is
# wall clock from bash's EPOCHREALTIME.
timed() {
  local log start end
  log=$(mktemp)
  start=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$log" "$@" >/dev/null 2>&1 || true
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" -v kb="$(tail -n 1 "$log")" 'BEGIN { printf "%.4f %d\n", e - s, kb }'
  rm -f "$log"
}
