//! Outstanding notifications (`notification`, filled by a trigger as files reach a final
//! status), taken with a short hold so publishers at once never take the same ones.

use std::future::Future;
use std::time::Duration;

use sluice_stages::ports::{FileNotice, Outstanding};
use uuid::Uuid;

use crate::store::FILE_COLUMNS;
use crate::{DbError, Store};

impl Store {
    pub async fn take_notices(
        &self,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<FileNotice>, DbError> {
        let client = self.db.client().await?;
        let taken: Vec<Uuid> = client
            .query(
                "WITH taken AS (
                     SELECT event_id FROM notification
                     WHERE published_at IS NULL
                       AND (claimed_until IS NULL OR claimed_until < now())
                     ORDER BY created_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
                 UPDATE notification n
                 SET claimed_until = now() + make_interval(secs => $2),
                     attempts = n.attempts + 1
                 FROM taken WHERE n.event_id = taken.event_id
                 RETURNING n.file_id",
                &[&(limit as i64), &hold.as_secs_f64()],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!("SELECT {FILE_COLUMNS} FROM file_process WHERE id = ANY($1)"),
                &[&taken],
            )
            .await?;
        rows.iter()
            .map(|r| crate::store::file_row(r).map(|row| FileNotice::of(&row)))
            .collect()
    }

    pub async fn notices_published(&self, event_ids: &[String]) -> Result<(), DbError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.db
            .client()
            .await?
            .execute(
                "UPDATE notification SET published_at = now(), claimed_until = NULL, error = NULL
                 WHERE event_id = ANY($1)",
                &[&event_ids],
            )
            .await?;
        Ok(())
    }

    pub async fn notices_not_published(
        &self,
        event_ids: &[String],
        error: &str,
    ) -> Result<(), DbError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        self.db
            .client()
            .await?
            .execute(
                "UPDATE notification SET claimed_until = NULL, error = $2
                 WHERE event_id = ANY($1) AND published_at IS NULL",
                &[&event_ids, &error],
            )
            .await?;
        Ok(())
    }
}

impl Outstanding for Store {
    type Error = DbError;

    fn take_notices(
        &self,
        limit: usize,
        hold: Duration,
    ) -> impl Future<Output = Result<Vec<FileNotice>, DbError>> + Send {
        Store::take_notices(self, limit, hold)
    }

    fn published(&self, event_ids: &[String]) -> impl Future<Output = Result<(), DbError>> + Send {
        self.notices_published(event_ids)
    }

    fn not_published(
        &self,
        event_ids: &[String],
        error: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        self.notices_not_published(event_ids, error)
    }
}
