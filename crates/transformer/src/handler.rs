//! "File sanitized" messages in, "record batch" messages out.
//!
//! Each message is handled on its own; one that fails is reported alone as a batch item
//! failure, so SQS redelivers it (and, after the queue's max receive count, moves it to the
//! dead-letter queue) while the others are done.

use std::collections::HashSet;
use std::io;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::NaiveDate;
use lambda_runtime::LambdaEvent;
use serde_json::json;
use sluice_aws::setup::stop_before;
use sluice_aws::sqs::MAX_BATCH_BYTES;
use sluice_aws::{ObjectStore, Queue};
use sluice_core::delivery::Delivery;
use sluice_core::layout;
use sluice_core::message::{batch_id, FileSanitized};
use sluice_core::transform::batch::{claim_check_message, inline_message, Batch, Batcher};
use sluice_core::transform::{
    transform_read, DateFilter, Mapping, TransformError, TransformReport, TransformVerdict,
};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{Claim, Lease, Store, TransformCounts};
use sluice_lambda::delivery::{message_failed, Waiting};
use sluice_lambda::invocation_lease;
use tokio_util::io::SyncIoBridge;
use uuid::Uuid;

type Error = lambda_runtime::Error;

/// What the handler works with, built once per container.
pub struct Deps {
    pub config: PipelineConfig,
    pub store: Store,
    pub objects: ObjectStore,
    pub queue: Queue,
    /// The clean bucket: the only one this stage reads clean files from and writes batches
    /// and reports to.
    pub clean_bucket: String,
    /// The transform queue's `maxReceiveCount`: a message that fails on this delivery goes
    /// to the dead-letter queue next, so its file is marked failed.
    pub max_receive_count: u32,
}

