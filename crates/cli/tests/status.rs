//! `sluice status` against PostgreSQL: files seeded through the status store in a schema of
//! the test's own (a delivered, a rejected and a stuck file), then listed, filtered and shown
//! by the binary.

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sluice_core::{FileStatus, Stage};
use sluice_db::{
    migrate, ApiCall, Db, DbConfig, Lease, NewFile, RowCounts, Store, TransformCounts,
};
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// Drops the test's schema when the test ends, passed or not.
struct Dropped(String);

impl Drop for Dropped {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = DbConfig::parse(&database_url(), None)
                    .unwrap()
                    .connect()
                    .await
                {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A migrated store in a new schema, and the URL that reaches that schema.
async fn schema() -> (Store, String, Dropped) {
    let name = format!("sluice_status_{}", Uuid::new_v4().simple());
    let admin = DbConfig::parse(&database_url(), None).unwrap();
    admin
        .connect()
        .await
        .expect("PostgreSQL is reachable (scripts/test.sh starts it)")
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let db = Db::new(admin.with_schema(&name));
    migrate(&db).await.unwrap();
    let mut url = url_without_query(&database_url());
    url.push_str(&format!(
        "?sslmode=disable&options=-c%20search_path%3D{name}"
    ));
    (Store::new(db), url, Dropped(name))
}

fn url_without_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn lease(seconds: i64) -> Lease {
    let now = SystemTime::now();
    Lease {
        owner: "test/1".into(),
        until: if seconds >= 0 {
            now + Duration::from_secs(seconds as u64)
        } else {
            now - Duration::from_secs(seconds.unsigned_abs())
        },
    }
}

async fn received(store: &Store, name: &str) -> Uuid {
    store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: "quarantine",
            key: &format!("incoming/orders/{name}"),
            etag: "e",
            size: 100,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id
}

async fn sanitizing(store: &Store, id: Uuid, seconds: i64) {
    store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease(seconds),
        )
        .await
        .unwrap();
}

/// A delivered file (one batch, a 503 then a 200), a rejected one, and one stuck in
/// `sanitizing` (its lease expired).
async fn seed(store: &Store) -> (Uuid, Uuid, Uuid) {
    let delivered = received(store, "delivered.csv").await;
    sanitizing(store, delivered, 60).await;
    // The config the sanitizer pinned (sluice_core::plan::ConfigPin).
    let pin = json!({
        "dataset": { "prefix": "incoming/orders/" },
        "config": "0123456789abcdef",
        "config_version": "s3://config/pipelines.toml#versionId=v7"
    });
    store.fix_plan(delivered, &pin).await.unwrap();
    let counts = RowCounts {
        rows_in: 3,
        rows_out: 3,
        rows_rejected: 0,
    };
    store
        .finish_sanitize(
            delivered,
            FileStatus::Sanitized,
            Some("clean/orders/x.csv"),
            counts,
            None,
            json!({}),
        )
        .await
        .unwrap();
    store
        .claim(
            delivered,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            &lease(60),
        )
        .await
        .unwrap();
    let counts = TransformCounts {
        records: 3,
        batches: 1,
        rows_unmapped: 0,
    };
    store
        .finish_transform(delivered, FileStatus::Transformed, counts, None, json!({}))
        .await
        .unwrap();
    let batch = format!("{delivered}-000001");
    let busy = Some("{\"error\": \"field customer.email: invalid address\"}");
    for (attempt, status, error, excerpt) in [
        (1, 503, Some("HTTP 503"), busy),
        (2, 200, None, Some("{\"ok\": true}")),
    ] {
        store
            .record_call(&ApiCall {
                file_id: delivered,
                batch_id: &batch,
                attempt,
                http_status: Some(status),
                latency_ms: 12,
                response_excerpt: excerpt,
                error,
                endpoint: "https://api.example.com/v1/records",
                simulated: false,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store.settle_delivery(delivered).await.unwrap(),
        FileStatus::Delivered
    );

    let rejected = received(store, "rejected.xlsx").await;
    sanitizing(store, rejected, 60).await;
    store
        .finish_sanitize(
            rejected,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            Some("not a CSV: an XLSX spreadsheet"),
            json!({}),
        )
        .await
        .unwrap();

    let stuck = received(store, "stuck.csv").await;
    sanitizing(store, stuck, -60).await;
    (delivered, rejected, stuck)
}

fn status(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("status")
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("SLUICE_DB_CA_FILE")
        .output()
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_filters_and_shows_a_delivered_a_rejected_and_a_stuck_file() {
    let (store, url, _dropped) = schema().await;
    let (delivered, rejected, stuck) = seed(&store).await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    let all = json_of(&status(&url, &["--json"]));
    assert_eq!(
        ids(&all),
        sorted(vec![
            delivered.to_string(),
            rejected.to_string(),
            stuck.to_string()
        ])
    );
    let only = json_of(&status(&url, &["--status", "rejected", "--json"]));
    assert_eq!(ids(&only), [rejected.to_string()]);
    assert_eq!(only[0]["error"], "not a CSV: an XLSX spreadsheet");
    let recent = json_of(&status(
        &url,
        &["--dataset", "orders", "--since", "1h", "--json"],
    ));
    assert_eq!(ids(&recent).len(), 3);
    let none = json_of(&status(&url, &["--dataset", "train_movements", "--json"]));
    assert_eq!(none, json!([]));
    let stuck_files = json_of(&status(&url, &["--stuck", "--json"]));
    assert_eq!(ids(&stuck_files), [stuck.to_string()]);
    assert_eq!(stuck_files[0]["status"], "sanitizing");

    // One file: its history and every API call.
    let one = json_of(&status(&url, &[&delivered.to_string(), "--json"]));
    assert_eq!(one["file"]["status"], "delivered");
    assert_eq!(one["file"]["batches_delivered"], 1);
    assert_eq!(
        one["file"]["config_version"],
        "s3://config/pipelines.toml#versionId=v7"
    );
    assert_eq!(one["file"]["config_digest"], "0123456789abcdef");
    let rejected_file = json_of(&status(&url, &[&rejected.to_string(), "--json"]));
    assert_eq!(rejected_file["file"]["config_version"], Value::Null);
    let history: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "received",
            "sanitizing",
            "sanitized",
            "transforming",
            "transformed",
            "delivered"
        ]
    );
    let calls: Vec<(i64, Option<i64>)> = one["api_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["attempt"].as_i64().unwrap(), c["http_status"].as_i64()))
        .collect();
    assert_eq!(calls, [(1, Some(503)), (2, Some(200))]);

    // The same as text.
    let text = status(&url, &[&delivered.to_string()]);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("status    delivered"), "{text}");
    assert!(
        text.contains(
            "config    s3://config/pipelines.toml#versionId=v7 (dataset section 0123456789abcdef)"
        ),
        "{text}"
    );
    assert!(
        text.contains("api calls: 2 attempts, 1 with a 2xx"),
        "{text}"
    );
    assert!(
        text.contains("HTTP 503") && text.contains("HTTP 200"),
        "{text}"
    );
    // What the API answered to the failed call, not to the delivered one.
    assert!(
        text.contains("the API answered: {\"error\": \"field customer.email: invalid address\"}"),
        "{text}"
    );
    assert!(!text.contains("the API answered: {\"ok\""), "{text}");
    assert_eq!(
        one["api_calls"][0]["response_excerpt"],
        "{\"error\": \"field customer.email: invalid address\"}"
    );
    let table = String::from_utf8(status(&url, &[]).stdout).unwrap();
    assert!(
        table.contains("3 file(s)") && table.contains("rejected"),
        "{table}"
    );
    // The file's name, and the cause.
    assert!(table.contains("rejected.xlsx"), "{table}");
    assert!(table.contains("not a CSV: an XLSX spreadsheet"), "{table}");

    // A short id: the start of one file's id; too short, or the start of two, is usage.
    let short = &delivered.to_string()[..8];
    let by_short = json_of(&status(&url, &[short, "--json"]));
    assert_eq!(by_short["file"]["id"], delivered.to_string());
    assert_eq!(status(&url, &["6f1"]).status.code(), Some(2));
    let unknown = status(&url, &["ffffffff-ffff"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");

    // Errors: no such file (1), a bad status or --since (2), an unreachable database (1).
    let missing = status(&url, &[&Uuid::new_v4().to_string()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no file"));
    let lost = status(&url, &["--status", "lost"]);
    assert_eq!(lost.status.code(), Some(2));
    let why = String::from_utf8_lossy(&lost.stderr);
    assert!(
        why.contains("received, sanitizing") && why.contains("failed"),
        "{why}"
    );
    assert_eq!(
        status(&url, &["--since", "yesterday"]).status.code(),
        Some(2)
    );
    let down = status(
        "postgres://postgres@127.0.0.1:1/test?sslmode=disable",
        &["--json"],
    );
    assert_eq!(down.status.code(), Some(1));
}
