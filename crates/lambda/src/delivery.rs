//! What an SQS consumer does with a message that failed: report it alone as a batch item
//! failure, so SQS delivers it again; and on its last delivery before the dead-letter queue,
//! mark its file `failed` with the stage and the reason, so no file waits for ever on a message
//! that is gone. A message that only waits for another worker (or for an earlier stage to
//! finish) never fails its file.

use aws_lambda_events::sqs::SqsMessage;
use sluice_core::Stage;
use sluice_db::Store;
use sluice_stages::{Fault, FaultKind};
use uuid::Uuid;

/// How many times SQS has delivered this message, this time included.
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Records that `message` (about file `file_id`, when it could be read) failed with `error`:
/// on its last delivery (`max_receive_count`, the queue's `maxReceiveCount`) the file becomes
/// `failed`, unless the error is a [`FaultKind::Waiting`] fault.
pub async fn message_failed(
    store: &Store,
    stage: Stage,
    file_id: Option<Uuid>,
    message: &SqsMessage,
    max_receive_count: u32,
    error: &(dyn std::error::Error + 'static),
) {
    let count = receive_count(message);
    let waiting = error
        .downcast_ref::<Fault>()
        .is_some_and(|f| f.kind == FaultKind::Waiting);
    tracing::error!(message_id = message.message_id.as_deref().unwrap_or_default(),
        file_id = ?file_id, receive_count = count, error = %error,
        "message failed; SQS will deliver it again");
    let (Some(id), false, true) = (file_id, waiting, count >= max_receive_count) else {
        return;
    };
    let reason = format!(
        "{error}; delivery {count} of {max_receive_count}, so the message goes to the \
         dead-letter queue"
    );
    if let Err(e) = store.fail(id, stage, &reason).await {
        tracing::error!(file_id = %id, error = %e, "could not mark the file failed");
    }
}
