//! The transform stage: a "file sanitized" message in, record batches on the forward queue
//! (large ones by claim check), the report and the status out. The transformer Lambda and
//! `sluice run` both call [`transform_file`].
//!
//! A dataset with a record key sends only what changed: its first pass plans (see [`plan`]),
//! its second sends the plan.

mod pass;
mod plan;
mod send;

use std::collections::HashSet;

use chrono::NaiveDate;
use serde_json::json;
use sluice_core::layout;
use sluice_core::message::{batch_id, FileSanitized};
use sluice_core::plan::FilePlan;
use sluice_core::transform::delta::{scope_of, SizeBatches};
use sluice_core::transform::{DateFilter, Delta, Mapping, TransformReport, TransformVerdict};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::{
    Batches, Claim, Lease, Leases, Objects, Outbox, Outcomes, Plans, Progress, RecordPlanning,
    RecordPlans, Registry, ReplaySkip, TransformCounts,
};
use pass::{PassError, Source};
use plan::{Planner, Subject};
use send::Sender;

/// What the transformer asks of the status store: lease the file, fix its plan (and its record
/// plan, for a dataset with a record key), end it; and for a resend, the batches on record.
pub trait TransformStore:
    Registry + Progress + Outcomes + Leases + Plans + Batches + RecordPlanning + RecordPlans
{
}

impl<T> TransformStore for T where
    T: Registry + Progress + Outcomes + Leases + Plans + Batches + RecordPlanning + RecordPlans
{
}

/// Plan entries the second pass reads per round trip.
const PLAN_PAGE: usize = 8192;

/// SQS's limit on a message, and so on an inline batch.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What the stage works with.
pub struct Transform<'a, O, S, Q> {
    pub config: &'a PipelineConfig,
    pub store: &'a S,
    pub objects: &'a O,
    /// Where "record batch" messages go.
    pub queue: &'a Q,
    /// The only bucket clean files are read from and batches and reports written to.
    pub clean_bucket: &'a str,
}

/// Transforms the clean file a "file sanitized" message names into record batches on the
/// forward queue, once: the file is claimed (`sanitized -> transforming`), counted in a first
/// pass (for the report and each batch's total), sent in a second, and recorded
/// `transformed`. A copy of the message that finds the file claimed, or not sanitized yet,
/// waits ([`FaultKind::Waiting`]); one that finds it done is a no-op; a `resend` re-sends the
/// batches with no 2xx on record.
pub async fn transform_file<O: Objects, S: TransformStore, Q: Outbox>(
    deps: &Transform<'_, O, S, Q>,
    sanitized: &FileSanitized,
    lease: &Lease,
) -> Result<(), Fault> {
    let id = sanitized.file_id;
    layout::check_clean_file(
        &sanitized.clean_bucket,
        &sanitized.clean_key,
        deps.clean_bucket,
        &sanitized.dataset,
        id,
    )
    .map_err(|e| Fault::new(FaultKind::BadInput, e))?;
    // Batches already through (a re-drive's resend only): the others are sent again.
    let Some(mut delivered) = claim(deps, sanitized, lease).await? else {
        return Ok(());
    };
    // The first run to get here fixes the plan; every later one cuts the same batches with
    // it, whatever the config or the message says now.
    let proposed = FilePlan::proposed(deps.config, sanitized);
    let plan = crate::pin::fix_plan(deps.store, id, &proposed).await?;
    let sanitized = &plan.apply(sanitized);
    let dataset = match plan.pin.dataset(&sanitized.dataset) {
        Ok(dataset) => dataset,
        Err(reason) => return fail(deps, id, &reason).await,
    };
    let Some(mapping) = &dataset.mapping else {
        let reason = format!("dataset `{}` has no mapping", dataset.name);
        return fail(deps, id, &reason).await;
    };
    let skip = replay_skip(deps, id, mapping).await?;
    if let Some(skip) = &skip {
        delivered.extend(skip.delivered.iter().map(|&seq| batch_id(id, seq)));
    }
    let source = Source {
        message: sanitized,
        mapping,
        filter: sanitized
            .date_range
            .as_ref()
            .map(date_filter)
            .transpose()
            .map_err(|e| Fault::new(FaultKind::BadInput, e))?,
        batch_size: dataset.delivery.batch_size,
        batch_max_bytes: dataset.delivery.batch_max_bytes,
    };
    let Some((counted, total)) = first_pass(deps, &source, skip.as_ref(), lease).await? else {
        return Ok(());
    };
    let Some(resent) = second_pass(deps, &source, &counted, total, &delivered, lease).await? else {
        return Ok(());
    };
    let done = Done {
        counted: &counted,
        total,
        skipped: skip.as_ref().map_or(0, |s| s.delivered.len() as u32),
        resent,
        already_delivered: delivered.len(),
    };
    record_transformed(deps, sanitized, &done, lease).await
}

