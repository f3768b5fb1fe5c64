//! Re-driving stuck files: the listener's scheduled run (and `sluice run`) asks the store for
//! the files that stopped short of a final status ([`Sweep`]) and sends each its stage's input
//! again. A file whose worker died (its lease lapsed) is re-driven up to `max_redrives` times,
//! then failed with the reason; a file that is only idle (its input waits behind a backlog, or
//! was lost) has its input re-sent with a doubling spacing and is never failed for waiting;
//! while its stage's queue has a backlog, its input is most likely in it, and it is left alone.
//! Overlapping runs decide each file once: the store re-checks what the listing saw.

use serde::Serialize;
use serde_json::{json, Value};
use sluice_core::message::{CleanFile, FileSanitized, MAX_SANITIZE_REPORT_BYTES};
use sluice_core::metadata::UploadMetadata;
use sluice_core::plan::RunOptions;
use sluice_core::{layout, FileStatus};
use std::time::Duration;
use tokio::io::AsyncReadExt;

use crate::fault::Fault;
use crate::ports::{Objects, Outbox, Redrive, Stuck, StuckFile, Sweep};

/// Stuck files looked at per query.
const PAGE: i64 = 100;

/// What the stage works with.
pub struct RedriveStage<'a, S, O, Q> {
    pub store: &'a S,
    pub objects: &'a O,
    /// The sanitizer's queue: a stuck `received`/`sanitizing` file's object event goes here.
    pub sanitize_queue: &'a Q,
    /// The transformer's queue: a stuck file's "file sanitized" message goes here.
    pub transform_queue: &'a Q,
    /// The forwarder's queue: only its backlog is read (a file past its transform waits in it).
    pub forward_queue: &'a Q,
    /// Where sanitize reports are (a "file sanitized" is rebuilt from one).
    pub clean_bucket: &'a str,
    /// A file no worker holds that has not moved for this long is idle.
    pub stale_after: Duration,
    /// Re-drives of a file whose worker died before it is failed.
    pub max_redrives: i32,
}

/// What the re-drive did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveCounts {
    /// Object events re-sent to the sanitizer (`received`, `sanitizing`).
    pub redriven_sanitize: u64,
    /// "File sanitized" messages re-sent to the transformer (`sanitized`, `transforming`).
    pub redriven_transform: u64,
    /// Files whose undelivered batches are re-sent (`transformed`, `delivering`).
    pub redriven_forward: u64,
    /// Of the above, idle files (no worker died; their input was waiting or lost).
    pub resent_idle: u64,
    /// Idle files left alone because their stage's queue has a backlog (their input is most
    /// likely in it); re-sent once the backlog is gone.
    pub waiting: u64,
    /// Re-drives decided but whose input could not be sent; the next run tries again.
    pub errors: u64,
    /// Files failed after `max_redrives` re-drives of lapsed leases.
    pub given_up: u64,
}

/// Which stage's input re-drives a file in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveFrom {
    Sanitize,
    Transform,
    Forward,
}

impl RedriveFrom {
    pub fn for_status(status: FileStatus) -> Option<Self> {
        match status {
            FileStatus::Received | FileStatus::Sanitizing => Some(Self::Sanitize),
            FileStatus::Sanitized | FileStatus::Transforming => Some(Self::Transform),
            FileStatus::Transformed | FileStatus::Delivering => Some(Self::Forward),
            FileStatus::Delivered | FileStatus::Rejected | FileStatus::Failed => None,
        }
    }
}

