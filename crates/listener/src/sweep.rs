//! The drop sweep: list the drop areas page by page from where the last unfinished run
//! stopped, and copy each settled object no run has taken yet into quarantine, once.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use sluice_aws::{CopySource, Listed};
use sluice_core::drop::{quarantine_key, AfterCopy};
use sluice_core::metadata::UploadMetadata;
use sluice_core::{Dataset, DropRoute};
use sluice_db::{file_id, DropClaim, DropCursor, DropObject, Lease};
use sluice_lambda::Failure;
use uuid::Uuid;

use crate::handler::{Budget, Deps};

/// What the sweep saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepCounts {
    /// Drop objects listed (folder markers aside).
    pub scanned: u64,
    /// Registered for the first time by this run.
    pub registered: u64,
    /// Copied into quarantine by this run.
    pub copied: u64,
    /// Younger than their dataset's settle time: left for a later run.
    pub settling: u64,
    /// Matched no dataset (or two): recorded as rejected files by this run.
    pub unmatched: u64,
    /// Already finished with by an earlier run.
    pub known: u64,
    /// Being copied by another (overlapping) run.
    pub claimed_elsewhere: u64,
    /// Copies or after-copy actions that failed in this run; a later run retries them.
    pub copy_errors: u64,
    /// Drops failed by this run after `max_redrives` failed copies.
    pub drops_given_up: u64,
}

impl SweepCounts {
    fn add(&mut self, other: &SweepCounts) {
        self.scanned += other.scanned;
        self.registered += other.registered;
        self.copied += other.copied;
        self.settling += other.settling;
        self.unmatched += other.unmatched;
        self.known += other.known;
        self.claimed_elsewhere += other.claimed_elsewhere;
        self.copy_errors += other.copy_errors;
        self.drops_given_up += other.drops_given_up;
    }
}

/// Sweeps every drop prefix; returns whether it stopped early because the time ran low.
pub async fn sweep_drops(
    deps: &Deps,
    bucket: &str,
    lease: &Lease,
    budget: Budget,
    counts: &mut SweepCounts,
) -> Result<bool, Failure> {
    for prefix in deps.config.drop_prefixes() {
        // A path no dataset takes is judged only once it would have settled for any dataset
        // whose drop area lies in this prefix.
        let settle_unmatched = deps
            .config
            .datasets()
            .filter_map(|d| d.drop.as_ref())
            .filter(|r| r.pattern.list_prefix().starts_with(&prefix))
            .map(|r| r.settle)
            .max()
            .unwrap_or_default();
        let mut start_after = deps
            .store
            .drop_cursor(bucket, &prefix)
            .await?
            .map(|c| c.start_after);
        loop {
            if budget.low() {
                save_cursor(deps, bucket, &prefix, start_after.as_deref()).await?;
                return Ok(true);
            }
            let page = deps
                .objects
                .list_page(bucket, &prefix, start_after.as_deref(), deps.page_size)
                .await?;
            let keys: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
            let finished = deps.store.finished_drops(bucket, &keys).await?;
            let seen = Seen {
                finished: &finished,
                settle_unmatched,
            };
            // Several objects at a time (each claimed, so never one twice), finishing in
            // listing order: the cursor only passes objects that are done.
            let mut done = stream::iter(&page.objects)
                .take_while(|_| std::future::ready(!budget.low()))
                .map(|object| {
                    let seen = &seen;
                    async move {
                        let tally = one_object(deps, bucket, object, seen, lease).await?;
                        Ok::<_, Failure>((object, tally))
                    }
                })
                .buffered(deps.copy_concurrency.max(1));
            let mut handled = 0;
            while let Some(result) = done.next().await {
                let (object, tally) = result?;
                counts.add(&tally);
                start_after = Some(object.key.clone());
                handled += 1;
            }
            if handled < page.objects.len() {
                save_cursor(deps, bucket, &prefix, start_after.as_deref()).await?;
                return Ok(true);
            }
            if !page.more {
                // The end: the next run lists from the start, where new drops may be.
                deps.store.save_drop_cursor(bucket, &prefix, None).await?;
                break;
            }
        }
    }
    Ok(false)
}

async fn save_cursor(
    deps: &Deps,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<(), Failure> {
    let cursor = start_after.map(|k| DropCursor {
        start_after: k.to_string(),
    });
    deps.store
        .save_drop_cursor(bucket, prefix, cursor.as_ref())
        .await?;
    Ok(())
}

struct Seen<'a> {
    finished: &'a HashSet<(String, String)>,
    settle_unmatched: Duration,
}

