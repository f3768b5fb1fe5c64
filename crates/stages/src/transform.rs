//! The transform stage: a "file sanitized" message in, record batches on the forward queue
//! (large ones by claim check), the report and the status out. The transformer Lambda and
//! `sluice run` both call [`transform_file`].

use std::collections::HashSet;
use std::io;

use chrono::NaiveDate;
use serde_json::json;
use sluice_core::delivery::Delivery;
use sluice_core::layout;
use sluice_core::message::{batch_id, FileSanitized};
use sluice_core::transform::batch::{claim_check_message, inline_message, Batch, Batcher};
use sluice_core::transform::{
    transform_read, DateFilter, Mapping, TransformError, TransformReport, TransformVerdict,
};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use tokio_util::io::SyncIoBridge;
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::{Claim, Lease, Objects, Outbox, StatusStore, TransformCounts};

/// SQS's limit on a message, and so on an inline batch.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What the stage works with.
pub struct Transform<'a, O, S, Q> {
    pub config: &'a PipelineConfig,
    pub store: &'a S,
    pub objects: &'a O,
    /// Where "record batch" messages go.
    pub queue: &'a Q,
    /// The only bucket clean files are read from and batches and reports written to.
    pub clean_bucket: &'a str,
}

/// Transforms the clean file a "file sanitized" message names into record batches on the
/// forward queue, once: the file is claimed (`sanitized -> transforming`), counted in a first
/// pass (for the report and each batch's total), sent in a second, and recorded
/// `transformed`. A copy of the message that finds the file claimed, or not sanitized yet,
/// waits ([`FaultKind::Waiting`]); one that finds it done is a no-op; a `resend` re-sends the
/// batches with no 2xx on record.
pub async fn transform_file<O: Objects, S: StatusStore, Q: Outbox>(
    deps: &Transform<'_, O, S, Q>,
    sanitized: &FileSanitized,
    lease: &Lease,
) -> Result<(), Fault> {
    let id = sanitized.file_id;
    let bad = |e: String| Fault::new(FaultKind::BadInput, e);
    let dataset = deps
        .config
        .dataset(&sanitized.dataset)
        .map_err(|e| bad(e.to_string()))?;
    layout::check_clean_file(
        &sanitized.clean_bucket,
        &sanitized.clean_key,
        deps.clean_bucket,
        &dataset.name,
        id,
    )
    .map_err(bad)?;
    let Some(mapping) = &dataset.mapping else {
        deps.store
            .fail(
                id,
                Stage::Transformer,
                &format!("dataset `{}` has no mapping", dataset.name),
            )
            .await
            .map_err(Fault::store)?;
        return Ok(());
    };
    // One worker transforms a file: the claim is one conditional UPDATE.
    let claim = deps
        .store
        .claim(
            id,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            lease,
        )
        .await
        .map_err(Fault::store)?;
    // Batches already through (a re-drive's resend only): the others are sent again.
    let mut delivered = HashSet::new();
    match claim {
        Claim::Won { .. } => {}
        // The listener re-drives a file stuck after its transform: re-send the batches that
        // have no 2xx on record (ids are stable, so the forwarder skips any it has).
        Claim::Elsewhere(FileStatus::Transformed | FileStatus::Delivering) if sanitized.resend => {
            let after = [FileStatus::Transformed, FileStatus::Delivering];
            match deps
                .store
                .claim_in_place(id, Stage::Transformer, &after, lease)
                .await
                .map_err(Fault::store)?
            {
                Claim::Won { .. } => {
                    delivered = deps
                        .store
                        .delivered_batches(id)
                        .await
                        .map_err(Fault::store)?
                }
                Claim::Busy => {
                    let why = format!("file {id} is being re-sent by another worker");
                    return Err(Fault::new(FaultKind::Waiting, why));
                }
                other => {
                    tracing::info!(file_id = %id, claim = ?other, "nothing left to re-send");
                    return Ok(());
                }
            }
        }
        // Another copy of this message is at work: this one comes back after the visibility
        // timeout and is then a no-op (or takes over if that worker died).
        Claim::Busy => {
            let why = format!("file {id} is being transformed by another worker");
            return Err(Fault::new(FaultKind::Waiting, why));
        }
        // The sanitizer sends this message just before it records `sanitized`: the message
        // can win the race. Fail it, and SQS brings it back once the status is there.
        Claim::Elsewhere(FileStatus::Received | FileStatus::Sanitizing) => {
            let why = format!("file {id} is not marked sanitized yet");
            return Err(Fault::new(FaultKind::Waiting, why));
        }
        Claim::Elsewhere(status) => {
            tracing::info!(file_id = %id, status = %status, "already transformed: duplicate message skipped");
            return Ok(());
        }
        Claim::Missing => {
            let why = format!("file {id} is not in the status store");
            return Err(Fault::new(FaultKind::Store, why));
        }
    }
    let filter = sanitized
        .date_range
        .as_ref()
        .map(date_filter)
        .transpose()
        .map_err(bad)?;
    let delivery = &dataset.delivery;

    // Pass one counts, so every batch can carry the total; nothing is sent yet.
    let mut total = 0u32;
    let counted = match Pass::start(deps, sanitized, mapping, filter, delivery).await {
        Ok(mut pass) => {
            while pass.batches.recv().await.is_some() {
                total += 1;
            }
            pass.finish(None).await
        }
        Err(e) => Err(e),
    };
    let counted = match counted {
        Ok(report) => report,
        Err(PassError::File(reason)) => {
            deps.store
                .fail(id, Stage::Transformer, &reason)
                .await
                .map_err(Fault::store)?;
            return Ok(());
        }
        Err(PassError::Retry(e)) => return Err(retry(deps, id, lease, e).await),
    };
    put_report(deps, sanitized, &counted).await?;
    if counted.verdict == TransformVerdict::Failed {
        let reason = counted.reason.clone().unwrap_or_default();
        deps.store
            .finish_transform(
                id,
                FileStatus::Failed,
                TransformCounts {
                    records: 0,
                    batches: 0,
                    rows_unmapped: counted.rows_failed as i64,
                },
                Some(&reason),
                summary(&counted, 0),
            )
            .await
            .map_err(Fault::store)?;
        tracing::warn!(file_id = %id, dataset = %dataset.name, reason = %reason, "file failed to transform");
        return Ok(());
    }

    // Pass two sends: batch ids are the file id and sequence, the same on every run.
    let mut sender = Sender {
        objects: deps.objects,
        queue: deps.queue,
        message: sanitized,
        total,
        seq: 0,
        pending: Vec::new(),
        delivered: &delivered,
        resent: 0,
    };
    let sent = match Pass::start(deps, sanitized, mapping, filter, delivery).await {
        Ok(mut pass) => {
            let mut failed = None;
            while let Some(batch) = pass.batches.recv().await {
                if let Err(e) = sender.send(batch).await {
                    failed = Some(e);
                    break;
                }
            }
            if failed.is_none() {
                failed = sender.flush().await.err();
            }
            pass.finish(failed).await
        }
        Err(e) => Err(e),
    };
    let sent = match sent {
        Ok(report) => report,
        Err(PassError::File(reason) | PassError::Retry(reason)) => {
            return Err(retry(deps, id, lease, reason).await)
        }
    };
    if sent.records_out != counted.records_out {
        return Err(retry(
            deps,
            id,
            lease,
            "the clean file changed between the two passes".into(),
        )
        .await);
    }
    let resent = sender.resent;
    // A resend finds the file transformed already: this does not move it, and changes nothing.
    deps.store
        .finish_transform(
            id,
            FileStatus::Transformed,
            TransformCounts {
                records: counted.records_out as i64,
                batches: total as i32,
                rows_unmapped: counted.rows_failed as i64,
            },
            None,
            summary(&counted, total),
        )
        .await
        .map_err(Fault::store)?;
    // Fast forwarders may have delivered every batch already (or there are none): then the
    // file is delivered now, as no later batch will come to settle it.
    deps.store.settle_delivery(id).await.map_err(Fault::store)?;
    if sanitized.resend {
        deps.store
            .release(id, &lease.owner)
            .await
            .map_err(Fault::store)?;
        tracing::info!(file_id = %id, dataset = %dataset.name, batches = total, resent,
            already_delivered = delivered.len(), "undelivered batches re-sent");
        return Ok(());
    }
    tracing::info!(file_id = %id, dataset = %dataset.name, rows_in = counted.rows_in,
        records = counted.records_out, rows_filtered = counted.rows_filtered,
        rows_failed = counted.rows_failed, batches = total, "file transformed");
    Ok(())
}

