//! FTP/SFTP drops in the status store: each drop object (bucket, key, ETag) is registered once
//! and claimed by one listener run at a time while it is copied into quarantine; a drop that
//! cannot become a file (no dataset takes its path, or its copy keeps failing) becomes a final
//! file row with the reason, so it is seen and not silently ignored.

use std::collections::HashSet;

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::{DbError, Store};
use sluice_stages::ports::file_id;
use sluice_stages::ports::Lease;

/// An object in the drop bucket, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropObject {
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: i64,
}

/// What claiming a drop found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropClaim {
    /// First seen: registered now, to be copied to this quarantine key.
    Registered { quarantine_key: String },
    /// Registered by an earlier run that did not finish (its lease expired): carry on from
    /// where it stopped, to the quarantine key it chose.
    Resumed {
        copied: bool,
        quarantine_key: String,
        attempts: i32,
    },
    /// Another run holds it now, or it is finished.
    Taken,
}

/// The listing position a run stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropCursor {
    pub start_after: String,
}

impl Store {
    /// Of `keys` (one listing page of `bucket`), the (key, ETag) pairs already finished with:
    /// copied and dealt with, or recorded as unmatched or failed. One round trip per page.
    pub async fn finished_drops(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<HashSet<(String, String)>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT key, etag FROM drop_object
                 WHERE bucket = $1 AND key = ANY($2) AND state IN ('done', 'unmatched', 'failed')",
                &[&bucket, &keys],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Registers `drop` for `dataset` exactly once and claims it for this run; or takes over
    /// an unfinished one whose run's lease expired. `quarantine_key` is used only when the
    /// drop is new, so every retry copies to the same key.
    pub async fn claim_drop(
        &self,
        drop: &DropObject,
        dataset: &str,
        site: Option<&str>,
        quarantine_key: &str,
        lease: &Lease,
    ) -> Result<DropClaim, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO drop_object AS d
                     (bucket, key, etag, size, dataset, site, state, quarantine_key,
                      lease_owner, lease_until, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, 'registered', $7, $8, $9, 1)
                 ON CONFLICT (bucket, key, etag) DO UPDATE SET
                     lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until,
                     attempts = d.attempts + 1, updated_at = now()
                 WHERE d.state IN ('registered', 'copied')
                   AND (d.lease_until IS NULL OR d.lease_until < now())
                 RETURNING (xmax = 0) AS inserted, state, quarantine_key, attempts",
                &[
                    &drop.bucket,
                    &drop.key,
                    &drop.etag,
                    &drop.size,
                    &dataset,
                    &site,
                    &quarantine_key,
                    &lease.owner,
                    &lease.until,
                ],
            )
            .await?;
        Ok(match row {
            None => DropClaim::Taken,
            Some(row) if row.get::<_, bool>(0) => DropClaim::Registered {
                quarantine_key: row.get(2),
            },
            Some(row) => DropClaim::Resumed {
                copied: row.get::<_, String>(1) == "copied",
                quarantine_key: row.get(2),
                attempts: row.get(3),
            },
        })
    }

    /// The drop's copy is in quarantine as file `file_id`; the after-copy action is next.
    pub async fn drop_copied(&self, drop: &DropObject, file_id: Uuid) -> Result<(), DbError> {
        self.set_drop_state(drop, "copied", Some(file_id), None)
            .await
    }

    /// The drop is copied and kept, deleted or archived: finished, lease released.
    pub async fn drop_done(&self, drop: &DropObject) -> Result<(), DbError> {
        self.set_drop_state(drop, "done", None, None).await
    }

    /// Notes why this run's copy failed and releases the claim, so a later run retries it.
    pub async fn drop_retry(&self, drop: &DropObject, error: &str) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE drop_object SET error = $4, lease_owner = NULL, lease_until = NULL,
                     updated_at = now()
                 WHERE bucket = $1 AND key = $2 AND etag = $3",
                &[&drop.bucket, &drop.key, &drop.etag, &error],
            )
            .await?;
        Ok(())
    }

    /// Records a drop no dataset takes as a file `rejected` with `reason`, once: returns
    /// false when an earlier run already did.
    pub async fn drop_unmatched(&self, drop: &DropObject, reason: &str) -> Result<bool, DbError> {
        self.drop_final(drop, None, None, FileStatus::Rejected, reason)
            .await
    }

    /// Gives up a drop whose copy kept failing: a file `failed` with `reason`, once.
    pub async fn drop_failed(
        &self,
        drop: &DropObject,
        dataset: &str,
        site: Option<&str>,
        reason: &str,
    ) -> Result<bool, DbError> {
        self.drop_final(drop, Some(dataset), site, FileStatus::Failed, reason)
            .await
    }

    /// Where the last run that ran out of time stopped listing `prefix`.
    pub async fn drop_cursor(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<DropCursor>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT start_after FROM drop_cursor WHERE bucket = $1 AND prefix = $2",
                &[&bucket, &prefix],
            )
            .await?;
        Ok(row.map(|r| DropCursor {
            start_after: r.get(0),
        }))
    }

    /// Saves where this run stopped listing `prefix`, or clears it when the listing reached
    /// the end (the next run starts from the beginning, where new drops may have landed).
    pub async fn save_drop_cursor(
        &self,
        bucket: &str,
        prefix: &str,
        cursor: Option<&DropCursor>,
    ) -> Result<(), DbError> {
        let client = self.db.client().await?;
        match cursor {
            Some(cursor) => {
                client
                    .execute(
                        "INSERT INTO drop_cursor (bucket, prefix, start_after) VALUES ($1, $2, $3)
                         ON CONFLICT (bucket, prefix) DO UPDATE SET
                             start_after = EXCLUDED.start_after, updated_at = now()",
                        &[&bucket, &prefix, &cursor.start_after],
                    )
                    .await?
            }
            None => {
                client
                    .execute(
                        "DELETE FROM drop_cursor WHERE bucket = $1 AND prefix = $2",
                        &[&bucket, &prefix],
                    )
                    .await?
            }
        };
        Ok(())
    }

    async fn set_drop_state(
        &self,
        drop: &DropObject,
        state: &str,
        file: Option<Uuid>,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE drop_object SET state = $4, file_id = COALESCE($5, file_id),
                     error = $6, updated_at = now(),
                     lease_owner = CASE WHEN $4 = 'done' THEN NULL ELSE lease_owner END,
                     lease_until = CASE WHEN $4 = 'done' THEN NULL ELSE lease_until END
                 WHERE bucket = $1 AND key = $2 AND etag = $3",
                &[&drop.bucket, &drop.key, &drop.etag, &state, &file, &error],
            )
            .await?;
        Ok(())
    }

    /// One transaction: the drop row final, and a file row of its own, `received` then at
    /// once `status` with the reason (the guard lets a file start only as `received`).
    async fn drop_final(
        &self,
        drop: &DropObject,
        dataset: Option<&str>,
        site: Option<&str>,
        status: FileStatus,
        reason: &str,
    ) -> Result<bool, DbError> {
        let id = file_id(&drop.bucket, &drop.key, &drop.etag);
        let state = match status {
            FileStatus::Rejected => "unmatched",
            _ => "failed",
        };
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let recorded = tx
            .execute(
                "INSERT INTO drop_object AS d
                     (bucket, key, etag, size, dataset, site, state, file_id, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (bucket, key, etag) DO UPDATE SET
                     state = EXCLUDED.state, file_id = EXCLUDED.file_id, error = EXCLUDED.error,
                     lease_owner = NULL, lease_until = NULL, updated_at = now()
                 WHERE d.state IN ('registered', 'copied')",
                &[
                    &drop.bucket,
                    &drop.key,
                    &drop.etag,
                    &drop.size,
                    &dataset,
                    &site,
                    &state,
                    &id,
                    &reason,
                ],
            )
            .await?
            == 1;
        if !recorded {
            tx.commit().await?;
            return Ok(false);
        }
        let inserted = tx
            .execute(
                "INSERT INTO file_process
                     (id, dataset, site, source_bucket, source_key, source_etag, source_size,
                      status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'received')
                 ON CONFLICT DO NOTHING",
                &[
                    &id,
                    &dataset,
                    &site,
                    &drop.bucket,
                    &drop.key,
                    &drop.etag,
                    &drop.size,
                ],
            )
            .await?;
        if inserted == 1 {
            tx.execute(
                "UPDATE file_process SET status = $2, failed_stage = 'listener', error = $3,
                     updated_at = now()
                 WHERE id = $1",
                &[&id, &status.as_str(), &reason],
            )
            .await?;
            tx.execute(
                "INSERT INTO file_event (file_id, stage, status, detail) VALUES
                     ($1, $2, 'received', $4), ($1, $2, $3, $5)",
                &[
                    &id,
                    &Stage::Listener.as_str(),
                    &status.as_str(),
                    &json!({ "bucket": drop.bucket, "key": drop.key }),
                    &json!({ "error": reason }),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
