-- Delivering only what changed, for datasets with a record key (README: "Re-uploads").

-- What the API was last sent per key, per dataset and scope (the files that are versions of
-- one another: `name:<original file name>` by default, `site:<site>`, or `dataset`): written
-- when the batch carrying the record got its 2xx, never before. "Seen" means delivered: a
-- re-upload's unchanged records are not written.
CREATE TABLE record_state (
    dataset    text NOT NULL,
    scope      text NOT NULL,
    record_key text NOT NULL,           -- JSON array of the key fields' values
    hash       bytea NOT NULL,          -- SHA-256 of the record's JSON as delivered
    file_id    uuid NOT NULL,           -- the file whose batch delivered it
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, scope, record_key)
);

-- What a file sends, planned once by the transformer's first pass: the record's place in the
-- file (`ordinal`) and its batch (`seq`). A row goes when its batch gets a 2xx (into
-- record_state) or its file fails. An exclusive row is a claim: two files never both send the
-- same key with the same content at the same time.
CREATE TABLE record_plan (
    file_id    uuid NOT NULL REFERENCES file_process (id) ON DELETE CASCADE,
    ordinal    bigint NOT NULL,
    dataset    text NOT NULL,
    scope      text NOT NULL,
    record_key text NOT NULL,
    hash       bytea NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('new', 'changed', 'unchanged', 'deleted')),
    seq        integer,
    exclusive  boolean NOT NULL,
    PRIMARY KEY (file_id, ordinal)
);
CREATE UNIQUE INDEX record_plan_claim ON record_plan (dataset, scope, record_key, hash)
    WHERE exclusive;
CREATE INDEX record_plan_batch ON record_plan (file_id, seq);

-- The keys of a file, in the chunks its first pass read them in: kept for the latest file of
-- each scope, to find the keys the next one no longer has.
CREATE TABLE record_seen (
    file_id uuid NOT NULL REFERENCES file_process (id) ON DELETE CASCADE,
    chunk   integer NOT NULL,
    keys    text[] NOT NULL,
    PRIMARY KEY (file_id, chunk)
);

-- The latest planned file of each scope (same original name, same site, or the dataset).
CREATE TABLE delta_scope (
    dataset    text NOT NULL,
    scope      text NOT NULL,
    file_id    uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, scope)
);

-- A finished plan: the report's delta section. Its presence tells a retried transform to send
-- the plan it has rather than make another.
CREATE TABLE delta_plan (
    file_id    uuid PRIMARY KEY REFERENCES file_process (id) ON DELETE CASCADE,
    report     jsonb NOT NULL,
    planned_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE file_process
    ADD COLUMN records_new bigint,
    ADD COLUMN records_changed bigint,
    ADD COLUMN records_unchanged bigint,
    ADD COLUMN records_missing bigint;

-- A file that fails gives up its claims, so the next upload sends those records again. Its
-- planned rows stay while its plan was finished: batches still on their way write the state
-- when they get a 2xx (and are not sent twice). An unfinished plan sends nothing and goes.
-- Its keys are forgotten unless it is the file its scope compares with next.
CREATE FUNCTION release_record_plan() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM delta_plan WHERE file_id = NEW.id) THEN
        UPDATE record_plan SET exclusive = false WHERE file_id = NEW.id AND exclusive;
    ELSE
        DELETE FROM record_plan WHERE file_id = NEW.id;
    END IF;
    DELETE FROM record_seen s WHERE s.file_id = NEW.id
        AND NOT EXISTS (SELECT 1 FROM delta_scope d WHERE d.file_id = NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER file_process_release_record_plan
    AFTER UPDATE OF status ON file_process
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'rejected') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION release_record_plan();
