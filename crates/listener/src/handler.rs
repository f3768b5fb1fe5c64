//! One scheduled run: sweep the drop areas, register quarantine objects that have no row, then
//! re-drive stuck files, until the time runs low.

use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use sluice_aws::{ObjectStore, Queue};
use sluice_core::PipelineConfig;
use sluice_db::{Lease, Store};
use sluice_lambda::setup::deadline_at;
use sluice_lambda::{invocation_lease, Failure};

use crate::dead_letters::{sweep_dead_letters, DeadLetterCounts};
use crate::reconcile::{reconcile_quarantine, ReconcileCounts};
use crate::redrive::redrive_stuck;
use crate::sweep::{sweep_drops, SweepCounts};
use sluice_stages::redrive::RedriveCounts;

/// What a run works with, built once per container.
pub struct Deps {
    pub config: PipelineConfig,
    pub store: Store,
    pub objects: ObjectStore,
    /// Where FTP/SFTP servers land files; `None` when no dataset has a drop pattern.
    pub drop_bucket: Option<String>,
    pub quarantine_bucket: String,
    pub clean_bucket: String,
    /// The sanitizer's queue: a stuck `received`/`sanitizing` file's object event goes here.
    pub sanitize_queue: Queue,
    /// The transformer's queue: a stuck file's "file sanitized" message goes here.
    pub transform_queue: Queue,
    /// The forwarder's queue: its backlog says whether a file past its transform is waiting.
    pub forward_queue: Queue,
    /// A file that no worker holds and that has not moved for this long is idle: its input
    /// is sent again (with a doubling spacing), and it is never failed for it.
    pub stale_after: Duration,
    /// Re-drives of a file whose worker died (and copy attempts of a drop) before it is failed.
    pub max_redrives: i32,
    /// Keys per drop listing page (S3 returns at most 1,000).
    pub page_size: i32,
    /// Drop objects handled at the same time (claims keep each to one worker).
    pub copy_concurrency: usize,
    /// Days of quarantine prefixes the reconciliation lists (0: none).
    pub reconcile_days: u32,
    /// A quarantine object younger than this may still have its event on the way: the
    /// reconciliation leaves it to the sanitizer.
    pub reconcile_grace: Duration,
    /// The dead-letter queues of object events (the sanitize queue's, the EventBridge
    /// target's), swept for files that never got a row.
    pub object_dead_letter_queues: Vec<String>,
}

/// What one run did: the return value, and one log line.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub sweep: SweepCounts,
    #[serde(flatten)]
    pub reconcile: ReconcileCounts,
    #[serde(flatten)]
    pub dead_letters: DeadLetterCounts,
    #[serde(flatten)]
    pub redrive: RedriveCounts,
    /// The run stopped taking new work because its time ran low; the next run goes on.
    pub stopped_early: bool,
}

/// When a run stops taking new work.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    stop_at: Option<Instant>,
}

impl Budget {
    /// Stops a quarter of the time left before `deadline` (at most a minute), so the copy or
    /// re-drive under way when the time runs low still finishes.
    pub fn until(deadline: Option<Instant>) -> Self {
        let stop_at = deadline.map(|at| {
            let left = at.saturating_duration_since(Instant::now());
            at - (left / 4).min(Duration::from_secs(60))
        });
        Self { stop_at }
    }

    pub fn unlimited() -> Self {
        Self { stop_at: None }
    }

    pub fn low(&self) -> bool {
        self.stop_at.is_some_and(|at| Instant::now() >= at)
    }
}

/// The Lambda handler: the scheduled event's content does not matter (an EventBridge
/// Scheduled Event, or `{}` from a hand-made invocation).
pub async fn handle(event: LambdaEvent<Value>, deps: &Deps) -> Result<Summary, Failure> {
    let budget = Budget::until(deadline_at(event.context.deadline));
    let lease = invocation_lease("listener", &event.context);
    let scheduled_at = event
        .payload
        .get("time")
        .and_then(Value::as_str)
        .unwrap_or("");
    tracing::debug!(scheduled_at, "listener run");
    run(deps, &lease, budget).await
}

/// One run: drops first (new files), then quarantine objects without a row, then dead object
/// events, then stuck files.
pub async fn run(deps: &Deps, lease: &Lease, budget: Budget) -> Result<Summary, Failure> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut stopped = false;
    if let Some(bucket) = &deps.drop_bucket {
        stopped = sweep_drops(deps, bucket, lease, budget, &mut summary.sweep).await?;
    }
    if !stopped {
        stopped = reconcile_quarantine(deps, budget, &mut summary.reconcile).await?;
    }
    if !stopped {
        stopped = sweep_dead_letters(deps, budget, &mut summary.dead_letters).await?;
    }
    if !stopped {
        stopped = redrive_stuck(deps, budget, &mut summary.redrive).await?;
    }
    summary.stopped_early = stopped;
    // API health's hourly roll-up (one statement; the dashboard reads the rest from api_call,
    // so a run that skips it loses nothing).
    if !stopped {
        match deps.store.rollup_api_calls().await {
            Ok(rows) => tracing::debug!(rows, "api calls rolled up by hour"),
            Err(e) => {
                tracing::warn!(error = %e, "could not roll up api calls (the dashboard reads them directly)")
            }
        }
    }
    let s = &summary;
    tracing::info!(
        scanned = s.sweep.scanned,
        registered = s.sweep.registered,
        copied = s.sweep.copied,
        settling = s.sweep.settling,
        unmatched = s.sweep.unmatched,
        known = s.sweep.known,
        claimed_elsewhere = s.sweep.claimed_elsewhere,
        copy_errors = s.sweep.copy_errors,
        drops_given_up = s.sweep.drops_given_up,
        reconcile_listed = s.reconcile.reconcile_listed,
        reconcile_registered = s.reconcile.reconcile_registered,
        reconcile_errors = s.reconcile.reconcile_errors,
        dead_letters_returned = s.dead_letters.dead_letters_returned,
        dead_letters_settled = s.dead_letters.dead_letters_settled,
        dead_letters_kept = s.dead_letters.dead_letters_kept,
        redriven_sanitize = s.redrive.redriven_sanitize,
        redriven_transform = s.redrive.redriven_transform,
        redriven_forward = s.redrive.redriven_forward,
        resent_idle = s.redrive.resent_idle,
        redrive_errors = s.redrive.errors,
        given_up = s.redrive.given_up,
        stopped_early = s.stopped_early,
        duration_ms = started.elapsed().as_millis() as u64,
        "listener run"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_count_once() {
        let json = serde_json::to_value(Summary::default()).unwrap();
        let keys = json.as_object().unwrap().len();
        // 9 sweep counts, 3 reconcile counts, 3 dead-letter counts, 7 re-drive counts,
        // stopped_early: none hidden by another's name.
        assert_eq!(keys, 9 + 3 + 3 + 7 + 1, "{json}");
    }

    #[test]
    fn a_budget_stops_before_the_deadline_and_none_never_stops() {
        assert!(!Budget::unlimited().low());
        let soon = Budget::until(Some(Instant::now() + Duration::from_secs(400)));
        assert!(!soon.low());
        assert!(Budget::until(Some(Instant::now())).low());
        // Four seconds left: it stops at three, taking nothing new in the last second.
        let short = Budget::until(Some(Instant::now() + Duration::from_secs(4)));
        assert!(short.stop_at.unwrap() <= Instant::now() + Duration::from_secs(3));
    }
}
