//! `api_call`: one row per attempt to deliver a batch, and what they add up to for a file.

use std::time::SystemTime;

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::{ApiCall, BatchHistory, CallLog};
use uuid::Uuid;

use crate::store::parse_status;
use crate::{DbError, Store};

/// One attempt recorded, in one statement. A 2xx ends the batch's claim (whoever claims the
/// batch next finds it delivered); the batch's first 2xx also marks the claim delivered and
/// counts it on the file, returning the file's status and counts. The mark makes the count
/// exact under duplicates: of two first 2xx at once, the second waits for the first's row
/// lock, then finds `delivered_at` set and counts nothing. (A 2xx already on record without
/// the mark, from before the mark existed, was counted by a recount: it is not counted again,
/// and the claim is still released. `first` and `again` never touch the same row.)
const RECORD_CALL: &str = "WITH call AS (
         INSERT INTO api_call (file_id, batch_id, attempt, http_status, latency_ms,
                               response_excerpt, error, simulated, endpoint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)),
     first AS (
         UPDATE batch_claim SET lease_owner = NULL, lease_until = NULL, delivered_at = now()
         WHERE batch_id = $2 AND $4 BETWEEN 200 AND 299 AND delivered_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM api_call a
                           WHERE a.batch_id = $2 AND a.http_status BETWEEN 200 AND 299)
         RETURNING file_id),
     again AS (
         UPDATE batch_claim SET lease_owner = NULL, lease_until = NULL
         WHERE batch_id = $2 AND $4 BETWEEN 200 AND 299
           AND (delivered_at IS NOT NULL
                OR EXISTS (SELECT 1 FROM api_call a
                           WHERE a.batch_id = $2 AND a.http_status BETWEEN 200 AND 299)))
     UPDATE file_process f SET
         batches_delivered = COALESCE(f.batches_delivered, 0) + 1,
         updated_at = now()
     FROM first WHERE f.id = first.file_id
     RETURNING f.status, f.batches_sent, f.batches_delivered";

/// An `api_call` row.
#[derive(Debug, Clone)]
pub struct ApiCallRow {
    pub file_id: Uuid,
    pub batch_id: String,
    pub attempt: i32,
    pub at: SystemTime,
    pub http_status: Option<i32>,
    pub latency_ms: Option<i32>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// Where it went (scheme, host, port, path); `None` for calls from before V18.
    pub endpoint: Option<String>,
}

impl Store {
    /// Records one attempt. A batch's first 2xx also settles the file's delivery: see
    /// [`RECORD_CALL`]. Returns the file's status after it then, `None` otherwise (the
    /// caller settles with [`Self::settle_delivery`] if it needs to).
    pub async fn record_call(&self, call: &ApiCall<'_>) -> Result<Option<FileStatus>, DbError> {
        let (client, record) = self.db.prepared(RECORD_CALL).await?;
        let counted = client
            .query_opt(
                &record,
                &[
                    &call.file_id,
                    &call.batch_id,
                    &call.attempt,
                    &call.http_status,
                    &call.latency_ms,
                    &call.response_excerpt,
                    &call.error,
                    &call.simulated,
                    &call.endpoint,
                ],
            )
            .await?;
        drop(client);
        let Some(row) = counted else {
            return Ok(None);
        };
        let status = parse_status(row.get(0))?;
        let (sent, delivered): (Option<i32>, i32) = (row.get(1), row.get(2));
        self.move_on_delivery(call.file_id, status, sent, delivered)
            .await
            .map(Some)
    }

    /// The ids of the file's batches that have a 2xx on record.
    pub async fn delivered_batches(
        &self,
        file_id: Uuid,
    ) -> Result<std::collections::HashSet<String>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT batch_id FROM api_call
                 WHERE file_id = $1 AND http_status BETWEEN 200 AND 299",
                &[&file_id],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// The batch's attempts so far and whether it is delivered.
    pub async fn batch_history(&self, batch_id: &str) -> Result<BatchHistory, DbError> {
        let (client, history) = self
            .db
            .prepared(
                "SELECT COALESCE(max(attempt), 0),
                        COALESCE(bool_or(http_status BETWEEN 200 AND 299), false)
                 FROM api_call WHERE batch_id = $1",
            )
            .await?;
        let row = client.query_one(&history, &[&batch_id]).await?;
        Ok(BatchHistory {
            attempts: row.get(0),
            delivered: row.get(1),
        })
    }

