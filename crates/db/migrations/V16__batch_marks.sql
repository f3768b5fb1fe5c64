-- Each batch's mark the first time it was cut (sluice_core::plan::BatchMark): the ordinal of its
-- first record, its record count, and a hash of its body. A later cut of the same batch id (a
-- take-over, re-drive or resend) must match, or the file fails rather than send other records
-- under that id. First writer wins.
CREATE TABLE batch_mark (
    file_id      uuid   NOT NULL REFERENCES file_process (id) ON DELETE CASCADE,
    seq          int    NOT NULL,
    first_record bigint NOT NULL,
    records      bigint NOT NULL,
    sha256       text   NOT NULL,
    PRIMARY KEY (file_id, seq)
);