/// For a replay from the forward stage, the batches its earlier run delivered (not sent
/// again). A dataset with a record key needs none: its plan leaves out what the API has.
async fn replay_skip<O, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    id: Uuid,
    mapping: &Mapping,
) -> Result<Option<ReplaySkip>, Fault> {
    match &mapping.delta {
        Some(_) => Ok(None),
        None => deps.store.replay_skip(id).await.map_err(Fault::store),
    }
}

/// Pass one counts (or, with a record key, plans), so every batch can carry the total; nothing
/// is sent yet. The report is written. `None` when the pass ended the file (failed).
async fn first_pass<O: Objects, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
    skip: Option<&ReplaySkip>,
    lease: &Lease,
) -> Result<Option<(TransformReport, u32)>, Fault> {
    let id = source.message.file_id;
    let counted = match &source.mapping.delta {
        None => count(deps, source).await,
        Some(delta) => plan_once(deps, source, delta).await,
    };
    let (counted, total) = match counted {
        Ok(counted) => counted,
        Err(PassError::File(reason)) => return fail(deps, id, &reason).await.map(|()| None),
        Err(PassError::Retry(e)) => return Err(retry(deps, id, lease, e).await),
    };
    put_report(deps, source.message, &counted).await?;
    let dataset = &source.message.dataset;
    if let Some(reason) = skip.and_then(|s| replay_mismatch(s, &counted, total)) {
        tracing::warn!(file_id = %id, dataset = %dataset, reason = %reason, "replay refused");
        return fail(deps, id, &reason).await.map(|()| None);
    }
    if counted.verdict == TransformVerdict::Failed {
        let reason = counted.reason.clone().unwrap_or_default();
        let counts = TransformCounts {
            records: 0,
            batches: 0,
            rows_unmapped: counted.rows_failed as i64,
        };
        deps.store
            .finish_transform(
                id,
                FileStatus::Failed,
                counts,
                Some(&reason),
                summary(&counted, 0),
            )
            .await
            .map_err(Fault::store)?;
        tracing::warn!(file_id = %id, dataset = %dataset, reason = %reason, "file failed to transform");
        return Ok(None);
    }
    Ok(Some((counted, total)))
}

/// Pass two sends: batch ids are the file id and sequence, the same on every run. Returns how
/// many batches were sent again (a resend's); `None` when a batch differed from its plan and
/// the file was failed.
async fn second_pass<O: Objects, S: TransformStore, Q: Outbox>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
    counted: &TransformReport,
    total: u32,
    delivered: &HashSet<String>,
    lease: &Lease,
) -> Result<Option<u32>, Fault> {
    let id = source.message.file_id;
    let mut sender = Sender::new(
        deps.objects,
        deps.store,
        deps.queue,
        source.message,
        total,
        delivered,
    );
    let sent = match &source.mapping.delta {
        None => send_all(deps, source, &mut sender).await,
        // A plan that sends nothing needs no second read.
        Some(_) if total == 0 => Ok(counted.clone()),
        Some(delta) => send_planned(deps, source, delta, &mut sender).await,
    };
    if let Some(reason) = sender.mismatch.take() {
        tracing::error!(file_id = %id, dataset = %source.message.dataset, reason = %reason,
            "a batch differs from its plan: file failed");
        return fail(deps, id, &reason).await.map(|()| None);
    }
    let sent = match sent {
        Ok(report) => report,
        Err(PassError::File(reason) | PassError::Retry(reason)) => {
            return Err(retry(deps, id, lease, reason).await)
        }
    };
    if sent.records_out != counted.records_out {
        let why = "the clean file changed between the two passes".to_string();
        return Err(retry(deps, id, lease, why).await);
    }
    Ok(Some(sender.resent))
}

