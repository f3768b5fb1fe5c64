-- Work leases: a stage claims a file (the forwarder a batch) with one conditional UPDATE that
-- sets the owner and expiry only if the status is the expected one and no live lease exists.
ALTER TABLE file_process
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN attempts    integer NOT NULL DEFAULT 0;
CREATE INDEX file_process_lease_idx ON file_process (lease_until)
    WHERE lease_until IS NOT NULL;

CREATE TABLE batch_claim (
    batch_id    text PRIMARY KEY,
    file_id     uuid NOT NULL REFERENCES file_process (id),
    lease_owner text,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0
);
