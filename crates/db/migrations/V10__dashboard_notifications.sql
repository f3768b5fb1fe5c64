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
CREATE VIEW dashboard_file AS
SELECT id, NULLIF(dataset, '') AS dataset, site, status, failed_stage, error,
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
SELECT c.id, c.file_id, f.dataset, c.batch_id, c.attempt, c.at, c.http_status, c.latency_ms,
       c.response_excerpt, c.error, COALESCE(c.http_status BETWEEN 200 AND 299, false) AS ok
FROM api_call c JOIN file_process f ON f.id = c.file_id;

-- The overview's and API health's windows read api_call by time.
CREATE INDEX api_call_at_idx ON api_call (at);
-- One file's calls, in order (a file can have thousands).
CREATE INDEX api_call_file_idx ON api_call (file_id, id);
-- The file list, newest first, by dataset or status; the overview's window and finished files;
-- the oldest file not yet final.
CREATE INDEX file_process_received_idx ON file_process (received_at, id);
CREATE INDEX file_process_dataset_received_idx ON file_process (dataset, received_at, id);
CREATE INDEX file_process_status_received_idx ON file_process (status, received_at, id);
CREATE INDEX file_process_final_updated_idx ON file_process (updated_at)
    WHERE status IN ('delivered', 'rejected', 'failed');
CREATE INDEX file_process_unfinished_received_idx ON file_process (received_at)
    WHERE status NOT IN ('delivered', 'rejected', 'failed');

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
    GRANT SELECT ON dashboard_file, dashboard_file_event, dashboard_api_call TO sluice_dashboard;
END
$$;
