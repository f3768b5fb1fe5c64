//! Replays (`sluice replay`): a new run of an earlier, finished file. The new run is a new
//! `file_process` row with its own id (so its batches have their own ids), linked to the
//! earlier one by `replay_of`; the earlier row, its events and its API calls are never changed,
//! only noted with a `replay` event naming the new run.

use std::time::SystemTime;

use serde_json::json;
use sluice_core::plan::RunOptions;
use sluice_core::FileStatus;
use sluice_stages::ports::ReplaySkip;
use uuid::Uuid;

use crate::store::parse_status;
use crate::{DbError, Store};

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The original, copied again into quarantine, sanitized again.
    Sanitize,
    /// The earlier run's clean file, transformed and delivered again.
    Transform,
    /// The earlier run's clean file, only the batches the earlier run did not deliver.
    Forward,
}

impl ReplayFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayFrom::Sanitize => "sanitize",
            ReplayFrom::Transform => "transform",
            ReplayFrom::Forward => "forward",
        }
    }
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sanitize" => Ok(ReplayFrom::Sanitize),
            "transform" => Ok(ReplayFrom::Transform),
            "forward" => Ok(ReplayFrom::Forward),
            other => Err(format!(
                "unknown stage `{other}`: sanitize, transform or forward"
            )),
        }
    }
}

/// Why a replay was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The earlier file cannot be replayed from that stage; the message says what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ReplayError {
    fn from(e: tokio_postgres::Error) -> Self {
        ReplayError::Db(DbError::Postgres(e))
    }
}

/// The new run of a replay from the transform or forward stage, at `sanitized`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub id: Uuid,
    pub dataset: String,
    pub rows: i64,
    /// For a replay from the forward stage.
    pub skip: Option<ReplaySkip>,
}

/// What a replay needs to know of the earlier run, read before any object is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    pub id: Uuid,
    pub dataset: Option<String>,
    pub status: FileStatus,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub clean_key: Option<String>,
}

impl Earlier {
    /// Refuses a replay the earlier run cannot give: one still on its way, a stage it never
    /// reached.
    pub fn check(&self, from: ReplayFrom) -> Result<(), ReplayError> {
        let id = self.id;
        if !self.status.is_final() {
            return Err(ReplayError::Refused(format!(
                "file {id} is still {}: a replay is for a finished file (delivered, rejected \
                 or failed); wait for it, or see `sluice status --stuck` if it has stopped",
                self.status
            )));
        }
        if self.dataset.is_none() {
            return Err(ReplayError::Refused(format!(
                "file {id} matched no dataset: fix the drop path or the config and drop it again"
            )));
        }
        if from != ReplayFrom::Sanitize && self.clean_key.is_none() {
            return Err(ReplayError::Refused(format!(
                "file {id} has no clean file (it was {} before being sanitized): replay it \
                 --from sanitize",
                self.status
            )));
        }
        Ok(())
    }
}

