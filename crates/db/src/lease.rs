//! Work leases: one way to claim work. A stage claims a file (the forwarder a batch) with one
//! conditional UPDATE that sets the owner and the expiry (the invocation's deadline) only if the
//! status is the expected one and no live lease exists. The loser of a race does no work; an
//! expired lease means its worker died, and the next claim takes the work over.

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::{BatchClaim, BatchHistory, Claim, Lease};
use uuid::Uuid;

use crate::store::parse_status;
use crate::{DbError, Store};

/// The claim, the batch's history and its file's status in one statement: the forwarder's
/// reads before a POST are one round trip.
///
/// The subqueries see the tables as they were when the statement began, but the claim may
/// have waited for another worker's 2xx (which releases the claim in the same statement as it
/// records the call) and then won over the row that 2xx left. So "delivered" also comes from
/// the claim row itself (`delivered_at`, as `RETURNING` sees it after the wait): a won claim
/// over a delivered batch always knows it, and never POSTs again.
const CLAIM_BATCH: &str = "WITH claimed AS (
         INSERT INTO batch_claim (batch_id, file_id, lease_owner, lease_until, attempts)
         VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (batch_id) DO UPDATE SET
             lease_owner = EXCLUDED.lease_owner,
             lease_until = EXCLUDED.lease_until,
             attempts = batch_claim.attempts + 1
         WHERE batch_claim.lease_until IS NULL OR batch_claim.lease_until < now()
         RETURNING attempts, delivered_at IS NOT NULL AS delivered)
     SELECT (SELECT attempts FROM claimed),
            COALESCE(max(a.attempt), 0),
            COALESCE(bool_or(a.http_status BETWEEN 200 AND 299), false)
                OR COALESCE((SELECT delivered FROM claimed), false),
            (SELECT status FROM file_process WHERE id = $2),
            (SELECT plan->'dataset' FROM file_process WHERE id = $2)
     FROM api_call a WHERE a.batch_id = $1";

impl Store {
    /// Claims file `id` for `stage`: moves it from `from` to `to`, or takes over `to` when the
    /// lease on it has expired, setting the lease, in one UPDATE. A move is a `file_event`.
    pub async fn claim(
        &self,
        id: Uuid,
        stage: Stage,
        from: FileStatus,
        to: FileStatus,
        lease: &Lease,
    ) -> Result<Claim, DbError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let won = tx
            .query_opt(
                "WITH before AS (SELECT status FROM file_process WHERE id = $1 FOR UPDATE)
                 UPDATE file_process f SET
                     status = $3, lease_owner = $4, lease_until = $5,
                     attempts = f.attempts + 1, updated_at = now()
                 FROM before
                 WHERE f.id = $1
                   AND (before.status = $2
                        OR (before.status = $3
                            AND (f.lease_until IS NULL OR f.lease_until < now())))
                 RETURNING f.attempts, before.status",
                &[
                    &id,
                    &from.as_str(),
                    &to.as_str(),
                    &lease.owner,
                    &lease.until,
                ],
            )
            .await?;
        let claim = match won {
            Some(row) => {
                let before = parse_status(row.get(1))?;
                let detail = match before == to {
                    true => json!({ "lease": "taken over", "owner": lease.owner }),
                    false => json!({ "owner": lease.owner }),
                };
                tx.execute(
                    "INSERT INTO file_event (file_id, stage, status, detail)
                     VALUES ($1, $2, $3, $4)",
                    &[&id, &stage.as_str(), &to.as_str(), &detail],
                )
                .await?;
                Claim::Won {
                    attempts: row.get(0),
                }
            }
            None => why_not(&tx, id, |status| status == to).await?,
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Leases file `id` for `stage` without moving it, if it is in one of `statuses` and no
    /// live lease exists: a re-drive's worker re-sending what a later stage lacks.
    pub async fn claim_in_place(
        &self,
        id: Uuid,
        stage: Stage,
        statuses: &[FileStatus],
        lease: &Lease,
    ) -> Result<Claim, DbError> {
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let won = tx
            .query_opt(
                "UPDATE file_process SET
                     lease_owner = $3, lease_until = $4, attempts = attempts + 1,
                     updated_at = now()
                 WHERE id = $1 AND status = ANY($2)
                   AND (lease_until IS NULL OR lease_until < now())
                 RETURNING attempts, status",
                &[&id, &names, &lease.owner, &lease.until],
            )
            .await?;
        let claim = match won {
            Some(row) => {
                let status: String = row.get(1);
                tx.execute(
                    "INSERT INTO file_event (file_id, stage, status, detail)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &id,
                        &stage.as_str(),
                        &status,
                        &json!({ "owner": lease.owner, "lease": "re-drive" }),
                    ],
                )
                .await?;
                Claim::Won {
                    attempts: row.get(0),
                }
            }
            None => why_not(&tx, id, |status| statuses.contains(&status)).await?,
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Gives up `owner`'s lease on file `id` (after a handled failure; moving the status on
    /// releases it too).
    pub async fn release(&self, id: Uuid, owner: &str) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE file_process SET lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
                &[&id, &owner],
            )
            .await?;
        Ok(())
    }

    /// Claims batch `batch_id` of file `file_id` for delivery: held across the POST, so two
    /// copies of one message never both send it.
    pub async fn claim_batch(
        &self,
        file_id: Uuid,
        batch_id: &str,
        lease: &Lease,
    ) -> Result<BatchClaim, DbError> {
        let (client, claim) = self.db.prepared(CLAIM_BATCH).await?;
        let row = client
            .query_one(&claim, &[&batch_id, &file_id, &lease.owner, &lease.until])
            .await?;
        let won: Option<i32> = row.get(0);
        let file_status: Option<&str> = row.get(3);
        Ok(BatchClaim {
            claim: match won {
                Some(attempts) => Claim::Won { attempts },
                None => Claim::Busy,
            },
            history: BatchHistory {
                attempts: row.get(1),
                delivered: row.get(2),
            },
            file_status: file_status.map(parse_status).transpose()?,
            pinned: row
                .get::<_, Option<serde_json::Value>>(4)
                .filter(|v| !v.is_null()),
        })
    }

    /// Gives up `owner`'s claim on a batch.
    pub async fn release_batch(&self, batch_id: &str, owner: &str) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE batch_claim SET lease_owner = NULL, lease_until = NULL
                 WHERE batch_id = $1 AND lease_owner = $2",
                &[&batch_id, &owner],
            )
            .await?;
        Ok(())
    }
}

/// Why a claim of file `id` was not won: no such file, another worker's live lease (the file
/// is where the claim would have put it: `leased`), or the file is elsewhere.
async fn why_not(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    leased: impl Fn(FileStatus) -> bool,
) -> Result<Claim, DbError> {
    let row = tx
        .query_opt("SELECT status FROM file_process WHERE id = $1", &[&id])
        .await?;
    Ok(match row {
        None => Claim::Missing,
        Some(row) => match parse_status(row.get(0))? {
            status if leased(status) => Claim::Busy,
            status => Claim::Elsewhere(status),
        },
    })
}