/// Re-drives stuck files until none is left or `time_low` says to stop (returns whether it
/// stopped early).
pub async fn redrive_stuck<S: Sweep, O: Objects, Q: Outbox>(
    deps: &RedriveStage<'_, S, O, Q>,
    time_low: impl Fn() -> bool,
    counts: &mut RedriveCounts,
) -> Result<bool, Fault> {
    let backlogs = Backlogs::read(deps).await;
    loop {
        let stuck = deps
            .store
            .stuck_files(deps.stale_after, PAGE)
            .await
            .map_err(Fault::store)?;
        let full = stuck.len() as i64 == PAGE;
        for file in &stuck {
            if time_low() {
                return Ok(true);
            }
            if file.stuck == Stuck::Idle && backlogs.of(file.status) {
                counts.waiting += 1;
                continue;
            }
            redrive_one(deps, file, counts).await?;
        }
        // Each file handled leaves the stuck list (re-driven, failed or moved on); a page of
        // files left waiting would come back as it is.
        if !full
            || stuck
                .iter()
                .all(|f| f.stuck == Stuck::Idle && backlogs.of(f.status))
        {
            return Ok(false);
        }
    }
}

/// Which stages' queues have messages waiting or in flight, read once per run. A queue
/// whose backlog cannot be read counts as empty: re-sending is safe, only wasteful.
struct Backlogs {
    sanitize: bool,
    transform: bool,
    forward: bool,
}

impl Backlogs {
    async fn read<S, O, Q: Outbox>(deps: &RedriveStage<'_, S, O, Q>) -> Self {
        async fn busy<Q: Outbox>(queue: &Q, name: &str) -> bool {
            match queue.backlog().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(queue = name, error = %e, "queue backlog unknown: idle files are re-sent");
                    false
                }
            }
        }
        Self {
            sanitize: busy(deps.sanitize_queue, "sanitize").await,
            transform: busy(deps.transform_queue, "transform").await,
            forward: busy(deps.forward_queue, "forward").await,
        }
    }

    /// Whether the queue a file in `status` waits in has a backlog.
    fn of(&self, status: FileStatus) -> bool {
        match RedriveFrom::for_status(status) {
            Some(RedriveFrom::Sanitize) => self.sanitize,
            Some(RedriveFrom::Transform) => self.transform,
            Some(RedriveFrom::Forward) => self.forward,
            None => false,
        }
    }
}

async fn redrive_one<S: Sweep, O: Objects, Q: Outbox>(
    deps: &RedriveStage<'_, S, O, Q>,
    file: &StuckFile,
    counts: &mut RedriveCounts,
) -> Result<(), Fault> {
    let Some(from) = RedriveFrom::for_status(file.status) else {
        return Ok(());
    };
    let why = match file.stuck {
        Stuck::LeaseLapsed => format!("the lease of its worker in {} lapsed", file.status),
        Stuck::Idle => format!(
            "no worker holds it and it has not moved in {} for {} s or more",
            file.status,
            deps.stale_after.as_secs()
        ),
    };
    let decision = deps
        .store
        .redrive(file, deps.max_redrives, deps.stale_after, &why)
        .await
        .map_err(Fault::store)?;
    let n = match decision {
        Redrive::Moved => return Ok(()),
        Redrive::GaveUp => {
            counts.given_up += 1;
            tracing::error!(file_id = %file.id, dataset = %file.dataset, status = %file.status,
                redrives = file.redrives, "file failed: its worker died again after its re-drives");
            return Ok(());
        }
        Redrive::Go { n } | Redrive::Resend { n } => n,
    };
    let sent = match from {
        RedriveFrom::Sanitize => resend_object_event(deps, file).await,
        RedriveFrom::Transform => resend_sanitized(deps, file, false).await,
        RedriveFrom::Forward => resend_sanitized(deps, file, true).await,
    };
    match sent {
        Ok(()) => {
            *match from {
                RedriveFrom::Sanitize => &mut counts.redriven_sanitize,
                RedriveFrom::Transform => &mut counts.redriven_transform,
                RedriveFrom::Forward => &mut counts.redriven_forward,
            } += 1;
            if file.stuck == Stuck::Idle {
                counts.resent_idle += 1;
            }
            tracing::warn!(file_id = %file.id, dataset = %file.dataset, status = %file.status,
                stuck = file.stuck.as_str(), n, from = ?from, "stuck file re-driven");
        }
        Err(e) => {
            // Counted all the same: a dead worker's file whose input cannot be sent again
            // fails after `max_redrives` rather than being tried for ever.
            counts.errors += 1;
            tracing::error!(file_id = %file.id, dataset = %file.dataset, error = %e,
                "could not re-send the stage's input; the next run tries again");
        }
    }
    Ok(())
}