impl Store {
    /// The earlier run a replay starts from.
    pub async fn replay_source(&self, id: Uuid) -> Result<Option<Earlier>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT id, NULLIF(dataset, ''), status, source_bucket, source_key, source_etag,
                        clean_key
                 FROM file_process WHERE id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| {
            Ok(Earlier {
                id: r.get(0),
                dataset: r.get(1),
                status: parse_status(r.get(2))?,
                source_bucket: r.get(3),
                source_key: r.get(4),
                source_etag: r.get(5),
                clean_key: r.get(6),
            })
        })
        .transpose()
    }

    /// Finished files of `dataset` in one of `statuses`, updated since `since`, that have not
    /// been replayed yet (a failed replay is itself a candidate: its replay is the next run),
    /// oldest first.
    pub async fn replay_candidates(
        &self,
        dataset: &str,
        since: SystemTime,
        statuses: &[FileStatus],
        limit: i64,
    ) -> Result<Vec<Uuid>, DbError> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT f.id FROM file_process f
                 WHERE f.dataset = $1 AND f.updated_at >= $2 AND f.status = ANY($3)
                   AND NOT EXISTS (SELECT 1 FROM file_event e
                                   WHERE e.file_id = f.id AND e.stage = 'replay'
                                     AND e.detail ? 'replayed_as')
                 ORDER BY f.received_at, f.id
                 LIMIT $4",
                &[&dataset, &since, &statuses, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Notes on the earlier run that it was replayed as `new` (a replay from sanitize: the new
    /// run's row is made by the sanitizer when the copy's event arrives).
    pub async fn note_replay(
        &self,
        earlier: Uuid,
        new: Uuid,
        from: ReplayFrom,
    ) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "INSERT INTO file_event (file_id, stage, status, detail)
                 SELECT id, 'replay', status, $2 FROM file_process WHERE id = $1",
                &[
                    &earlier,
                    &json!({ "replayed_as": new, "from": from.as_str() }),
                ],
            )
            .await?;
        Ok(())
    }

    /// Makes the new run of a replay from the transform or forward stage: a row at
    /// `sanitized` whose clean file is `clean_key` (the earlier clean file, already copied
    /// there), with the earlier run's row counts, and for `forward` a snapshot of what the
    /// earlier run delivered, and the run's `options` as the start of its plan (a re-drive
    /// rebuilt from the upload's metadata cannot lose them). One transaction, with the earlier row locked so two replays of
    /// it at once are made one after the other.
    pub async fn start_replay(
        &self,
        earlier: Uuid,
        new: Uuid,
        from: ReplayFrom,
        clean_key: &str,
        options: &RunOptions,
    ) -> Result<Replayed, ReplayError> {
        if from == ReplayFrom::Sanitize {
            return Err(ReplayError::Refused(
                "a replay from sanitize is a new upload, not a new row".into(),
            ));
        }
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let (row, shown) = earlier_run(&tx, earlier, "FOR UPDATE").await?;
        shown.check(from)?;
        let dataset = shown.dataset.clone().unwrap_or_default();
        let skip = match from {
            ReplayFrom::Forward => Some(self.delivered_snapshot(&tx, earlier, &row).await?),
            _ => None,
        };
        let rows_out: Option<i64> = row.get(6);
        tx.execute(
            "INSERT INTO file_process
                 (id, dataset, site, source_bucket, source_key, source_etag, source_size, status,
                  replay_of, replay_from, replay_skip, uploaded_by, plan, uploaded_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, 'received', $8, $9, $10, $11, $12,
                    COALESCE(uploaded_at, received_at)
             FROM file_process WHERE id = $8",
            &[
                &new,
                &dataset,
                &row.get::<_, Option<String>>(12),
                &shown.source_bucket,
                &shown.source_key,
                &shown.source_etag,
                &row.get::<_, i64>(11),
                &earlier,
                &from.as_str(),
                &skip.as_ref().map(|s| json!(s)),
                &row.get::<_, Option<String>>(13),
                &json!(options),
            ],
        )
        .await?;
        let detail = json!({ "replay_of": earlier, "from": from.as_str() });
        tx.execute(
            "INSERT INTO file_event (file_id, stage, status, detail)
             VALUES ($1, 'replay', 'received', $2)",
            &[&new, &detail],
        )
        .await?;
        // Through the guarded moves, as any file: received -> sanitizing -> sanitized.
        tx.execute(
            "UPDATE file_process SET status = 'sanitizing', updated_at = now() WHERE id = $1",
            &[&new],
        )
        .await?;
        tx.execute(
            "UPDATE file_process SET status = 'sanitized', clean_key = $2, rows_in = $3,
                 rows_out = $4, rows_rejected = $5, updated_at = now()
             WHERE id = $1",
            &[
                &new,
                &clean_key,
                &row.get::<_, Option<i64>>(5),
                &rows_out,
                &row.get::<_, Option<i64>>(7),
            ],
        )
        .await?;
        let copied =
            json!({ "replay_of": earlier, "clean_key": clean_key, "copied_from": shown.clean_key });
        tx.execute(
            "INSERT INTO file_event (file_id, stage, status, detail)
             VALUES ($1, 'replay', 'sanitized', $2)",
            &[&new, &copied],
        )
        .await?;
        tx.execute(
            "INSERT INTO file_event (file_id, stage, status, detail)
             VALUES ($1, 'replay', $2, $3)",
            &[
                &earlier,
                &shown.status.as_str(),
                &json!({ "replayed_as": new, "from": from.as_str() }),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Replayed {
            id: new,
            dataset,
            rows: rows_out.unwrap_or(0),
            skip,
        })
    }

    /// The checks a replay of `earlier` from `from` makes before it writes anything (the
    /// file is final, has a dataset, a clean file for transform and forward, batches left to
    /// re-send for forward), made without writing: what `sluice replay --dry-run` runs.
    pub async fn check_replay(&self, earlier: Uuid, from: ReplayFrom) -> Result<(), ReplayError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let (row, shown) = earlier_run(&tx, earlier, "").await?;
        shown.check(from)?;
        if from == ReplayFrom::Forward {
            self.delivered_snapshot(&tx, earlier, &row).await?;
        }
        tx.rollback().await?;
        Ok(())
    }

    /// The earlier run's delivered batches and counts, for a replay from forward.
    async fn delivered_snapshot(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        earlier: Uuid,
        row: &tokio_postgres::Row,
    ) -> Result<ReplaySkip, ReplayError> {
        let (Some(batches), Some(records)) = (row.get::<_, Option<i32>>(3), row.get(4)) else {
            return Err(ReplayError::Refused(format!(
                "file {earlier} never finished its transform, so it has no batches to re-send: \
                 replay it --from transform"
            )));
        };
        let delivered: Vec<u32> = tx
            .query(
                "SELECT DISTINCT batch_id FROM api_call
                 WHERE file_id = $1 AND http_status BETWEEN 200 AND 299",
                &[&earlier],
            )
            .await?
            .iter()
            .filter_map(|r| sequence_of(r.get(0)))
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        if delivered.len() as i64 >= i64::from(batches) {
            return Err(ReplayError::Refused(format!(
                "every batch of file {earlier} was delivered: nothing to re-send; replay it \
                 --from transform to send its records again"
            )));
        }
        Ok(ReplaySkip {
            of: earlier,
            batches,
            records,
            delivered,
        })
    }

    /// What a replay from the forward stage leaves out (see [`ReplaySkip`]).
    pub async fn replay_skip(&self, id: Uuid) -> Result<Option<ReplaySkip>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT replay_skip FROM file_process WHERE id = $1 AND replay_from = 'forward'",
                &[&id],
            )
            .await?;
        row.and_then(|r| r.get::<_, Option<serde_json::Value>>(0))
            .map(|v| {
                serde_json::from_value(v)
                    .map_err(|e| DbError::Corrupt(format!("replay_skip of file {id}: {e}")))
            })
            .transpose()
    }
}

