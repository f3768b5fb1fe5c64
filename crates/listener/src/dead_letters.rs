//! Object events that died: an "Object Created" message every delivery of which failed
//! before the sanitizer registered the file (the sanitize queue's dead-letter queue), or that
//! EventBridge could not hand to the queue at all (the rule target's dead-letter queue). The
//! reconciliation finds such objects by listing the recent date-partitioned prefixes; this
//! sweep finds them by their event, whatever their key and age, and for keys no dataset
//! routes. Each dead letter is looked at once per run:
//! - its file has a row: the row carries the file's fate (final, or the re-drive's), so the
//!   message is deleted;
//! - no row, and a dataset routes the key: the file is registered (`received`) and the event
//!   goes back to the sanitize queue;
//! - no row, and no dataset routes the key: the event goes back, and the sanitizer records the
//!   key as `rejected` with its reason;
//! - anything else (not an object event, another bucket, the object gone, the store down) is
//!   kept, with its reason in the log, and looked at again by the next run.
//!
//! Each message is sent before it is deleted, so a crash leaves a copy in both queues (the
//! sanitizer takes an event twice without harm), never none.

use serde::Serialize;
use serde_json::Value;
use sluice_aws::dlq::{self, Decision};
use sluice_lambda::Failure;

use crate::handler::{Budget, Deps};
use crate::reconcile::register_row;

/// Dead letters moved per second at most (a large backlog does not flood the sanitizer).
const PER_SECOND: u32 = 50;

/// What the sweep of the object-event dead-letter queues did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    /// Events sent back to the sanitize queue (their file registered first when routed).
    pub dead_letters_returned: u64,
    /// Events deleted because their file already has its row.
    pub dead_letters_settled: u64,
    /// Events left in their dead-letter queue, each with its reason in the log.
    pub dead_letters_kept: u64,
}

/// Sweeps each of `deps.object_dead_letter_queues`; returns whether the time ran low first.
pub async fn sweep_dead_letters(
    deps: &Deps,
    budget: Budget,
    counts: &mut DeadLetterCounts,
) -> Result<bool, Failure> {
    for dlq_url in &deps.object_dead_letter_queues {
        if budget.low() {
            return Ok(true);
        }
        let queues = dlq::Queues::new(deps.sanitize_queue.client().clone());
        let to = deps.sanitize_queue.url();
        match queues
            .redrive(dlq_url, to, PER_SECOND, |body| decide(deps, body))
            .await
        {
            Ok(done) => {
                counts.dead_letters_returned += done.moved as u64;
                counts.dead_letters_settled += done.removed as u64;
                counts.dead_letters_kept += done.kept.len() as u64;
                for kept in &done.kept {
                    tracing::warn!(queue = %dlq_url, message_id = %kept.message_id,
                        reason = %kept.reason, "object event left in its dead-letter queue");
                }
            }
            Err(e) => {
                tracing::error!(queue = %dlq_url, error = %e,
                    "could not sweep an object-event dead-letter queue; the next run tries again");
            }
        }
    }
    Ok(false)
}

/// What to do with one dead object event.
async fn decide(deps: &Deps, body: String) -> Decision {
    let Some((bucket, key)) = object_of(&body) else {
        return Decision::Keep("not an S3 \"Object Created\" event".into());
    };
    if bucket != deps.quarantine_bucket {
        return Decision::Keep(format!("bucket {bucket} is not the quarantine bucket"));
    }
    let Some(dataset) = deps.config.dataset_for_key(&key) else {
        // No dataset: the sanitizer records it as rejected, unless that is done already.
        return match has_row(deps, &bucket, &key).await {
            Ok(true) => Decision::Remove,
            Ok(false) => Decision::Move,
            Err(reason) => Decision::Keep(reason),
        };
    };
    match register_row(deps, &dataset.name, &key).await {
        Ok(Some((true, _))) => {
            tracing::warn!(key = %key, dataset = %dataset.name,
                "dead object event had no row: registered and sent to the sanitizer again");
            Decision::Move
        }
        Ok(Some((false, _))) => Decision::Remove,
        Ok(None) => match has_row(deps, &bucket, &key).await {
            Ok(true) => Decision::Remove,
            Ok(false) => Decision::Keep(format!(
                "{key} is no longer in quarantine and was never registered"
            )),
            Err(reason) => Decision::Keep(reason),
        },
        Err(e) => Decision::Keep(format!("could not register {key}: {e}")),
    }
}

/// Whether any upload of `key` has a row.
async fn has_row(deps: &Deps, bucket: &str, key: &str) -> Result<bool, String> {
    deps.store
        .registered_sources(bucket, &[(key.to_string(), String::new())])
        .await
        .map(|rows| !rows.is_empty())
        .map_err(|e| format!("the status store could not be read: {e}"))
}

/// The bucket and key of an EventBridge "Object Created" event (what the rule sends).
fn object_of(body: &str) -> Option<(String, String)> {
    let event: Value = serde_json::from_str(body).ok()?;
    if event["detail-type"].as_str() != Some("Object Created") {
        return None;
    }
    let bucket = event["detail"]["bucket"]["name"].as_str()?;
    let key = event["detail"]["object"]["key"].as_str()?;
    Some((bucket.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_object_of_an_eventbridge_event_and_nothing_else() {
        let event =
            sluice_stages::redrive::object_created_event("q", "incoming/orders/a b.csv", "e");
        assert_eq!(
            object_of(&event.to_string()),
            Some(("q".into(), "incoming/orders/a b.csv".into()))
        );
        assert_eq!(object_of("{\"detail-type\": \"Object Deleted\"}"), None);
        assert_eq!(object_of("not json"), None);
        assert_eq!(object_of("{\"Records\": []}"), None);
    }
}
