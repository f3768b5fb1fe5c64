-- Rows the transformer could not map (listed in reports/<file id>/transform.json).
ALTER TABLE file_process ADD COLUMN rows_unmapped bigint;
