//! What the pages show, read from the dashboard views (`dashboard_file`, `dashboard_file_event`,
//! `dashboard_api_call`) and nothing else: the role the dashboard connects as may read only
//! them.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sluice_db::{Db, DbError};
use tokio_postgres::Row;
use uuid::Uuid;

/// Rows per page of the file list.
pub const FILES_PER_PAGE: i64 = 50;
/// API calls per page on one file's page.
pub const CALLS_PER_PAGE: i64 = 100;
/// Batches listed on one file's page.
pub const BATCHES_SHOWN: i64 = 500;

pub type Time = DateTime<Utc>;

fn time(t: SystemTime) -> Time {
    DateTime::<Utc>::from(t)
}

/// Files per dataset and status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusCount {
    pub dataset: String,
    pub status: String,
    pub files: i64,
}

/// A file in a list.
#[derive(Debug, Clone, Serialize)]
pub struct FileItem {
    pub id: Uuid,
    pub dataset: Option<String>,
    pub site: Option<String>,
    pub name: String,
    pub status: String,
    pub error: Option<String>,
    pub rows_in: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub records: Option<i64>,
    pub batches_sent: Option<i32>,
    pub batches_delivered: Option<i32>,
    pub received_at: Time,
    pub updated_at: Time,
    /// The run this one replays, and from which stage.
    pub replay_of: Option<Uuid>,
    pub replay_from: Option<String>,
}

const FILE_ITEM: &str = "id, dataset, site, name, status, error, rows_in, rows_rejected, records,
     batches_sent, batches_delivered, received_at, updated_at, replay_of, replay_from";

/// A file's dataset: `None` for a drop that matched none (stored as '').
fn dataset(r: &Row, i: usize) -> Option<String> {
    r.get::<_, Option<String>>(i).filter(|d| !d.is_empty())
}

fn file_item(r: &Row) -> FileItem {
    FileItem {
        id: r.get(0),
        dataset: dataset(r, 1),
        site: r.get(2),
        name: r.get(3),
        status: r.get(4),
        error: r.get(5),
        rows_in: r.get(6),
        rows_rejected: r.get(7),
        records: r.get(8),
        batches_sent: r.get(9),
        batches_delivered: r.get(10),
        received_at: time(r.get(11)),
        updated_at: time(r.get(12)),
        replay_of: r.get(13),
        replay_from: r.get(14),
    }
}

/// The overview of a window.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub since: Time,
    pub counts: Vec<StatusCount>,
    /// Files received in the window.
    pub received: i64,
    /// Files that reached a final status in the window, and how.
    pub finished: i64,
    pub delivered: i64,
    pub rejected: i64,
    pub failed: i64,
    /// Per hour, over the window.
    pub files_per_hour: f64,
    pub records_delivered: i64,
    /// Shares of the finished files (0..1); `None` when none finished.
    pub failure_rate: Option<f64>,
    pub rejection_rate: Option<f64>,
    /// The file waiting longest for a final status.
    pub oldest_unfinished: Option<FileItem>,
    /// Files whose stage died (expired lease), or idle long enough that the listener re-sends
    /// their input (the stale time, doubled with each re-send): the files the sweep acts on.
    pub stuck: Vec<FileItem>,
    pub stuck_count: i64,
    /// The last files that failed or were rejected in the window, newest first, with why.
    pub recent_failures: Vec<FileItem>,
}

/// Which files the list shows.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub dataset: Option<String>,
    pub status: Option<String>,
    pub site: Option<String>,
    /// Text in the file's name (case-insensitive).
    pub q: Option<String>,
    pub since: Option<SystemTime>,
    /// Keyset page: files received before this one (time, id).
    pub before: Option<(SystemTime, Uuid)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePage {
    pub files: Vec<FileItem>,
    /// The cursor of the next (older) page, when there is one: `<rfc3339>_<id>`.
    pub next: Option<String>,
}

