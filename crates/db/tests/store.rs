//! The status store against a real PostgreSQL (scripts/test.sh starts it; DATABASE_URL
//! points at it). Each test works in a schema of its own, dropped at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use sluice_db::{
    migrate, ApiCall, BatchHistory, Db, DbConfig, NewFile, RowCounts, Store, TransformCounts,
};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// A schema of the test's own; dropped when the value is dropped, even after a panic.
struct Schema(String);

impl Schema {
    async fn create() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sluice_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        let client = admin.connect().await.expect("PostgreSQL is reachable");
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        Self(name)
    }

    fn config(&self) -> DbConfig {
        DbConfig::parse(&database_url(), None)
            .unwrap()
            .with_schema(&self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = DbConfig::parse(&database_url(), None).unwrap();
                if let Ok(client) = admin.connect().await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn store(schema: &Schema) -> Store {
    let db = Db::new(schema.config());
    migrate(&db).await.unwrap();
    Store::new(db)
}

fn orders_file(etag: &str) -> NewFile<'_> {
    NewFile {
        dataset: "orders",
        site: None,
        bucket: "quarantine",
        key: "incoming/orders/2026/11/23/x-orders.csv",
        etag,
        size: 1049,
        replay_of: None,
        uploaded_by: None,
        uploaded_at: None,
    }
}

/// 1 to the number of migration files.
fn every_version() -> Vec<u32> {
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count();
    (1..=files as u32).collect()
}

#[tokio::test]
async fn migrations_apply_once_and_again_change_nothing() {
    let schema = Schema::create().await;
    let db = Db::new(schema.config());
    assert_eq!(migrate(&db).await.unwrap(), every_version());
    assert!(migrate(&db).await.unwrap().is_empty());
}

#[tokio::test]
async fn four_migrations_at_once_apply_each_version_once() {
    let schema = Schema::create().await;
    let dbs: Vec<Db> = (0..4).map(|_| Db::new(schema.config())).collect();
    let runs = tokio::join!(
        migrate(&dbs[0]),
        migrate(&dbs[1]),
        migrate(&dbs[2]),
        migrate(&dbs[3])
    );
    let mut applied: Vec<u32> = [runs.0, runs.1, runs.2, runs.3]
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    applied.sort_unstable();
    assert_eq!(applied, every_version());
}

#[tokio::test]
async fn a_redelivered_event_finds_the_same_file() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let first = store.register(&orders_file("\"e1\"")).await.unwrap();
    let again = store.register(&orders_file("\"e1\"")).await.unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.id, again.id);
    assert_eq!(again.status, FileStatus::Received);
    let newer = store.register(&orders_file("\"e2\"")).await.unwrap();
    assert!(newer.created);
    assert_ne!(newer.id, first.id);
    assert_eq!(store.events(first.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn statuses_only_move_forward_and_each_move_is_an_event() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("e")).await.unwrap().id;
    let sanitizing = FileStatus::Sanitizing;
    assert!(store
        .advance(id, Stage::Sanitizer, sanitizing, json!({}))
        .await
        .unwrap());
    // A duplicate writer repeating the step, or a stale one going back, changes nothing.
    assert!(!store
        .advance(id, Stage::Sanitizer, sanitizing, json!({}))
        .await
        .unwrap());
    let counts = RowCounts {
        rows_in: 13,
        rows_out: 11,
        rows_rejected: 1,
    };
    let clean = Some("clean/orders/x.csv");
    assert!(store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            clean,
            counts,
            None,
            json!({"rows_out": 11})
        )
        .await
        .unwrap());
    assert!(!store
        .advance(id, Stage::Sanitizer, sanitizing, json!({}))
        .await
        .unwrap());
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    assert_eq!(row.clean_key.as_deref(), Some("clean/orders/x.csv"));
    assert_eq!(
        (row.rows_in, row.rows_out, row.rows_rejected),
        (Some(13), Some(11), Some(1))
    );
    let events = store.events(id).await.unwrap();
    let statuses: Vec<FileStatus> = events.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            FileStatus::Received,
            FileStatus::Sanitizing,
            FileStatus::Sanitized
        ]
    );
    assert_eq!(events[2].detail["rows_out"], 11);
}

#[tokio::test]
async fn a_rejected_file_keeps_its_reason_and_goes_no_further() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("e")).await.unwrap().id;
    store
        .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json!({}))
        .await
        .unwrap();
    let reason = Some("not a CSV file: it looks like an archive (.zip, application/zip)");
    store
        .finish_sanitize(
            id,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            reason,
            json!({}),
        )
        .await
        .unwrap();
    let moved = store
        .advance(id, Stage::Transformer, FileStatus::Transforming, json!({}))
        .await
        .unwrap();
    assert!(!moved);
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Rejected);
    assert_eq!(row.error.as_deref(), reason);
}

