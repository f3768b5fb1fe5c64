//! The forward stage: one "record batch" message in, its records POSTed to the dataset's API
//! (every attempt recorded), the file settled. The forwarder Lambda calls [`forward_batch`].

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use sluice_core::config::section_digest;
use sluice_core::delivery::{request_body, BatchHeader};
use sluice_core::layout;
use sluice_core::message::{RecordBatchRef, RecordsAt};
use sluice_core::{Dataset, FileStatus, PipelineConfig, Stage};
use tokio::io::AsyncReadExt;

use crate::delivery::{deliver, Outcome, Targets};
use crate::fault::{Fault, FaultKind};
use crate::ports::{
    BatchClaim, Batches, CallLog, Claim, DeliveredRecords, Lease, Objects, Poster, Progress,
    Registry,
};

/// What the forwarder asks of the status store: claim a batch, record its calls, settle the
/// file's delivery, and (for a dataset with a record key) what the batch delivered.
pub trait ForwardStore: Registry + Progress + Batches + CallLog + DeliveredRecords {}

impl<T: Registry + Progress + Batches + CallLog + DeliveredRecords> ForwardStore for T {}

/// What the stage works with.
pub struct Forward<'a, O, S, P> {
    pub config: &'a PipelineConfig,
    pub targets: &'a Targets,
    pub store: &'a S,
    pub objects: &'a O,
    /// How batches are sent (HTTP; or a requests file locally).
    pub poster: &'a P,
    /// The only bucket claim checks are read from.
    pub clean_bucket: &'a str,
}

/// Delivers the batch a "record batch" message carries, once across copies of the message:
/// the batch is claimed for the whole POST, a batch with a 2xx on record is not sent again,
/// every attempt is recorded, and the file settles as its batches get through. A copy that
/// finds the batch claimed waits ([`FaultKind::Waiting`]). A batch not delivered is an error
/// about its file; what then becomes of the file is the caller's last-delivery rule
/// ([`crate::final_status::message_failed`]).
pub async fn forward_batch<O: Objects, S: ForwardStore, P: Poster>(
    deps: &Forward<'_, O, S, P>,
    body: &str,
    stop: Option<Instant>,
    lease: &Lease,
) -> Result<(), Fault> {
    let batch =
        RecordBatchRef::parse(body).map_err(|e| Fault::new(FaultKind::BadInput, e.to_string()))?;
    let header = batch.header();
    let id = batch.file_id;
    // One worker delivers a batch, holding the claim across the POST: two copies of one
    // message never both send it. The loser's message comes back later and is then a no-op.
    let claimed = deps
        .store
        .claim_batch(id, &batch.batch_id, lease)
        .await
        .map_err(Fault::store)?;
    if !matches!(claimed.claim, Claim::Won { .. }) {
        let why = format!(
            "batch {} is being delivered by another worker",
            batch.batch_id
        );
        return Err(Fault::new(FaultKind::Waiting, why));
    }
    // A batch of a final file is never POSTed: a `failed` file's records are sent again only
    // by a replay (under its new file id), and a delivered file has nothing left to send.
    if let Some(status) = claimed.file_status.filter(|s| s.is_final()) {
        if let Err(e) = deps
            .store
            .release_batch(&batch.batch_id, &lease.owner)
            .await
        {
            tracing::error!(batch_id = %batch.batch_id, error = %e, "could not release the batch claim");
        }
        let what = format!("record batch {}", batch.batch_id);
        return crate::final_status::drop_late(deps.store, id, Stage::Forwarder, status, &what)
            .await;
    }
    let delivered = deliver_claimed(deps, &batch, &header, &claimed, stop).await;
    // A recorded 2xx released the claim already, in the same statement.
    if !matches!(delivered, Ok(Posted::Delivered)) {
        if let Err(e) = deps
            .store
            .release_batch(&batch.batch_id, &lease.owner)
            .await
        {
            tracing::error!(batch_id = %batch.batch_id, error = %e, "could not release the batch claim");
        }
    }
    delivered.map(|_| ()).map_err(|fault| fault.about(id))
}

/// What became of a claimed batch that raised no error.
enum Posted {
    /// A 2xx was recorded now.
    Delivered,
    /// It had been delivered before: nothing was sent.
    Already,
}

