//! The file status model shared by every stage and the status store.
//!
//! ```text
//! received -> sanitizing -> sanitized | rejected -> transforming -> transformed
//!          -> delivering -> delivered,   and failed from any stage that is not finished
//! ```
//!
//! Statuses only move forward, so a stale or duplicate writer (a redelivered event, a retry
//! racing a newer run) can never move a file back. `rejected`, `delivered` and `failed` are
//! final.

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

    /// Position along the chain; `sanitized` and `rejected` are the two outcomes of one step.
    fn rank(self) -> u8 {
        match self {
            FileStatus::Received => 0,
            FileStatus::Sanitizing => 1,
            FileStatus::Sanitized | FileStatus::Rejected => 2,
            FileStatus::Transforming => 3,
            FileStatus::Transformed => 4,
            FileStatus::Delivering => 5,
            FileStatus::Delivered => 6,
            FileStatus::Failed => 7,
        }
    }

    /// Whether a file in this status may move to `next`: forward only, never out of a final
    /// status, and a rejected file never goes on down the pipeline.
    pub fn may_become(self, next: FileStatus) -> bool {
        !self.is_final() && next.rank() > self.rank()
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
        assert_eq!(
            Transforming.predecessors(),
            [Received, Sanitizing, Sanitized]
        );
    }
}
