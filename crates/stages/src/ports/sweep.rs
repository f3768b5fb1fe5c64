//! Finding files that stopped short of a final status, and deciding what becomes of them:
//! what the listener's sweep (and `sluice run`) asks of the status store.
//!
//! Two kinds of stuck, told apart because only one of them means something died:
//! - **lease lapsed**: a worker claimed the file and its lease ran out, so the worker died
//!   mid-stage. Re-driven at most `max_redrives` times, then failed.
//! - **idle**: no worker holds the file and it has not moved for the stale time. Its stage's
//!   input is waiting in a queue (a backlog), or was lost. Its input is sent again (the
//!   stage's claims make a duplicate a no-op), with a spacing that doubles with each re-send
//!   (stale, 2 x stale, 4 x stale, ... up to [`MAX_DOUBLINGS`] doublings), and it is never
//!   failed for waiting: a message that keeps failing fails its file through the stage's own
//!   last-delivery rule.
//!
//! Every decision re-checks, as it acts, what the listing saw: a file that moved, was claimed
//! or was re-driven by an overlapping sweep in between is left alone.

use std::future::Future;
use std::time::Duration;

use sluice_core::FileStatus;
use uuid::Uuid;

use crate::ports::Storage;

/// Idle re-sends are spaced `stale x 2^min(resends, MAX_DOUBLINGS)` apart.
pub const MAX_DOUBLINGS: i32 = 6;

/// Why a file is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// Its worker's lease lapsed: the worker died. Counts toward `max_redrives`.
    LeaseLapsed,
    /// No worker holds it and it has not moved for the stale time (times the spacing of its
    /// re-sends so far): its input waits in a queue, or was lost. Never failed for this.
    Idle,
}

impl Stuck {
    pub fn as_str(self) -> &'static str {
        match self {
            Stuck::LeaseLapsed => "lease lapsed",
            Stuck::Idle => "idle",
        }
    }
}

/// A file that is not final and not moving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckFile {
    pub id: Uuid,
    pub dataset: String,
    pub status: FileStatus,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub clean_key: Option<String>,
    pub stuck: Stuck,
    /// Re-drives after lapsed leases so far.
    pub redrives: i32,
    /// Re-sends of an idle file's input so far.
    pub resends: i32,
}

/// What to do with a stuck file, decided as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Its worker died: re-send its stage's input; this is re-drive number `n`.
    Go { n: i32 },
    /// It is idle: re-send its stage's input; this is re-send number `n`.
    Resend { n: i32 },
    /// Its worker died after `max` re-drives already: it is now `failed` with the reason.
    GaveUp,
    /// Another sweep, or its own stage, moved or claimed it since it was listed: leave it.
    Moved,
}

/// How long an idle file waits before its next re-send.
pub fn idle_spacing(stale_after: Duration, resends: i32) -> Duration {
    stale_after * 2u32.pow(resends.clamp(0, MAX_DOUBLINGS) as u32)
}

/// The status store's side of the sweep.
pub trait Sweep: Storage {
    /// Up to `limit` stuck files, those whose worker died first, then the longest idle.
    fn stuck_files(
        &self,
        stale_after: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StuckFile>, Self::Error>> + Send;

    /// Decides, once across overlapping sweeps, what becomes of `file` (as listed): a file
    /// whose worker died is re-driven, or failed after `max_redrives`; an idle file's input is
    /// re-sent. Each decision re-checks what the listing saw and leaves a `file_event` with
    /// the reason (`why`).
    fn redrive(
        &self,
        file: &StuckFile,
        max_redrives: i32,
        stale_after: Duration,
        why: &str,
    ) -> impl Future<Output = Result<Redrive, Self::Error>> + Send;
}