fn date_filter(range: &sluice_core::message::DateRange) -> Result<DateFilter, String> {
    let date = |d: &Option<String>| -> Result<Option<NaiveDate>, String> {
        d.as_deref()
            .map(|s| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("bad date {s:?} in date_range"))
            })
            .transpose()
    };
    Ok(DateFilter {
        start: date(&range.start)?,
        end: date(&range.end)?,
    })
}

enum PassError {
    /// The file cannot be transformed (a column the mapping needs is missing): final.
    File(String),
    /// Reading or sending failed: worth a retry.
    Retry(String),
}

/// One streaming pass over the clean file: the mapping runs on a blocking thread and hands
/// full batches over a small channel, so memory is a few batches whatever the file size.
struct Pass {
    batches: tokio::sync::mpsc::Receiver<Batch>,
    worker: tokio::task::JoinHandle<Result<TransformReport, TransformError>>,
}

impl Pass {
    async fn start<O: Objects, S, Q>(
        deps: &Transform<'_, O, S, Q>,
        message: &FileSanitized,
        mapping: &Mapping,
        filter: Option<DateFilter>,
        delivery: &Delivery,
    ) -> Result<Self, PassError> {
        let (batch_size, max_bytes) = (delivery.batch_size, delivery.batch_max_bytes);
        let opened = deps
            .objects
            .open(&message.clean_bucket, &message.clean_key, None)
            .await
            .map_err(|e| PassError::Retry(e.to_string()))?;
        let Some((body, _)) = opened else {
            let why = format!("the clean file {} is not there", message.clean_key);
            return Err(PassError::Retry(why));
        };
        let reader = SyncIoBridge::new(body);
        let (tx, batches) = tokio::sync::mpsc::channel::<Batch>(2);
        let mapping = mapping.clone();
        let dataset = message.dataset.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut batcher = Batcher::new(batch_size, max_bytes);
            let gone = || io::Error::other("the sender stopped");
            let report = transform_read(
                reader,
                &mapping,
                Some(dataset),
                filter,
                Batcher::max_record_bytes(max_bytes),
                |record| match batcher.push(record) {
                    Some(batch) => tx.blocking_send(batch).map_err(|_| gone()),
                    None => Ok(()),
                },
            )?;
            if let Some(batch) = batcher.finish() {
                tx.blocking_send(batch).map_err(|_| gone())?;
            }
            Ok(report)
        });
        Ok(Self { batches, worker })
    }

    /// Waits for the mapping to end; `send_error` is why the caller stopped taking batches.
    async fn finish(self, send_error: Option<String>) -> Result<TransformReport, PassError> {
        drop(self.batches);
        let outcome = self
            .worker
            .await
            .map_err(|e| PassError::Retry(e.to_string()))?;
        if let Some(e) = send_error {
            return Err(PassError::Retry(e));
        }
        match outcome {
            Ok(report) => Ok(report),
            Err(TransformError::File(reason)) => Err(PassError::File(reason)),
            Err(TransformError::Read(e)) => {
                Err(PassError::Retry(format!("reading the clean file: {e}")))
            }
        }
    }
}