/// One file, whole.
#[derive(Debug, Clone, Serialize)]
pub struct FileDetail {
    pub id: Uuid,
    pub dataset: Option<String>,
    pub site: Option<String>,
    pub name: String,
    pub status: String,
    pub failed_stage: Option<String>,
    pub error: Option<String>,
    pub source: String,
    pub source_bucket: String,
    pub source_key: String,
    pub source_size: i64,
    pub clean_key: Option<String>,
    pub rows_in: Option<i64>,
    pub rows_out: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub rows_unmapped: Option<i64>,
    pub records: Option<i64>,
    pub records_new: Option<i64>,
    pub records_changed: Option<i64>,
    pub records_unchanged: Option<i64>,
    pub records_missing: Option<i64>,
    pub batches_sent: Option<i32>,
    pub batches_delivered: Option<i32>,
    pub attempts: i32,
    pub redrives: i32,
    /// Times the listener re-sent its input while it waited (never fails it).
    pub resends: i32,
    /// Records not sent because a newer upload of the scope delivered their keys.
    pub records_superseded: Option<i64>,
    pub uploaded_at: Option<Time>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Time>,
    pub replay_of: Option<Uuid>,
    pub replay_from: Option<String>,
    pub uploaded_by: Option<String>,
    pub received_at: Time,
    pub updated_at: Time,
    pub is_final: bool,
    pub events: Vec<Event>,
    /// The sanitize outcome's figures (the report's), when there is one.
    pub sanitize: Option<Value>,
    /// The transform outcome's figures, when there is one.
    pub transform: Option<Value>,
    /// Later runs of this file (`sluice replay`).
    pub replays: Vec<Uuid>,
    pub batches: Vec<Batch>,
    pub calls_total: i64,
    pub calls: Vec<Call>,
    /// Cursor of the next page of calls (the last id shown).
    pub calls_next: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: Time,
    pub stage: String,
    pub status: String,
    pub detail: Value,
}

/// A batch's delivery, from its calls.
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub batch_id: String,
    pub attempts: i64,
    pub delivered: bool,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_at: Time,
}

#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub id: i64,
    pub at: Time,
    pub batch_id: String,
    pub attempt: i32,
    pub http_status: Option<i32>,
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
    pub ok: bool,
    /// What the API answered (the start of its body), for a call that did not deliver.
    pub answer: Option<String>,
}

/// Slots in an API health trend.
pub const TREND_SLOTS: usize = 12;

/// One dataset's API calls to one endpoint over a window.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub dataset: String,
    /// Scheme, host, port and path (calls from before endpoints were recorded: "(not
    /// recorded)").
    pub endpoint: String,
    pub calls: i64,
    pub ok: i64,
    pub success_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub last_error: Option<String>,
    /// The window in [`TREND_SLOTS`] equal slots, oldest first.
    pub trend: Vec<TrendSlot>,
}

/// A slot of a health trend: its calls and their 2xx.
#[derive(Debug, Clone, Serialize)]
pub struct TrendSlot {
    pub from: Time,
    pub calls: i64,
    pub ok: i64,
}

/// The dashboard's reads.
pub struct Queries<'a> {
    pub db: &'a Db,
}

