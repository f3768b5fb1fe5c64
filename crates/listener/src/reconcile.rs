//! Every object that lands in quarantine gets a row. An upload whose event never reached the
//! sanitizer (every delivery of it failed before registration, EventBridge could not reach the
//! sanitize queue, a direct invocation's retries ran out) would otherwise sit in quarantine
//! with no `file_process` row, unseen by the re-drive. Each run lists the date-partitioned
//! quarantine prefixes of each dataset for the last `reconcile_days` days
//! (`<prefix><yyyy>/<mm>/<dd>/`), and registers each object older than the grace period that
//! has no row (status `received`, with its uploader's metadata), then sends the sanitizer its
//! "Object Created" event. From then on it is an ordinary file: if that message is lost too,
//! the re-drive finds the idle row.

use std::time::SystemTime;

use chrono::{DateTime, Datelike, Duration as Days, Utc};
use serde::Serialize;
use sluice_core::metadata::UploadMetadata;
use sluice_db::NewFile;
use sluice_lambda::Failure;

use crate::handler::{Budget, Deps};
use sluice_stages::redrive::object_created_event;

/// Keys per listing request.
const PAGE: i32 = 1000;

/// What the reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileCounts {
    /// Quarantine objects looked at.
    pub reconcile_listed: u64,
    /// Objects that had no row: registered and sent to the sanitizer.
    pub reconcile_registered: u64,
    /// Objects that could not be registered or sent; the next run tries again.
    pub reconcile_errors: u64,
}

/// The quarantine prefixes of the last `days` days (today first) for a dataset `prefix`.
pub fn day_prefixes(prefix: &str, today: SystemTime, days: u32) -> Vec<String> {
    let today = DateTime::<Utc>::from(today);
    (0..days)
        .map(|back| {
            let day = today - Days::days(i64::from(back));
            format!(
                "{prefix}{:04}/{:02}/{:02}/",
                day.year(),
                day.month(),
                day.day()
            )
        })
        .collect()
}

/// Registers the recent quarantine objects that have no row; returns whether the time ran
/// low before it was done.
pub async fn reconcile_quarantine(
    deps: &Deps,
    budget: Budget,
    counts: &mut ReconcileCounts,
) -> Result<bool, Failure> {
    let now = SystemTime::now();
    let settled_before = now - deps.reconcile_grace;
    for dataset in deps.config.datasets() {
        for prefix in day_prefixes(&dataset.prefix, now, deps.reconcile_days) {
            let mut after: Option<String> = None;
            loop {
                if budget.low() {
                    return Ok(true);
                }
                let page = deps
                    .objects
                    .list_page(&deps.quarantine_bucket, &prefix, after.as_deref(), PAGE)
                    .await?;
                counts.reconcile_listed += page.objects.len() as u64;
                let settled: Vec<(String, String)> = page
                    .objects
                    .iter()
                    .filter(|o| o.last_modified < settled_before)
                    .map(|o| (o.key.clone(), o.etag.clone()))
                    .collect();
                let known = deps
                    .store
                    .registered_sources(&deps.quarantine_bucket, &settled)
                    .await?;
                for object in page.objects.iter().filter(|o| {
                    o.last_modified < settled_before
                        && !known.contains(&(o.key.clone(), o.etag.clone()))
                }) {
                    match register(deps, &dataset.name, &object.key).await {
                        Ok(true) => {
                            counts.reconcile_registered += 1;
                            tracing::warn!(key = %object.key, dataset = %dataset.name,
                                "quarantine object had no row: registered and sent to the sanitizer");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            counts.reconcile_errors += 1;
                            tracing::error!(key = %object.key, error = %e,
                                "could not register a quarantine object; the next run tries again");
                        }
                    }
                }
                after = page.objects.last().map(|o| o.key.clone());
                if !page.more || after.is_none() {
                    break;
                }
            }
        }
    }
    Ok(false)
}

/// Registers one object from what HeadObject says of it now, and sends its event. `false`
/// when it is gone or was registered by someone else meanwhile.
async fn register(deps: &Deps, dataset: &str, key: &str) -> Result<bool, String> {
    let Some((created, etag)) = register_row(deps, dataset, key).await? else {
        return Ok(false);
    };
    let event = object_created_event(&deps.quarantine_bucket, key, &etag);
    deps.sanitize_queue
        .send_all(&[event.to_string()])
        .await
        .map_err(|e| e.to_string())?;
    Ok(created)
}

/// Gives a quarantine object its `received` row from what HeadObject says of it now:
/// whether the row is new, and the object's ETag; `None` when the object is gone.
pub(crate) async fn register_row(
    deps: &Deps,
    dataset: &str,
    key: &str,
) -> Result<Option<(bool, String)>, String> {
    let bucket = &deps.quarantine_bucket;
    let Some(head) = deps
        .objects
        .head(bucket, key)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let said = UploadMetadata::read(&head.metadata);
    let registered = deps
        .store
        .register(&NewFile {
            dataset,
            site: said.site.as_deref(),
            bucket,
            key,
            etag: &head.etag,
            size: head.size,
            replay_of: said.replay_of.as_deref().and_then(|v| v.parse().ok()),
            uploaded_by: said.uploaded_by.as_deref(),
            uploaded_at: said.uploaded_at(head.last_modified),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((registered.created, head.etag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_days_prefixes_cross_month_and_year_ends() {
        let today: DateTime<Utc> = "2027-01-01T08:00:00Z".parse().unwrap();
        assert_eq!(
            day_prefixes("incoming/orders/", today.into(), 3),
            [
                "incoming/orders/2027/01/01/",
                "incoming/orders/2026/12/31/",
                "incoming/orders/2026/12/30/"
            ]
        );
        assert!(day_prefixes("incoming/orders/", today.into(), 0).is_empty());
    }
}