#[tokio::test]
async fn failure_records_stage_and_error_and_retryable_errors_keep_the_status() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("e")).await.unwrap().id;
    store
        .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json!({}))
        .await
        .unwrap();
    store
        .note_error(id, Stage::Sanitizer, "S3 GetObject timed out")
        .await
        .unwrap();
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitizing);
    assert_eq!(row.error.as_deref(), Some("S3 GetObject timed out"));
    assert!(store
        .fail(id, Stage::Sanitizer, "gave up after 3 tries")
        .await
        .unwrap());
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("sanitizer"));
    assert_eq!(row.error.as_deref(), Some("gave up after 3 tries"));
    assert!(!store.fail(id, Stage::Sanitizer, "again").await.unwrap());
}

#[tokio::test]
async fn reconnects_after_the_connection_drops() {
    let schema = Schema::create().await;
    let db = Db::new(schema.config());
    migrate(&db).await.unwrap();
    {
        let client = db.client().await.unwrap();
        // Ends this session from the server side, as a database restart would.
        let _ = client
            .batch_execute("SELECT pg_terminate_backend(pg_backend_pid())")
            .await;
    }
    // The next caller gets a fresh connection.
    let store = Store::new(db);
    let mut tries = 0;
    let registered = loop {
        match store.register(&orders_file("e")).await {
            Ok(r) => break r,
            Err(e) if tries < 3 => {
                tries += 1;
                eprintln!("retrying after {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    assert!(registered.created);
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let config =
        DbConfig::parse("postgres://postgres@127.0.0.1:1/test?sslmode=disable", None).unwrap();
    let err = Db::new(config).client().await.err().unwrap();
    assert!(err.to_string().starts_with("database:"), "{err}");
}

#[test]
fn tls_without_a_ca_bundle_is_refused_at_configuration() {
    let err = DbConfig::parse("postgres://u:secret@db.example/test?sslmode=require", None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("SLUICE_DB_CA_FILE"), "{err}");
    assert!(!err.contains("secret"), "never print the password: {err}");
}

#[tokio::test]
async fn tls_refuses_a_server_whose_certificate_the_bundle_does_not_vouch_for() {
    // The public web roots do not sign the local server's certificate (Debian's self-signed
    // "snakeoil" one, when TLS is on at all): the connection must fail, never fall back.
    let bundle = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    if !bundle.exists() {
        panic!("no CA bundle at {} to test with", bundle.display());
    }
    let url = database_url().replace("sslmode=disable", "sslmode=require");
    let config = DbConfig::parse(&url, Some(bundle)).unwrap();
    let Err(err) = Db::new(config).client().await.map(|_| ()) else {
        panic!("connected without verifying the server's certificate");
    };
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("TLS") || text.contains("tls"),
        "{text}"
    );
}

/// A file the transformer is working on (`transforming`).
async fn transforming_file(store: &Store, etag: &str) -> uuid::Uuid {
    let id = store.register(&orders_file(etag)).await.unwrap().id;
    for to in [
        FileStatus::Sanitizing,
        FileStatus::Sanitized,
        FileStatus::Transforming,
    ] {
        assert!(store
            .advance(id, Stage::Sanitizer, to, json!({}))
            .await
            .unwrap());
    }
    id
}

async fn transformed(store: &Store, id: uuid::Uuid, batches: i32) {
    let counts = TransformCounts {
        records: batches as i64 * 10,
        batches,
        rows_unmapped: 0,
    };
    assert!(store
        .finish_transform(id, FileStatus::Transformed, counts, None, json!({}))
        .await
        .unwrap());
}

async fn call(store: &Store, id: uuid::Uuid, batch: &str, attempt: i32, status: Option<i32>) {
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    store
        .record_call(&ApiCall {
            file_id: id,
            batch_id: batch,
            attempt,
            http_status: status,
            latency_ms: 3,
            response_excerpt: status.map(|_| "{\"ok\":true}"),
            error: (!ok).then_some("HTTP 500"),
            endpoint: "https://api.example.com/v1/records",
            simulated: false,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn every_attempt_is_a_row_and_a_2xx_marks_the_batch_delivered() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = transforming_file(&store, "e").await;
    assert_eq!(
        store.batch_history("b-1").await.unwrap(),
        BatchHistory::default()
    );
    call(&store, id, "b-1", 1, None).await;
    call(&store, id, "b-1", 2, Some(503)).await;
    assert_eq!(
        store.batch_history("b-1").await.unwrap(),
        BatchHistory {
            attempts: 2,
            delivered: false
        }
    );
    call(&store, id, "b-1", 3, Some(201)).await;
    assert_eq!(
        store.batch_history("b-1").await.unwrap(),
        BatchHistory {
            attempts: 3,
            delivered: true
        }
    );
    let calls = store.calls(id).await.unwrap();
    let attempts: Vec<(i32, Option<i32>)> =
        calls.iter().map(|c| (c.attempt, c.http_status)).collect();
    assert_eq!(attempts, [(1, None), (2, Some(503)), (3, Some(201))]);
    assert_eq!(calls[1].error.as_deref(), Some("HTTP 500"));
    assert_eq!(calls[2].error, None);
}

#[tokio::test]
async fn a_file_is_delivered_when_all_its_batches_are_whichever_stage_finishes_last() {
    let schema = Schema::create().await;
    let store = store(&schema).await;

    // Batches delivered before the transformer records its count: no status move yet.
    let early = transforming_file(&store, "early").await;
    call(&store, early, "early-1", 1, Some(200)).await;
    call(&store, early, "early-2", 1, Some(200)).await;
    assert_eq!(
        store.settle_delivery(early).await.unwrap(),
        FileStatus::Transforming
    );
    transformed(&store, early, 2).await;
    assert_eq!(
        store.settle_delivery(early).await.unwrap(),
        FileStatus::Delivered
    );

    // The usual order: transformed, then one batch (delivering), then the other (delivered).
    let usual = transforming_file(&store, "usual").await;
    transformed(&store, usual, 2).await;
    call(&store, usual, "usual-1", 1, Some(500)).await;
    assert_eq!(
        store.settle_delivery(usual).await.unwrap(),
        FileStatus::Transformed
    );
    call(&store, usual, "usual-1", 2, Some(200)).await;
    // A duplicate 2xx for the same batch does not count twice.
    call(&store, usual, "usual-1", 3, Some(200)).await;
    assert_eq!(
        store.settle_delivery(usual).await.unwrap(),
        FileStatus::Delivering
    );
    assert_eq!(
        store.file(usual).await.unwrap().unwrap().batches_delivered,
        Some(1)
    );
    call(&store, usual, "usual-2", 1, Some(204)).await;
    assert_eq!(
        store.settle_delivery(usual).await.unwrap(),
        FileStatus::Delivered
    );
    assert_eq!(
        store.settle_delivery(usual).await.unwrap(),
        FileStatus::Delivered,
        "settling again changes nothing"
    );
    let row = store.file(usual).await.unwrap().unwrap();
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(2), Some(2))
    );
    let statuses: Vec<FileStatus> = store
        .events(usual)
        .await
        .unwrap()
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        &statuses[statuses.len() - 3..],
        [
            FileStatus::Transformed,
            FileStatus::Delivering,
            FileStatus::Delivered
        ]
    );

    // A file with nothing to deliver is delivered as soon as it is transformed.
    let empty = transforming_file(&store, "empty").await;
    transformed(&store, empty, 0).await;
    assert_eq!(
        store.settle_delivery(empty).await.unwrap(),
        FileStatus::Delivered
    );

    // A failed file stays failed, and its count still shows what got through.
    let failed = transforming_file(&store, "failed").await;
    transformed(&store, failed, 2).await;
    call(&store, failed, "failed-1", 1, Some(200)).await;
    store
        .fail(
            failed,
            Stage::Forwarder,
            "batch 2/2 went to the dead-letter queue",
        )
        .await
        .unwrap();
    call(&store, failed, "failed-2", 9, Some(200)).await;
    assert_eq!(
        store.settle_delivery(failed).await.unwrap(),
        FileStatus::Failed
    );
    let row = store.file(failed).await.unwrap().unwrap();
    assert_eq!(row.batches_delivered, Some(2));
    assert_eq!(row.failed_stage.as_deref(), Some("forwarder"));
}

#[tokio::test]
async fn the_database_guards_the_same_transitions_as_the_code() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let db = Db::new(schema.config());
    let client = db.client().await.unwrap();
    let mut in_db: Vec<(String, String)> = client
        .query("SELECT from_status, to_status FROM status_transition", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    in_db.sort();
    let mut in_code: Vec<(String, String)> = sluice_core::status::TRANSITIONS
        .iter()
        .map(|(a, b)| (a.as_str().to_string(), b.as_str().to_string()))
        .collect();
    in_code.sort();
    assert_eq!(in_db, in_code);

    // No code path, not even a hand-written UPDATE, moves a file back or skips a step.
    let id = store.register(&orders_file("guard")).await.unwrap().id;
    for bad in ["transformed", "delivered", "sanitized"] {
        let err = client
            .execute(
                "UPDATE file_process SET status = $2 WHERE id = $1",
                &[&id, &bad],
            )
            .await
            .unwrap_err();
        assert!(
            err.as_db_error()
                .unwrap()
                .message()
                .contains("may not move from received"),
            "{err:?}"
        );
    }
    let err = client
        .execute(
            "INSERT INTO file_process (id, dataset, source_bucket, source_key, source_etag,
                                       source_size, status)
             VALUES ($1, 'orders', 'b', 'k', 'e', 1, 'delivered')",
            &[&uuid::Uuid::from_u128(42)],
        )
        .await
        .unwrap_err();
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("starts as received"));
}

