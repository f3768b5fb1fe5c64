//! The one rule for files that are final (`delivered`, `rejected`, `failed`): no stage works
//! for them. A message that arrives for a final file (a late duplicate, a re-drive that crossed
//! the file's last step, a dead letter moved back) is dropped: a log line and a `file_event`
//! say so, nothing is sent, and the message is not retried. And the one rule for a message on
//! its last delivery ([`message_failed`]).

use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::{Progress, Registry};

/// Drops `what` (a message's name, e.g. `record batch <id>`) about file `id`, which is
/// `status` (final): recorded in the file's history, and `Ok` so the message is deleted.
pub async fn drop_late<S: Progress>(
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
pub async fn message_failed<S: Registry + Progress>(
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use serde_json::Value;

    use super::*;
    use crate::ports::{EventRow, FileRow, NewFile, Registered, Storage};

    /// The two ports the last-delivery rule asks for, kept in a list: a store that has lost the
    /// file's row (so no re-drive can be waited for) and records what it is told.
    #[derive(Default)]
    struct Told(Mutex<Vec<String>>);

    impl Storage for Told {
        type Error = Infallible;
    }

    impl Registry for Told {
        async fn register(&self, file: &NewFile<'_>) -> Result<Registered, Infallible> {
            panic!(
                "the rule registers nothing (asked to register {})",
                file.key
            )
        }
        async fn file(&self, _: Uuid) -> Result<Option<FileRow>, Infallible> {
            Ok(None)
        }
        async fn events(&self, _: Uuid) -> Result<Vec<EventRow>, Infallible> {
            Ok(Vec::new())
        }
    }

    impl Progress for Told {
        async fn advance(
            &self,
            _: Uuid,
            _: Stage,
            to: FileStatus,
            _: Value,
        ) -> Result<bool, Infallible> {
            self.0.lock().unwrap().push(format!("advance to {to}"));
            Ok(true)
        }
        async fn fail(&self, _: Uuid, stage: Stage, error: &str) -> Result<bool, Infallible> {
            self.0
                .lock()
                .unwrap()
                .push(format!("fail at {}: {error}", stage.as_str()));
            Ok(true)
        }
        async fn note_error(&self, _: Uuid, _: Stage, error: &str) -> Result<(), Infallible> {
            self.0.lock().unwrap().push(format!("note {error}"));
            Ok(())
        }
        async fn note_dropped(&self, _: Uuid, _: Stage, what: &str) -> Result<(), Infallible> {
            self.0.lock().unwrap().push(format!("dropped {what}"));
            Ok(())
        }
    }

    fn delivery(receive_count: u32) -> Delivery {
        Delivery {
            receive_count,
            max_receive_count: 3,
        }
    }

    #[tokio::test]
    async fn only_the_last_delivery_of_a_failing_message_fails_its_file() {
        let store = Told::default();
        let id = Uuid::nil();
        let fault = Fault::new(FaultKind::Store, "the status store timed out");
        for n in 1..3 {
            assert!(!message_failed(&store, Stage::Forwarder, Some(id), delivery(n), &fault).await);
        }
        assert!(store.0.lock().unwrap().is_empty());

        assert!(message_failed(&store, Stage::Forwarder, Some(id), delivery(3), &fault).await);
        assert_eq!(
            store.0.lock().unwrap().as_slice(),
            ["fail at forwarder: the status store timed out; delivery 3 of 3, so the message goes to \
              the dead-letter queue"]
        );
    }

    #[tokio::test]
    async fn a_message_waiting_for_another_worker_never_fails_its_file() {
        let store = Told::default();
        let fault = Fault::new(FaultKind::Waiting, "another worker holds the file");
        let failed = message_failed(
            &store,
            Stage::Transformer,
            Some(Uuid::nil()),
            delivery(3),
            &fault,
        )
        .await;
        assert!(!failed);
        assert!(store.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_late_message_is_dropped_with_a_note_in_the_history() {
        let store = Told::default();
        let what = "record batch f-00001";
        drop_late(
            &store,
            Uuid::nil(),
            Stage::Forwarder,
            FileStatus::Delivered,
            what,
        )
        .await
        .unwrap();
        assert_eq!(
            store.0.lock().unwrap().as_slice(),
            ["dropped record batch f-00001"]
        );
    }
}
