//! What the listener's reconciliation asks of the status store: which of a page of
//! quarantine objects already have a `file_process` row.

use std::collections::HashSet;

use crate::{DbError, Store};

impl Store {
    /// The `(key, etag)` pairs among `objects` (in `bucket`) that have a row.
    pub async fn registered_sources(
        &self,
        bucket: &str,
        objects: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, DbError> {
        if objects.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT source_key, source_etag FROM file_process
                 WHERE source_bucket = $1 AND source_key = ANY($2)",
                &[&bucket, &keys],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
