//! The one rule for files that are final (`delivered`, `rejected`, `failed`): no stage works
//! for them. A message that arrives for a final file (a late duplicate, a re-drive that crossed
//! the file's last step, a dead letter moved back) is dropped: a log line and a `file_event`
//! say so, nothing is sent, and the message is not retried. And the one rule for a message on
//! its last delivery ([`message_failed`]).

use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::StatusStore;

/// Drops `what` (a message's name, e.g. `record batch <id>`) about file `id`, which is
/// `status` (final): recorded in the file's history, and `Ok` so the message is deleted.
pub async fn drop_late<S: StatusStore>(
    store: &S,
    id: Uuid,
    stage: Stage,
    status: FileStatus,
    what: &str,
) -> Result<(), Fault> {
    debug_assert!(status.is_final());
    tracing::info!(file_id = %id, status = %status, stage = stage.as_str(), message = what,
        "the file is final: message dropped");
    store
        .note_dropped(id, stage, what)
        .await
        .map_err(Fault::store)
}

/// Which delivery of its message this is, as the queue counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times the queue has delivered the message, this time included.
    pub receive_count: u32,
    /// The queue's `maxReceiveCount`: after this delivery the message goes to the
    /// dead-letter queue.
    pub max_receive_count: u32,
}

impl Delivery {
    /// A message's only delivery (a local run: nothing brings it back).
    pub const ONLY: Delivery = Delivery {
        receive_count: 1,
        max_receive_count: 1,
    };

    /// Nothing will deliver the message again (its next stop is the dead-letter queue).
    pub fn is_last(self) -> bool {
        self.receive_count >= self.max_receive_count
    }
}

/// The one last-delivery rule, for every consumer of a queue (and for local runs): a message
/// whose work failed with `fault` on its last delivery fails its file (`fault.file`, else
/// `file`) with the stage and the reason, so no file waits for ever on a message that is gone.
/// A [`FaultKind::Waiting`] fault never fails a file: the work is another worker's, or not
/// ready yet. Returns whether the file was failed now.
pub async fn message_failed<S: StatusStore>(
    store: &S,
    stage: Stage,
    file: Option<Uuid>,
    delivery: Delivery,
    fault: &Fault,
) -> bool {
    let file = fault.file.or(file);
    let (Some(id), false, true) = (file, fault.kind == FaultKind::Waiting, delivery.is_last())
    else {
        return false;
    };
    let Delivery {
        receive_count,
        max_receive_count,
    } = delivery;
    let reason = match max_receive_count {
        1 => fault.message.clone(),
        _ => format!(
            "{}; delivery {receive_count} of {max_receive_count}, so the message goes to the \
             dead-letter queue",
            fault.message
        ),
    };
    match store.fail(id, stage, &reason).await {
        Ok(failed) => failed,
        Err(e) => {
            tracing::error!(file_id = %id, error = %e, "could not mark the file failed");
            false
        }
    }
}