/// Handles a batch of SQS messages, reporting the ones that failed.
pub async fn handle(event: LambdaEvent<SqsEvent>, deps: &Deps) -> Result<SqsBatchResponse, Error> {
    let deadline = stop_before(event.context.deadline);
    let lease = invocation_lease("transformer", &event.context);
    let mut response = SqsBatchResponse::default();
    for message in &event.payload.records {
        let message_id = message.message_id.clone().unwrap_or_default();
        let outcome = match deadline {
            // Past the deadline the message is left for SQS to deliver again; batches already
            // sent keep their ids, so the re-run's duplicates are recognized downstream.
            Some(at) => tokio::time::timeout_at(at.into(), process(message, deps, &lease))
                .await
                .unwrap_or_else(|_| {
                    Err("stopped before the Lambda timeout; will be retried".into())
                }),
            None => process(message, deps, &lease).await,
        };
        if let Err(e) = outcome {
            let file_id = message
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<FileSanitized>(b).ok())
                .map(|m| m.file_id);
            message_failed(
                &deps.store,
                Stage::Transformer,
                file_id,
                message,
                deps.max_receive_count,
                &*e,
            )
            .await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

async fn process(message: &SqsMessage, deps: &Deps, lease: &Lease) -> Result<(), Error> {
    let body = message.body.as_deref().ok_or("the message has no body")?;
    let sanitized: FileSanitized =
        serde_json::from_str(body).map_err(|e| format!("not a \"file sanitized\" message: {e}"))?;
    let id = sanitized.file_id;
    let dataset = deps.config.dataset(&sanitized.dataset)?;
    layout::check_clean_file(
        &sanitized.clean_bucket,
        &sanitized.clean_key,
        &deps.clean_bucket,
        &dataset.name,
        id,
    )?;
    let Some(mapping) = &dataset.mapping else {
        deps.store
            .fail(
                id,
                Stage::Transformer,
                &format!("dataset `{}` has no mapping", dataset.name),
            )
            .await?;
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
        .await?;
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
                .await?
            {
                Claim::Won { .. } => delivered = deps.store.delivered_batches(id).await?,
                Claim::Busy => {
                    let why = format!("file {id} is being re-sent by another worker");
                    return Err(Waiting(why).into());
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
            return Err(Waiting(why).into());
        }
        // The sanitizer sends this message just before it records `sanitized`: the message
        // can win the race. Fail it, and SQS brings it back once the status is there.
        Claim::Elsewhere(FileStatus::Received | FileStatus::Sanitizing) => {
            return Err(Waiting(format!("file {id} is not marked sanitized yet")).into());
        }
        Claim::Elsewhere(status) => {
            tracing::info!(file_id = %id, status = %status, "already transformed: duplicate message skipped");
            return Ok(());
        }
        Claim::Missing => return Err(format!("file {id} is not in the status store").into()),
    }
    let filter = sanitized.date_range.as_ref().map(date_filter).transpose()?;
    let delivery = &dataset.delivery;

    // Pass one counts, so every batch can carry the total; nothing is sent yet.
    let mut total = 0u32;
    let counted = match Pass::start(deps, &sanitized, mapping, filter, delivery).await {
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
            deps.store.fail(id, Stage::Transformer, &reason).await?;
            return Ok(());
        }
        Err(PassError::Retry(e)) => return Err(retry(deps, id, lease, e).await),
    };
    put_report(deps, &sanitized, &counted).await?;
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
            .await?;
        tracing::warn!(file_id = %id, dataset = %dataset.name, reason = %reason, "file failed to transform");
        return Ok(());
    }

    // Pass two sends: batch ids are the file id and sequence, the same on every run.
    let mut sender = Sender {
        deps,
        message: &sanitized,
        total,
        seq: 0,
        pending: Vec::new(),
        delivered: &delivered,
        resent: 0,
    };
    let sent = match Pass::start(deps, &sanitized, mapping, filter, delivery).await {
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
        .await?;
    // Fast forwarders may have delivered every batch already (or there are none): then the
    // file is delivered now, as no later batch will come to settle it.
    deps.store.settle_delivery(id).await?;
    if sanitized.resend {
        deps.store.release(id, &lease.owner).await?;
        tracing::info!(file_id = %id, dataset = %dataset.name, batches = total, resent,
            already_delivered = delivered.len(), "undelivered batches re-sent");
        return Ok(());
    }
    tracing::info!(file_id = %id, dataset = %dataset.name, rows_in = counted.rows_in,
        records = counted.records_out, rows_filtered = counted.rows_filtered,
        rows_failed = counted.rows_failed, batches = total, "file transformed");
    Ok(())
}

fn date_filter(range: &sluice_core::message::DateRange) -> Result<DateFilter, Error> {
    let date = |d: &Option<String>| -> Result<Option<NaiveDate>, Error> {
        d.as_deref()
            .map(|s| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("bad date {s:?} in date_range").into())
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
    async fn start(
        deps: &Deps,
        message: &FileSanitized,
        mapping: &Mapping,
        filter: Option<DateFilter>,
        delivery: &Delivery,
    ) -> Result<Self, PassError> {
        let (batch_size, max_bytes) = (delivery.batch_size, delivery.batch_max_bytes);
        let (body, _) = deps
            .objects
            .open(&message.clean_bucket, &message.clean_key, None)
            .await
            .map_err(|e| PassError::Retry(e.to_string()))?;
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
struct Sender<'a> {
    deps: &'a Deps,
    message: &'a FileSanitized,
    total: u32,
    seq: u32,
    pending: Vec<String>,
    /// Ids of batches not to send again (they have a 2xx on record).
    delivered: &'a HashSet<String>,
    /// Batches sent by this pass.
    resent: u32,
}

impl Sender<'_> {
    async fn send(&mut self, batch: Batch) -> Result<(), String> {
        self.seq += 1;
        let (id, dataset) = (self.message.file_id, self.message.dataset.as_str());
        if self.delivered.contains(&batch_id(id, self.seq)) {
            return Ok(());
        }
        self.resent += 1;
        let mut body = inline_message(id, dataset, self.seq, self.total, &batch);
        if body.len() > MAX_BATCH_BYTES {
            let key = layout::claim_check_key(id, self.seq);
            let bucket = &self.message.clean_bucket;
            self.deps
                .objects
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
        self.deps
            .queue
            .send_all(&self.pending)
            .await
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        Ok(())
    }
}

async fn put_report(
    deps: &Deps,
    message: &FileSanitized,
    report: &TransformReport,
) -> Result<(), Error> {
    let key = layout::transform_report_key(message.file_id);
    let body = serde_json::to_vec_pretty(report)?;
    deps.objects
        .put(&message.clean_bucket, &key, body, "application/json")
        .await?;
    Ok(())
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

async fn retry(deps: &Deps, id: Uuid, lease: &Lease, error: String) -> Error {
    // Released, so the message's next delivery can claim the file again at once.
    if let Err(e) = deps.store.release(id, &lease.owner).await {
        tracing::error!(file_id = %id, error = %e, "could not release the lease");
    }
    if let Err(e) = deps.store.note_error(id, Stage::Transformer, &error).await {
        tracing::error!(file_id = %id, error = %e, "could not record the error in the status store");
    }
    error.into()
}