#[tokio::test]
async fn a_final_status_keeps_its_error_against_late_transient_ones() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("final")).await.unwrap().id;
    assert!(store
        .fail(id, Stage::Transformer, "no mapping")
        .await
        .unwrap());
    store
        .note_error(id, Stage::Forwarder, "HTTP 503 (a late duplicate)")
        .await
        .unwrap();
    assert!(!store
        .fail(id, Stage::Forwarder, "a second opinion")
        .await
        .unwrap());
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.error.as_deref(), Some("no mapping"));
    assert_eq!(row.failed_stage.as_deref(), Some("transformer"));
}

fn lease(owner: &str, seconds: i64) -> sluice_db::Lease {
    let now = std::time::SystemTime::now();
    let until = if seconds >= 0 {
        now + std::time::Duration::from_secs(seconds as u64)
    } else {
        now - std::time::Duration::from_secs((-seconds) as u64)
    };
    sluice_db::Lease {
        owner: owner.to_string(),
        until,
    }
}

#[tokio::test]
async fn eight_workers_claiming_one_file_at_once_give_one_winner() {
    let schema = Schema::create().await;
    let first = store(&schema).await;
    let id = first.register(&orders_file("race")).await.unwrap().id;
    // Eight workers, each on its own connection, claim at the same moment.
    let mut workers = Vec::new();
    for n in 0..8 {
        let store = Store::new(Db::new(schema.config()));
        workers.push(tokio::spawn(async move {
            store
                .claim(
                    id,
                    Stage::Sanitizer,
                    FileStatus::Received,
                    FileStatus::Sanitizing,
                    &lease(&format!("worker-{n}"), 60),
                )
                .await
                .unwrap()
        }));
    }
    let mut claims = Vec::new();
    for worker in workers {
        claims.push(worker.await.unwrap());
    }
    let won = claims
        .iter()
        .filter(|c| matches!(c, sluice_db::Claim::Won { .. }))
        .count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(claims
        .iter()
        .all(|c| matches!(c, sluice_db::Claim::Won { .. } | sluice_db::Claim::Busy)));
    let events = first.events(id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.status == FileStatus::Sanitizing)
            .count(),
        1
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_finished_file_is_left_alone() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("lease")).await.unwrap().id;
    let claim = |owner: &'static str, seconds| {
        let store = &store;
        async move {
            store
                .claim(
                    id,
                    Stage::Sanitizer,
                    FileStatus::Received,
                    FileStatus::Sanitizing,
                    &lease(owner, seconds),
                )
                .await
                .unwrap()
        }
    };
    // A worker that died: its lease ran out a second ago.
    assert_eq!(
        claim("dead", -1).await,
        sluice_db::Claim::Won { attempts: 1 }
    );
    assert_eq!(
        claim("next", 60).await,
        sluice_db::Claim::Won { attempts: 2 }
    );
    assert_eq!(claim("third", 60).await, sluice_db::Claim::Busy);
    // Releasing lets the next one in at once; moving on ends the claim for good.
    store.release(id, "next").await.unwrap();
    assert_eq!(
        claim("third", 60).await,
        sluice_db::Claim::Won { attempts: 3 }
    );
    store
        .finish_sanitize(
            id,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            Some("not a CSV"),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        claim("late", 60).await,
        sluice_db::Claim::Elsewhere(FileStatus::Rejected)
    );
    assert_eq!(
        store
            .claim(
                uuid::Uuid::from_u128(7),
                Stage::Sanitizer,
                FileStatus::Received,
                FileStatus::Sanitizing,
                &lease("x", 60)
            )
            .await
            .unwrap(),
        sluice_db::Claim::Missing
    );
}

