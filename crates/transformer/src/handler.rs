//! The transformer's event adapter: SQS messages of "file sanitized" in, each through the
//! transform stage (`sluice_stages::transform`), the messages that failed out.
//!
//! Each message is handled on its own; one that fails is reported alone as a batch item
//! failure, so SQS redelivers it (and, after the queue's max receive count, moves it to the
//! dead-letter queue) while the others are done.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use sluice_aws::{ObjectStore, Queue};
use sluice_core::message::FileSanitized;
use sluice_core::{PipelineConfig, Stage};
use sluice_db::{Lease, Store};
use sluice_lambda::delivery::message_failed;
use sluice_lambda::invocation_lease;
use sluice_lambda::setup::stop_before;
use sluice_stages::transform::{transform_file, Transform};

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
    let stage = Transform {
        config: &deps.config,
        store: &deps.store,
        objects: &deps.objects,
        queue: &deps.queue,
        clean_bucket: &deps.clean_bucket,
    };
    Ok(transform_file(&stage, &sanitized, lease).await?)
}
