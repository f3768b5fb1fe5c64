//! Reading and writing file status, events and API calls.

use serde_json::Value;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::{
    file_id, EventRow, FileRow, NewFile, Registered, RowCounts, TransformCounts,
};
use uuid::Uuid;

use crate::{Db, DbError};

/// The columns [`file_row`] reads, in its order (a macro, so statements can be literals).
macro_rules! file_columns {
    () => {
        "id, dataset, source_bucket, source_key, source_etag, source_size, clean_key, status,
         failed_stage, error, rows_in, rows_out, rows_rejected, received_at, updated_at,
         records, batches_sent, rows_unmapped, batches_delivered, site, records_new,
         records_changed, records_unchanged, records_missing, replay_of, replay_from,
         uploaded_by, records_superseded, uploaded_at, plan->>'config_version',
         plan->>'config'"
    };
}
pub(crate) const FILE_COLUMNS: &str = file_columns!();
const SELECT_FILE: &str = concat!(
    "SELECT ",
    file_columns!(),
    " FROM file_process WHERE id = $1"
);

pub(crate) fn file_row(r: &tokio_postgres::Row) -> Result<FileRow, DbError> {
    Ok(FileRow {
        id: r.get(0),
        dataset: r.get(1),
        source_bucket: r.get(2),
        source_key: r.get(3),
        source_etag: r.get(4),
        source_size: r.get(5),
        clean_key: r.get(6),
        status: parse_status(r.get(7))?,
        failed_stage: r.get(8),
        error: r.get(9),
        rows_in: r.get(10),
        rows_out: r.get(11),
        rows_rejected: r.get(12),
        received_at: r.get(13),
        updated_at: r.get(14),
        records: r.get(15),
        batches_sent: r.get(16),
        rows_unmapped: r.get(17),
        batches_delivered: r.get(18),
        site: r.get(19),
        records_new: r.get(20),
        records_changed: r.get(21),
        records_unchanged: r.get(22),
        records_missing: r.get(23),
        replay_of: r.get(24),
        replay_from: r.get(25),
        uploaded_by: r.get(26),
        records_superseded: r.get(27),
        uploaded_at: r.get(28),
        config_version: r.get(29),
        config_digest: r.get(30),
    })
}

/// Which files [`Store::files`] lists.
#[derive(Debug, Clone, Default)]
pub struct FileQuery<'a> {
    pub dataset: Option<&'a str>,
    pub status: Option<FileStatus>,
    /// Updated at or after.
    pub since: Option<std::time::SystemTime>,
    pub limit: i64,
}

/// The status store. Every write that moves a status is guarded so that it only moves
/// forward (see [`FileStatus::may_become`]) and is recorded in `file_event` in the same
/// transaction.
pub struct Store {
    pub(crate) db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Registers a file as `received`, or finds it if it is already known.
    pub async fn register(&self, file: &NewFile<'_>) -> Result<Registered, DbError> {
        let id = file_id(file.bucket, file.key, file.etag);
        let client = self.db.client().await?;
        // A replay's metadata names the earlier run; an id this store does not know is not
        // kept (the metadata is the uploader's word, not a reference to trust). Any conflict
        // is this file already registered: of two inserts at once, the second may meet the
        // first's primary key (the id is the source's) before the source's unique index, so
        // the conflict has no target.
        let inserted = client
            .query_opt(
                "WITH earlier AS (
                     SELECT id, COALESCE(uploaded_at, received_at) AS uploaded_at
                     FROM file_process WHERE id = $8)
                 INSERT INTO file_process
                     (id, dataset, source_bucket, source_key, source_etag, source_size, site,
                      status, replay_of, replay_from, uploaded_by, uploaded_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, 'received', e.id,
                        CASE WHEN e.id IS NULL THEN NULL ELSE 'sanitize' END, $9,
                        COALESCE(e.uploaded_at, $10, now())
                 FROM (SELECT 1) one LEFT JOIN earlier e ON true
                 ON CONFLICT DO NOTHING
                 RETURNING id, replay_of",
                &[
                    &id,
                    &file.dataset,
                    &file.bucket,
                    &file.key,
                    &file.etag,
                    &file.size,
                    &file.site,
                    &file.replay_of,
                    &file.uploaded_by,
                    &file.uploaded_at,
                ],
            )
            .await?;
        if let Some(row) = &inserted {
            let replay_of: Option<Uuid> = row.get(1);
            let mut detail = serde_json::json!({ "bucket": file.bucket, "key": file.key });
            if let Some(of) = replay_of {
                detail["replay_of"] = serde_json::json!(of);
            }
            client
                .execute(
                    "INSERT INTO file_event (file_id, stage, status, detail)
                     VALUES ($1, 'listener', 'received', $2)",
                    &[&id, &detail],
                )
                .await?;
        }
        let row = client
            .query_one(
                "SELECT id, status FROM file_process
                 WHERE source_bucket = $1 AND source_key = $2 AND source_etag = $3
                   AND (replay_from IS NULL OR replay_from = 'sanitize')",
                &[&file.bucket, &file.key, &file.etag],
            )
            .await?;
        Ok(Registered {
            id: row.get(0),
            created: inserted.is_some(),
            status: parse_status(row.get(1))?,
        })
    }