#[tokio::test]
async fn a_batch_is_claimed_by_one_worker_at_a_time() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("batch")).await.unwrap().id;
    let batch = format!("{id}-000001");
    let mut workers = Vec::new();
    for n in 0..8 {
        let store = Store::new(Db::new(schema.config()));
        let batch = batch.clone();
        workers.push(tokio::spawn(async move {
            store
                .claim_batch(id, &batch, &lease(&format!("w{n}"), 60))
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for (n, worker) in workers.into_iter().enumerate() {
        if matches!(worker.await.unwrap().claim, sluice_db::Claim::Won { .. }) {
            won.push(n);
        }
    }
    assert_eq!(won.len(), 1);
    store
        .release_batch(&batch, &format!("w{}", won[0]))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_batch(id, &batch, &lease("again", 60))
            .await
            .unwrap()
            .claim,
        sluice_db::Claim::Won { attempts: 2 }
    );
}

#[tokio::test]
async fn duplicate_2xx_at_the_same_moment_count_a_batch_once_and_settles_never_lower_the_count() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = transforming_file(&store, "dup").await;
    transformed(&store, id, 3).await;
    let mut tasks = Vec::new();
    for b in 1..=3 {
        let batch = format!("{id}-00000{b}");
        store
            .claim_batch(id, &batch, &lease("w", 60))
            .await
            .unwrap();
        // Four copies of the batch's 2xx and two settles, each on its own connection.
        for copy in 0..6 {
            let store = Store::new(Db::new(schema.config()));
            let batch = batch.clone();
            tasks.push(tokio::spawn(async move {
                if copy >= 4 {
                    store.settle_delivery(id).await.unwrap();
                    return (batch, None);
                }
                let settled = store
                    .record_call(&ApiCall {
                        file_id: id,
                        batch_id: &batch,
                        attempt: copy + 1,
                        http_status: Some(200),
                        latency_ms: 1,
                        response_excerpt: None,
                        error: None,
                        endpoint: "https://api.example.com/v1/records",
                        simulated: false,
                    })
                    .await
                    .unwrap();
                (batch, settled)
            }));
        }
    }
    let mut counted = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let (batch, settled) = task.await.unwrap();
        *counted.entry(batch).or_default() += usize::from(settled.is_some());
    }
    assert!(
        counted.values().all(|&n| n == 1),
        "each batch's first 2xx settles once: {counted:?}"
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(3), Some(3))
    );
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(
        store.calls(id).await.unwrap().len(),
        12,
        "every attempt is a row"
    );
}

