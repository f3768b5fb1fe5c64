//! Finding files that stopped short of a final status, and re-driving them at most a set
//! number of times: what the listener's sweep does with the status store.

use std::time::{Duration, SystemTime};

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::store::parse_status;
use crate::{DbError, Store};

/// A file that is not final and not moving: its lease expired (its worker died), or it has no
/// lease and its status has not changed for longer than the stale time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckFile {
    pub id: Uuid,
    pub dataset: String,
    pub status: FileStatus,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub clean_key: Option<String>,
    /// Re-drives so far.
    pub redrives: i32,
}

/// What to do with a stuck file, decided under its row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Re-send its stage's input: this is re-drive number `n`.
    Go { n: i32 },
    /// It was re-driven `max` times already: it is now `failed` with the reason.
    GaveUp,
    /// Another sweep, or its own stage, moved it since it was listed: leave it.
    Moved,
}

impl Store {
    /// Up to `limit` stuck files, oldest first.
    pub async fn stuck_files(
        &self,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Vec<StuckFile>, DbError> {
        let client = self.db.client().await?;
        let stale_before = SystemTime::now() - stale_after;
        let rows = client
            .query(
                "SELECT id, COALESCE(dataset, ''), status, source_bucket, source_key, source_etag, clean_key,
                        redrives
                 FROM file_process
                 WHERE status NOT IN ('delivered', 'rejected', 'failed')
                   AND (lease_until < now() OR (lease_until IS NULL AND updated_at < $1))
                 ORDER BY updated_at
                 LIMIT $2",
                &[&stale_before, &limit],
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StuckFile {
                    id: r.get(0),
                    dataset: r.get(1),
                    status: parse_status(r.get(2))?,
                    source_bucket: r.get(3),
                    source_key: r.get(4),
                    source_etag: r.get(5),
                    clean_key: r.get(6),
                    redrives: r.get(7),
                })
            })
            .collect()
    }

    /// Decides, once across overlapping sweeps, whether `file` (as listed) is re-driven again
    /// or, after `max_redrives`, failed. A re-drive is a `file_event` with its number; the
    /// expired lease is cleared so the stage can claim the file at once.
    pub async fn redrive(
        &self,
        file: &StuckFile,
        max_redrives: i32,
        why: &str,
    ) -> Result<Redrive, DbError> {
        if file.redrives >= max_redrives {
            let reason = format!(
                "stuck in {} ({why}) after {max_redrives} re-drives: given up",
                file.status
            );
            let failed = self.fail(file.id, Stage::Listener, &reason).await?;
            return Ok(if failed {
                Redrive::GaveUp
            } else {
                Redrive::Moved
            });
        }
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // Only the sweep that still sees the file as it was listed re-drives it.
        let row = tx
            .query_opt(
                "UPDATE file_process SET
                     redrives = redrives + 1, updated_at = now(),
                     lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND status = $2 AND redrives = $3
                   AND (lease_until IS NULL OR lease_until < now())
                 RETURNING redrives",
                &[&file.id, &file.status.as_str(), &file.redrives],
            )
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(Redrive::Moved);
        };
        let n: i32 = row.get(0);
        tx.execute(
            "INSERT INTO file_event (file_id, stage, status, detail) VALUES ($1, $2, $3, $4)",
            &[
                &file.id,
                &Stage::Listener.as_str(),
                &file.status.as_str(),
                &json!({ "redrive": n, "why": why }),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Redrive::Go { n })
    }
}
