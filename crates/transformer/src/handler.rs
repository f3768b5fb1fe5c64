//! The transformer's event adapter: SQS messages of "file sanitized" in, each through the
//! transform stage (`sluice_stages::transform`) inside the consumer shell
//! (`sluice_lambda::consumer`), the messages that failed out.
//!
//! Each message is handled on its own; one that fails is reported alone as a batch item
//! failure and put back with a backoff, so SQS delivers it again (and, after the queue's max
//! receive count, moves it to the dead-letter queue) while the others are done.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use sluice_aws::{ObjectStore, Queue, Visibility};
use sluice_core::message::FileSanitized;
use sluice_core::{PipelineConfig, Stage};
use sluice_db::{Lease, Store};
use sluice_lambda::consumer::{Backoff, Envelope, Shell};
use sluice_lambda::invocation_lease;
use sluice_lambda::setup::stop_before;
use sluice_stages::transform::{transform_file, Transform};
use sluice_stages::{Fault, FaultKind};

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
    /// Puts failed messages back with a backoff; `None` leaves them to the visibility timeout.
    pub visibility: Option<Visibility>,
}

/// Handles a batch of SQS messages, reporting the ones that failed.
pub async fn handle(event: LambdaEvent<SqsEvent>, deps: &Deps) -> Result<SqsBatchResponse, Error> {
    // Past the deadline a message is left for SQS to deliver again; batches already sent keep
    // their ids, so the re-run's duplicates are recognized downstream.
    let deadline = stop_before(event.context.deadline);
    let lease = invocation_lease("transformer", &event.context);
    let records = &event.payload.records;
    let envelopes: Vec<Envelope> = records
        .iter()
        .map(|m| Envelope::of(m, parse(m).ok().map(|s| s.file_id)))
        .collect();
    let shell = Shell {
        stage: Stage::Transformer,
        store: &deps.store,
        max_receive_count: deps.max_receive_count,
        backoff: Backoff::STAGE.configured(),
        visibility: deps.visibility.as_ref(),
    };
    Ok(shell
        .run(&envelopes, 1, deadline, |i| {
            process(&records[i], deps, &lease)
        })
        .await)
}

fn parse(message: &SqsMessage) -> Result<FileSanitized, Fault> {
    let bad = |why: String| Fault::new(FaultKind::BadInput, why);
    let body = message
        .body
        .as_deref()
        .ok_or_else(|| bad("the message has no body".into()))?;
    serde_json::from_str(body).map_err(|e| bad(format!("not a \"file sanitized\" message: {e}")))
}

async fn process(message: &SqsMessage, deps: &Deps, lease: &Lease) -> Result<(), Fault> {
    let sanitized = parse(message)?;
    let stage = Transform {
        config: &deps.config,
        store: &deps.store,
        objects: &deps.objects,
        queue: &deps.queue,
        clean_bucket: &deps.clean_bucket,
    };
    transform_file(&stage, &sanitized, lease).await
}
