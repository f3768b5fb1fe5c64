//! A file's plan on record: the first stage to work on a file pins the config it is handled
//! with ([`sluice_core::plan::ConfigPin`]), and every later run, take-over and re-drive reads
//! its dataset from there instead of from the config the container loaded.

use serde::Serialize;
use sluice_core::plan::FilePlan;
use uuid::Uuid;

use crate::fault::{Fault, FaultKind};
use crate::ports::Plans;

/// Adds to file `id`'s plan the keys of `proposed` it lacks (the first writer's values win,
/// in one statement, so two stages racing with different configs end up with the same plan)
/// and returns the plan on record.
pub async fn fix_plan<S: Plans>(
    store: &S,
    id: Uuid,
    proposed: &impl Serialize,
) -> Result<FilePlan, Fault> {
    let proposed =
        serde_json::to_value(proposed).map_err(|e| Fault::new(FaultKind::Store, e.to_string()))?;
    let fixed = store
        .fix_plan(id, &proposed)
        .await
        .map_err(Fault::store)?
        .ok_or_else(|| {
            Fault::new(
                FaultKind::Store,
                format!("file {id} is not in the status store"),
            )
        })?;
    serde_json::from_value(fixed).map_err(|e| {
        Fault::new(
            FaultKind::Store,
            format!("the plan of file {id} cannot be read: {e}"),
        )
    })
}