/// What the two passes did.
struct Done<'a> {
    counted: &'a TransformReport,
    total: u32,
    /// Batches a replay from forward leaves out.
    skipped: u32,
    /// Batches a resend sent again.
    resent: u32,
    /// Batches with a 2xx on record before this run.
    already_delivered: usize,
}

/// Records the file `transformed` (a resend finds it so already: that changes nothing), and
/// settles its delivery: fast forwarders may have delivered every batch already (or there are
/// none), and then no later batch will come to settle it.
async fn record_transformed<O, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    sanitized: &FileSanitized,
    done: &Done<'_>,
    lease: &Lease,
) -> Result<(), Fault> {
    let (id, counted, total) = (sanitized.file_id, done.counted, done.total);
    let counts = TransformCounts {
        records: counted.records_out as i64,
        // A replay from forward owes only the batches it does not skip.
        batches: total.saturating_sub(done.skipped) as i32,
        rows_unmapped: counted.rows_failed as i64,
    };
    deps.store
        .finish_transform(
            id,
            FileStatus::Transformed,
            counts,
            None,
            summary(counted, total),
        )
        .await
        .map_err(Fault::store)?;
    deps.store.settle_delivery(id).await.map_err(Fault::store)?;
    let dataset = &sanitized.dataset;
    if sanitized.resend {
        deps.store
            .release(id, &lease.owner)
            .await
            .map_err(Fault::store)?;
        tracing::info!(file_id = %id, dataset = %dataset, batches = total, resent = done.resent,
            already_delivered = done.already_delivered, "undelivered batches re-sent");
        return Ok(());
    }
    let delta = counted.delta.as_ref();
    tracing::info!(file_id = %id, dataset = %dataset, rows_in = counted.rows_in,
        records = counted.records_out, rows_filtered = counted.rows_filtered,
        rows_failed = counted.rows_failed, batches = total,
        records_new = delta.map(|d| d.new), records_changed = delta.map(|d| d.changed),
        records_unchanged = delta.map(|d| d.unchanged),
        records_superseded = delta.map(|d| d.superseded),
        records_missing = delta.and_then(|d| d.missing), "file transformed");
    Ok(())
}

/// Claims the file for this run (`sanitized -> transforming`, or, for a re-drive's resend, in
/// place after its transform): the batches already delivered when it may go on (none but on a
/// resend), `None` when there is nothing to do, a [`FaultKind::Waiting`] fault when another
/// worker has it or it is not sanitized yet.
async fn claim<O, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    sanitized: &FileSanitized,
    lease: &Lease,
) -> Result<Option<HashSet<String>>, Fault> {
    let id = sanitized.file_id;
    // One worker transforms a file: the claim is one conditional UPDATE.
    let claim = deps
        .store
        .claim(
            id,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            lease,
        )
        .await
        .map_err(Fault::store)?;
    match claim {
        Claim::Won { .. } => Ok(Some(HashSet::new())),
        // The listener re-drives a file stuck after its transform: re-send the batches that
        // have no 2xx on record (ids are stable, so the forwarder skips any it has).
        Claim::Elsewhere(FileStatus::Transformed | FileStatus::Delivering) if sanitized.resend => {
            let after = [FileStatus::Transformed, FileStatus::Delivering];
            match deps
                .store
                .claim_in_place(id, Stage::Transformer, &after, lease)
                .await
                .map_err(Fault::store)?
            {
                Claim::Won { .. } => Ok(Some(
                    deps.store
                        .delivered_batches(id)
                        .await
                        .map_err(Fault::store)?,
                )),
                Claim::Busy => {
                    let why = format!("file {id} is being re-sent by another worker");
                    Err(Fault::new(FaultKind::Waiting, why))
                }
                other => {
                    tracing::info!(file_id = %id, claim = ?other, "nothing left to re-send");
                    Ok(None)
                }
            }
        }
        // Another copy of this message is at work: this one comes back after the visibility
        // timeout and is then a no-op (or takes over if that worker died).
        Claim::Busy => {
            let why = format!("file {id} is being transformed by another worker");
            Err(Fault::new(FaultKind::Waiting, why))
        }
        // The sanitizer sends this message just before it records `sanitized`: the message
        // can win the race. Fail it, and SQS brings it back once the status is there.
        Claim::Elsewhere(FileStatus::Received | FileStatus::Sanitizing) => {
            let why = format!("file {id} is not marked sanitized yet");
            Err(Fault::new(FaultKind::Waiting, why))
        }
        Claim::Elsewhere(status) if status.is_final() => {
            let late = "file sanitized";
            crate::final_status::drop_late(deps.store, id, Stage::Transformer, status, late)
                .await
                .map(|()| None)
        }
        Claim::Elsewhere(status) => {
            tracing::info!(file_id = %id, status = %status, "already transformed: duplicate message skipped");
            Ok(None)
        }
        Claim::Missing => {
            let why = format!("file {id} is not in the status store");
            Err(Fault::new(FaultKind::Store, why))
        }
    }
}

