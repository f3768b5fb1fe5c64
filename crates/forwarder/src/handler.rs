//! The forwarder's event adapter: SQS messages of "record batch" in, each through the forward
//! stage (`sluice_stages::forward`), the messages that were not delivered out.
//!
//! Messages are handled concurrently (up to `SLUICE_FORWARD_CONCURRENCY`), each on its own:
//! one that is not delivered is reported alone as a batch item failure, so SQS delivers it
//! again and, after the queue's max receive count, moves it to the dead-letter queue.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures_util::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use sluice_aws::ObjectStore;
use sluice_core::message::RecordBatchRef;
use sluice_core::{PipelineConfig, Stage};
use sluice_db::{Lease, Store};
use sluice_lambda::delivery::{message_failed, receive_count};
use sluice_lambda::invocation_lease;
use sluice_lambda::setup::{deadline_at, stop_before};
use sluice_stages::delivery::Targets;
use sluice_stages::forward::{forward_batch, Forward, MessageDelivery};

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
    let stage = Forward {
        config: &deps.config,
        targets: &deps.targets,
        store: &deps.store,
        objects: &deps.objects,
        poster: &deps.http,
        clean_bucket: &deps.clean_bucket,
    };
    let delivery = MessageDelivery {
        receive_count: receive_count(message),
        max_receive_count: deps.max_receive_count,
    };
    Ok(forward_batch(&stage, body, delivery, stop, lease).await?)
}