    /// Every attempt for the file's batches, in the order they were recorded.
    pub async fn calls(&self, file_id: Uuid) -> Result<Vec<ApiCallRow>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT file_id, batch_id, attempt, at, http_status, latency_ms,
                        response_excerpt, error, endpoint
                 FROM api_call WHERE file_id = $1 ORDER BY id",
                &[&file_id],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ApiCallRow {
                file_id: r.get(0),
                batch_id: r.get(1),
                attempt: r.get(2),
                at: r.get(3),
                http_status: r.get(4),
                latency_ms: r.get(5),
                response_excerpt: r.get(6),
                error: r.get(7),
                endpoint: r.get(8),
            })
            .collect())
    }

    /// Rolls up whole hours of calls for API health (`api_call_hour`); returns the rows
    /// written. A second caller at the same moment does nothing.
    pub async fn rollup_api_calls(&self) -> Result<i32, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_one("SELECT sluice_rollup_api_calls()", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Brings the file's delivery bookkeeping up to date with its calls: `batches_delivered`,
    /// and the status: `delivering` once a batch is through, `delivered` once all of them are.
    ///
    /// Only a file the transformer has finished (`transformed`, `delivering`) moves: before
    /// that the batch count is not known, and the transformer settles the file itself when
    /// it records it. A failed file keeps its status; its count still shows what got through.
    /// Returns the status after.
    pub async fn settle_delivery(&self, id: Uuid) -> Result<FileStatus, DbError> {
        // One statement, no transaction. The count only grows: a recount whose snapshot
        // missed a batch that `record_call` counted meanwhile must not lower it (the row is
        // re-read once that lock is released). A status move (once or twice per file) goes
        // through the guarded transition, which moves only from where the move is allowed,
        // so two settles at once cannot both move the file.
        let (client, recount) = self
            .db
            .prepared(
                "WITH d AS (
                     SELECT count(DISTINCT batch_id)::integer AS n FROM api_call
                     WHERE file_id = $1 AND http_status BETWEEN 200 AND 299)
                 UPDATE file_process f SET
                     batches_delivered = GREATEST(f.batches_delivered, d.n),
                     updated_at = CASE WHEN f.batches_delivered IS DISTINCT FROM
                                            GREATEST(f.batches_delivered, d.n)
                                       THEN now() ELSE f.updated_at END
                 FROM d WHERE f.id = $1
                 RETURNING f.status, f.batches_sent, f.batches_delivered",
            )
            .await?;
        let row = client.query_one(&recount, &[&id]).await?;
        drop(client);
        let status = parse_status(row.get(0))?;
        self.move_on_delivery(id, status, row.get(1), row.get(2))
            .await
    }

    /// Moves the file on once its count of delivered batches says so: `delivering` after the
    /// first, `delivered` after the last. Returns the status after.
    async fn move_on_delivery(
        &self,
        id: Uuid,
        status: FileStatus,
        sent: Option<i32>,
        delivered: i32,
    ) -> Result<FileStatus, DbError> {
        let next = match (status, sent) {
            (FileStatus::Transformed | FileStatus::Delivering, Some(sent)) if delivered >= sent => {
                FileStatus::Delivered
            }
            (FileStatus::Transformed, Some(_)) if delivered > 0 => FileStatus::Delivering,
            _ => return Ok(status),
        };
        let detail = json!({ "batches": sent, "batches_delivered": delivered });
        if self.advance(id, Stage::Forwarder, next, detail).await? {
            return Ok(next);
        }
        // Another settle moved it first: say where it is now.
        Ok(self.file(id).await?.map(|f| f.status).unwrap_or(status))
    }
}

impl CallLog for Store {
    fn record_call(
        &self,
        call: &ApiCall<'_>,
    ) -> impl std::future::Future<Output = Result<Option<FileStatus>, DbError>> + Send {
        Store::record_call(self, call)
    }
}
