//! The record-state store on PostgreSQL: `record_state`, `record_plan`, `record_seen`,
//! `delta_scope` and `delta_plan` (migration V8). Lookups and plans go a chunk of records per
//! statement, with the chunk's keys and hashes as array parameters.

use sluice_core::transform::delta::{DeltaReport, RecordHash, DELETED_ORDINAL_BASE};
use sluice_stages::ports::{
    Compared, DeliveredRecords, Missing, Planned, PlannedRecord, RecordPlanning, RecordPlans,
};
use uuid::Uuid;

use crate::{DbError, Store};

/// A file's upload time, what orders the files of a scope (`$1` is the file).
const ME: &str = "me AS (
         SELECT COALESCE(uploaded_at, received_at) AS at FROM file_process WHERE id = $1)";

/// The keys the scope's previous file had and this one has not, among those delivered by
/// files uploaded no later than this one. The previous file is the scope's newest other than
/// this one, if this one is newer; if it is older (`newer`), nothing is missing.
const MISSING: &str = "WITH me AS (
         SELECT COALESCE(uploaded_at, received_at) AS at FROM file_process WHERE id = $1),
     scope_file AS (
         SELECT file_id, uploaded_at FROM delta_scope
         WHERE dataset = $2 AND scope = $3 AND file_id <> $1),
     newer AS (
         SELECT file_id FROM scope_file WHERE uploaded_at > (SELECT at FROM me)),
     previous AS (
         SELECT file_id FROM scope_file WHERE NOT EXISTS (SELECT 1 FROM newer)),
     gone AS (
         SELECT unnest(keys) AS k FROM record_seen WHERE file_id = (SELECT file_id FROM previous)
         EXCEPT
         SELECT unnest(keys) FROM record_seen WHERE file_id = $1),
     known AS (
         SELECT g.k FROM gone g
         JOIN record_state s ON s.dataset = $2 AND s.scope = $3 AND s.record_key = g.k
         WHERE s.uploaded_at <= (SELECT at FROM me))";

