//! "Record batch" messages in, POSTs to the dataset's API out.
//!
//! Messages are handled concurrently (up to `SLUICE_FORWARD_CONCURRENCY`), each on its own:
//! one that is not delivered is reported alone as a batch item failure, so SQS delivers it
//! again and, after the queue's max receive count, moves it to the dead-letter queue.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde_json::json;
use sluice_aws::setup::{deadline_at, stop_before};
use sluice_aws::ObjectStore;
use sluice_core::delivery::{request_body, BatchHeader};
use sluice_core::layout;
use sluice_core::message::{RecordBatchRef, RecordsAt};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{Claim, Lease, Store};
use sluice_lambda::delivery::{message_failed, receive_count, Waiting};
use sluice_lambda::invocation_lease;

use sluice_stages::delivery::{deliver, Outcome, Targets};

type Error = lambda_runtime::Error;

/// What the handler works with, built once per container.
pub struct Deps {
    pub config: PipelineConfig,
    pub targets: Targets,
    pub store: Store,
    pub objects: ObjectStore,
    pub http: reqwest::Client,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// The queue's `maxReceiveCount`: a message that fails on this delivery goes to the
    /// dead-letter queue next, so its file is marked failed.
    pub max_receive_count: u32,
    /// The clean bucket: the only one claim checks are read from.
    pub clean_bucket: String,
}