/// The sequence number of a batch id, `<file id>-<seq, 6 digits>`.
fn sequence_of(batch_id: &str) -> Option<u32> {
    batch_id.rsplit('-').next()?.parse().ok()
}

/// The earlier run's row (`lock`: `FOR UPDATE` or nothing) and what a replay needs of it.
async fn earlier_run(
    tx: &tokio_postgres::Transaction<'_>,
    earlier: Uuid,
    lock: &str,
) -> Result<(tokio_postgres::Row, Earlier), ReplayError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT NULLIF(dataset, ''), status, clean_key, batches_sent, records, rows_in,
                        rows_out, rows_rejected, source_bucket, source_key, source_etag,
                        source_size, site, uploaded_by
                 FROM file_process WHERE id = $1 {lock}"
            ),
            &[&earlier],
        )
        .await?
        .ok_or_else(|| ReplayError::Refused(format!("no file {earlier} in the status store")))?;
    let shown = Earlier {
        id: earlier,
        dataset: row.get(0),
        status: parse_status(row.get(1))?,
        source_bucket: row.get(8),
        source_key: row.get(9),
        source_etag: row.get(10),
        clean_key: row.get(2),
    };
    Ok((row, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_id_gives_its_sequence() {
        let id = Uuid::nil();
        assert_eq!(
            sequence_of(&sluice_core::message::batch_id(id, 12)),
            Some(12)
        );
        assert_eq!(sequence_of("nonsense"), None);
    }

    #[test]
    fn stages_read_as_written() {
        for from in [
            ReplayFrom::Sanitize,
            ReplayFrom::Transform,
            ReplayFrom::Forward,
        ] {
            assert_eq!(from.as_str().parse::<ReplayFrom>(), Ok(from));
        }
        assert!("deliver".parse::<ReplayFrom>().is_err());
    }
}
