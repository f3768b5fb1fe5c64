//! The forwarder's event adapter: SQS messages of "record batch" in, each through the forward
//! stage (`sluice_stages::forward`), the messages that were not delivered out.
//!
//! Messages are handled concurrently (up to `SLUICE_FORWARD_CONCURRENCY`) in the consumer
//! shell (`sluice_lambda::consumer`), each on its own: one that is not delivered is reported
//! alone as a batch item failure and put back with a backoff, so SQS delivers it again and,
//! after the queue's max receive count, moves it to the dead-letter queue.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use sluice_aws::{ObjectStore, Visibility};
use sluice_core::message::RecordBatchRef;
use sluice_core::{PipelineConfig, Stage};
use sluice_db::{Lease, Store};
use sluice_lambda::consumer::{Backoff, Envelope, Shell};
use sluice_lambda::invocation_lease;
use sluice_lambda::setup::{deadline_at, stop_before};
use sluice_stages::delivery::Targets;
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::{Fault, FaultKind};

type Error = lambda_runtime::Error;

/// What the handler works with, built once per container.
pub struct Deps {
    pub config: PipelineConfig,
    pub targets: Targets,
    pub store: Store,
    pub objects: ObjectStore,
    pub http: sluice_http::HttpPoster,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// The queue's `maxReceiveCount`: a message that fails on this delivery goes to the
    /// dead-letter queue next, so its file is marked failed.
    pub max_receive_count: u32,
    /// The clean bucket: the only one claim checks are read from.
    pub clean_bucket: String,
    /// Puts failed messages back with a backoff; `None` leaves them to the visibility timeout.
    pub visibility: Option<Visibility>,
}

/// Handles a batch of SQS messages, reporting the ones that were not delivered.
pub async fn handle(event: LambdaEvent<SqsEvent>, deps: &Deps) -> Result<SqsBatchResponse, Error> {
    let stop = stop_before(event.context.deadline);
    let lease = invocation_lease("forwarder", &event.context);
    // The last resort if something other than HTTP hangs (the database, S3): well after
    // `stop`, which attempts respect, and still before Lambda's own deadline.
    let hard_stop = deadline_at(event.context.deadline)
        .map(|d| d.checked_sub(Duration::from_secs(1)).unwrap_or(d));
    let records = &event.payload.records;
    let envelopes: Vec<Envelope> = records
        .iter()
        .map(|m| {
            let file = m
                .body
                .as_deref()
                .and_then(|b| RecordBatchRef::parse(b).ok());
            Envelope::of(m, file.map(|b| b.file_id))
        })
        .collect();
    let shell = Shell {
        stage: Stage::Forwarder,
        store: &deps.store,
        max_receive_count: deps.max_receive_count,
        backoff: Backoff::DELIVERY.configured(),
        visibility: deps.visibility.as_ref(),
    };
    Ok(shell
        .run(&envelopes, deps.concurrency, hard_stop, |i| {
            process(&records[i], deps, stop, &lease)
        })
        .await)
}

async fn process(
    message: &SqsMessage,
    deps: &Deps,
    stop: Option<Instant>,
    lease: &Lease,
) -> Result<(), Fault> {
    let body = message
        .body
        .as_deref()
        .ok_or_else(|| Fault::new(FaultKind::BadInput, "the message has no body"))?;
    let stage = Forward {
        config: &deps.config,
        targets: &deps.targets,
        store: &deps.store,
        objects: &deps.objects,
        poster: &deps.http,
        clean_bucket: &deps.clean_bucket,
    };
    forward_batch(&stage, body, stop, lease).await
}
