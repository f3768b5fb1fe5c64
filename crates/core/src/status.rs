//! The file status model shared by every stage and the status store.
//!
//! ```text
//! received -> sanitizing -> sanitized | rejected -> transforming -> transformed
//!          -> delivering -> delivered,   and failed from any stage that is not finished
//! ```
//!
//! Statuses move only along the explicit table [`TRANSITIONS`] (the database guards the same
//! table, migration V4), so a stale or duplicate writer (a redelivered event, a retry racing a
//! newer run) can never move a file back or skip a step. `rejected`, `delivered` and `failed`
//! are final.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a file is in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Received,
    Sanitizing,
    Sanitized,
    Rejected,
    Transforming,
    Transformed,
    Delivering,
    Delivered,
    Failed,
}

impl FileStatus {
    /// Every status, in pipeline order.
    pub const ALL: [FileStatus; 9] = [
        FileStatus::Received,
        FileStatus::Sanitizing,
        FileStatus::Sanitized,
        FileStatus::Rejected,
        FileStatus::Transforming,
        FileStatus::Transformed,
        FileStatus::Delivering,
        FileStatus::Delivered,
        FileStatus::Failed,
    ];

    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Received => "received",
            FileStatus::Sanitizing => "sanitizing",
            FileStatus::Sanitized => "sanitized",
            FileStatus::Rejected => "rejected",
            FileStatus::Transforming => "transforming",
            FileStatus::Transformed => "transformed",
            FileStatus::Delivering => "delivering",
            FileStatus::Delivered => "delivered",
            FileStatus::Failed => "failed",
        }
    }

    /// No status follows this one.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FileStatus::Rejected | FileStatus::Delivered | FileStatus::Failed
        )
    }

    /// Whether a file in this status may move to `next`: only along [`TRANSITIONS`].
    pub fn may_become(self, next: FileStatus) -> bool {
        TRANSITIONS.contains(&(self, next))
    }

    /// The statuses from which a file may move to `self` (for a guarded SQL update).
    pub fn predecessors(self) -> Vec<FileStatus> {
        Self::ALL
            .into_iter()
            .filter(|from| from.may_become(self))
            .collect()
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every allowed status move, `(from, to)`. `failed` is reachable from every status that is not
/// final; `transformed` may go straight to `delivered` when every batch was delivered while the
/// file was still `transforming` (or there were none).
pub const TRANSITIONS: [(FileStatus, FileStatus); 15] = {
    use FileStatus::*;
    [
        (Received, Sanitizing),
        (Received, Failed),
        (Sanitizing, Sanitized),
        (Sanitizing, Rejected),
        (Sanitizing, Failed),
        (Sanitized, Transforming),
        (Sanitized, Failed),
        (Transforming, Transformed),
        (Transforming, Failed),
        (Transformed, Delivering),
        (Transformed, Delivered),
        (Transformed, Failed),
        (Delivering, Delivered),
        (Delivering, Failed),
        (Received, Rejected),
    ]
};

/// A status name that is not one of [`FileStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for FileStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The pipeline stage that writes a status or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Listener,
    Sanitizer,
    Transformer,
    Forwarder,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Listener => "listener",
            Stage::Sanitizer => "sanitizer",
            Stage::Transformer => "transformer",
            Stage::Forwarder => "forwarder",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::FileStatus::*;
    use super::*;

    #[test]
    fn moves_forward_along_the_chain() {
        let chain = [
            Received,
            Sanitizing,
            Sanitized,
            Transforming,
            Transformed,
            Delivering,
            Delivered,
        ];
        for pair in chain.windows(2) {
            assert!(pair[0].may_become(pair[1]), "{} -> {}", pair[0], pair[1]);
            assert!(!pair[1].may_become(pair[0]), "{} -> {}", pair[1], pair[0]);
        }
    }

    #[test]
    fn a_duplicate_writer_cannot_repeat_or_undo_a_step() {
        assert!(!Sanitizing.may_become(Sanitizing));
        assert!(!Transformed.may_become(Sanitized));
    }

    #[test]
    fn failed_is_reachable_from_every_unfinished_status_and_final_ones_stay() {
        for status in FileStatus::ALL {
            assert_eq!(status.may_become(Failed), !status.is_final(), "{status}");
            if status.is_final() {
                assert!(FileStatus::ALL.iter().all(|&next| !status.may_become(next)));
            }
        }
    }

    #[test]
    fn a_rejected_file_goes_no_further() {
        assert!(Sanitizing.may_become(Rejected));
        assert!(!Rejected.may_become(Transforming));
        assert!(!Sanitized.may_become(Rejected));
    }

    #[test]
    fn names_round_trip() {
        for status in FileStatus::ALL {
            assert_eq!(status.as_str().parse::<FileStatus>(), Ok(status));
        }
        assert!("done".parse::<FileStatus>().is_err());
        assert_eq!(Transforming.predecessors(), [Sanitized]);
        assert_eq!(Delivered.predecessors(), [Transformed, Delivering]);
    }

    #[test]
    fn no_step_is_skipped() {
        assert!(!Received.may_become(Sanitized));
        assert!(!Sanitized.may_become(Transformed));
        assert!(!Transforming.may_become(Delivered));
        assert!(!Sanitizing.may_become(Delivering));
    }
}
