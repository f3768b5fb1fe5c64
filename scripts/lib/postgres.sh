# Sourced by scripts/test.sh: makes sure a PostgreSQL server answers on 127.0.0.1:5432 with a
# database `test`, and exports DATABASE_URL for the tests (unless it is already set).
#
# Copes with: a server already running with trust auth (the dev machines); a Debian cluster
# installed but stopped; no PostgreSQL at all (installs it with apt); password auth on TCP
# (sets a password for the `postgres` role and puts it in DATABASE_URL).

pg_host=127.0.0.1
pg_port=5432

pg_can_login() { # URL
  psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "using DATABASE_URL from the environment"
    return
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not installed: installing it with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  if ! pg_isready -h "$pg_host" -p "$pg_port" -q; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
      version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
      pg_createcluster "$version" main >/dev/null
    fi
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 50); do
      pg_isready -h "$pg_host" -p "$pg_port" -q && break
      sleep 0.2
    done
  fi
  local url="postgres://postgres@$pg_host:$pg_port/postgres?sslmode=disable"
  if ! pg_can_login "$url"; then
    # Password auth on TCP: give the superuser a known local password.
    runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'sluice-local'" >/dev/null
    url="postgres://postgres:sluice-local@$pg_host:$pg_port/postgres?sslmode=disable"
  fi
  if ! psql "$url" -Atqc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql "$url" -qc 'CREATE DATABASE test' >/dev/null
  fi
  export DATABASE_URL="${url%/postgres?sslmode=disable}/test?sslmode=disable"
  pg_can_login "$DATABASE_URL" || { echo "cannot log in to PostgreSQL at $pg_host:$pg_port" >&2; exit 1; }
  echo "PostgreSQL ready at $pg_host:$pg_port"
}
