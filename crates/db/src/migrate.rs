//! Embedded, ordered, idempotent schema migrations (refinery; files in `migrations/`).

use crate::{Db, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Serializes migrations of one schema across processes (a session advisory lock, keyed by
/// the schema name).
const LOCK: &str = "SELECT pg_advisory_lock(hashtext('sluice_migrate:' || current_schema()))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext('sluice_migrate:' || current_schema()))";

/// Applies the migrations not applied yet, in order; returns the versions applied now.
/// Running it again (another container's cold start, `sluice migrate`) changes nothing, and
/// two runs at the same moment take turns: the second finds nothing left to apply.
pub async fn migrate(db: &Db) -> Result<Vec<u32>, DbError> {
    let mut client = db.client().await?;
    client.batch_execute(LOCK).await?;
    let report = embedded::migrations::runner()
        .set_migration_table_name("sluice_schema_history")
        .run_async(&mut *client)
        .await
        .map_err(|e| DbError::Migration(e.to_string()));
    // A session lock: released when the connection ends, too.
    let unlocked = client.batch_execute(UNLOCK).await;
    let report = report?;
    unlocked?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect())
}
