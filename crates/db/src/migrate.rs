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

/// The migrations this build has that the database has not applied yet (all of them on an
/// empty schema), in order.
pub async fn pending_migrations(db: &Db) -> Result<Vec<u32>, DbError> {
    let mut client = db.client().await?;
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name("sluice_schema_history");
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('sluice_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let applied: Vec<u32> = match exists {
        true => runner
            .get_applied_migrations_async(&mut *client)
            .await
            .map_err(|e| DbError::Migration(e.to_string()))?
            .iter()
            .map(|m| m.version())
            .collect(),
        false => Vec::new(),
    };
    Ok(runner
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .filter(|v| !applied.contains(v))
        .collect())
}