/// Deals with one listed object; returns what it counts for.
async fn one_object(
    deps: &Deps,
    bucket: &str,
    object: &Listed,
    seen: &Seen<'_>,
    lease: &Lease,
) -> Result<SweepCounts, Failure> {
    let mut tally = SweepCounts::default();
    let counts = &mut tally;
    // Folder markers (`ftp/leeds/`) that FTP servers create are not files.
    if object.key.ends_with('/') {
        return Ok(tally);
    }
    counts.scanned += 1;
    if seen
        .finished
        .contains(&(object.key.clone(), object.etag.clone()))
    {
        counts.known += 1;
        return Ok(tally);
    }
    let drop = DropObject {
        bucket: bucket.to_string(),
        key: object.key.clone(),
        etag: object.etag.clone(),
        size: object.size,
    };
    let age = SystemTime::now()
        .duration_since(object.last_modified)
        .unwrap_or_default();
    let (dataset, site) = match deps.config.route_drop(&object.key) {
        DropRoute::Unmatched(reason) => {
            if age < seen.settle_unmatched {
                counts.settling += 1;
            } else if deps.store.drop_unmatched(&drop, &reason).await? {
                tracing::warn!(bucket, key = %object.key, reason = %reason,
                    "drop matches no dataset: recorded as rejected");
                counts.unmatched += 1;
            }
            return Ok(tally);
        }
        DropRoute::Dataset { dataset, site } => (dataset, site),
    };
    let Some(rule) = &dataset.drop else {
        return Ok(tally);
    };
    if age < rule.settle {
        counts.settling += 1;
        return Ok(tally);
    }
    let proposed = quarantine_key(
        &dataset.prefix,
        chrono::Utc::now(),
        Uuid::new_v4(),
        &object.key,
    );
    let claim = deps
        .store
        .claim_drop(&drop, &dataset.name, site.as_deref(), &proposed, lease)
        .await?;
    let (copied, quarantine_key) = match claim {
        DropClaim::Taken => {
            counts.claimed_elsewhere += 1;
            return Ok(tally);
        }
        DropClaim::Registered { quarantine_key } => {
            counts.registered += 1;
            (false, quarantine_key)
        }
        DropClaim::Resumed {
            attempts,
            quarantine_key,
            copied,
        } => {
            if attempts > deps.max_redrives {
                let reason = format!(
                    "copying the drop into quarantine failed {} times; last error in drop_object",
                    attempts - 1
                );
                if deps
                    .store
                    .drop_failed(&drop, &dataset.name, site.as_deref(), &reason)
                    .await?
                {
                    counts.drops_given_up += 1;
                    tracing::error!(bucket, key = %object.key, reason = %reason, "drop given up");
                }
                return Ok(tally);
            }
            (copied, quarantine_key)
        }
    };
    let work = Copy {
        deps,
        drop: &drop,
        dataset,
        site: site.as_deref(),
        quarantine_key: &quarantine_key,
        dropped_at: object.last_modified,
    };
    match work.run(copied).await {
        Ok(newly_copied) => {
            counts.copied += u64::from(newly_copied);
            Ok(tally)
        }
        Err(e) => {
            counts.copy_errors += 1;
            tracing::error!(bucket, key = %object.key, dataset = %dataset.name, error = %e,
                "drop not copied; a later run retries it");
            deps.store.drop_retry(&drop, &e).await?;
            Ok(tally)
        }
    }
}

/// Copying one claimed drop and dealing with the original.
struct Copy<'a> {
    deps: &'a Deps,
    drop: &'a DropObject,
    dataset: &'a Dataset,
    site: Option<&'a str>,
    quarantine_key: &'a str,
    /// When the drop landed: the copy's upload time, for the order of a delta scope.
    dropped_at: std::time::SystemTime,
}

impl Copy<'_> {
    /// Copies (unless an earlier run did) and then keeps, deletes or archives the original.
    /// Returns whether this run made the copy.
    async fn run(&self, already_copied: bool) -> Result<bool, String> {
        let (deps, drop) = (self.deps, self.drop);
        let source = CopySource {
            bucket: &drop.bucket,
            key: &drop.key,
            etag: &drop.etag,
            size: drop.size,
        };
        if !already_copied {
            let origin = format!("s3://{}/{}", drop.bucket, drop.key);
            let dropped_at = chrono::DateTime::<chrono::Utc>::from(self.dropped_at).to_rfc3339();
            let said = UploadMetadata {
                source: Some(ascii(&origin)),
                uploaded_at: Some(dropped_at),
                site: self.site.map(str::to_string),
                ..UploadMetadata::default()
            }
            .to_map();
            let metadata: Vec<(&str, &str)> =
                said.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let quarantine = &deps.quarantine_bucket;
            let etag = deps
                .objects
                .copy(source, quarantine, self.quarantine_key, &metadata)
                .await
                .map_err(|e| e.to_string())?;
            let id = file_id(quarantine, self.quarantine_key, &etag);
            deps.store
                .drop_copied(drop, id)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(bucket = %drop.bucket, key = %drop.key, dataset = %self.dataset.name,
                site = self.site.unwrap_or(""), quarantine_key = %self.quarantine_key,
                file_id = %id, "drop copied into quarantine");
        }
        let after = self.dataset.drop.as_ref().map(|r| &r.after_copy);
        match after {
            Some(AfterCopy::Delete) => deps.objects.delete(&drop.bucket, &drop.key).await,
            Some(AfterCopy::Archive { prefix }) => {
                let archived = format!("{prefix}{}", drop.key);
                match deps
                    .objects
                    .copy(source, &drop.bucket, &archived, &[])
                    .await
                {
                    Ok(_) => deps.objects.delete(&drop.bucket, &drop.key).await,
                    Err(e) => Err(e),
                }
            }
            Some(AfterCopy::Keep) | None => Ok(()),
        }
        .map_err(|e| e.to_string())?;
        deps.store
            .drop_done(drop)
            .await
            .map_err(|e| e.to_string())?;
        Ok(!already_copied)
    }
}

/// S3 metadata values travel as HTTP headers: non-ASCII characters are percent-escaped.
fn ascii(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_ascii() && !c.is_ascii_control() {
            true => vec![c.to_string()],
            false => {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_stay_ascii() {
        assert_eq!(ascii("s3://d/ftp/a b.csv"), "s3://d/ftp/a b.csv");
        assert_eq!(ascii("s3://d/caf\u{e9}.csv"), "s3://d/caf%C3%A9.csv");
    }
}
