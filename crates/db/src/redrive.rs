//! Finding files that stopped short of a final status, and re-driving them: what the
//! listener's sweep does with the status store.
//!
//! Two kinds of stuck, told apart because only one of them means something died:
//! - **lease lapsed**: a worker claimed the file and its lease ran out, so the worker died
//!   mid-stage. Re-driven at most `max_redrives` times, then failed.
//! - **idle**: no worker holds the file and it has not moved for the stale time. Its stage's
//!   input is waiting in a queue (a backlog), or was lost. Its input is sent again (the
//!   stage's claims make a duplicate a no-op), with a spacing that doubles with each re-send
//!   (stale, 2 x stale, 4 x stale, ... up to 64 x stale), and it is never failed for waiting:
//!   a message that keeps failing fails its file through the stage's own last-delivery rule.
//!
//! Every decision re-checks, in the statement that acts on it, what the listing saw: a file
//! that moved, was claimed or was re-driven by an overlapping sweep in between is left alone.

use std::time::Duration;

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::store::parse_status;
use crate::{DbError, Store};

/// Why a file is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// Its worker's lease lapsed: the worker died. Counts toward `max_redrives`.
    LeaseLapsed,
    /// No worker holds it and it has not moved for the stale time (times the spacing of its
    /// re-sends so far): its input waits in a queue, or was lost. Never failed for this.
    Idle,
}

impl Stuck {
    pub fn as_str(self) -> &'static str {
        match self {
            Stuck::LeaseLapsed => "lease lapsed",
            Stuck::Idle => "idle",
        }
    }
}

/// A file that is not final and not moving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckFile {
    pub id: Uuid,
    pub dataset: String,
    pub status: FileStatus,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub clean_key: Option<String>,
    pub stuck: Stuck,
    /// Re-drives after lapsed leases so far.
    pub redrives: i32,
    /// Re-sends of an idle file's input so far.
    pub resends: i32,
}

/// What to do with a stuck file, decided in the statement that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Its worker died: re-send its stage's input; this is re-drive number `n`.
    Go { n: i32 },
    /// It is idle: re-send its stage's input; this is re-send number `n`.
    Resend { n: i32 },
    /// Its worker died after `max` re-drives already: it is now `failed` with the reason.
    GaveUp,
    /// Another sweep, or its own stage, moved or claimed it since it was listed: leave it.
    Moved,
}

/// Idle re-sends are spaced `stale x 2^min(resends, MAX_DOUBLINGS)` apart.
const MAX_DOUBLINGS: i32 = 6;

/// The condition for each kind of stuck, shared by the listing and the statements that act
/// on it. `$S` is the stale time in seconds.
fn lapsed() -> &'static str {
    "lease_until < now()"
}

fn idle(stale: &str) -> String {
    format!(
        "(lease_until IS NULL AND updated_at < now()
          - make_interval(secs => {stale} * power(2, least(resends, {MAX_DOUBLINGS}))))"
    )
}

/// The SQL condition for a stuck file of `file_process` (or a view with its `lease_until`,
/// `updated_at` and `resends`), `stale` being the stale time in seconds (a parameter or a
/// literal): its worker died, or it is idle and due for a re-send. The dashboard shows the
/// same files the sweep acts on.
pub fn stuck_condition(stale: &str) -> String {
    format!("({} OR {})", lapsed(), idle(stale))
}

impl Store {
    /// Up to `limit` stuck files, those whose worker died first, then the longest idle.
    pub async fn stuck_files(
        &self,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Vec<StuckFile>, DbError> {
        let client = self.db.client().await?;
        let stale = stale_after.as_secs_f64();
        let sql = format!(
            "SELECT id, COALESCE(dataset, ''), status, source_bucket, source_key, source_etag,
                    clean_key, redrives, resends, COALESCE({lapsed}, false) AS lapsed
             FROM file_process
             WHERE status NOT IN ('delivered', 'rejected', 'failed')
               AND ({lapsed} OR {idle})
             ORDER BY COALESCE({lapsed}, false) DESC, updated_at
             LIMIT $2",
            lapsed = lapsed(),
            idle = idle("$1::float8"),
        );
        let rows = client.query(&sql, &[&stale, &limit]).await?;
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
                    resends: r.get(8),
                    stuck: match r.get::<_, bool>(9) {
                        true => Stuck::LeaseLapsed,
                        false => Stuck::Idle,
                    },
                })
            })
            .collect()
    }

    /// Decides, once across overlapping sweeps, what becomes of `file` (as listed): a file
    /// whose worker died is re-driven, or failed after `max_redrives`; an idle file's input
    /// is re-sent. Each decision is one conditional UPDATE that re-checks what the listing
    /// saw, and a `file_event` with the reason.
    pub async fn redrive(
        &self,
        file: &StuckFile,
        max_redrives: i32,
        stale_after: Duration,
        why: &str,
    ) -> Result<Redrive, DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let status = file.status.as_str();
        let decided = match file.stuck {
            Stuck::LeaseLapsed if file.redrives >= max_redrives => {
                let reason = format!(
                    "stuck in {} ({why}) after {max_redrives} re-drives: given up",
                    file.status
                );
                let sql = format!(
                    "UPDATE file_process SET
                         status = 'failed', failed_stage = $4, error = $5, updated_at = now(),
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND status = $2 AND redrives = $3 AND {}
                     RETURNING redrives",
                    lapsed()
                );
                let row = tx
                    .query_opt(
                        &sql,
                        &[
                            &file.id,
                            &status,
                            &file.redrives,
                            &Stage::Listener.as_str(),
                            &reason,
                        ],
                    )
                    .await?;
                row.map(|_| {
                    let detail = json!({ "error": reason, "redrives": file.redrives });
                    (Redrive::GaveUp, FileStatus::Failed, detail)
                })
            }
            Stuck::LeaseLapsed => {
                // The expired lease is cleared so the stage can claim the file at once.
                let sql = format!(
                    "UPDATE file_process SET
                         redrives = redrives + 1, updated_at = now(),
                         lease_owner = NULL, lease_until = NULL
                     WHERE id = $1 AND status = $2 AND redrives = $3 AND {}
                     RETURNING redrives",
                    lapsed()
                );
                let row = tx
                    .query_opt(&sql, &[&file.id, &status, &file.redrives])
                    .await?;
                row.map(|row| {
                    let n: i32 = row.get(0);
                    let detail = json!({ "redrive": n, "why": why });
                    (Redrive::Go { n }, file.status, detail)
                })
            }
            Stuck::Idle => {
                let sql = format!(
                    "UPDATE file_process SET resends = resends + 1, updated_at = now()
                     WHERE id = $1 AND status = $2 AND resends = $3 AND {}
                     RETURNING resends",
                    idle("$4::float8")
                );
                let stale = stale_after.as_secs_f64();
                let row = tx
                    .query_opt(&sql, &[&file.id, &status, &file.resends, &stale])
                    .await?;
                row.map(|row| {
                    let n: i32 = row.get(0);
                    let detail = json!({ "resend": n, "why": why });
                    (Redrive::Resend { n }, file.status, detail)
                })
            }
        };
        let Some((decision, now, detail)) = decided else {
            tx.commit().await?;
            return Ok(Redrive::Moved);
        };
        tx.execute(
            "INSERT INTO file_event (file_id, stage, status, detail) VALUES ($1, $2, $3, $4)",
            &[&file.id, &Stage::Listener.as_str(), &now.as_str(), &detail],
        )
        .await?;
        tx.commit().await?;
        Ok(decision)
    }
}