#[tokio::test]
async fn a_2xx_after_one_already_on_record_counts_nothing_and_still_releases_the_claim() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = transforming_file(&store, "prior").await;
    transformed(&store, id, 2).await;
    let batch = format!("{id}-000001");
    // A 2xx on record with no claim behind it (as before claims were marked).
    call(&store, id, &batch, 1, Some(200)).await;
    assert_eq!(
        store.settle_delivery(id).await.unwrap(),
        FileStatus::Delivering
    );
    store
        .claim_batch(id, &batch, &lease("w1", 60))
        .await
        .unwrap();
    call(&store, id, &batch, 2, Some(200)).await;
    assert_eq!(
        store.file(id).await.unwrap().unwrap().batches_delivered,
        Some(1),
        "the batch is counted once"
    );
    assert!(
        matches!(
            store
                .claim_batch(id, &batch, &lease("w2", 60))
                .await
                .unwrap()
                .claim,
            sluice_db::Claim::Won { .. }
        ),
        "the 2xx released the claim"
    );
}

#[tokio::test]
async fn stuck_files_are_those_with_an_expired_lease_or_no_move_for_too_long() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let claim = |etag: &'static str, seconds: i64| {
        let store = &store;
        async move {
            let id = store.register(&orders_file(etag)).await.unwrap().id;
            store
                .claim(
                    id,
                    Stage::Sanitizer,
                    FileStatus::Received,
                    FileStatus::Sanitizing,
                    &lease("w", seconds),
                )
                .await
                .unwrap();
            id
        }
    };
    let dead = claim("dead", -5).await;
    let alive = claim("alive", 600).await;
    let fresh = store.register(&orders_file("fresh")).await.unwrap().id;

    let listed: Vec<uuid::Uuid> = store
        .stuck_files(std::time::Duration::from_secs(3600), 100)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(listed, [dead]);
    // With no stale time, a file without a lease that has not moved counts too.
    let listed: Vec<uuid::Uuid> = store
        .stuck_files(std::time::Duration::ZERO, 100)
        .await
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    assert!(listed.contains(&dead) && listed.contains(&fresh) && !listed.contains(&alive));
}