/// Turns batches into messages (claim checks when too big) and sends them ten at a time.
struct Sender<'a, O, Q> {
    objects: &'a O,
    queue: &'a Q,
    message: &'a FileSanitized,
    total: u32,
    seq: u32,
    pending: Vec<String>,
    /// Ids of batches not to send again (they have a 2xx on record).
    delivered: &'a HashSet<String>,
    /// Batches sent by this pass.
    resent: u32,
}

impl<O: Objects, Q: Outbox> Sender<'_, O, Q> {
    async fn send(&mut self, batch: Batch) -> Result<(), String> {
        self.seq += 1;
        let (id, dataset) = (self.message.file_id, self.message.dataset.as_str());
        if self.delivered.contains(&batch_id(id, self.seq)) {
            return Ok(());
        }
        self.resent += 1;
        let mut body = inline_message(id, dataset, self.seq, self.total, &batch);
        if body.len() > MAX_MESSAGE_BYTES {
            let key = layout::claim_check_key(id, self.seq);
            let bucket = &self.message.clean_bucket;
            self.objects
                .put(bucket, &key, batch.records, "application/json")
                .await
                .map_err(|e| e.to_string())?;
            body =
                claim_check_message(id, dataset, self.seq, self.total, batch.count, bucket, &key);
        }
        self.pending
            .push(String::from_utf8(body).map_err(|e| e.to_string())?);
        if self.pending.len() == 10 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.queue
            .send_all(&self.pending)
            .await
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        Ok(())
    }
}

async fn put_report<O: Objects, S, Q>(
    deps: &Transform<'_, O, S, Q>,
    message: &FileSanitized,
    report: &TransformReport,
) -> Result<(), Fault> {
    let key = layout::transform_report_key(message.file_id);
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    deps.objects
        .put(&message.clean_bucket, &key, body, "application/json")
        .await
        .map_err(Fault::objects)
}

fn summary(report: &TransformReport, batches: u32) -> serde_json::Value {
    json!({
        "verdict": report.verdict,
        "reason": report.reason,
        "rows_in": report.rows_in,
        "records": report.records_out,
        "rows_filtered": report.rows_filtered,
        "rows_failed": report.rows_failed,
        "batches": batches,
    })
}

async fn retry<O, S: StatusStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    id: Uuid,
    lease: &Lease,
    error: String,
) -> Fault {
    // Released, so the message's next delivery can claim the file again at once.
    if let Err(e) = deps.store.release(id, &lease.owner).await {
        tracing::error!(file_id = %id, error = %e, "could not release the lease");
    }
    if let Err(e) = deps.store.note_error(id, Stage::Transformer, &error).await {
        tracing::error!(file_id = %id, error = %e, "could not record the error in the status store");
    }
    Fault::new(FaultKind::Internal, error)
}
