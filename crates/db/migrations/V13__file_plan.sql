-- A file's plan (sluice_core::plan::FilePlan): the dataset's config section, its hash, and the
-- run's date range and full flag, fixed the first time the file's transform starts, so a
-- batch id names the same records on every take-over, re-drive and resend. A replay writes its
-- options here when it makes its row. Merged key by key: the first value written wins.
ALTER TABLE file_process ADD COLUMN plan jsonb;
