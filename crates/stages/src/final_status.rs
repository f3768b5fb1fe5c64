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

/// Whether a message for `stage` is ahead of a file in `status`: the file has not reached the
/// stage's input yet (a transform before `sanitized`, a batch before `transforming`).
fn ahead_of(stage: Stage, status: FileStatus) -> bool {
    use FileStatus::*;
    match stage {
        Stage::Transformer => matches!(status, Received | Sanitizing),
        Stage::Forwarder => matches!(status, Received | Sanitizing | Sanitized),
        _ => false,
    }
}

/// The one last-delivery rule, for every consumer of a queue (and for local runs): a message
/// whose work failed with `fault` on its last delivery fails its file (`fault.file`, else
/// `file`) with the stage and the reason, so no file waits for ever on a message that is gone.
/// A [`FaultKind::Waiting`] fault never fails a file: the work is another worker's, or not
/// ready yet; nor does a message that is ahead of its file (see [`ahead_of`]). Returns whether
/// the file was failed now.
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
    // A message that ran out of deliveries while its file was still in an earlier stage came
    // too early (that stage's worker sent it, then died before recording its status): the
    // earlier stage's re-drive sends it again, so the file is not failed for it.
    if let Ok(Some(row)) = store.file(id).await {
        if ahead_of(stage, row.status) {
            let why = format!(
                "a {} message ran out of deliveries while the file was still {}: {reason}; \
                 the re-drive of its {} stage sends it again",
                stage.as_str(),
                row.status,
                row.status
            );
            tracing::warn!(file_id = %id, status = %row.status, error = %fault.message,
                "message dead-lettered ahead of its file: the file is left to its re-drive");
            if let Err(e) = store.note_error(id, stage, &why).await {
                tracing::error!(file_id = %id, error = %e, "could not note the error");
            }
            return false;
        }
    }
    match store.fail(id, stage, &reason).await {
        Ok(failed) => failed,
        Err(e) => {
            tracing::error!(file_id = %id, error = %e, "could not mark the file failed");
            false
        }
    }
}