/// Fails the file at the transformer with `reason` (a verdict on the file, not this run).
async fn fail<O, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    id: uuid::Uuid,
    reason: &str,
) -> Result<(), Fault> {
    deps.store
        .fail(id, Stage::Transformer, reason)
        .await
        .map(|_| ())
        .map_err(Fault::store)
}

/// Why a replay from forward cannot go on: its transform made other batches than the earlier
/// run's (the config changed since), so "the batches not delivered" names other records.
fn replay_mismatch(skip: &ReplaySkip, counted: &TransformReport, total: u32) -> Option<String> {
    let same =
        i64::from(skip.batches) == i64::from(total) && skip.records == counted.records_out as i64;
    (!same).then(|| {
        format!(
            "replay of {} from forward: the earlier run made {} batches of {} records, this one \
             {total} of {}: the mapping or batch size changed since; replay it --from transform",
            skip.of, skip.batches, skip.records, counted.records_out
        )
    })
}

fn date_filter(range: &sluice_core::message::DateRange) -> Result<DateFilter, String> {
    let date = |d: &Option<String>| -> Result<Option<NaiveDate>, String> {
        d.as_deref()
            .map(|s| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("bad date {s:?} in date_range"))
            })
            .transpose()
    };
    Ok(DateFilter {
        start: date(&range.start)?,
        end: date(&range.end)?,
    })
}

async fn put_report<O: Objects, S, Q>(
    deps: &Transform<'_, O, S, Q>,
    message: &FileSanitized,
    report: &TransformReport,
) -> Result<(), Fault> {
    let key = layout::transform_report_key(message.file_id);
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    deps.objects
        .put(&message.clean_bucket, &key, body, "application/json")
        .await
        .map_err(Fault::objects)
}

fn summary(report: &TransformReport, batches: u32) -> serde_json::Value {
    json!({
        "verdict": report.verdict,
        "reason": report.reason,
        "rows_in": report.rows_in,
        "records": report.records_out,
        "rows_filtered": report.rows_filtered,
        "rows_failed": report.rows_failed,
        "batches": batches,
        "delta": report.delta.as_ref().map(|d| json!({
            "new": d.new,
            "changed": d.changed,
            "unchanged": d.unchanged,
            "repeated": d.repeated,
            "superseded": d.superseded,
            "missing": d.missing,
            "full": d.full,
        })),
    })
}

/// Pass one of a dataset without a record key: the report, and the number of batches.
async fn count<O: Objects, S, Q>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
) -> Result<(TransformReport, u32), PassError> {
    let mut pass = source.batches(deps.objects).await?;
    let mut total = 0;
    while pass.items.recv().await.is_some() {
        total += 1;
    }
    drop(pass.items);
    Ok((pass.worker.finish(None).await?, total))
}

