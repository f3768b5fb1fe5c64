//! Re-driving stuck files: the stage in `sluice_stages::redrive`, over this run's S3 objects,
//! queues and status store.

use sluice_lambda::Failure;
use sluice_stages::redrive::{RedriveCounts, RedriveStage};

use crate::handler::{Budget, Deps};

/// Re-drives stuck files until none is left or the time runs low (returns whether it did).
pub async fn redrive_stuck(
    deps: &Deps,
    budget: Budget,
    counts: &mut RedriveCounts,
) -> Result<bool, Failure> {
    let stage = RedriveStage {
        store: &deps.store,
        objects: &deps.objects,
        sanitize_queue: &deps.sanitize_queue,
        transform_queue: &deps.transform_queue,
        forward_queue: &deps.forward_queue,
        clean_bucket: &deps.clean_bucket,
        stale_after: deps.stale_after,
        max_redrives: deps.max_redrives,
    };
    Ok(sluice_stages::redrive::redrive_stuck(&stage, || budget.low(), counts).await?)
}
