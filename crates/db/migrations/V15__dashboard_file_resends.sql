-- The dashboard's file view gains what V12 and V14 added: idle re-sends, records superseded
-- by a newer upload, and the upload time. Columns are appended: CREATE OR REPLACE VIEW keeps
-- the ones before, and the dashboard role's grant stays.
CREATE OR REPLACE VIEW dashboard_file AS
SELECT id, dataset, site, status, failed_stage, error,
       source_bucket, source_key,
       regexp_replace(source_key, '^(.*/)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-)?', '') AS name,
       source_size, clean_key, rows_in, rows_out, rows_rejected, rows_unmapped, records,
       records_new, records_changed, records_unchanged, records_missing,
       batches_sent, batches_delivered, attempts, redrives, lease_owner, lease_until,
       replay_of, replay_from, uploaded_by, received_at, updated_at,
       status IN ('delivered', 'rejected', 'failed') AS final,
       resends, records_superseded, uploaded_at
FROM file_process;
