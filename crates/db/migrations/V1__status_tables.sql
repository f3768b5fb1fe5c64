-- One row per file; a redelivered S3 event finds the same row through the unique source.
CREATE TABLE file_process (
    id                uuid PRIMARY KEY,
    dataset           text NOT NULL,
    source_bucket     text NOT NULL,
    source_key        text NOT NULL,
    source_etag       text NOT NULL,
    source_size       bigint NOT NULL,
    clean_key         text,
    status            text NOT NULL CHECK (status IN ('received', 'sanitizing', 'sanitized',
                          'rejected', 'transforming', 'transformed', 'delivering', 'delivered',
                          'failed')),
    failed_stage      text,
    error             text,
    rows_in           bigint,
    rows_out          bigint,
    rows_rejected     bigint,
    records           bigint,
    batches_sent      integer,
    batches_delivered integer,
    received_at       timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_bucket, source_key, source_etag)
);
CREATE INDEX file_process_status_idx ON file_process (status, updated_at);

-- Append-only history of what happened to each file.
CREATE TABLE file_event (
    id       bigserial PRIMARY KEY,
    file_id  uuid NOT NULL REFERENCES file_process (id),
    at       timestamptz NOT NULL DEFAULT now(),
    stage    text NOT NULL,
    status   text NOT NULL,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX file_event_file_idx ON file_event (file_id, id);

-- One row per delivery attempt.
CREATE TABLE api_call (
    id               bigserial PRIMARY KEY,
    file_id          uuid NOT NULL REFERENCES file_process (id),
    batch_id         text NOT NULL,
    attempt          integer NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    http_status      integer,
    latency_ms       integer,
    response_excerpt text,
    error            text
);
CREATE INDEX api_call_batch_idx ON api_call (batch_id, attempt);
