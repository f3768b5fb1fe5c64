//! The sanitize stage: one created object in, a clean file, report, tags, status and
//! "file sanitized" message out. The sanitizer Lambda and `sluice run` both call
//! [`sanitize_object`].

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use sluice_core::message::{FileSanitized, V1};
use sluice_core::metadata::UploadMetadata;
use sluice_core::plan::ConfigPin;
use sluice_core::sanitize::drive::sanitize_async_with_errors;
use sluice_core::sanitize::SanitizeSummary;
use sluice_core::{FileStatus, PipelineConfig, Report, Stage, Verdict};
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::{
    Claim, Lease, Leases, NewFile, ObjectMeta, ObjectUpload, Objects, Outbox, Outcomes, Plans,
    Progress, Registry, RowCounts,
};
use sluice_core::errors::chain;

/// What the sanitizer asks of the status store: register the file, lease it, pin its config,
/// end it.
pub trait SanitizeStore: Registry + Progress + Outcomes + Leases + Plans {}

impl<T: Registry + Progress + Outcomes + Leases + Plans> SanitizeStore for T {}

/// One object that was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub size: i64,
    pub version_id: Option<String>,
}

/// What the stage works with.
pub struct Sanitize<'a, O, S, Q> {
    pub config: &'a PipelineConfig,
    pub store: &'a S,
    pub objects: &'a O,
    /// Where "file sanitized" messages go.
    pub queue: &'a Q,
    pub clean_bucket: &'a str,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub bucket: String,
    pub key: String,
    pub file_id: Option<Uuid>,
    pub dataset: Option<String>,
    /// `accepted`, `rejected`, `duplicate` (already handled), `unrouted` (no dataset),
    /// `gone` (the object was deleted before it could be read) or `failed` (the config the
    /// file was pinned to no longer loads).
    pub result: &'static str,
}