/// The sanitizer's input: an EventBridge "Object Created" event for the quarantine object,
/// the shape the sanitize queue carries.
async fn resend_object_event<S, O, Q: Outbox>(
    deps: &RedriveStage<'_, S, O, Q>,
    file: &StuckFile,
) -> Result<(), String> {
    let event = object_created_event(&file.source_bucket, &file.source_key, &file.source_etag);
    deps.sanitize_queue
        .send_all(&[event.to_string()])
        .await
        .map_err(|e| e.to_string())
}

/// An EventBridge "Object Created" event for an object Sluice sends itself (a re-drive, or
/// an object the reconciliation found with no row).
pub fn object_created_event(bucket: &str, key: &str, etag: &str) -> Value {
    json!({
        "version": "0",
        "detail-type": "Object Created",
        "source": "sluice.listener",
        "detail": {
            "bucket": { "name": bucket },
            "object": { "key": key, "etag": etag },
            "reason": "re-drive"
        }
    })
}

/// The transformer's input, rebuilt from what the sanitizer left: the clean file's columns
/// and rows from its report, the date range from the quarantine object's metadata (the
/// transformer keeps the options its first run fixed; a replay's are on its row). With
/// `resend`, the transformer re-sends the batches that have no 2xx on record.
async fn resend_sanitized<S, O: Objects, Q: Outbox>(
    deps: &RedriveStage<'_, S, O, Q>,
    file: &StuckFile,
    resend: bool,
) -> Result<(), String> {
    let report_key = layout::sanitize_report_key(file.id);
    let report = read_small(deps.objects, deps.clean_bucket, &report_key)
        .await?
        .ok_or_else(|| format!("sanitize report {report_key} is not there"))?;
    let clean = CleanFile::from_report(&report, &report_key)?;
    // Quarantine objects expire; the filter was only ever asked for on the object.
    let options = match deps
        .objects
        .metadata(&file.source_bucket, &file.source_key)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(metadata) => {
            let said = UploadMetadata::read(&metadata);
            RunOptions {
                date_range: said.date_range,
                full: said.full,
            }
        }
        None => RunOptions {
            date_range: None,
            full: false,
        },
    };
    let message = FileSanitized::rebuilt(
        file.id,
        &file.dataset,
        deps.clean_bucket,
        clean,
        options,
        resend,
    );
    let body = serde_json::to_string(&message).map_err(|e| e.to_string())?;
    deps.transform_queue
        .send_all(&[body])
        .await
        .map_err(|e| e.to_string())
}

/// A small object whole, refused past [`MAX_SANITIZE_REPORT_BYTES`]; `None` if it is not there.
async fn read_small<O: Objects>(
    objects: &O,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, String> {
    let Some((body, _)) = objects
        .open(bucket, key, None)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    body.take(MAX_SANITIZE_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))?;
    if bytes.len() as u64 > MAX_SANITIZE_REPORT_BYTES {
        return Err(format!(
            "s3://{bucket}/{key} is larger than {MAX_SANITIZE_REPORT_BYTES} bytes: not a report"
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unfinished_status_has_a_stage_to_redrive_from() {
        use FileStatus::*;
        for status in [
            Received,
            Sanitizing,
            Sanitized,
            Transforming,
            Transformed,
            Delivering,
        ] {
            assert!(RedriveFrom::for_status(status).is_some(), "{status}");
            assert!(!status.is_final());
        }
        for status in [Delivered, Rejected, Failed] {
            assert_eq!(RedriveFrom::for_status(status), None);
        }
    }
}
