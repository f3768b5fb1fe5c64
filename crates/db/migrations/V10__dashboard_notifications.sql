-- Who uploaded a file: the quarantine object's `sluice-uploaded-by` metadata (`sluice upload`
-- sets it), for the dashboard and the notification.
ALTER TABLE file_process ADD COLUMN uploaded_by text;

-- Notifications: one row per file reaching a final status, written by the trigger below in
-- the same transaction as the status (so none is lost whatever happens after the commit), and
-- published to EventBridge (or a JSON-lines file locally) by whichever worker comes next.
-- `event_id` is stable (`<file id>/<status>`): a receiver drops an event it has seen.
CREATE TABLE notification (
    event_id      text PRIMARY KEY,
    file_id       uuid NOT NULL REFERENCES file_process (id),
    status        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    error         text
);
CREATE INDEX notification_pending_idx ON notification (created_at) WHERE published_at IS NULL;

CREATE FUNCTION file_process_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('delivered', 'rejected', 'failed') THEN
        INSERT INTO notification (event_id, file_id, status)
        VALUES (NEW.id::text || '/' || NEW.status, NEW.id, NEW.status)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER file_process_notify AFTER UPDATE OF status ON file_process
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION file_process_notify();

-- What the dashboard (and Grafana) read: views over the status tables, and a role that may
-- read only them. The dashboard connects with `role=sluice_dashboard` and read-only
-- transactions; a separate login for it is `CREATE ROLE ... LOGIN IN ROLE sluice_dashboard`.
-- A call's dataset, kept on the call (from its file, as it is written) so API health per
-- dataset reads one index and joins nothing.
ALTER TABLE api_call ADD COLUMN dataset text;
UPDATE api_call c SET dataset = f.dataset FROM file_process f WHERE f.id = c.file_id;
CREATE FUNCTION api_call_dataset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.dataset IS NULL THEN
        NEW.dataset := (SELECT dataset FROM file_process WHERE id = NEW.file_id);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_call_dataset BEFORE INSERT ON api_call
    FOR EACH ROW EXECUTE FUNCTION api_call_dataset();

