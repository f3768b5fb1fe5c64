-- Delta in upload order (README: "Re-uploads: only what changed"). Each file carries when it
-- was uploaded (the quarantine object's LastModified, or the drop's for a listener copy; a
-- replay keeps its earlier run's), and each delivered key the upload time of the file that
-- delivered it: a file's record is sent only if no newer file delivered that key (else it is
-- counted `superseded`), and missing keys are found only by the scope's newest file.
ALTER TABLE file_process
    ADD COLUMN uploaded_at timestamptz,
    ADD COLUMN records_superseded bigint;

-- Keys delivered before this migration count as older than any file.
ALTER TABLE record_state ADD COLUMN uploaded_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE delta_scope ADD COLUMN uploaded_at timestamptz NOT NULL DEFAULT '-infinity';
