# Sourced by scripts/test.sh: starts moto server (the local S3 + SQS stand-in) from a
# project-local virtualenv on a free loopback port, and exports what the AWS SDK needs to talk
# to it. `stop_moto` ends it (test.sh calls it on exit).

moto_pid=

ensure_moto() {
  local venv=.venv
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "installing moto server into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p target
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
  moto_pid=$!
  for _ in $(seq 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export SLUICE_S3_PATH_STYLE=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  echo "moto server (S3, SQS) at $AWS_ENDPOINT_URL"
}

stop_moto() {
  if [ -n "$moto_pid" ]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
}
