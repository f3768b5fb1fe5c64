//! The one rule for files that are final (`delivered`, `rejected`, `failed`): no stage works
//! for them. A message that arrives for a final file (a late duplicate, a re-drive that crossed
//! the file's last step, a dead letter moved back) is dropped: a log line and a `file_event`
//! say so, nothing is sent, and the message is not retried.

use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::fault::Fault;
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