impl Queries<'_> {
    pub async fn overview(&self, since: SystemTime, stale: Duration) -> Result<Overview, DbError> {
        let client = self.db.client().await?;
        let counts = client
            .query(
                "SELECT CASE WHEN dataset = '' THEN '(no dataset)' ELSE dataset END, status,
                        count(*)
                 FROM dashboard_file WHERE received_at >= $1
                 GROUP BY 1, 2 ORDER BY 1, 2",
                &[&since],
            )
            .await?
            .iter()
            .map(|r| StatusCount {
                dataset: r.get(0),
                status: r.get(1),
                files: r.get(2),
            })
            .collect::<Vec<_>>();
        let received = counts.iter().map(|c| c.files).sum();
        let finished = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'delivered'),
                        count(*) FILTER (WHERE status = 'rejected'),
                        count(*) FILTER (WHERE status = 'failed'),
                        COALESCE(sum(records) FILTER (WHERE status = 'delivered'), 0)::bigint
                 FROM dashboard_file WHERE final AND updated_at >= $1",
                &[&since],
            )
            .await?;
        let (delivered, rejected, failed): (i64, i64, i64) =
            (finished.get(0), finished.get(1), finished.get(2));
        let records_delivered: i64 = finished.get(3);
        let done = delivered + rejected + failed;
        let hours = SystemTime::now()
            .duration_since(since)
            .unwrap_or_default()
            .as_secs_f64()
            / 3600.0;
        let rate = |n: i64| (done > 0).then(|| n as f64 / done as f64);
        let oldest = client
            .query_opt(
                &format!(
                    "SELECT {FILE_ITEM} FROM dashboard_file WHERE NOT final
                     ORDER BY received_at LIMIT 1"
                ),
                &[],
            )
            .await?
            .as_ref()
            .map(file_item);
        let stale = stale.as_secs_f64();
        let stuck_where = format!("NOT final AND {}", sluice_db::stuck_condition("$1::float8"));
        let stuck = client
            .query(
                &format!(
                    "SELECT {FILE_ITEM} FROM dashboard_file WHERE {stuck_where}
                     ORDER BY updated_at LIMIT 10"
                ),
                &[&stale],
            )
            .await?
            .iter()
            .map(file_item)
            .collect();
        let stuck_count: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM dashboard_file WHERE {stuck_where}"),
                &[&stale],
            )
            .await?
            .get(0);
        let recent_failures = client
            .query(
                &format!(
                    "SELECT {FILE_ITEM} FROM dashboard_file
                     WHERE status IN ('failed', 'rejected') AND updated_at >= $1
                     ORDER BY updated_at DESC LIMIT 10"
                ),
                &[&since],
            )
            .await?
            .iter()
            .map(file_item)
            .collect();
        Ok(Overview {
            since: time(since),
            counts,
            received,
            finished: done,
            delivered,
            rejected,
            failed,
            files_per_hour: if hours > 0.0 {
                done as f64 / hours
            } else {
                0.0
            },
            records_delivered,
            failure_rate: rate(failed),
            rejection_rate: rate(rejected),
            oldest_unfinished: oldest,
            stuck,
            stuck_count,
            recent_failures,
        })
    }

    pub async fn files(&self, filter: &FileFilter) -> Result<FilePage, DbError> {
        let pattern = filter.q.as_deref().map(like_pattern);
        let (before_at, before_id) = match filter.before {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        let client = self.db.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {FILE_ITEM} FROM dashboard_file
                     WHERE ($1::text IS NULL OR dataset = $1)
                       AND ($2::text IS NULL OR status = $2)
                       AND ($3::text IS NULL OR site = $3)
                       AND ($4::text IS NULL OR source_key ILIKE $4)
                       AND ($5::timestamptz IS NULL OR received_at >= $5)
                       AND ($6::timestamptz IS NULL OR (received_at, id) < ($6, $7))
                     ORDER BY received_at DESC, id DESC
                     LIMIT $8"
                ),
                &[
                    &filter.dataset,
                    &filter.status,
                    &filter.site,
                    &pattern,
                    &filter.since,
                    &before_at,
                    &before_id,
                    &(FILES_PER_PAGE + 1),
                ],
            )
            .await?;
        let mut files: Vec<FileItem> = rows.iter().map(file_item).collect();
        let next = if files.len() as i64 > FILES_PER_PAGE {
            files.truncate(FILES_PER_PAGE as usize);
            files
                .last()
                .map(|f| format!("{}_{}", f.received_at.to_rfc3339(), f.id))
        } else {
            None
        };
        Ok(FilePage { files, next })
    }

    /// One file; `None` when there is no such file.
    pub async fn file(
        &self,
        id: Uuid,
        calls_after: Option<i64>,
    ) -> Result<Option<FileDetail>, DbError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT id, dataset, site, name, status, failed_stage, error, source_bucket,
                        source_key, source_size, clean_key, rows_in, rows_out, rows_rejected,
                        rows_unmapped, records, records_new, records_changed, records_unchanged,
                        records_missing, batches_sent, batches_delivered, attempts, redrives,
                        lease_owner, lease_until, replay_of, replay_from, uploaded_by,
                        received_at, updated_at, final, resends, records_superseded,
                        uploaded_at
                 FROM dashboard_file WHERE id = $1",
                &[&id],
            )
            .await?;
        // The connection is one, held by whoever reads: given back before the next reads.
        drop(client);
        let Some(r) = row else {
            return Ok(None);
        };
        let events = self.events(id).await?;
        let outcome = |stage: &str, statuses: &[&str]| {
            events
                .iter()
                .rev()
                .find(|e| e.stage == stage && statuses.contains(&e.status.as_str()))
                .map(|e| e.detail.clone())
        };
        let sanitize = outcome("sanitizer", &["sanitized", "rejected"]);
        let transform = outcome("transformer", &["transformed", "failed"]);
        let replays = self.replays(id).await?;
        let batches = self.batches(id).await?;
        let (calls_total, calls, calls_next) = self.calls(id, calls_after).await?;
        let bucket: String = r.get(7);
        let key: String = r.get(8);
        Ok(Some(FileDetail {
            id: r.get(0),
            dataset: dataset(&r, 1),
            site: r.get(2),
            name: r.get(3),
            status: r.get(4),
            failed_stage: r.get(5),
            error: r.get(6),
            source: format!("s3://{bucket}/{key}"),
            source_bucket: bucket,
            source_key: key,
            source_size: r.get(9),
            clean_key: r.get(10),
            rows_in: r.get(11),
            rows_out: r.get(12),
            rows_rejected: r.get(13),
            rows_unmapped: r.get(14),
            records: r.get(15),
            records_new: r.get(16),
            records_changed: r.get(17),
            records_unchanged: r.get(18),
            records_missing: r.get(19),
            batches_sent: r.get(20),
            batches_delivered: r.get(21),
            attempts: r.get(22),
            redrives: r.get(23),
            lease_owner: r.get(24),
            lease_until: r.get::<_, Option<SystemTime>>(25).map(time),
            replay_of: r.get(26),
            replay_from: r.get(27),
            uploaded_by: r.get(28),
            received_at: time(r.get(29)),
            updated_at: time(r.get(30)),
            is_final: r.get(31),
            resends: r.get(32),
            records_superseded: r.get(33),
            uploaded_at: r.get::<_, Option<SystemTime>>(34).map(time),
            events,
            sanitize,
            transform,
            replays,
            batches,
            calls_total,
            calls,
            calls_next,
        }))
    }

    /// A file's history, oldest first.
    async fn events(&self, id: Uuid) -> Result<Vec<Event>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT at, stage, status, detail FROM dashboard_file_event
                 WHERE file_id = $1 ORDER BY id",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|e| Event {
                at: time(e.get(0)),
                stage: e.get(1),
                status: e.get(2),
                detail: e.get(3),
            })
            .collect())
    }

    /// The later runs of a file (`sluice replay`), oldest first.
    async fn replays(&self, id: Uuid) -> Result<Vec<Uuid>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT id FROM dashboard_file WHERE replay_of = $1 ORDER BY received_at",
                &[&id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Each batch's delivery, from its calls (at most [`BATCHES_SHOWN`]).
    async fn batches(&self, id: Uuid) -> Result<Vec<Batch>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT batch_id, count(*), bool_or(ok),
                        (array_agg(http_status ORDER BY id DESC))[1],
                        (array_agg(error ORDER BY id DESC))[1], max(at)
                 FROM dashboard_api_call WHERE file_id = $1
                 GROUP BY batch_id ORDER BY batch_id LIMIT $2",
                &[&id, &BATCHES_SHOWN],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|b| Batch {
                batch_id: b.get(0),
                attempts: b.get(1),
                delivered: b.get(2),
                last_status: b.get(3),
                last_error: b.get(4),
                last_at: time(b.get(5)),
            })
            .collect())
    }

    /// A file's calls: how many in all, a page of them after `after`, and the next page's
    /// cursor.
    async fn calls(
        &self,
        id: Uuid,
        after: Option<i64>,
    ) -> Result<(i64, Vec<Call>, Option<i64>), DbError> {
        let client = self.db.client().await?;
        let total: i64 = client
            .query_one(
                "SELECT count(*) FROM dashboard_api_call WHERE file_id = $1",
                &[&id],
            )
            .await?
            .get(0);
        let mut calls: Vec<Call> = client
            .query(
                "SELECT id, at, batch_id, attempt, http_status, latency_ms, error, ok,
                        CASE WHEN NOT ok THEN response_excerpt END
                 FROM dashboard_api_call WHERE file_id = $1 AND id > $2
                 ORDER BY id LIMIT $3",
                &[&id, &after.unwrap_or(0), &(CALLS_PER_PAGE + 1)],
            )
            .await?
            .iter()
            .map(|c| Call {
                id: c.get(0),
                at: time(c.get(1)),
                batch_id: c.get(2),
                attempt: c.get(3),
                http_status: c.get(4),
                latency_ms: c.get(5),
                error: c.get(6),
                ok: c.get(7),
                answer: c.get(8),
            })
            .collect();
        let next = match calls.len() as i64 > CALLS_PER_PAGE {
            true => {
                calls.truncate(CALLS_PER_PAGE as usize);
                calls.last().map(|c| c.id)
            }
            false => None,
        };
        Ok((total, calls, next))
    }

    /// API calls per dataset and endpoint since `since`: whole hours from the hourly roll-up,
    /// the rest (the window's first part hour, and what is not rolled up yet) from the calls;
    /// latency percentiles from the merged histogram (within 5 %); and the trend: the window
    /// cut in [`TREND_SLOTS`] equal slots (a rolled-up hour counts in the slot its start is in).
    pub async fn health(&self, since: SystemTime) -> Result<Vec<Health>, DbError> {
        let client = self.db.client().await?;
        let length = SystemTime::now().duration_since(since).unwrap_or_default();
        let slot = (length.as_secs_f64() / TREND_SLOTS as f64).max(1.0);
        let rows = client
            .query(
                "WITH w AS (
                     SELECT h AS from_h,
                            GREATEST(h, COALESCE((SELECT until FROM dashboard_api_call_rollup), h))
                                AS to_h
                     FROM (SELECT date_trunc('hour', $1::timestamptz) + interval '1 hour' AS h) x),
                 parts AS (
                     SELECT r.dataset, r.endpoint, r.bucket, r.hour AS at,
                            r.calls::bigint AS calls, r.ok::bigint AS ok
                     FROM dashboard_api_call_hour r, w
                     WHERE r.hour >= w.from_h AND r.hour < w.to_h
                     UNION ALL
                     SELECT COALESCE(c.dataset, ''), COALESCE(c.endpoint, ''),
                            sluice_latency_bucket(c.latency_ms), c.at, 1, c.ok::int
                     FROM dashboard_api_call c, w
                     WHERE c.at >= $1 AND (c.at < w.from_h OR c.at >= w.to_h)
                       AND NOT c.simulated)
                 SELECT dataset, endpoint, bucket,
                        LEAST($2::int - 1, GREATEST(0,
                            floor(extract(epoch FROM (at - $1::timestamptz)) / $3::float8)))::int,
                        sum(calls)::bigint, sum(ok)::bigint
                 FROM parts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
                &[&since, &(TREND_SLOTS as i32), &slot],
            )
            .await?;
        let mut out: Vec<(String, String, Histogram, Vec<TrendSlot>)> = Vec::new();
        for r in &rows {
            let (dataset, endpoint): (String, String) = (r.get(0), r.get(1));
            let (bucket, at, calls, ok): (i32, i32, i64, i64) =
                (r.get(2), r.get(3), r.get(4), r.get(5));
            if out.last().map(|(d, e, _, _)| (d, e)) != Some((&dataset, &endpoint)) {
                let trend = (0..TREND_SLOTS)
                    .map(|i| TrendSlot {
                        from: time(since + Duration::from_secs_f64(slot * i as f64)),
                        calls: 0,
                        ok: 0,
                    })
                    .collect();
                out.push((dataset, endpoint, Histogram::default(), trend));
            }
            if let Some((_, _, h, trend)) = out.last_mut() {
                h.add(bucket, calls, ok);
                if let Some(t) = trend.get_mut(at as usize) {
                    t.calls += calls;
                    t.ok += ok;
                }
            }
        }
        let mut health = Vec::with_capacity(out.len());
        for (dataset, endpoint, h, trend) in out {
            let last_error = client
                .query_opt(
                    "SELECT error FROM dashboard_api_call
                     WHERE dataset = $1 AND COALESCE(endpoint, '') = $2 AND at >= $3
                       AND NOT simulated
                       AND (http_status IS NULL OR http_status NOT BETWEEN 200 AND 299)
                     ORDER BY at DESC LIMIT 1",
                    &[&dataset, &endpoint, &since],
                )
                .await?
                .and_then(|r| r.get(0));
            health.push(Health {
                dataset: if dataset.is_empty() {
                    "(no dataset)".into()
                } else {
                    dataset
                },
                endpoint: if endpoint.is_empty() {
                    "(not recorded)".into()
                } else {
                    endpoint
                },
                calls: h.calls,
                ok: h.ok,
                success_rate: if h.calls > 0 {
                    h.ok as f64 / h.calls as f64
                } else {
                    0.0
                },
                p50_ms: h.percentile(0.5),
                p95_ms: h.percentile(0.95),
                last_error,
                trend,
            });
        }
        Ok(health)
    }

    /// The datasets and sites seen, for the filter's choices: each a skip scan of an index
    /// (one probe per distinct value), not a scan of every file.
    pub async fn choices(&self) -> Result<(Vec<String>, Vec<String>), DbError> {
        let client = self.db.client().await?;
        let distinct = |column: &str| {
            format!(
                "WITH RECURSIVE v AS (
                     (SELECT {column} AS v FROM dashboard_file
                      WHERE {column} IS NOT NULL AND {column} <> '' ORDER BY {column} LIMIT 1)
                     UNION ALL
                     SELECT (SELECT {column} FROM dashboard_file
                             WHERE {column} > v.v ORDER BY {column} LIMIT 1)
                     FROM v WHERE v.v IS NOT NULL)
                 SELECT v FROM v WHERE v IS NOT NULL LIMIT 200"
            )
        };
        let datasets = client
            .query(&distinct("dataset"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let sites = client
            .query(&distinct("site"), &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((datasets, sites))
    }
}

/// Calls by latency bucket (`sluice_latency_bucket`: bucket b holds [1.1^b - 1, 1.1^(b+1) - 1)
/// ms; -1 no answer).
#[derive(Debug, Default)]
struct Histogram {
    calls: i64,
    ok: i64,
    /// (bucket, calls), buckets ascending, answered calls only.
    buckets: Vec<(i32, i64)>,
}

impl Histogram {
    fn add(&mut self, bucket: i32, calls: i64, ok: i64) {
        self.calls += calls;
        self.ok += ok;
        if bucket >= 0 {
            self.buckets.push((bucket, calls));
        }
    }

    /// The latency below which `share` of the answered calls fall: the middle of its bucket.
    fn percentile(&self, share: f64) -> Option<f64> {
        let answered: i64 = self.buckets.iter().map(|(_, n)| n).sum();
        if answered == 0 {
            return None;
        }
        let rank = ((share * answered as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for &(bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let low = 1.1f64.powi(bucket) - 1.0;
                let high = 1.1f64.powi(bucket + 1) - 1.0;
                return Some((low + high) / 2.0);
            }
        }
        None
    }
}

/// `%text%` for ILIKE, with the text's own `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Reads a `<rfc3339>_<id>` cursor.
pub fn parse_cursor(text: &str) -> Option<(SystemTime, Uuid)> {
    let (at, id) = text.rsplit_once('_')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?;
    Some((at.with_timezone(&Utc).into(), id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_taken_literally() {
        assert_eq!(like_pattern("orders"), "%orders%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn percentiles_come_from_the_bucket_they_fall_in() {
        let bucket = |ms: f64| ((ms + 1.0).ln() / 1.1f64.ln()).floor() as i32;
        let mut h = Histogram::default();
        // 90 calls at 20 ms, 10 at 400 ms, 5 with no answer.
        h.add(-1, 5, 0);
        h.add(bucket(20.0), 90, 90);
        h.add(bucket(400.0), 10, 5);
        assert_eq!((h.calls, h.ok), (105, 95));
        let p50 = h.percentile(0.5).unwrap();
        let p95 = h.percentile(0.95).unwrap();
        assert!((p50 - 20.0).abs() / 20.0 < 0.05, "{p50}");
        assert!((p95 - 400.0).abs() / 400.0 < 0.05, "{p95}");
        assert_eq!(Histogram::default().percentile(0.5), None);
    }

    #[test]
    fn a_cursor_reads_back() {
        let id = Uuid::new_v4();
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.123456+00:00").unwrap();
        let text = format!("{}_{id}", at.to_rfc3339());
        let (t, i) = parse_cursor(&text).unwrap();
        assert_eq!(i, id);
        assert_eq!(DateTime::<Utc>::from(t), at.with_timezone(&Utc));
        assert!(parse_cursor("nonsense").is_none());
    }
}