impl RecordPlanning for Store {
    async fn compare_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        chunk: u32,
        keys: &[String],
        hashes: &[RecordHash],
        remember: bool,
    ) -> Result<Vec<Compared>, DbError> {
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let client = self.db.client().await?;
        // Only the records that differ come back: on a re-upload, almost none. One primary
        // key probe per record (LATERAL ... LIMIT 1 keeps it so): a plain join lets the
        // planner hash the dataset's whole state for every chunk, 15x slower at 1.4 M keys.
        let rows = client
            .query(
                &format!("WITH {ME},
                 seen AS (
                     INSERT INTO record_seen (file_id, chunk, keys)
                     SELECT $1, $4, $5 WHERE $7
                     ON CONFLICT (file_id, chunk) DO UPDATE SET keys = EXCLUDED.keys)
                 SELECT i.n, s.hash IS NOT NULL, COALESCE(s.uploaded_at > (SELECT at FROM me), false)
                 FROM unnest($5::text[], $6::bytea[]) WITH ORDINALITY AS i (record_key, hash, n)
                 LEFT JOIN LATERAL (
                     SELECT hash, uploaded_at FROM record_state s
                     WHERE s.dataset = $2 AND s.scope = $3 AND s.record_key = i.record_key
                     LIMIT 1) s ON true
                 WHERE s.hash IS DISTINCT FROM i.hash"),
                &[
                    &file,
                    &dataset,
                    &scope,
                    &(chunk as i32),
                    &keys,
                    &hashes,
                    &remember,
                ],
            )
            .await?;
        let mut compared = vec![Compared::Unchanged; keys.len()];
        for row in rows {
            let n: i64 = row.get(0);
            let (known, newer): (bool, bool) = (row.get(1), row.get(2));
            if let Some(slot) = compared.get_mut((n - 1) as usize) {
                *slot = match (known, newer) {
                    (true, true) => Compared::Superseded,
                    (true, false) => Compared::Changed,
                    (false, _) => Compared::New,
                };
            }
        }
        Ok(compared)
    }

    async fn newer_upload(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
    ) -> Result<Option<Uuid>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "WITH {ME}
                     SELECT file_id FROM delta_scope
                     WHERE dataset = $2 AND scope = $3 AND file_id <> $1
                       AND uploaded_at > (SELECT at FROM me)"
                ),
                &[&file, &dataset, &scope],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn plan_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        records: &[PlannedRecord<'_>],
        exclusive: bool,
    ) -> Result<Vec<u64>, DbError> {
        let ordinals: Vec<i64> = records.iter().map(|r| r.ordinal as i64).collect();
        let keys: Vec<&str> = records.iter().map(|r| r.key).collect();
        let hashes: Vec<&[u8]> = records.iter().map(|r| &r.hash[..]).collect();
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        let seqs: Vec<i32> = records.iter().map(|r| r.seq as i32).collect();
        if ordinals.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.db.client().await?;
        // ON CONFLICT with no target: the claim index and the primary key alike.
        let rows = client
            .query(
                "INSERT INTO record_plan
                     (file_id, ordinal, dataset, scope, record_key, hash, kind, seq, exclusive)
                 SELECT $1, o, $2, $3, k, h, kd, s, $9
                 FROM unnest($4::int8[], $5::text[], $6::bytea[], $7::text[], $8::int4[])
                     AS t (o, k, h, kd, s)
                 ON CONFLICT DO NOTHING
                 RETURNING ordinal",
                &[
                    &file, &dataset, &scope, &ordinals, &keys, &hashes, &kinds, &seqs, &exclusive,
                ],
            )
            .await?;
        let mut added: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
        added.sort_unstable();
        Ok(added)
    }

    async fn renumber(&self, file: Uuid, seqs: &[(u64, u32)]) -> Result<(), DbError> {
        let ordinals: Vec<i64> = seqs.iter().map(|s| s.0 as i64).collect();
        let numbers: Vec<i32> = seqs.iter().map(|s| s.1 as i32).collect();
        let client = self.db.client().await?;
        client
            .execute(
                "UPDATE record_plan p SET seq = t.s
                 FROM unnest($2::int8[], $3::int4[]) AS t (o, s)
                 WHERE p.file_id = $1 AND p.ordinal = t.o",
                &[&file, &ordinals, &numbers],
            )
            .await?;
        Ok(())
    }

    async fn missing_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        limit: usize,
    ) -> Result<Missing, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_one(
                &format!(
                    "{MISSING}
                     SELECT (SELECT file_id FROM previous), (SELECT file_id FROM newer), count(*),
                            COALESCE((array_agg(k ORDER BY k))[1:$4], '{{}}')
                     FROM known"
                ),
                &[&file, &dataset, &scope, &(limit as i32)],
            )
            .await?;
        Ok(Missing {
            previous: row.get(0),
            newer: row.get(1),
            count: row.get::<_, i64>(2) as u64,
            first: row.get(3),
        })
    }

    async fn plan_deletions(&self, file: Uuid, dataset: &str, scope: &str) -> Result<u64, DbError> {
        let client = self.db.client().await?;
        let n = client
            .execute(
                &format!(
                    "{MISSING}
                     INSERT INTO record_plan
                         (file_id, ordinal, dataset, scope, record_key, hash, kind, seq,
                          exclusive)
                     SELECT $1, $4 + row_number() OVER (ORDER BY k), $2, $3, k, '\\x'::bytea,
                            'deleted', NULL, false
                     FROM known
                     ON CONFLICT DO NOTHING"
                ),
                &[&file, &dataset, &scope, &(DELETED_ORDINAL_BASE as i64)],
            )
            .await?;
        Ok(n)
    }

    async fn unnumbered(
        &self,
        file: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT ordinal, record_key FROM record_plan
                 WHERE file_id = $1 AND seq IS NULL AND ordinal > $2
                 ORDER BY ordinal LIMIT $3",
                &[&file, &(after as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
            .collect())
    }

    async fn complete_plan(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        remember: bool,
        report: &DeltaReport,
    ) -> Result<(), DbError> {
        let json = serde_json::to_value(report).unwrap_or_default();
        let counts = [
            report.new as i64,
            report.changed as i64,
            report.unchanged as i64,
        ];
        let missing = report.missing.map(|m| m as i64);
        let superseded = report.superseded as i64;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO delta_plan (file_id, report) VALUES ($1, $2)
             ON CONFLICT (file_id) DO NOTHING",
            &[&file, &json],
        )
        .await?;
        tx.execute(
            "UPDATE file_process SET records_new = $2, records_changed = $3,
                 records_unchanged = $4, records_missing = $5, records_superseded = $6,
                 updated_at = now()
             WHERE id = $1",
            &[
                &file,
                &counts[0],
                &counts[1],
                &counts[2],
                &missing,
                &superseded,
            ],
        )
        .await?;
        if remember {
            // The newest upload is the one the scope's next file is compared with: the keys of
            // whichever of the two is not go.
            tx.execute(
                &format!(
                    "WITH {ME},
                     previous AS (
                         SELECT file_id FROM delta_scope WHERE dataset = $2 AND scope = $3),
                     moved AS (
                         INSERT INTO delta_scope (dataset, scope, file_id, uploaded_at)
                         SELECT $2, $3, $1, at FROM me
                         ON CONFLICT (dataset, scope) DO UPDATE
                             SET file_id = EXCLUDED.file_id, uploaded_at = EXCLUDED.uploaded_at,
                                 updated_at = now()
                             WHERE delta_scope.uploaded_at <= EXCLUDED.uploaded_at
                         RETURNING 1)
                     DELETE FROM record_seen
                     WHERE CASE WHEN EXISTS (SELECT 1 FROM moved)
                                THEN file_id = (SELECT file_id FROM previous) AND file_id <> $1
                                ELSE file_id = $1 END"
                ),
                &[&file, &dataset, &scope],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl RecordPlans for Store {
    async fn delta_plan(&self, file: Uuid) -> Result<Option<DeltaReport>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt("SELECT report FROM delta_plan WHERE file_id = $1", &[&file])
            .await?;
        row.map(|r| {
            serde_json::from_value(r.get(0))
                .map_err(|e| DbError::Corrupt(format!("delta_plan of {file}: {e}")))
        })
        .transpose()
    }

    async fn discard_plan(&self, file: Uuid) -> Result<(), DbError> {
        let client = self.db.client().await?;
        client
            .execute(
                "WITH plan AS (DELETE FROM record_plan WHERE file_id = $1)
                 DELETE FROM record_seen WHERE file_id = $1",
                &[&file],
            )
            .await?;
        Ok(())
    }

    async fn planned(&self, file: Uuid, after: u64, limit: usize) -> Result<Vec<Planned>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT ordinal, seq, CASE WHEN kind = 'deleted' THEN record_key END
                 FROM record_plan
                 WHERE file_id = $1 AND ordinal > $2 AND seq IS NOT NULL
                 ORDER BY ordinal LIMIT $3",
                &[&file, &(after as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Planned {
                ordinal: r.get::<_, i64>(0) as u64,
                seq: r.get::<_, i32>(1) as u32,
                deleted_key: r.get(2),
            })
            .collect())
    }
}

impl DeliveredRecords for Store {
    async fn record_delivered(&self, file: Uuid, seq: u32) -> Result<u64, DbError> {
        let client = self.db.client().await?;
        // A key twice in one batch (a file repeating it with other content): the later
        // record is the one the API kept. A key a newer upload delivered meanwhile keeps
        // that upload's state.
        let row = client
            .query_one(
                &format!(
                    "WITH {ME},
                 done AS (
                     DELETE FROM record_plan WHERE file_id = $1 AND seq = $2
                     RETURNING ordinal, dataset, scope, record_key, hash, kind),
                 last AS (
                     SELECT DISTINCT ON (dataset, scope, record_key)
                         dataset, scope, record_key, hash, kind
                     FROM done ORDER BY dataset, scope, record_key, ordinal DESC),
                 gone AS (
                     DELETE FROM record_state s USING last l
                     WHERE l.kind = 'deleted' AND s.dataset = l.dataset
                       AND s.scope = l.scope AND s.record_key = l.record_key
                       AND s.uploaded_at <= (SELECT at FROM me)),
                 written AS (
                     INSERT INTO record_state
                         (dataset, scope, record_key, hash, file_id, uploaded_at)
                     SELECT dataset, scope, record_key, hash, $1,
                            COALESCE((SELECT at FROM me), now())
                     FROM last WHERE kind <> 'deleted'
                     ON CONFLICT (dataset, scope, record_key) DO UPDATE SET
                         hash = EXCLUDED.hash, file_id = EXCLUDED.file_id,
                         uploaded_at = EXCLUDED.uploaded_at, last_seen = now()
                     WHERE record_state.uploaded_at <= EXCLUDED.uploaded_at
                     RETURNING 1)
                 SELECT count(*) FROM done"
                ),
                &[&file, &(seq as i32)],
            )
            .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