-- API health over long windows without sorting every call: per dataset, hour and latency
-- bucket, the calls and their 2xx, rolled up from api_call by the listener's runs
-- (sluice_rollup_api_calls) up to a full hour at least five minutes old. Bucket b holds
-- latencies in [1.1^b - 1, 1.1^(b+1) - 1) ms (-1: no answer), so percentiles read from it
-- are within 5 %; the hours not rolled up yet are read from api_call itself.
CREATE FUNCTION sluice_latency_bucket(ms integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ms IS NULL THEN -1
                ELSE LEAST(127, floor(ln(GREATEST(ms, 0) + 1) / ln(1.1)))::integer END;

CREATE TABLE api_call_hour (
    dataset text NOT NULL,
    hour    timestamptz NOT NULL,
    bucket  integer NOT NULL,
    calls   integer NOT NULL,
    ok      integer NOT NULL,
    PRIMARY KEY (hour, dataset, bucket)
);
-- How far the roll-up has gone (exclusive; whole hours); NULL: not started (it then starts at
-- the first call's hour). Rolled-up hours are final: calls are written with `at = now()`.
CREATE TABLE api_call_rollup (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    until timestamptz
);
INSERT INTO api_call_rollup (until) VALUES (NULL);

CREATE FUNCTION sluice_rollup_api_calls() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    from_at timestamptz;
    to_at   timestamptz := date_trunc('hour', now() - interval '5 minutes');
    rows    integer;
BEGIN
    -- One roller at a time; another caller finds the row locked and leaves.
    PERFORM 1 FROM api_call_rollup FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT COALESCE(until, (SELECT date_trunc('hour', min(at)) FROM api_call))
        INTO from_at FROM api_call_rollup;
    IF from_at IS NULL OR to_at <= from_at THEN
        RETURN 0;
    END IF;
    INSERT INTO api_call_hour (dataset, hour, bucket, calls, ok)
    SELECT COALESCE(dataset, ''), date_trunc('hour', at), sluice_latency_bucket(latency_ms),
           count(*), count(*) FILTER (WHERE http_status BETWEEN 200 AND 299)
    FROM api_call WHERE at >= from_at AND at < to_at
    GROUP BY 1, 2, 3
    ON CONFLICT (hour, dataset, bucket) DO UPDATE
        SET calls = api_call_hour.calls + EXCLUDED.calls, ok = api_call_hour.ok + EXCLUDED.ok;
    GET DIAGNOSTICS rows = ROW_COUNT;
    UPDATE api_call_rollup SET until = to_at;
    RETURN rows;
END
$$;

CREATE VIEW dashboard_api_call_hour AS SELECT dataset, hour, bucket, calls, ok FROM api_call_hour;
CREATE VIEW dashboard_api_call_rollup AS SELECT until FROM api_call_rollup;
-- The last failed call per dataset, without reading every call of the window.
CREATE INDEX api_call_failed_idx ON api_call (dataset, at)
    WHERE http_status IS NULL OR http_status NOT BETWEEN 200 AND 299;

-- `dataset` is '' only for a drop that matched no dataset.
CREATE VIEW dashboard_file AS
SELECT id, dataset, site, status, failed_stage, error,
       source_bucket, source_key,
       regexp_replace(source_key, '^(.*/)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-)?', '') AS name,
       source_size, clean_key, rows_in, rows_out, rows_rejected, rows_unmapped, records,
       records_new, records_changed, records_unchanged, records_missing,
       batches_sent, batches_delivered, attempts, redrives, lease_owner, lease_until,
       replay_of, replay_from, uploaded_by, received_at, updated_at,
       status IN ('delivered', 'rejected', 'failed') AS final
FROM file_process;

CREATE VIEW dashboard_file_event AS
SELECT id, file_id, at, stage, status, detail FROM file_event;

CREATE VIEW dashboard_api_call AS
SELECT id, file_id, dataset, batch_id, attempt, at, http_status, latency_ms,
       response_excerpt, error, COALESCE(http_status BETWEEN 200 AND 299, false) AS ok
FROM api_call;

-- API health over a window: an index-only scan by time.
CREATE INDEX api_call_at_idx ON api_call (at) INCLUDE (dataset, http_status, latency_ms);
-- One file's calls, in order (a file can have thousands).
CREATE INDEX api_call_file_idx ON api_call (file_id, id);
-- The file list, newest first, by dataset, status or site; the overview's window (index-only)
-- and finished files; the oldest file not yet final; the datasets and sites to filter by.
CREATE INDEX file_process_received_idx ON file_process (received_at, id) INCLUDE (dataset, status);
CREATE INDEX file_process_dataset_received_idx ON file_process (dataset, received_at, id);
CREATE INDEX file_process_status_received_idx ON file_process (status, received_at, id);
CREATE INDEX file_process_site_received_idx ON file_process (site, received_at, id)
    WHERE site IS NOT NULL;
CREATE INDEX file_process_final_updated_idx ON file_process (updated_at) INCLUDE (status, records)
    WHERE status IN ('delivered', 'rejected', 'failed');
CREATE INDEX file_process_unfinished_received_idx ON file_process (received_at)
    WHERE status NOT IN ('delivered', 'rejected', 'failed');

-- Text search in file names: a trigram index when pg_trgm can be had (a trusted extension
-- since PostgreSQL 13, on RDS too), in `public` so that every schema shares it; without it
-- the search still works, by scanning.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%): file-name search scans', SQLERRM;
    END;
    BEGIN
        CREATE INDEX file_process_key_trgm_idx ON file_process
            USING gin (source_key public.gin_trgm_ops);
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'no trigram index on file names (%): file-name search scans', SQLERRM;
    END;
END
$$;

DO $$
BEGIN
    BEGIN
        CREATE ROLE sluice_dashboard NOLOGIN;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN
            NULL; -- made by another schema's migration (roles belong to the cluster)
        WHEN insufficient_privilege THEN
            -- The pipeline does not need it: only the dashboard does, and says so.
            RAISE WARNING 'cannot create role sluice_dashboard (%): an administrator can create it '
                          'and grant it USAGE on schema % and SELECT on the dashboard views',
                          SQLERRM, current_schema();
            RETURN;
    END;
    -- So the migrating user (who the dashboard connects as, unless given its own login) may
    -- take the role on.
    BEGIN
        EXECUTE format('GRANT sluice_dashboard TO %I', current_user);
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'could not grant sluice_dashboard to %: %', current_user, SQLERRM;
    END;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO sluice_dashboard', current_schema());
    GRANT SELECT ON dashboard_file, dashboard_file_event, dashboard_api_call,
        dashboard_api_call_hour, dashboard_api_call_rollup TO sluice_dashboard;
END
$$;
