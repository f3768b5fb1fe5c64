-- FTP/SFTP drops the listener picks up. A drop object is registered once per (bucket, key,
-- ETag): a re-upload with new content is a new drop. Its copy into quarantine becomes a file
-- (registered by the sanitizer, `site` from the copy's metadata); a drop whose path matches no
-- dataset, or whose copy keeps failing, becomes a file row of its own, final at once.
ALTER TABLE file_process ADD COLUMN site text;
-- NULL only for a drop whose path matched no dataset (rejected at once, with the reason).
ALTER TABLE file_process ALTER COLUMN dataset DROP NOT NULL;

CREATE TABLE drop_object (
    bucket         text NOT NULL,
    key            text NOT NULL,
    etag           text NOT NULL,
    size           bigint NOT NULL,
    dataset        text,
    site           text,
    -- registered: claimed, not yet copied; copied: in quarantine, after-copy action pending;
    -- done: copied and kept, deleted or archived; unmatched / failed: recorded as a final
    -- file row (`file_id`) with the reason.
    state          text NOT NULL CHECK (state IN ('registered', 'copied', 'done', 'unmatched',
                       'failed')),
    quarantine_key text,
    file_id        uuid,
    error          text,
    lease_owner    text,
    lease_until    timestamptz,
    attempts       integer NOT NULL DEFAULT 0,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key, etag)
);

-- Where the last listener run stopped listing each drop prefix, when it ran out of time; the
-- next run goes on from there instead of from the start.
CREATE TABLE drop_cursor (
    bucket      text NOT NULL,
    prefix      text NOT NULL,
    start_after text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, prefix)
);