/// Sanitizes one created object: registers and claims its file, streams it through the
/// dataset's sanitizer into the clean bucket, writes the report, tags the original, tells the
/// transformer, and records the outcome. A copy of the event that finds the file claimed or
/// done is a `duplicate` and does nothing. A failure notes its error on the file and releases
/// the claim, so the retry claims at once; the fault names the file, for the caller's
/// last-delivery rule ([`crate::final_status::message_failed`]).
pub async fn sanitize_object<O: Objects, S: SanitizeStore, Q: Outbox>(
    deps: &Sanitize<'_, O, S, Q>,
    object: &ObjectCreated,
    deadline: Option<Instant>,
    lease: &Lease,
) -> Result<Outcome, Fault> {
    let started = Instant::now();
    let outcome = |file_id, dataset: Option<&str>, result| Outcome {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        file_id,
        dataset: dataset.map(str::to_string),
        result,
    };
    let Some(dataset) = deps.config.dataset_for_key(&object.key) else {
        let file_id = reject_unrouted(deps, object, lease).await?;
        return Ok(outcome(file_id, None, "unrouted"));
    };
    let opened = deps
        .objects
        .open(&object.bucket, &object.key, object.version_id.as_deref())
        .await;
    let (body, meta) = match opened {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            // Deleted before we got to it: nothing to sanitize, nothing to retry.
            tracing::warn!(bucket = %object.bucket, key = %object.key, dataset = %dataset.name,
                "object no longer exists: event skipped");
            return Ok(outcome(None, Some(&dataset.name), "gone"));
        }
        Err(e) => return Err(Fault::objects(e)),
    };
    // One worker sanitizes a file: the claim is one conditional UPDATE. A copy of the event
    // that finds the file claimed by a live worker, or already past this stage, is skipped;
    // one that finds the lease expired (its worker died) takes the work over.
    let (id, claim) = register_and_claim(deps, object, &meta, &dataset.name, lease).await?;
    if !matches!(claim, Claim::Won { .. }) {
        tracing::info!(file_id = %id, dataset = %dataset.name, bucket = %object.bucket,
            key = %object.key, claim = ?claim, "claimed elsewhere or already handled: duplicate event skipped");
        return Ok(outcome(Some(id), Some(&dataset.name), "duplicate"));
    }
    // The first run pins the dataset's section; a take-over or re-drive sanitizes with it,
    // whatever config this container loaded since.
    let pin = ConfigPin::of(deps.config, &dataset.name);
    let pinned = match crate::pin::fix_plan(deps.store, id, &pin).await {
        Ok(plan) => plan.pin.dataset(&dataset.name),
        Err(fault) => return Err(retry(deps, id, lease, fault).await),
    };
    let dataset = &match pinned {
        Ok(dataset) => dataset,
        Err(reason) => {
            deps.store
                .fail(id, Stage::Sanitizer, &reason)
                .await
                .map_err(Fault::store)?;
            tracing::error!(file_id = %id, dataset = %dataset.name, reason = %reason,
                "the file's pinned config does not load: failed");
            return Ok(outcome(Some(id), Some(&dataset.name), "failed"));
        }
    };

    let clean_key = sluice_core::layout::clean_key(&dataset.name, id);
    let errors_key = sluice_core::layout::errors_key(id);
    let report = clean(deps, body, dataset, &clean_key, &errors_key, deadline).await;
    let report = match report {
        Ok(report) => report,
        Err(fault) => return Err(retry(deps, id, lease, fault).await),
    };
    let accepted = report.verdict == Verdict::Accepted;

    if let Err(e) = publish(
        object,
        dataset.name.as_str(),
        id,
        &clean_key,
        &report,
        &meta.metadata,
        deps,
    )
    .await
    {
        return Err(retry(deps, id, lease, e).await);
    }
    let (status, clean) = if accepted {
        (FileStatus::Sanitized, Some(clean_key.as_str()))
    } else {
        (FileStatus::Rejected, None)
    };
    let counts = RowCounts {
        rows_in: report.rows_in as i64,
        rows_out: report.rows_out as i64,
        rows_rejected: report.rows_rejected as i64,
    };
    deps.store
        .finish_sanitize(
            id,
            status,
            clean,
            counts,
            report.reason.as_deref(),
            summary(&report),
        )
        .await
        .map_err(Fault::store)?;
    tracing::info!(
        file_id = %id, dataset = %dataset.name, bucket = %object.bucket, key = %object.key,
        verdict = if accepted { "accepted" } else { "rejected" },
        reason = report.reason.as_deref().unwrap_or(""),
        bytes_in = report.bytes_in, rows_in = report.rows_in, rows_out = report.rows_out,
        rows_rejected = report.rows_rejected,
        formulas_neutralized = report.cells.formulas_neutralized,
        markup_neutralized = report.cells.markup_neutralized,
        duration_ms = started.elapsed().as_millis() as u64,
        "file sanitized"
    );
    Ok(outcome(
        Some(id),
        Some(&dataset.name),
        if accepted { "accepted" } else { "rejected" },
    ))
}

