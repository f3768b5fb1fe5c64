//! Embedded, ordered, idempotent schema migrations (refinery; files in `migrations/`).

use crate::{Db, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Applies the migrations not applied yet, in order; returns the versions applied now.
/// Running it again (another container's cold start, `sluice migrate`) changes nothing.
pub async fn migrate(db: &Db) -> Result<Vec<u32>, DbError> {
    let mut client = db.client().await?;
    let report = embedded::migrations::runner()
        .set_migration_table_name("sluice_schema_history")
        .run_async(&mut *client)
        .await
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect())
}