#[tokio::test]
async fn overlapping_sweeps_redrive_a_file_once_and_give_up_after_the_limit() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = store.register(&orders_file("stuck")).await.unwrap().id;
    store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease("died", -1),
        )
        .await
        .unwrap();
    let stuck = store
        .stuck_files(std::time::Duration::from_secs(3600), 10)
        .await
        .unwrap()
        .remove(0);
    // Two sweeps, each on its own connection, at the same moment.
    let mut sweeps = Vec::new();
    for _ in 0..2 {
        let store = Store::new(Db::new(schema.config()));
        let stuck = stuck.clone();
        sweeps.push(tokio::spawn(async move {
            store
                .redrive(&stuck, 3, Duration::from_secs(3600), "lease expired")
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for sweep in sweeps {
        outcomes.push(sweep.await.unwrap());
    }
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [sluice_db::Redrive::Go { n: 1 }, sluice_db::Redrive::Moved]
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitizing);

    // Past the limit (its worker died three more times) the file fails with the reason.
    schema
        .config()
        .connect()
        .await
        .unwrap()
        .execute(
            "UPDATE file_process SET redrives = 3, lease_owner = 'died',
                 lease_until = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let at_limit = store
        .stuck_files(Duration::from_secs(3600), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(at_limit.redrives, 3);
    assert_eq!(
        store
            .redrive(&at_limit, 3, Duration::from_secs(3600), "lease expired")
            .await
            .unwrap(),
        sluice_db::Redrive::GaveUp
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("listener"));
    assert!(row.error.unwrap().contains("after 3 re-drives"));
    let events = store.events(id).await.unwrap();
    assert!(events.iter().any(|e| e.detail["redrive"] == 1));
}

#[tokio::test]
async fn statements_share_the_connection_but_never_run_inside_another_tasks_transaction() {
    const INSERT: &str = "INSERT INTO probe VALUES ($1)";
    const COUNT: &str = "SELECT count(*) FROM probe";
    let schema = Schema::create().await;
    let db = std::sync::Arc::new(Db::new(schema.config()));
    db.client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE probe (n int)")
        .await
        .unwrap();
    // A transaction that rolls back, open while other tasks send single statements: they
    // must wait for it, not become part of it.
    let mut client = db.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO probe VALUES (0)", &[])
        .await
        .unwrap();
    let tasks: Vec<_> = (1..=8i32)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let (client, insert) = db.prepared(INSERT).await.unwrap();
                client.execute(&insert, &[&n]).await.unwrap();
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tx.rollback().await.unwrap();
    drop(client);
    for task in tasks {
        task.await.unwrap();
    }
    let (client, count) = db.prepared(COUNT).await.unwrap();
    let rows: i64 = client.query_one(&count, &[]).await.unwrap().get(0);
    assert_eq!(
        rows, 8,
        "the 8 statements outlive the rollback, its own row does not"
    );
}

/// A 2xx for `batch`; the file's status when it settled the file's delivery.
async fn ok_call(store: &Store, id: uuid::Uuid, batch: &str, attempt: i32) -> Option<FileStatus> {
    store
        .record_call(&ApiCall {
            file_id: id,
            batch_id: batch,
            attempt,
            http_status: Some(200),
            latency_ms: 1,
            response_excerpt: None,
            error: None,
            endpoint: "https://api.example.com/v1/records",
            simulated: false,
        })
        .await
        .unwrap()
}

/// How many of the 2xx `tasks` recorded settled their file's delivery.
async fn settling(tasks: Vec<tokio::task::JoinHandle<Option<FileStatus>>>) -> usize {
    let mut settled = 0;
    for task in tasks {
        settled += usize::from(task.await.unwrap().is_some());
    }
    settled
}

/// The file is `delivered` with `batches` counted and every one of `calls` attempts a row.
async fn assert_delivered(store: &Store, id: uuid::Uuid, batches: i32, calls: usize) {
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.batches_delivered, Some(batches));
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(
        store.calls(id).await.unwrap().len(),
        calls,
        "every attempt is a row"
    );
}

#[tokio::test]
async fn concurrent_deliveries_on_one_connection_are_all_recorded() {
    let schema = Schema::create().await;
    let store = std::sync::Arc::new(store(&schema).await);
    let id = transforming_file(&store, "shared").await;
    transformed(&store, id, 20).await;
    let tasks: Vec<_> = (1..=20)
        .map(|b| {
            let store = store.clone();
            tokio::spawn(async move {
                let batch = format!("{id}-{b:06}");
                store
                    .claim_batch(id, &batch, &lease("w", 60))
                    .await
                    .unwrap();
                ok_call(&store, id, &batch, 1).await
            })
        })
        .collect();
    assert_eq!(settling(tasks).await, 20);
    assert_delivered(&store, id, 20, 20).await;
}

#[tokio::test]
async fn copies_of_one_batch_on_one_connection_claim_it_once_and_count_it_once() {
    let schema = Schema::create().await;
    let store = std::sync::Arc::new(store(&schema).await);
    let id = transforming_file(&store, "copies").await;
    transformed(&store, id, 1).await;
    let batch = format!("{id}-000001");
    let claims: Vec<_> = (0..6)
        .map(|n| {
            let (store, batch) = (store.clone(), batch.clone());
            tokio::spawn(async move {
                let lease = lease(&format!("copy-{n}"), 60);
                store.claim_batch(id, &batch, &lease).await.unwrap().claim
            })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        won += usize::from(matches!(claim.await.unwrap(), sluice_db::Claim::Won { .. }));
    }
    assert_eq!(won, 1, "one copy holds the batch");
    // Four 2xx for it at the same moment (the copy's retries, say): counted once.
    let calls: Vec<_> = (1..=4)
        .map(|attempt| {
            let (store, batch) = (store.clone(), batch.clone());
            tokio::spawn(async move { ok_call(&store, id, &batch, attempt).await })
        })
        .collect();
    assert_eq!(settling(calls).await, 1);
    assert_delivered(&store, id, 1, 4).await;
}

/// Defect 7 of the reliability issue: a claim whose statement began before another worker's
/// 2xx committed, and that waited for that 2xx's row lock, must still learn that the batch is
/// delivered (its subqueries see the tables as they were when it began). The interleaving is
/// forced: the 2xx is held in an open transaction until the claim is seen waiting on its lock.
#[tokio::test]
async fn a_claim_that_waited_for_the_2xx_releasing_the_batch_sees_it_delivered() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = transforming_file(&store, "race").await;
    transformed(&store, id, 1).await;
    let batch = format!("{id}-000001");
    let first = store
        .claim_batch(id, &batch, &lease("w1", 60))
        .await
        .unwrap();
    assert!(matches!(first.claim, sluice_db::Claim::Won { .. }));

    // Worker 1's 2xx, as RECORD_CALL writes it, in a transaction left open.
    let mut w1 = schema.config().connect().await.unwrap();
    let tx = w1.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO api_call (file_id, batch_id, attempt, http_status, latency_ms)
         VALUES ($1, $2, 1, 200, 3)",
        &[&id, &batch],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE batch_claim SET lease_owner = NULL, lease_until = NULL, delivered_at = now()
         WHERE batch_id = $1",
        &[&batch],
    )
    .await
    .unwrap();

    // Worker 2 claims on a connection of its own: its statement starts now and waits.
    let w2 = Store::new(Db::new(schema.config()));
    let claim = {
        let batch = batch.clone();
        tokio::spawn(async move { w2.claim_batch(id, &batch, &lease("w2", 60)).await })
    };
    let watcher = schema.config().connect().await.unwrap();
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO batch_claim%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            !claim.is_finished(),
            "the claim did not wait for the 2xx's lock"
        );
        tokio::task::yield_now().await;
    }
    tx.commit().await.unwrap();
    let second = claim.await.unwrap().unwrap();
    assert!(
        second.history.delivered || !matches!(second.claim, sluice_db::Claim::Won { .. }),
        "a claim won over a delivered batch must say so, or it POSTs again: {second:?}"
    );
}

