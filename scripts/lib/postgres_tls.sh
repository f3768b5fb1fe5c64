# Sourced by scripts/test.sh: starts a second, throw-away PostgreSQL server that only accepts
# TLS (hostssl, scram-sha-256 passwords), with a certificate for `sluice-db.test` signed by a CA
# made here, so the tests can prove the verified-TLS path and password rotation. Exports:
#   SLUICE_TEST_TLS_DATABASE_URL  postgres://postgres:...@sluice-db.test:PORT/postgres?hostaddr=127.0.0.1
#   SLUICE_TEST_DB_CA_FILE        the CA that signed the server's certificate
# `stop_postgres_tls` ends it (test.sh calls it on exit). Needs ensure_postgres first (binaries).

pg_tls_dir=

pg_bin() { # NAME: the server binary of the newest installed PostgreSQL
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/$1" ]; then echo "$dir/$1"; else command -v "$1"; fi
}

ensure_postgres_tls() {
  pg_tls_dir=$(mktemp -d /tmp/sluice-pg-tls.XXXXXX)
  local certs=$pg_tls_dir/certs data=$pg_tls_dir/data password
  password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Sluice test CA" \
    -keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=sluice-db.test" \
    -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:sluice-db.test\nbasicConstraints=CA:FALSE\n' >"$certs/ext.cnf"
  openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/ext.cnf" -out "$certs/server.pem" 2>/dev/null
  printf '%s\n' "$password" >"$pg_tls_dir/pwfile"
  chown -R postgres "$pg_tls_dir"
  chmod 600 "$certs/server.key"
  runuser -u postgres -- "$(pg_bin initdb)" -D "$data" -U postgres -A scram-sha-256 \
    --pwfile="$pg_tls_dir/pwfile" >/dev/null
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >>"$data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_tls_dir'
ssl = on
ssl_cert_file = '$certs/server.pem'
ssl_key_file = '$certs/server.key'
CONF
  # TLS only: a plaintext connection finds no line to match and is refused.
  printf 'hostssl all all 127.0.0.1/32 scram-sha-256\n' >"$data/pg_hba.conf"
  runuser -u postgres -- "$(pg_bin pg_ctl)" -D "$data" -l "$pg_tls_dir/server.log" -w start >/dev/null
  export SLUICE_TEST_TLS_DATABASE_URL="postgres://postgres:$password@sluice-db.test:$port/postgres?hostaddr=127.0.0.1"
  export SLUICE_TEST_DB_CA_FILE="$certs/ca.pem"
  echo "PostgreSQL with TLS only (CA made here) at 127.0.0.1:$port as sluice-db.test"
}

stop_postgres_tls() {
  if [ -n "$pg_tls_dir" ] && [ -d "$pg_tls_dir/data" ]; then
    runuser -u postgres -- "$(pg_bin pg_ctl)" -D "$pg_tls_dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$pg_tls_dir"
  fi
}
