#!/usr/bin/env bash
# The dashboard over a big status store: FILES file_process rows (default 1,000,000) and CALLS
# api_call rows (default 10,000,000) generated in a schema of their own, then every page and
# JSON endpoint requested REQUESTS times (default 40) from the release `sluice dashboard`;
# prints p50, p95 and the slowest per page (the target: p95 under 100 ms).
#
#   bench/dashboard.sh [FILES] [CALLS] [REQUESTS]     DATABASE_URL (default: the local test db)
#   SLUICE_BENCH_KEEP=1 keeps the generated schema (sluice_bench_dashboard) for another run.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-1000000}
calls=${2:-10000000}
requests=${3:-40}
source scripts/lib/postgres.sh
ensure_postgres >&2
base=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
base=${base%%\?*}
schema=sluice_bench_dashboard
url="$base?sslmode=disable&options=-c%20search_path%3D$schema"
cargo build --release --locked -p sluice-cli >&2

have=$(psql "$base" -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = '$schema'")
if [ "$have" = 1 ] && [ "$(psql "$base" -Atc "SELECT count(*) FROM $schema.api_call")" = "$calls" ]; then
  echo "reusing $schema ($files files)" >&2
else
  psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" >&2
  DATABASE_URL="$url" target/release/sluice migrate >&2
  started=$(date +%s)
  psql "$base" -v ON_ERROR_STOP=1 -q >&2 <<SQL
SET search_path = $schema;
-- Bulk load: the status guard (a file starts as received) is for writers, not for this.
ALTER TABLE file_process DISABLE TRIGGER USER;
INSERT INTO file_process (id, dataset, site, source_bucket, source_key, source_etag, source_size,
    clean_key, status, failed_stage, error, rows_in, rows_out, rows_rejected, records,
    batches_sent, batches_delivered, received_at, updated_at, lease_owner, lease_until)
SELECT md5('f' || i)::uuid,
       (ARRAY['orders', 'train_movements', 'returns', 'stock'])[1 + i % 4],
       CASE WHEN i % 4 = 1 THEN 'site-' || (i % 7) END,
       'quarantine', 'incoming/orders/2026/11/' || lpad((1 + i % 28)::text, 2, '0') || '/'
           || md5('k' || i)::uuid || '-orders-' || lpad(i::text, 7, '0') || '.csv',
       md5('e' || i), 10000 + i % 5000, 'clean/orders/' || md5('f' || i)::uuid || '.csv',
       s.status,
       CASE WHEN s.status = 'failed' THEN 'forwarder' END,
       CASE WHEN s.status = 'failed' THEN 'batch 1/1 not delivered: HTTP 422 (not retried)'
            WHEN s.status = 'rejected' THEN 'not a CSV file: it looks like an archive' END,
       100, 98, 2, 98, 1, CASE WHEN s.status = 'delivered' THEN 1 ELSE 0 END,
       t.at, t.at + interval '3 minutes',
       CASE WHEN s.status = 'transforming' THEN 'transformer/x' END,
       CASE WHEN s.status = 'transforming' THEN t.at + interval '15 minutes' END
FROM generate_series(1, $files) i,
     LATERAL (SELECT now() - ((($files - i)::float8 / $files) * interval '30 days') AS at) t,
     LATERAL (SELECT CASE WHEN i % 100 < 90 THEN 'delivered' WHEN i % 100 < 94 THEN 'rejected'
                          WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 99 THEN 'delivering'
                          ELSE 'transforming' END AS status) s;
ALTER TABLE file_process ENABLE TRIGGER USER;
INSERT INTO file_event (file_id, at, stage, status, detail)
SELECT f.id, f.received_at + (e.n || ' seconds')::interval, e.stage, e.status, '{}'::jsonb
FROM file_process f,
     (VALUES (1, 'listener', 'received'), (2, 'sanitizer', 'sanitized'),
             (3, 'transformer', 'transformed')) e(n, stage, status);
-- CALLS attempts over the files with batches, spread over the same 30 days.
INSERT INTO api_call (file_id, dataset, batch_id, attempt, at, http_status, latency_ms, error)
SELECT md5('f' || (1 + (j % $files)))::uuid,
       (ARRAY['orders', 'train_movements', 'returns', 'stock'])[1 + (1 + j % $files) % 4],
       md5('f' || (1 + (j % $files)))::uuid::text || '-000001',
       1 + j / $files, now() - ((($calls - j)::float8 / $calls) * interval '30 days'),
       CASE WHEN j % 20 = 0 THEN 503 ELSE 200 END, (20 + (j::bigint * 7919) % 400)::int,
       CASE WHEN j % 20 = 0 THEN 'HTTP 503' END
FROM generate_series(1, $calls) j;
SQL
  # The listener's roll-up of whole hours for API health, from the first call (as in a
  # database that had it from the start), then the visibility map that index-only scans need
  # (autovacuum keeps it in a live database).
  psql "$base" -qc "SET search_path = $schema" -c "SELECT sluice_rollup_api_calls()" \
    -c "VACUUM ANALYZE" >&2
  echo "generated $files files, $((files * 3)) events, $calls calls in $(( $(date +%s) - started )) s" >&2
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
DATABASE_URL="$url" SLUICE_DASHBOARD_TOKEN="$token" target/release/sluice dashboard \
  --listen "127.0.0.1:$port" >/dev/null 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  if [ -z "${SLUICE_BENCH_KEEP:-}" ]; then psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >&2; fi
}
trap cleanup EXIT
for _ in $(seq 50); do
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/style.css" >/dev/null && break
  sleep 0.1
done
one=$(psql "$url" -Atc "SELECT id FROM file_process WHERE status = 'failed' ORDER BY received_at DESC LIMIT 1")
busy=$(psql "$url" -Atc "SELECT file_id FROM api_call WHERE file_id = md5('f1')::uuid LIMIT 1")
python3 - "$port" "$requests" "$one" "$busy" "$token" <<'PY'
import sys, time, urllib.request
port, n, one, busy, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
pages = [
    "/", "/?window=7d", "/api/overview",
    "/files", "/files?dataset=orders", "/files?status=failed&window=24h",
    "/files?site=site-3&dataset=train_movements", "/files?q=orders-0999", "/api/files?status=rejected",
    f"/files/{one}", f"/files/{busy}", f"/api/files/{busy}",
    "/health", "/health?window=7d", "/api/health",
]
worst = 0.0
print(f"{'page':<48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
for page in pages:
    times = []
    for i in range(n + 2):
        t = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{port}{page}", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request) as r:
            r.read()
            assert r.status == 200, (page, r.status)
        if i >= 2:  # two warm-ups: plans cached, pages in the buffer cache
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p95 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.95))]
    worst = max(worst, p95)
    print(f"{page[:48]:<48} {p50:8.1f} {p95:8.1f} {times[-1]:8.1f}")
print(f"slowest page p95: {worst:.1f} ms (target: under 100 ms)")
PY
