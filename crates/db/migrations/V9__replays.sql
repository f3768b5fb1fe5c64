-- Replays (`sluice replay`): a replay is a new run of an earlier file, a new row with its own
-- id, so its batches get their own ids and the earlier run's row, events and API calls stay as
-- they were.
--   replay_of:   the earlier run's file id.
--   replay_from: 'sanitize' (a new copy of the original in quarantine, sanitized again),
--                'transform' (the earlier clean file transformed again), or 'forward' (the
--                earlier clean file's batches that the earlier run did not deliver).
--   replay_skip: for 'forward', what the earlier run had when the replay was made: its batch
--                and record counts and the sequence numbers of its batches with a 2xx, which
--                the replay does not send again. A snapshot, so a retried transform of the
--                replay always skips the same batches.
ALTER TABLE file_process
    ADD COLUMN replay_of   uuid REFERENCES file_process (id),
    ADD COLUMN replay_from text CHECK (replay_from IN ('sanitize', 'transform', 'forward')),
    ADD COLUMN replay_skip jsonb,
    ADD CONSTRAINT file_process_replay_check CHECK ((replay_of IS NULL) = (replay_from IS NULL));

-- A redelivered S3 event still finds its file through the source object; a replay from the
-- transform or forward stage reuses the earlier run's source and is found by its id instead.
ALTER TABLE file_process DROP CONSTRAINT file_process_source_bucket_source_key_source_etag_key;
CREATE UNIQUE INDEX file_process_source_key ON file_process (source_bucket, source_key, source_etag)
    WHERE replay_from IS NULL OR replay_from = 'sanitize';
CREATE INDEX file_process_replay_of_idx ON file_process (replay_of) WHERE replay_of IS NOT NULL;