/// Delivers a batch this invocation has claimed.
async fn deliver_claimed<O: Objects, S: ForwardStore, P: Poster>(
    deps: &Forward<'_, O, S, P>,
    batch: &RecordBatchRef<'_>,
    header: &BatchHeader<'_>,
    claimed: &BatchClaim,
    stop: Option<Instant>,
) -> Result<Posted, Fault> {
    let id = batch.file_id;
    let history = claimed.history;
    let dataset = file_dataset(deps.config, &batch.dataset, claimed);
    if history.delivered {
        tracing::info!(file_id = %id, batch_id = %batch.batch_id,
            "batch already delivered: duplicate message skipped");
        // The copy that got the 2xx may have stopped before writing the record state.
        record_delivered(deps, batch, dataset.as_deref().ok()).await?;
        deps.store.settle_delivery(id).await.map_err(Fault::store)?;
        return Ok(Posted::Already);
    }
    let dataset = match dataset {
        Ok(dataset) => dataset,
        Err(reason) => return Err(not_delivered(deps, header, reason).await),
    };
    let target = match deps.targets.get(&dataset).await {
        Ok(target) => target,
        Err(reason) => return Err(not_delivered(deps, header, reason).await),
    };
    let status = claimed.file_status.ok_or_else(|| {
        Fault::new(
            FaultKind::Store,
            format!("file {id} is not in the status store"),
        )
    })?;
    // Only a file the transformer has finished moves on: while it is `transforming`, its
    // batch count is not recorded yet (the transformer settles it when it is).
    if status == FileStatus::Transformed {
        deps.store
            .advance(id, Stage::Forwarder, FileStatus::Delivering, json!({}))
            .await
            .map_err(Fault::store)?;
    }
    let claim_checked;
    let records: &[u8] = match &batch.records {
        RecordsAt::Inline(text) => text.as_bytes(),
        RecordsAt::S3(at) => {
            layout::check_claim_check(&at.bucket, &at.key, deps.clean_bucket, id, batch.seq)
                .map_err(|e| Fault::new(FaultKind::BadInput, e))?;
            // The transformer never writes a batch larger than the dataset's cap.
            let limit = dataset.delivery.batch_max_bytes;
            claim_checked = read_small(deps.objects, &at.bucket, &at.key, limit as u64).await?;
            &claim_checked
        }
    };
    let body = Bytes::from(request_body(target.body, header, records));
    let mut outcome = deliver(
        deps.poster,
        deps.store,
        &target,
        header,
        body.clone(),
        history.attempts + 1,
        stop,
    )
    .await
    .map_err(Fault::store)?;
    // Keys rotate: a refused credential is read again once before the refusal counts.
    if outcome.credentials_refused() && target.has_credentials {
        tracing::info!(dataset = %batch.dataset, batch_id = %batch.batch_id,
            "the API refused the credentials: reading them again (rotated?)");
        let fresh = deps.targets.refresh(&dataset).await;
        match fresh {
            Ok(fresh) => {
                let next = history.attempts + 1 + outcome.attempts() as i32;
                outcome = deliver(deps.poster, deps.store, &fresh, header, body, next, stop)
                    .await
                    .map_err(Fault::store)?;
            }
            Err(reason) => {
                return Err(not_delivered(deps, header, reason).await);
            }
        }
    }
    match outcome {
        Outcome::Delivered {
            attempts,
            status,
            settled,
        } => {
            record_delivered(deps, batch, Some(&dataset)).await?;
            let now = match settled {
                Some(now) => now,
                None => deps.store.settle_delivery(id).await.map_err(Fault::store)?,
            };
            tracing::info!(file_id = %id, dataset = %batch.dataset, batch_id = %batch.batch_id,
                seq = batch.seq, total = batch.total, records = batch.count, attempts, status,
                file_status = %now, "batch delivered");
            Ok(Posted::Delivered)
        }
        Outcome::NotDelivered { error, .. } => Err(not_delivered(deps, header, error).await),
    }
}

/// The dataset the batch's file is handled with: the section its plan pinned, else (a file
/// planned before plans pinned the config) the one this forwarder loaded.
fn file_dataset<'c>(
    config: &'c PipelineConfig,
    name: &str,
    claimed: &BatchClaim,
) -> Result<Cow<'c, Dataset>, String> {
    let loaded = config.dataset(name);
    let Some(section) = &claimed.pinned else {
        return loaded.map(Cow::Borrowed).map_err(|e| e.to_string());
    };
    match loaded {
        Ok(dataset) if dataset.digest == section_digest(section) => Ok(Cow::Borrowed(dataset)),
        _ => PipelineConfig::dataset_from_snapshot(name, section)
            .map(Cow::Owned)
            .map_err(|e| format!("the config this file was planned with no longer loads: {e}")),
    }
}

/// For a dataset with a record key, the batch's records become what the API has for their
/// keys, now that it answered 2xx (never before).
async fn record_delivered<O, S: ForwardStore, P>(
    deps: &Forward<'_, O, S, P>,
    batch: &RecordBatchRef<'_>,
    dataset: Option<&Dataset>,
) -> Result<(), Fault> {
    let keyed = dataset
        .and_then(|d| d.mapping.as_ref())
        .is_some_and(|m| m.delta.is_some());
    if keyed {
        deps.store
            .record_delivered(batch.file_id, batch.seq)
            .await
            .map_err(Fault::store)?;
    }
    Ok(())
}

/// Records why a batch was not delivered (the file keeps its status: the message's next
/// delivery retries, or the last-delivery rule fails the file) and returns it as the fault.
async fn not_delivered<O, S: ForwardStore, P>(
    deps: &Forward<'_, O, S, P>,
    batch: &BatchHeader<'_>,
    error: String,
) -> Fault {
    let reason = format!(
        "batch {}/{} ({}) not delivered: {error}",
        batch.seq, batch.total, batch.batch_id
    );
    if let Err(e) = deps
        .store
        .note_error(batch.file_id, Stage::Forwarder, &reason)
        .await
    {
        tracing::error!(file_id = %batch.file_id, error = %e,
            "could not record the error in the status store");
    }
    Fault::new(FaultKind::Internal, reason).about(batch.file_id)
}

/// A small object (a claim-checked batch) read whole; one larger than `limit` is refused
/// rather than buffered.
async fn read_small<O: Objects>(
    objects: &O,
    bucket: &str,
    key: &str,
    limit: u64,
) -> Result<Vec<u8>, Fault> {
    let missing = || Fault::new(FaultKind::Objects, format!("{bucket}/{key} does not exist"));
    let (body, meta) = objects
        .open(bucket, key, None)
        .await
        .map_err(Fault::objects)?
        .ok_or_else(missing)?;
    if meta.size as u64 > limit {
        let why = format!(
            "{bucket}/{key}: object of {} bytes is over the {limit}-byte limit",
            meta.size
        );
        return Err(Fault::new(FaultKind::Objects, why));
    }
    let mut bytes = Vec::with_capacity(meta.size.max(0) as usize);
    body.take(limit + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Fault::new(FaultKind::Objects, format!("{bucket}/{key}: {e}")))?;
    Ok(bytes)
}
