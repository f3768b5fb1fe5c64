//! The sanitizer's event adapter: an S3 notification, an EventBridge event, or SQS messages of
//! either in; each object through the sanitize stage (`sluice_stages::sanitize`); the
//! outcomes, or the SQS messages that failed, out. SQS messages run in the consumer shell
//! (`sluice_lambda::consumer`): the last-delivery rule, batch item failures and backoff.

use std::time::Instant;

use aws_lambda_events::sqs::SqsBatchResponse;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{ObjectStore, Queue, Visibility};
use sluice_core::{PipelineConfig, Stage};
use sluice_db::{Lease, Store};
use sluice_lambda::consumer::{Backoff, Envelope, Shell};
use sluice_lambda::setup::stop_before;
use sluice_lambda::{invocation_lease, Failure, FailureKind};
pub use sluice_stages::sanitize::Outcome;
use sluice_stages::sanitize::{sanitize_object, Sanitize};
use sluice_stages::{Fault, FaultKind};

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
    /// Puts failed messages back with a backoff; `None` leaves them to the visibility timeout.
    pub visibility: Option<Visibility>,
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
                outcomes.push(process(&object, deps, deadline, &lease).await?);
            }
            Ok(Response::Outcomes(outcomes))
        }
        Invocation::Queued(messages) => {
            let envelopes: Vec<Envelope> = messages
                .iter()
                .map(|m| Envelope {
                    message_id: m.message_id.clone(),
                    receipt_handle: m.receipt_handle.clone(),
                    queue_arn: m.queue_arn.clone(),
                    receive_count: m.receive_count,
                    // Known once the stage registers the object (the fault names it).
                    file: None,
                })
                .collect();
            let shell = Shell {
                stage: Stage::Sanitizer,
                store: &deps.store,
                max_receive_count: deps.max_receive_count,
                backoff: Backoff::STAGE.configured(),
                visibility: deps.visibility.as_ref(),
            };
            let response = shell
                .run(&envelopes, 1, None, |i| {
                    process_message(&messages[i], deps, deadline, &lease)
                })
                .await;
            Ok(Response::Batch(response))
        }
    }
}

async fn process_message(
    message: &Queued,
    deps: &Deps,
    deadline: Option<Instant>,
    lease: &Lease,
) -> Result<(), Fault> {
    let objects = message
        .objects
        .as_ref()
        .map_err(|e| Fault::new(FaultKind::BadInput, e.clone()))?;
    for object in objects {
        sanitize_object(&stage(deps), object, deadline, lease).await?;
    }
    Ok(())
}

async fn process(
    object: &ObjectCreated,
    deps: &Deps,
    deadline: Option<Instant>,
    lease: &Lease,
) -> Result<Outcome, Failure> {
    Ok(sanitize_object(&stage(deps), object, deadline, lease).await?)
}

fn stage(deps: &Deps) -> Sanitize<'_, ObjectStore, Store, Queue> {
    Sanitize {
        config: &deps.config,
        store: &deps.store,
        objects: &deps.objects,
        queue: &deps.queue,
        clean_bucket: &deps.clean_bucket,
    }
}
