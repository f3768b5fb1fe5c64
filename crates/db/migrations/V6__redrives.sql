-- How many times the listener has re-driven a stuck file; past `max_redrives` it fails.
ALTER TABLE file_process ADD COLUMN redrives integer NOT NULL DEFAULT 0;
CREATE INDEX file_process_unfinished_idx ON file_process (updated_at)
    WHERE status NOT IN ('delivered', 'rejected', 'failed');