/// Streams the object through the dataset's sanitizer into `clean_key`, and its rejected rows
/// into `errors_key`: the report, with the clean object there only when the file is accepted
/// (a rejected file, a failure or the deadline leaves nothing under the key) and the errors
/// file only when a row was rejected (accepted file or not: a file rejected for too many bad
/// rows is the one whose sender most needs them).
async fn clean<O: Objects, S, Q>(
    deps: &Sanitize<'_, O, S, Q>,
    body: O::Reader,
    dataset: &sluice_core::Dataset,
    clean_key: &str,
    errors_key: &str,
    deadline: Option<Instant>,
) -> Result<Report, Fault> {
    let objects = deps.objects;
    let mut upload = objects.upload(deps.clean_bucket, clean_key, "text/csv; charset=utf-8");
    let mut errors = objects.upload(deps.clean_bucket, errors_key, "text/csv; charset=utf-8");
    let run = sanitize_async_with_errors(
        body,
        &mut upload,
        &mut errors,
        dataset.sanitize.clone(),
        Some(dataset.name.clone()),
    );
    let stopped = match with_deadline(deadline, run).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(Fault::new(
            FaultKind::Objects,
            format!("reading or writing the file failed: {}", chain(&e)),
        )),
        Err(()) => Err(Fault::new(
            FaultKind::Deadline,
            "stopped before the Lambda timeout; the event will be retried",
        )),
    };
    let report = match stopped {
        Ok(report) => report,
        Err(fault) => {
            upload.abort().await;
            errors.abort().await;
            return Err(fault);
        }
    };
    if report.error_rows > 0 {
        if let Err(e) = errors.finish().await {
            upload.abort().await;
            return Err(Fault::objects(e));
        }
    } else {
        errors.abort().await;
    }
    match report.verdict {
        Verdict::Accepted => {
            upload.finish().await.map_err(Fault::objects)?;
        }
        Verdict::Rejected => upload.abort().await,
    }
    Ok(report)
}

/// Registers the object's file (once per bucket, key and ETag, from what its metadata says)
/// and claims it for the sanitizer: its id, and how the claim went.
async fn register_and_claim<O: Objects, S: SanitizeStore, Q: Outbox>(
    deps: &Sanitize<'_, O, S, Q>,
    object: &ObjectCreated,
    meta: &ObjectMeta,
    dataset: &str,
    lease: &Lease,
) -> Result<(Uuid, Claim), Fault> {
    let said = UploadMetadata::read(&meta.metadata);
    let registered = deps
        .store
        .register(&NewFile {
            dataset,
            // Set by the listener on a drop's copy: which FTP/SFTP site sent it.
            site: said.site.as_deref(),
            bucket: &object.bucket,
            key: &object.key,
            etag: &meta.etag,
            size: meta.size,
            // Set by `sluice replay --from sanitize` on its copy of the original.
            replay_of: said.replay_of.as_deref().and_then(|v| v.parse().ok()),
            uploaded_by: said.uploaded_by.as_deref(),
            uploaded_at: said.uploaded_at(meta.last_modified),
        })
        .await
        .map_err(Fault::store)?;
    let claim = deps
        .store
        .claim(
            registered.id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            lease,
        )
        .await
        .map_err(Fault::store)?;
    Ok((registered.id, claim))
}

/// An object no dataset's prefix matches: a `rejected` row with the reason (so it is on the
/// dashboard and announced like any final status), the quarantine object tagged and left
/// there. Returns the file's id (`None` when the object is gone).
async fn reject_unrouted<O: Objects, S: SanitizeStore, Q: Outbox>(
    deps: &Sanitize<'_, O, S, Q>,
    object: &ObjectCreated,
    lease: &Lease,
) -> Result<Option<Uuid>, Fault> {
    let meta = match deps
        .objects
        .open(&object.bucket, &object.key, object.version_id.as_deref())
        .await
    {
        // Only the object's identity is needed; the body is never read.
        Ok(Some((_body, meta))) => meta,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Fault::objects(e)),
    };
    let reason = format!(
        "no dataset's prefix matches the key `{}`: the file is left in quarantine",
        object.key
    );
    let (id, claim) = register_and_claim(deps, object, &meta, "", lease).await?;
    if !matches!(claim, Claim::Won { .. }) {
        return Ok(Some(id));
    }
    // Tagged first: a crash before the status is recorded leaves a lease that lapses and a
    // re-drive that ends here again.
    deps.objects
        .merge_tags(
            &object.bucket,
            &object.key,
            &[
                ("sluice-verdict", "unrouted"),
                ("sluice-file-id", &id.to_string()),
            ],
        )
        .await
        .map_err(Fault::objects)?;
    deps.store
        .finish_sanitize(
            id,
            FileStatus::Rejected,
            None,
            RowCounts {
                rows_in: 0,
                rows_out: 0,
                rows_rejected: 0,
            },
            Some(&reason),
            serde_json::json!({ "verdict": "unrouted", "reason": reason }),
        )
        .await
        .map_err(Fault::store)?;
    tracing::warn!(file_id = %id, bucket = %object.bucket, key = %object.key,
        "no dataset's prefix matches the key: recorded as rejected, left in quarantine");
    Ok(Some(id))
}