/// Defect 2 of the reliability issue: a file whose work only waits in a queue (no worker
/// holds it) is re-sent with a doubling spacing and never failed by the sweep, however long
/// the backlog; only a lapsed lease counts toward the limit, and the give-up re-checks, in
/// its own statement, that the lease is still lapsed.
#[tokio::test]
async fn a_file_waiting_behind_a_backlog_is_never_failed_by_the_sweep() {
    let schema = Schema::create().await;
    let store = store(&schema).await;
    let id = transforming_file(&store, "backlog").await;
    transformed(&store, id, 4).await;
    let raw = schema.config().connect().await.unwrap();
    let age = |seconds: i64| {
        let raw = &raw;
        async move {
            raw.execute(
                "UPDATE file_process SET updated_at = now() - make_interval(secs => $2)
                 WHERE id = $1",
                &[&id, &(seconds as f64)],
            )
            .await
            .unwrap();
        }
    };
    let stale = Duration::from_secs(60);
    // A backlog far longer than stale x max re-drives (60 s x 1): ten sweeps, each after the
    // spacing the previous re-send set.
    for round in 0..10 {
        age(60 * (1 << round.min(6)) + 1).await;
        let listed = store.stuck_files(stale, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "round {round}");
        assert_eq!(listed[0].stuck, sluice_db::Stuck::Idle);
        assert_eq!(
            store.redrive(&listed[0], 1, stale, "idle").await.unwrap(),
            sluice_db::Redrive::Resend { n: round + 1 }
        );
        // Not listed again before its spacing has passed.
        assert!(store.stuck_files(stale, 10).await.unwrap().is_empty());
    }
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Transformed,
        "waiting is not a failure"
    );

    // A worker claims it and dies: that counts, and after the limit the file fails.
    store
        .claim_in_place(
            id,
            Stage::Forwarder,
            &[FileStatus::Transformed],
            &lease("died", -1),
        )
        .await
        .unwrap();
    let dead = store.stuck_files(stale, 10).await.unwrap().remove(0);
    assert_eq!(dead.stuck, sluice_db::Stuck::LeaseLapsed);
    assert_eq!(
        store.redrive(&dead, 1, stale, "lapsed").await.unwrap(),
        sluice_db::Redrive::Go { n: 1 }
    );
    store
        .claim_in_place(
            id,
            Stage::Forwarder,
            &[FileStatus::Transformed],
            &lease("died2", -1),
        )
        .await
        .unwrap();
    let listed = store.stuck_files(stale, 10).await.unwrap().remove(0);
    // Between the listing and the give-up, a worker takes the file over: it is left alone.
    store
        .claim_in_place(
            id,
            Stage::Forwarder,
            &[FileStatus::Transformed],
            &lease("alive", 600),
        )
        .await
        .unwrap();
    assert_eq!(
        store.redrive(&listed, 1, stale, "lapsed").await.unwrap(),
        sluice_db::Redrive::Moved,
        "the give-up re-checks that the lease is still lapsed"
    );
    assert_eq!(
        store.file(id).await.unwrap().unwrap().status,
        FileStatus::Transformed
    );
    store.release(id, "alive").await.unwrap();
    store
        .claim_in_place(
            id,
            Stage::Forwarder,
            &[FileStatus::Transformed],
            &lease("died3", -1),
        )
        .await
        .unwrap();
    let listed = store.stuck_files(stale, 10).await.unwrap().remove(0);
    assert_eq!(
        store.redrive(&listed, 1, stale, "lapsed").await.unwrap(),
        sluice_db::Redrive::GaveUp
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert!(row.error.unwrap().contains("after 1 re-drives"));
}

