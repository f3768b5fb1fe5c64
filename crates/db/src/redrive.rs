//! The sweep's side of the status store on PostgreSQL (the rules are in
//! [`sluice_stages::ports::sweep`]): every decision is one conditional UPDATE that re-checks,
//! in the statement that acts on it, what the listing saw.

use std::time::Duration;

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::sweep::MAX_DOUBLINGS;
pub use sluice_stages::ports::{Redrive, Stuck, StuckFile};

use crate::store::parse_status;
use crate::{DbError, Store};

/// The condition for each kind of stuck, shared by the listing and the statements that act
/// on it. `stale` is the stale time in seconds.
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