/// Handles a batch of SQS messages, reporting the ones that were not delivered.
pub async fn handle(event: LambdaEvent<SqsEvent>, deps: &Deps) -> Result<SqsBatchResponse, Error> {
    let stop = stop_before(event.context.deadline);
    let lease = invocation_lease("forwarder", &event.context);
    let lease = &lease;
    // The last resort if something other than HTTP hangs (the database, S3): well after
    // `stop`, which attempts respect, and still before Lambda's own deadline.
    let hard_stop = deadline_at(event.context.deadline)
        .map(|d| d.checked_sub(Duration::from_secs(1)).unwrap_or(d));
    let results: Vec<(&SqsMessage, Result<(), Error>)> = stream::iter(&event.payload.records)
        .map(|message| async move {
            let work = process(message, deps, stop, lease);
            let outcome = match hard_stop {
                Some(at) => tokio::time::timeout_at(at.into(), work)
                    .await
                    .unwrap_or_else(|_| Err("stopped before the Lambda timeout".into())),
                None => work.await,
            };
            (message, outcome)
        })
        .buffer_unordered(deps.concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (message, outcome) in results {
        if let Err(e) = outcome {
            let file_id = message
                .body
                .as_deref()
                .and_then(|b| RecordBatchRef::parse(b).ok())
                .map(|b| b.file_id);
            message_failed(
                &deps.store,
                Stage::Forwarder,
                file_id,
                message,
                deps.max_receive_count,
                &*e,
            )
            .await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

async fn process(
    message: &SqsMessage,
    deps: &Deps,
    stop: Option<Instant>,
    lease: &Lease,
) -> Result<(), Error> {
    let body = message.body.as_deref().ok_or("the message has no body")?;
    let batch = RecordBatchRef::parse(body)?;
    let header = batch.header();
    let id = batch.file_id;
    // One worker delivers a batch, holding the claim across the POST: two copies of one
    // message never both send it. The loser's message comes back later and is then a no-op.
    match deps.store.claim_batch(id, &batch.batch_id, lease).await? {
        Claim::Won { .. } => {}
        _ => {
            let why = format!(
                "batch {} is being delivered by another worker",
                batch.batch_id
            );
            return Err(Waiting(why).into());
        }
    }
    let delivered = deliver_claimed(deps, &batch, &header, message, stop).await;
    // A recorded 2xx released the claim already, in the same statement.
    if !matches!(delivered, Ok(Posted::Delivered)) {
        if let Err(e) = deps
            .store
            .release_batch(&batch.batch_id, &lease.owner)
            .await
        {
            tracing::error!(batch_id = %batch.batch_id, error = %e, "could not release the batch claim");
        }
    }
    delivered.map(|_| ())
}

/// What became of a claimed batch that raised no error.
enum Posted {
    /// A 2xx was recorded now.
    Delivered,
    /// It had been delivered before: nothing was sent.
    Already,
}

/// Delivers a batch this invocation has claimed.
async fn deliver_claimed(
    deps: &Deps,
    batch: &RecordBatchRef<'_>,
    header: &BatchHeader<'_>,
    message: &SqsMessage,
    stop: Option<Instant>,
) -> Result<Posted, Error> {
    let id = batch.file_id;
    let history = deps.store.batch_history(&batch.batch_id).await?;
    if history.delivered {
        tracing::info!(file_id = %id, batch_id = %batch.batch_id,
            "batch already delivered: duplicate message skipped");
        deps.store.settle_delivery(id).await?;
        return Ok(Posted::Already);
    }
    let receive_count = receive_count(message);
    let target = match deps.targets.get(&batch.dataset, &deps.config) {
        Ok(target) => target,
        Err(reason) => return Err(not_delivered(deps, header, receive_count, reason).await),
    };
    let row = deps
        .store
        .file(id)
        .await?
        .ok_or_else(|| format!("file {id} is not in the status store"))?;
    // Only a file the transformer has finished moves on: while it is `transforming`, its
    // batch count is not recorded yet (the transformer settles it when it is).
    if row.status == FileStatus::Transformed {
        deps.store
            .advance(id, Stage::Forwarder, FileStatus::Delivering, json!({}))
            .await?;
    }
    let claim_checked;
    let records: &[u8] = match &batch.records {
        RecordsAt::Inline(text) => text.as_bytes(),
        RecordsAt::S3(at) => {
            layout::check_claim_check(&at.bucket, &at.key, &deps.clean_bucket, id, batch.seq)?;
            // The transformer never writes a batch larger than the dataset's cap.
            let limit = deps
                .config
                .dataset(&batch.dataset)?
                .delivery
                .batch_max_bytes;
            claim_checked = deps
                .objects
                .read_small(&at.bucket, &at.key, limit as u64)
                .await?;
            &claim_checked
        }
    };
    let body = Bytes::from(request_body(target.body, header, records));
    let mut outcome = deliver(
        &deps.http,
        &deps.store,
        &target,
        header,
        body.clone(),
        history.attempts + 1,
        stop,
    )
    .await?;
    // Keys rotate: a refused credential is read again once before the refusal counts.
    if outcome.credentials_refused() && target.has_credentials {
        tracing::info!(dataset = %batch.dataset, batch_id = %batch.batch_id,
            "the API refused the credentials: reading them again (rotated?)");
        let dataset = deps.config.dataset(&batch.dataset)?;
        let fresh = deps.targets.refresh(dataset, target.endpoint.clone()).await;
        match fresh {
            Ok(fresh) => {
                let next = history.attempts + 1 + outcome.attempts() as i32;
                outcome =
                    deliver(&deps.http, &deps.store, &fresh, header, body, next, stop).await?;
            }
            Err(reason) => {
                return Err(not_delivered(deps, header, receive_count, reason).await);
            }
        }
    }
    match outcome {
        Outcome::Delivered { attempts, status } => {
            let now = deps.store.settle_delivery(id).await?;
            tracing::info!(file_id = %id, dataset = %batch.dataset, batch_id = %batch.batch_id,
                seq = batch.seq, total = batch.total, records = batch.count, attempts, status,
                file_status = %now, "batch delivered");
            Ok(Posted::Delivered)
        }
        Outcome::NotDelivered { error, .. } => {
            Err(not_delivered(deps, header, receive_count, error).await)
        }
    }
}

/// Records why a batch was not delivered. On the message's last delivery before the
/// dead-letter queue, the file is marked failed with that reason.
async fn not_delivered(
    deps: &Deps,
    batch: &BatchHeader<'_>,
    receive_count: u32,
    error: String,
) -> Error {
    let reason = format!(
        "batch {}/{} ({}) not delivered: {error}",
        batch.seq, batch.total, batch.batch_id
    );
    let written = if receive_count >= deps.max_receive_count {
        let final_reason = format!(
            "{reason}; delivery {receive_count} of {}, so the message goes to the \
             dead-letter queue",
            deps.max_receive_count
        );
        deps.store
            .fail(batch.file_id, Stage::Forwarder, &final_reason)
            .await
            .map(|_| ())
    } else {
        deps.store
            .note_error(batch.file_id, Stage::Forwarder, &reason)
            .await
    };
    if let Err(e) = written {
        tracing::error!(file_id = %batch.file_id, error = %e,
            "could not record the error in the status store");
    }
    reason.into()
}