    /// Moves the file to `to` if that is forward from where it is; returns whether it moved.
    /// `detail` goes into the event.
    pub async fn advance(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        detail: Value,
    ) -> Result<bool, DbError> {
        self.transition(id, stage, to, None, None, detail).await
    }

    /// Records a sanitize outcome (`sanitized` or `rejected`) with its counts and clean key.
    pub async fn finish_sanitize(
        &self,
        id: Uuid,
        to: FileStatus,
        clean_key: Option<&str>,
        counts: RowCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<bool, DbError> {
        let update = Extra::Sanitize {
            clean_key,
            counts,
            reason,
        };
        self.transition(id, Stage::Sanitizer, to, Some(update), None, detail)
            .await
    }

    /// Records a transform outcome: `transformed` with its record and batch counts, or
    /// `failed` with the reason (too many rows could not be mapped).
    pub async fn finish_transform(
        &self,
        id: Uuid,
        to: FileStatus,
        counts: TransformCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<bool, DbError> {
        let update = Extra::Transform { counts, reason };
        self.transition(id, Stage::Transformer, to, Some(update), None, detail)
            .await
    }

    /// Marks the file failed at `stage` with `error`.
    pub async fn fail(&self, id: Uuid, stage: Stage, error: &str) -> Result<bool, DbError> {
        let detail = serde_json::json!({ "error": error });
        self.transition(id, stage, FileStatus::Failed, None, Some(error), detail)
            .await
    }

    /// Notes an error that will be retried, without moving the status: the row shows it and
    /// the event history keeps it. A file in a final status keeps its error: a late, transient
    /// error from a duplicate worker never overwrites it.
    pub async fn note_error(&self, id: Uuid, stage: Stage, error: &str) -> Result<(), DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE file_process SET error = $2, updated_at = now()
                 WHERE id = $1 AND status NOT IN ('delivered', 'rejected', 'failed')
                 RETURNING status",
                &[&id, &error],
            )
            .await?;
        if let Some(row) = row {
            let status: String = row.get(0);
            tx.execute(
                "INSERT INTO file_event (file_id, stage, status, detail) VALUES ($1, $2, $3, $4)",
                &[
                    &id,
                    &stage.as_str(),
                    &status,
                    &serde_json::json!({ "error": error, "retry": true }),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that `stage` dropped a late message (`what`) about file `id`, which is final:
    /// an event with the file's status, and nothing else changes.
    pub async fn note_dropped(&self, id: Uuid, stage: Stage, what: &str) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "INSERT INTO file_event (file_id, stage, status, detail)
                 SELECT id, $2, status, $3 FROM file_process
                 WHERE id = $1 AND status IN ('delivered', 'rejected', 'failed')",
                &[
                    &id,
                    &stage.as_str(),
                    &serde_json::json!({ "dropped": what, "why": "the file is final" }),
                ],
            )
            .await?;
        Ok(())
    }

    /// Fixes the file's plan: the keys of `proposed` its plan lacks are added, the others
    /// kept (jsonb `||` lets the right-hand side win). Returns the plan now on the row.
    pub async fn fix_plan(&self, id: Uuid, proposed: &Value) -> Result<Option<Value>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "UPDATE file_process SET plan = $2::jsonb || COALESCE(plan, '{}'::jsonb)
                 WHERE id = $1 RETURNING plan",
                &[&id, proposed],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records batch marks (`batch_mark`), first writer wins per batch; returns the marks
    /// now recorded for the batches of `marks` (`None` when the file has no row).
    pub async fn mark_batches(&self, id: Uuid, marks: &Value) -> Result<Option<Value>, DbError> {
        let client = self.db.client().await?;
        if client
            .query_opt("SELECT 1 FROM file_process WHERE id = $1", &[&id])
            .await?
            .is_none()
        {
            return Ok(None);
        }
        // Two statements: a row a concurrent cut inserted is invisible to the first one's
        // snapshot (ON CONFLICT waits for it, then skips it), and visible to the second's.
        client
            .execute(
                "INSERT INTO batch_mark (file_id, seq, first_record, records, sha256)
                 SELECT $1, key::int, (value->>'first')::bigint, (value->>'records')::bigint,
                        value->>'sha256'
                 FROM jsonb_each($2::jsonb)
                 ON CONFLICT (file_id, seq) DO NOTHING",
                &[&id, marks],
            )
            .await?;
        let row = client
            .query_one(
                "SELECT COALESCE(jsonb_object_agg(seq::text, jsonb_build_object(
                            'first', first_record, 'records', records, 'sha256', sha256)),
                        '{}'::jsonb)
                 FROM batch_mark
                 WHERE file_id = $1 AND seq::text IN (SELECT jsonb_object_keys($2::jsonb))",
                &[&id, marks],
            )
            .await?;
        Ok(Some(row.get(0)))
    }

    async fn transition(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        extra: Option<Extra<'_>>,
        error: Option<&str>,
        detail: Value,
    ) -> Result<bool, DbError> {
        let from: Vec<&str> = to
            .predecessors()
            .into_iter()
            .map(FileStatus::as_str)
            .collect();
        let failed_stage = (to == FileStatus::Failed).then(|| stage.as_str());
        let (clean_key, counts, reason, transform) = match extra {
            Some(Extra::Sanitize {
                clean_key,
                counts,
                reason,
            }) => (clean_key, Some(counts), reason, None),
            Some(Extra::Transform { counts, reason }) => (None, None, reason, Some(counts)),
            None => (None, None, None, None),
        };
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE file_process SET
                     status = $2,
                     updated_at = now(),
                     lease_owner = NULL,
                     lease_until = NULL,
                     failed_stage = COALESCE($3, failed_stage),
                     error = CASE WHEN $2 = 'failed' OR $2 = 'rejected' THEN COALESCE($4, $7)
                                  ELSE NULL END,
                     clean_key = COALESCE($5, clean_key),
                     rows_in = COALESCE($8, rows_in),
                     rows_out = COALESCE($9, rows_out),
                     rows_rejected = COALESCE($10, rows_rejected),
                     records = COALESCE($11, records),
                     batches_sent = COALESCE($12, batches_sent),
                     rows_unmapped = COALESCE($13, rows_unmapped)
                 WHERE id = $1 AND status = ANY($6)",
                &[
                    &id,
                    &to.as_str(),
                    &failed_stage,
                    &error,
                    &clean_key,
                    &from,
                    &reason,
                    &counts.map(|c| c.rows_in),
                    &counts.map(|c| c.rows_out),
                    &counts.map(|c| c.rows_rejected),
                    &transform.map(|t| t.records),
                    &transform.map(|t| t.batches),
                    &transform.map(|t| t.rows_unmapped),
                ],
            )
            .await?
            == 1;
        if moved {
            tx.execute(
                "INSERT INTO file_event (file_id, stage, status, detail) VALUES ($1, $2, $3, $4)",
                &[&id, &stage.as_str(), &to.as_str(), &detail],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Up to `limit` file ids that start with `hex` (hex digits, no dashes, at most 32), in
    /// order: what a short id names. A range on the primary key, so it reads no more rows
    /// than it returns.
    pub async fn ids_starting_with(&self, hex: &str, limit: i64) -> Result<Vec<Uuid>, DbError> {
        let hex = hex.to_ascii_lowercase();
        let bound = |fill: char| {
            let padded: String = hex
                .chars()
                .chain(std::iter::repeat(fill))
                .take(32)
                .collect();
            Uuid::parse_str(&padded)
        };
        let (Ok(low), Ok(high)) = (bound('0'), bound('f')) else {
            return Ok(Vec::new());
        };
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT id FROM file_process WHERE id BETWEEN $1 AND $2 ORDER BY id LIMIT $3",
                &[&low, &high, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The file's row, if there is one.
    pub async fn file(&self, id: Uuid) -> Result<Option<FileRow>, DbError> {
        let (client, select) = self.db.prepared(SELECT_FILE).await?;
        let row = client.query_opt(&select, &[&id]).await?;
        row.as_ref().map(file_row).transpose()
    }

    /// Files matching `query`, most recently updated first.
    pub async fn files(&self, query: &FileQuery<'_>) -> Result<Vec<FileRow>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {FILE_COLUMNS} FROM file_process
                     WHERE ($1::text IS NULL OR dataset = $1)
                       AND ($2::text IS NULL OR status = $2)
                       AND ($3::timestamptz IS NULL OR updated_at >= $3)
                     ORDER BY updated_at DESC, id
                     LIMIT $4"
                ),
                &[
                    &query.dataset,
                    &query.status.map(|s| s.as_str()),
                    &query.since,
                    &query.limit,
                ],
            )
            .await?;
        rows.iter().map(file_row).collect()
    }

    /// The file's event history, oldest first.
    pub async fn events(&self, id: Uuid) -> Result<Vec<EventRow>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT stage, status, detail, at FROM file_event WHERE file_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(EventRow {
                    stage: r.get(0),
                    status: parse_status(r.get(1))?,
                    detail: r.get(2),
                    at: r.get(3),
                })
            })
            .collect()
    }
}

enum Extra<'a> {
    Sanitize {
        clean_key: Option<&'a str>,
        counts: RowCounts,
        reason: Option<&'a str>,
    },
    Transform {
        counts: TransformCounts,
        reason: Option<&'a str>,
    },
}

pub(crate) fn parse_status(name: &str) -> Result<FileStatus, DbError> {
    name.parse()
        .map_err(|e: sluice_core::status::UnknownStatus| DbError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_is_stable_per_object_version_and_ignores_etag_quotes() {
        let a = file_id("q", "incoming/orders/a.csv", "\"abc\"");
        assert_eq!(a, file_id("q", "incoming/orders/a.csv", "abc"));
        assert_ne!(a, file_id("q", "incoming/orders/a.csv", "abd"));
        assert_ne!(a, file_id("q", "incoming/orders/b.csv", "abc"));
    }
}
