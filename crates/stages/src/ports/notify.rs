//! Notifications: every file that reaches a final status (`delivered`, `rejected`, `failed`)
//! is announced once, at least once: the status store keeps them until they are published
//! (PostgreSQL writes them in the same transaction as the status), and a [`Notifier`] sends
//! them (EventBridge in AWS, a JSON-lines file locally).

use std::future::Future;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::FileRow;

/// What EventBridge rules match on.
pub const EVENT_SOURCE: &str = "sluice";
pub const DETAIL_TYPE: &str = "Sluice File Status Changed";

/// The detail of a "Sluice File Status Changed" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileNotice {
    /// Stable (`<file id>/<status>`): the same on every publication of this event, so a
    /// receiver drops one it has seen.
    pub event_id: String,
    pub file_id: Uuid,
    pub dataset: Option<String>,
    /// `delivered`, `rejected` or `failed`.
    pub status: String,
    /// The file's name as uploaded.
    pub name: String,
    pub source: String,
    pub site: Option<String>,
    /// From the upload's `sluice-uploaded-by` metadata.
    pub uploaded_by: Option<String>,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    pub failed_stage: Option<String>,
    pub counts: NoticeCounts,
    /// The earlier run, for a replay.
    pub replay_of: Option<Uuid>,
    /// When it reached the status (RFC 3339, UTC).
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeCounts {
    pub rows_in: Option<i64>,
    pub rows_out: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub records: Option<i64>,
    pub batches_sent: Option<i32>,
    pub batches_delivered: Option<i32>,
}

impl FileNotice {
    /// The notice of a file in a final status.
    pub fn of(row: &FileRow) -> Self {
        let status = row.status.as_str().to_string();
        FileNotice {
            event_id: format!("{}/{status}", row.id),
            file_id: row.id,
            dataset: row.dataset.clone(),
            name: sluice_core::transform::delta::original_name(&row.source_key).to_string(),
            source: format!("s3://{}/{}", row.source_bucket, row.source_key),
            site: row.site.clone(),
            uploaded_by: row.uploaded_by.clone(),
            reason: row.error.clone(),
            failed_stage: row.failed_stage.clone(),
            counts: NoticeCounts {
                rows_in: row.rows_in,
                rows_out: row.rows_out,
                rows_rejected: row.rows_rejected,
                records: row.records,
                batches_sent: row.batches_sent,
                batches_delivered: row.batches_delivered,
            },
            replay_of: row.replay_of,
            at: chrono::DateTime::<chrono::Utc>::from(row.updated_at)
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            status,
        }
    }
}

/// Where notifications wait until they are published.
pub trait Outstanding: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Up to `limit` notifications not yet published and not taken by another publisher in
    /// the last `hold` (so two publishers at once do not both send one, and one that died is
    /// taken over).
    fn take_notices(
        &self,
        limit: usize,
        hold: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<FileNotice>, Self::Error>> + Send;

    /// Marks these published.
    fn published(
        &self,
        event_ids: &[String],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Gives these back with why they were not published; they are taken again later.
    fn not_published(
        &self,
        event_ids: &[String],
        error: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Sends notifications.
pub trait Notifier: Send + Sync {
    /// Publishes `notices`; returns the event ids that were not published, with why.
    fn publish(&self, notices: &[FileNotice])
        -> impl Future<Output = Vec<(String, String)>> + Send;
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    pub published: usize,
    pub failed: usize,
}

/// Publishes what is outstanding, `batch` at a time, until nothing is left or `max` were
/// taken. Errors are logged and counted, never raised: a notification that could not be sent
/// stays outstanding for the next flush.
pub async fn flush<S: Outstanding, N: Notifier>(
    store: &S,
    notifier: &N,
    batch: usize,
    max: usize,
) -> Flushed {
    const HOLD: std::time::Duration = std::time::Duration::from_secs(60);
    let mut done = Flushed::default();
    while done.published + done.failed < max {
        let notices = match store.take_notices(batch, HOLD).await {
            Ok(notices) if notices.is_empty() => break,
            Ok(notices) => notices,
            Err(e) => {
                tracing::warn!(error = %e, "could not read outstanding notifications");
                break;
            }
        };
        let failures = notifier.publish(&notices).await;
        let failed: Vec<String> = failures.iter().map(|(id, _)| id.clone()).collect();
        let sent: Vec<String> = notices
            .iter()
            .map(|n| n.event_id.clone())
            .filter(|id| !failed.contains(id))
            .collect();
        if let Err(e) = store.published(&sent).await {
            tracing::warn!(error = %e, "could not mark notifications published (they will be sent again)");
        }
        if let Some((_, why)) = failures.first() {
            tracing::warn!(failed = failed.len(), error = %why, "notifications not published");
            if let Err(e) = store.not_published(&failed, why).await {
                tracing::warn!(error = %e, "could not note the failed notifications");
            }
        }
        for n in notices.iter().filter(|n| sent.contains(&n.event_id)) {
            tracing::info!(event_id = %n.event_id, file_id = %n.file_id, status = %n.status, "notification published");
        }
        done.published += sent.len();
        done.failed += failed.len();
        if !failed.is_empty() {
            break;
        }
    }
    done
}