/// Runs `work` until `deadline`; none is started once the deadline has passed (a timer only
/// interrupts work that waits, and a small file may never wait long enough).
async fn with_deadline<F: std::future::Future>(
    deadline: Option<Instant>,
    work: F,
) -> Result<F::Output, ()> {
    match deadline {
        Some(at) if at <= Instant::now() => Err(()),
        Some(at) => tokio::time::timeout_at(at.into(), work)
            .await
            .map_err(|_| ()),
        None => Ok(work.await),
    }
}

/// Writes the report beside the clean file, tags the quarantine object with the verdict and,
/// for an accepted file, tells the transformer.
async fn publish<O: Objects, S: SanitizeStore, Q: Outbox>(
    object: &ObjectCreated,
    dataset: &str,
    id: Uuid,
    clean_key: &str,
    report: &Report,
    metadata: &std::collections::HashMap<String, String>,
    deps: &Sanitize<'_, O, S, Q>,
) -> Result<(), Fault> {
    let report_key = sluice_core::layout::sanitize_report_key(id);
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    deps.objects
        .put(deps.clean_bucket, &report_key, body, "application/json")
        .await
        .map_err(Fault::objects)?;
    let verdict = match report.verdict {
        Verdict::Accepted => "accepted",
        Verdict::Rejected => "rejected",
    };
    let id_text = id.to_string();
    deps.objects
        .merge_tags(
            &object.bucket,
            &object.key,
            &[("sluice-verdict", verdict), ("sluice-file-id", &id_text)],
        )
        .await
        .map_err(Fault::objects)?;
    if report.verdict == Verdict::Accepted {
        let said = UploadMetadata::read(metadata);
        let message = FileSanitized {
            v: V1,
            file_id: id,
            dataset: dataset.to_string(),
            clean_bucket: deps.clean_bucket.to_string(),
            clean_key: clean_key.to_string(),
            rows: report.rows_out,
            columns: report.headers.clone(),
            date_range: said.date_range,
            resend: false,
            full: said.full,
        };
        let body = serde_json::to_string(&message).unwrap_or_default();
        deps.queue.send_all(&[body]).await.map_err(Fault::queue)?;
    }
    Ok(())
}

/// The event detail: the report's figures and its first rejected rows (line, column and
/// reason), no cell contents.
fn summary(report: &Report) -> Value {
    serde_json::to_value(SanitizeSummary::of(report)).unwrap_or(Value::Null)
}

/// Notes a retryable error on the file (best effort: the database may be what failed) and
/// turns it into the handler's error, so Lambda retries.
async fn retry<O: Objects, S: SanitizeStore, Q: Outbox>(
    deps: &Sanitize<'_, O, S, Q>,
    id: Uuid,
    lease: &Lease,
    failure: Fault,
) -> Fault {
    // Released, so Lambda's retry of the event can claim the file again at once.
    if let Err(e) = deps.store.release(id, &lease.owner).await {
        tracing::error!(file_id = %id, error = %e, "could not release the lease");
    }
    if let Err(e) = deps
        .store
        .note_error(id, Stage::Sanitizer, &failure.message)
        .await
    {
        tracing::error!(file_id = %id, error = %e, "could not record the error in the status store");
    }
    tracing::error!(file_id = %id, kind = ?failure.kind, error = %failure.message,
        "sanitizing failed; it will be retried");
    failure.about(id)
}
