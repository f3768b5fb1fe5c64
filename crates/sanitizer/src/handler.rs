//! The sanitizer's event adapter: an S3 notification, an EventBridge event, or SQS messages of
//! either in; each object through the sanitize stage (`sluice_stages::sanitize`); the
//! outcomes, or the SQS messages that failed, out.

use std::time::Instant;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{ObjectStore, Queue};
use sluice_core::PipelineConfig;
use sluice_db::{Lease, Store};
use sluice_lambda::setup::stop_before;
use sluice_lambda::{invocation_lease, Failure, FailureKind};
pub use sluice_stages::sanitize::Outcome;
use sluice_stages::sanitize::{sanitize_object, LastDelivery, Sanitize};

use crate::event::{invocation, Invocation, ObjectCreated, Queued};

/// What the handler works with, built once per container.
pub struct Deps {
    pub config: PipelineConfig,
    pub store: Store,
    pub objects: ObjectStore,
    pub queue: Queue,
    pub clean_bucket: String,
    /// The sanitize queue's `maxReceiveCount`: a message that fails on this delivery goes to
    /// the dead-letter queue next, so its file is marked failed.
    pub max_receive_count: u32,
}

/// The handler's answer: the outcome of each object of a direct event, or the messages of an
/// SQS event that failed (each alone; SQS delivers them again).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Outcomes(Vec<Outcome>),
    Batch(SqsBatchResponse),
}

/// Handles an S3 notification or EventBridge event (an error makes Lambda retry the whole
/// event), or an SQS event of them (each message failing alone). Objects already handled are
/// recognized and skipped.
pub async fn handle(event: LambdaEvent<Value>, deps: &Deps) -> Result<Response, Failure> {
    let deadline = stop_before(event.context.deadline);
    let lease = invocation_lease("sanitizer", &event.context);
    let invocation =
        invocation(event.payload).map_err(|e| Failure::new(FailureKind::BadEvent, e))?;
    match invocation {
        Invocation::Direct(objects) => {
            let mut outcomes = Vec::with_capacity(objects.len());
            for object in objects {
                outcomes.push(process(&object, deps, deadline, &lease, None).await?);
            }
            Ok(Response::Outcomes(outcomes))
        }
        Invocation::Queued(messages) => {
            let mut response = SqsBatchResponse::default();
            for message in messages {
                if let Err(e) = process_message(&message, deps, deadline, &lease).await {
                    tracing::error!(message_id = %message.message_id, error = %e,
                        "message failed; SQS will deliver it again");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message.message_id;
                    response.batch_item_failures.push(failure);
                }
            }
            Ok(Response::Batch(response))
        }
    }
}

async fn process_message(
    message: &Queued,
    deps: &Deps,
    deadline: Option<Instant>,
    lease: &Lease,
) -> Result<(), Failure> {
    let objects = message
        .objects
        .as_ref()
        .map_err(|e| Failure::new(FailureKind::BadEvent, e.clone()))?;
    let last = (message.receive_count >= deps.max_receive_count)
        .then_some((message.receive_count, deps.max_receive_count));
    for object in objects {
        process(object, deps, deadline, lease, last).await?;
    }
    Ok(())
}

async fn process(
    object: &ObjectCreated,
    deps: &Deps,
    deadline: Option<Instant>,
    lease: &Lease,
    last: LastDelivery,
) -> Result<Outcome, Failure> {
    let stage = Sanitize {
        config: &deps.config,
        store: &deps.store,
        objects: &deps.objects,
        queue: &deps.queue,
        clean_bucket: &deps.clean_bucket,
    };
    Ok(sanitize_object(&stage, object, deadline, lease, last).await?)
}