#[tokio::test]
async fn eight_cuts_marking_one_files_batches_at_once_all_read_back_the_same_marks() {
    let schema = Schema::create().await;
    let first = store(&schema).await;
    let id = transforming_file(&first, "marks").await;
    // Eight transformer runs, each on its own warm connection, mark batches 1 to 3 at the
    // same moment, each with marks of its own (as cuts of a changed config would differ).
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut cuts = Vec::new();
    for n in 0..8 {
        let (store, barrier) = (
            Store::new(Db::new(schema.config())),
            std::sync::Arc::clone(&barrier),
        );
        cuts.push(tokio::spawn(async move {
            store.file(id).await.unwrap();
            let marks = json!({
                "1": {"first": 0, "records": 10 + n, "sha256": format!("{n:016x}")},
                "2": {"first": 10 + n, "records": 10, "sha256": format!("{:016x}", 100 + n)},
                "3": {"first": 20 + n, "records": 5, "sha256": format!("{:016x}", 200 + n)},
            });
            barrier.wait().await;
            store.mark_batches(id, &marks).await.unwrap().unwrap()
        }));
    }
    let mut seen = Vec::new();
    for cut in cuts {
        seen.push(cut.await.unwrap());
    }
    // Every run reads back the marks on record, the same for all, one writer's per batch.
    assert!(seen.iter().all(|m| *m == seen[0]), "{seen:#?}");
    for seq in ["1", "2", "3"] {
        assert!(seen[0][seq]["sha256"].is_string(), "{:#}", seen[0]);
    }
    let client = schema.config().connect().await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM batch_mark WHERE file_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn eight_registrations_of_one_object_at_once_give_one_row() {
    let schema = Schema::create().await;
    let first = store(&schema).await;
    // Eight sanitizers, each on its own warm connection, register the same object at once,
    // several rounds (the race is on which unique index an insert meets first).
    for round in 0..5 {
        let etag = format!("race-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (store, barrier, etag) = (
                Store::new(Db::new(schema.config())),
                std::sync::Arc::clone(&barrier),
                etag.clone(),
            );
            workers.push(tokio::spawn(async move {
                store.file(uuid::Uuid::nil()).await.unwrap();
                barrier.wait().await;
                store.register(&orders_file(&etag)).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        let mut created = 0;
        for worker in workers {
            let registered = worker.await.unwrap();
            created += usize::from(registered.created);
            ids.push(registered.id);
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(created, 1, "one registration made the row");
        assert!(first.file(ids[0]).await.unwrap().is_some());
    }
}