/// Pass one of a keyed dataset: the plan, made once. A plan finished by an earlier attempt
/// is kept (its batches may be on their way already), and only the report is read again.
async fn plan_once<O: Objects, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
    delta: &Delta,
) -> Result<(TransformReport, u32), PassError> {
    let (store, id) = (deps.store, source.message.file_id);
    let stored = |e: S::Error| PassError::Retry(e.to_string());
    if let Some(plan) = store.delta_plan(id).await.map_err(stored)? {
        let (mut report, _) = count(deps, source).await?;
        let total = plan.batches;
        report.delta = Some(plan);
        return Ok((report, total));
    }
    // What an attempt that stopped part way planned is made again from the start.
    store.discard_plan(id).await.map_err(stored)?;
    let file = store.file(id).await.map_err(stored)?;
    let file =
        file.ok_or_else(|| PassError::Retry(format!("file {id} is not in the status store")))?;
    let scope = scope_of(delta.scope, &file.source_key, file.site.as_deref());
    let message = source.message;
    let batches = SizeBatches::new(source.batch_size, source.batch_max_bytes, 0);
    let subject = Subject {
        file: id,
        dataset: &message.dataset,
        delta,
        scope,
        remember: source.filter.is_none(),
        full: message.full,
    };
    let mut planner = Planner::new(store, subject, batches);
    let mut pass = source.keys(deps.objects).await?;
    let mut failed = None;
    while let Some(chunk) = pass.items.recv().await {
        if let Err(e) = planner.chunk(chunk).await {
            failed = Some(e);
            break;
        }
    }
    drop(pass.items);
    let mut report = pass.worker.finish(failed).await?;
    // A file failing its error limit sends nothing: its plan is not finished (and goes when
    // the file is marked failed).
    if report.verdict == TransformVerdict::Failed {
        return Ok((report, 0));
    }
    let plan = planner.finish().await.map_err(PassError::Retry)?;
    let total = plan.batches;
    report.delta = Some(plan);
    Ok((report, total))
}

/// Pass two of a dataset without a record key: every record.
async fn send_all<O: Objects, S: TransformStore, Q: Outbox>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
    sender: &mut Sender<'_, O, S, Q>,
) -> Result<TransformReport, PassError> {
    let pass = source.batches(deps.objects).await?;
    let (mut items, worker) = (pass.items, pass.worker);
    let mut failed = None;
    while let Some((seq, batch)) = items.recv().await {
        if let Err(e) = sender.send(seq, batch).await {
            failed = Some(e);
            break;
        }
    }
    if failed.is_none() {
        failed = sender.flush().await.err();
    }
    drop(items);
    worker.finish(failed).await
}

/// Pass two of a keyed dataset: the planned records, read from the plan as the file is.
async fn send_planned<O: Objects, S: TransformStore, Q: Outbox>(
    deps: &Transform<'_, O, S, Q>,
    source: &Source<'_>,
    delta: &Delta,
    sender: &mut Sender<'_, O, S, Q>,
) -> Result<TransformReport, PassError> {
    let (pages, plan) = mpsc::channel(2);
    let pass = source
        .planned(deps.objects, delta.record_key.clone(), plan)
        .await?;
    let (mut items, worker) = (pass.items, pass.worker);
    let file = source.message.file_id;
    // The plan is fed to the mapping thread while its batches are sent; whichever side stops
    // first ends the other (its channel closes).
    let feed = async move {
        let mut after = 0;
        loop {
            let page = deps.store.planned(file, after, PLAN_PAGE).await;
            let page = match page {
                Ok(page) if page.is_empty() => return None,
                Ok(page) => page,
                Err(e) => return Some(format!("reading the plan: {e}")),
            };
            after = page.last().map_or(after, |p| p.ordinal);
            if pages.send(page).await.is_err() {
                return None;
            }
        }
    };
    let send = async move {
        while let Some((seq, batch)) = items.recv().await {
            sender.send(seq, batch).await?;
        }
        sender.flush().await
    };
    let (fed, sent) = tokio::join!(feed, send);
    worker.finish(fed.or(sent.err())).await
}

async fn retry<O, S: TransformStore, Q>(
    deps: &Transform<'_, O, S, Q>,
    id: Uuid,
    lease: &Lease,
    error: String,
) -> Fault {
    // Released, so the message's next delivery can claim the file again at once.
    if let Err(e) = deps.store.release(id, &lease.owner).await {
        tracing::error!(file_id = %id, error = %e, "could not release the lease");
    }
    if let Err(e) = deps.store.note_error(id, Stage::Transformer, &error).await {
        tracing::error!(file_id = %id, error = %e, "could not record the error in the status store");
    }
    Fault::new(FaultKind::Internal, error)
}
