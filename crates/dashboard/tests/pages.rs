//! Every page and JSON endpoint of the dashboard against PostgreSQL (scripts/test.sh starts
//! it), in a schema of the test's own: empty, then seeded through the status store with a
//! delivered, a rejected, a failed and a stuck file, one with thousands of API calls, and
//! enough files to page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sluice_core::{FileStatus, Stage};
use sluice_dashboard::{router, State};
use sluice_db::Claim;
use sluice_db::{
    migrate, ApiCall, Db, DbConfig, Lease, NewFile, RowCounts, Store, TransformCounts,
};
use tower::ServiceExt;
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

struct Schema {
    name: String,
    config: DbConfig,
}

impl Schema {
    async fn create() -> Self {
        let name = format!("sluice_dash_{}", Uuid::new_v4().simple());
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        admin
            .connect()
            .await
            .expect("PostgreSQL is reachable (scripts/test.sh starts it)")
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let config = admin.with_schema(&name);
        migrate(&Db::new(config.clone())).await.unwrap();
        Schema { name, config }
    }

    fn store(&self) -> Store {
        Store::new(Db::new(self.config.clone()))
    }

    fn app(&self) -> axum::Router {
        router(Arc::new(State::new(
            self.config.clone(),
            None,
            Duration::from_secs(3600),
        )))
    }

    async fn drop(self) {
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        if let Ok(client) = admin.connect().await {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .await;
        }
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json(app: &axum::Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
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
            key: &format!("incoming/orders/2026/11/24/{}-{name}", Uuid::new_v4()),
            etag: "e",
            size: 100,
            replay_of: None,
            uploaded_by: Some("ops@example.com"),
        })
        .await
        .unwrap()
        .id
}

async fn claim(store: &Store, id: Uuid, stage: Stage, from: FileStatus, to: FileStatus) {
    let won = store.claim(id, stage, from, to, &lease(60)).await.unwrap();
    assert!(matches!(won, Claim::Won { .. }), "{won:?}");
}

async fn sanitized(store: &Store, id: Uuid, detail: Value) {
    claim(
        store,
        id,
        Stage::Sanitizer,
        FileStatus::Received,
        FileStatus::Sanitizing,
    )
    .await;
    let counts = RowCounts {
        rows_in: 12,
        rows_out: 11,
        rows_rejected: 1,
    };
    store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            Some("clean/orders/x.csv"),
            counts,
            None,
            detail,
        )
        .await
        .unwrap();
}

async fn transformed(store: &Store, id: Uuid, batches: i32) {
    claim(
        store,
        id,
        Stage::Transformer,
        FileStatus::Sanitized,
        FileStatus::Transforming,
    )
    .await;
    let counts = TransformCounts {
        records: 11,
        batches,
        rows_unmapped: 0,
    };
    store
        .finish_transform(
            id,
            FileStatus::Transformed,
            counts,
            None,
            json!({"verdict": "transformed"}),
        )
        .await
        .unwrap();
}

async fn call(store: &Store, file: Uuid, seq: u32, attempt: i32, status: i32) {
    let batch = format!("{file}-{seq:06}");
    let error = (status >= 300).then(|| format!("HTTP {status}"));
    store
        .record_call(&ApiCall {
            file_id: file,
            batch_id: &batch,
            attempt,
            http_status: Some(status),
            latency_ms: 10 * attempt,
            response_excerpt: None,
            error: error.as_deref(),
        })
        .await
        .unwrap();
}

struct Seeded {
    delivered: Uuid,
    rejected: Uuid,
    failed: Uuid,
    stuck: Uuid,
    busy: Uuid,
}

async fn seed(schema: &Schema) -> Seeded {
    let store = schema.store();
    let report = json!({
        "verdict": "accepted", "rows_in": 12, "rows_out": 11, "rows_rejected": 1,
        "cells": {"formulas_neutralized": 2, "markup_neutralized": 1},
        "first_rejects": [{"line": 7, "end_line": 7, "column": null,
                           "reason": "ragged row: 5 fields, the header has 4"}]
    });

    let delivered = received(&store, "orders-am.csv").await;
    sanitized(&store, delivered, report.clone()).await;
    transformed(&store, delivered, 1).await;
    call(&store, delivered, 1, 1, 503).await;
    call(&store, delivered, 1, 2, 200).await;
    assert_eq!(
        store.settle_delivery(delivered).await.unwrap(),
        FileStatus::Delivered
    );

    let rejected = received(&store, "orders.xlsx").await;
    claim(
        &store,
        rejected,
        Stage::Sanitizer,
        FileStatus::Received,
        FileStatus::Sanitizing,
    )
    .await;
    store
        .finish_sanitize(
            rejected,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            Some("not a CSV file: it looks like an archive"),
            json!({"verdict": "rejected"}),
        )
        .await
        .unwrap();

    let failed = received(&store, "orders-pm.csv").await;
    sanitized(&store, failed, report.clone()).await;
    transformed(&store, failed, 2).await;
    call(&store, failed, 1, 1, 200).await;
    call(&store, failed, 2, 1, 422).await;
    store
        .fail(
            failed,
            Stage::Forwarder,
            "batch 2/2 not delivered: HTTP 422 (not retried); delivery 5 of 5",
        )
        .await
        .unwrap();

    let stuck = received(&store, "orders-stuck.csv").await;
    store
        .claim(
            stuck,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease(-60),
        )
        .await
        .unwrap();

    // Thousands of attempts on one file (an API that kept failing), written in one go.
    let busy = received(&store, "orders-busy.csv").await;
    sanitized(&store, busy, report).await;
    transformed(&store, busy, 300).await;
    let client = schema.config.connect().await.unwrap();
    client
        .execute(
            "INSERT INTO api_call (file_id, batch_id, attempt, at, http_status, latency_ms, error)
             SELECT $1::uuid, $1::uuid::text || '-' || lpad((1 + i % 300)::text, 6, '0'), 1 + i / 300,
                    now() - (i || ' seconds')::interval,
                    CASE WHEN i % 10 = 0 THEN 200 ELSE 503 END, 20 + i % 50,
                    CASE WHEN i % 10 = 0 THEN NULL ELSE 'HTTP 503' END
             FROM generate_series(0, 2999) i",
            &[&busy],
        )
        .await
        .unwrap();
    Seeded {
        delivered,
        rejected,
        failed,
        stuck,
        busy,
    }
}

#[tokio::test]
async fn an_empty_store_shows_empty_states_and_unknown_things_are_not_found() {
    let schema = Schema::create().await;
    let app = schema.app();
    let (status, body) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("No files were received in the last 24h"),
        "{body}"
    );
    assert!(body.contains("Every file is final."), "{body}");
    assert!(body.contains("Not shown: set SLUICE_DLQ_URLS"), "{body}");
    let (_, body) = get(&app, "/files").await;
    assert!(body.contains("No file matches."), "{body}");
    let (_, body) = get(&app, "/health?window=7d").await;
    assert!(body.contains("No API call in the last 7d."), "{body}");

    let overview = json(&app, "/api/overview?window=1h").await;
    assert_eq!(overview["window"], "1h");
    assert_eq!(overview["received"], 0);
    assert_eq!(overview["failure_rate"], Value::Null);
    assert_eq!(overview["oldest_unfinished"], Value::Null);
    assert_eq!(overview["dlq"], Value::Null);
    assert_eq!(json(&app, "/api/files").await["files"], json!([]));
    assert_eq!(json(&app, "/api/health").await["datasets"], json!([]));

    let missing = Uuid::new_v4();
    for uri in [
        format!("/files/{missing}"),
        format!("/api/files/{missing}"),
        "/files/not-an-id".to_string(),
        "/nowhere".to_string(),
    ] {
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let (status, body) = get(&app, "/files?status=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown status"), "{body}");
    let (status, _) = get(&app, "/api/files?before=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, css) = get(&app, "/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("body"));
    schema.drop().await;
}

#[tokio::test]
async fn the_pages_say_where_each_file_is_and_why() {
    let schema = Schema::create().await;
    let s = seed(&schema).await;
    let app = schema.app();

    // Overview: five files received, three finished (one each way), one stuck, the oldest
    // unfinished named.
    let overview = json(&app, "/api/overview").await;
    assert_eq!(overview["received"], 5, "{overview}");
    assert_eq!(
        (
            &overview["delivered"],
            &overview["rejected"],
            &overview["failed"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(overview["stuck_count"], 1);
    assert_eq!(overview["stuck"][0]["id"], s.stuck.to_string());
    let oldest = overview["oldest_unfinished"]["id"].as_str().unwrap();
    assert!(
        [s.stuck.to_string(), s.busy.to_string()].contains(&oldest.to_string()),
        "{oldest}"
    );
    let (_, page) = get(&app, "/").await;
    assert!(page.contains(r#"<b id="received">5</b>"#), "{page}");
    assert!(page.contains(r#"<b id="stuck-count">1</b>"#), "{page}");
    assert!(page.contains("orders-stuck.csv"), "{page}");
    assert!(
        page.contains(r#"<b id="rejection-rate">33.3 %</b>"#),
        "{page}"
    );

    // The file list filters by status, by name, and by both.
    let rejected = json(&app, "/api/files?status=rejected").await;
    assert_eq!(rejected["files"].as_array().unwrap().len(), 1);
    assert_eq!(rejected["files"][0]["id"], s.rejected.to_string());
    assert_eq!(
        rejected["files"][0]["error"],
        "not a CSV file: it looks like an archive"
    );
    let (_, page) = get(&app, "/files?q=STUCK&dataset=orders").await;
    assert!(page.contains("orders-stuck.csv"), "{page}");
    assert!(!page.contains("orders-am.csv"), "{page}");
    let none = json(&app, "/api/files?q=100%25").await;
    assert_eq!(none["files"], json!([]), "a % in the search is a %");

    // One delivered file: its timeline, report figures, first rejects, batch and calls.
    let (status, page) = get(&app, &format!("/files/{}", s.delivered)).await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "orders-am.csv",
        r#"<span class="status delivered" id="status">delivered</span>"#,
        "ops@example.com",
        "ragged row: 5 fields, the header has 4",
        "formulas neutralized",
        "HTTP 503",
        "HTTP 200",
        r#"<small id="calls-total">2 in all</small>"#,
    ] {
        assert!(page.contains(expected), "{expected} missing: {page}");
    }
    let file = json(&app, &format!("/api/files/{}", s.delivered)).await;
    let stages: Vec<&str> = file["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "received",
            "sanitizing",
            "sanitized",
            "transforming",
            "transformed",
            "delivered"
        ]
    );
    assert_eq!(file["batches"][0]["attempts"], 2);
    assert_eq!(file["batches"][0]["delivered"], true);
    assert_eq!(file["sanitize"]["first_rejects"][0]["line"], 7);

    // The failed file says where and why.
    let (_, page) = get(&app, &format!("/files/{}", s.failed)).await;
    assert!(
        page.contains("at the forwarder: batch 2/2 not delivered: HTTP 422 (not retried)"),
        "{page}"
    );

    // Thousands of calls: counted, shown a page at a time, the next page linked.
    let busy = json(&app, &format!("/api/files/{}", s.busy)).await;
    assert_eq!(busy["calls_total"], 3000);
    assert_eq!(busy["calls"].as_array().unwrap().len(), 100);
    assert_eq!(busy["batches"].as_array().unwrap().len(), 300);
    let next = busy["calls_next"].as_i64().unwrap();
    let more = json(&app, &format!("/api/files/{}?calls_after={next}", s.busy)).await;
    assert!(more["calls"][0]["id"].as_i64().unwrap() > next);
    let (_, page) = get(&app, &format!("/files/{}", s.busy)).await;
    assert!(page.contains(r#"id="more-calls""#), "{page}");

    // API health per dataset.
    let health = json(&app, "/api/health").await;
    let orders = &health["datasets"][0];
    assert_eq!(orders["dataset"], "orders");
    assert_eq!(orders["calls"], 3004);
    assert_eq!(orders["ok"], 302);
    assert!(orders["p95_ms"].as_f64().unwrap() >= orders["p50_ms"].as_f64().unwrap());
    let (_, page) = get(&app, "/health").await;
    assert!(page.contains("10.1 %"), "{page}");
    schema.drop().await;
}

#[tokio::test]
async fn the_file_list_pages_through_every_file_once() {
    let schema = Schema::create().await;
    let store = schema.store();
    let mut ids = Vec::new();
    for i in 0..61 {
        ids.push(received(&store, &format!("file-{i:02}.csv")).await);
    }
    let app = schema.app();
    let first = json(&app, "/api/files").await;
    assert_eq!(first["files"].as_array().unwrap().len(), 50);
    let cursor = first["next"].as_str().unwrap().to_string();
    let (_, page) = get(&app, "/files").await;
    assert!(page.contains(r#"id="older""#), "{page}");
    let second = json(
        &app,
        &format!("/api/files?before={}", cursor.replace('+', "%2B")),
    )
    .await;
    assert_eq!(second["files"].as_array().unwrap().len(), 11);
    assert_eq!(second["next"], Value::Null);
    let mut seen: Vec<String> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["files"].as_array().unwrap())
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 61);
    schema.drop().await;
}

#[tokio::test]
async fn the_dashboard_role_reads_the_views_and_nothing_else() {
    let schema = Schema::create().await;
    received(&schema.store(), "a.csv").await;
    let reader = schema
        .config
        .clone()
        .read_only_as(sluice_dashboard::ROLE)
        .connect()
        .await
        .unwrap();
    let n: i64 = reader
        .query_one("SELECT count(*) FROM dashboard_file", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let refused = reader.query("SELECT * FROM file_process", &[]).await;
    let e = format!("{:?}", refused.unwrap_err());
    assert!(e.contains("permission denied"), "{e}");
    let write = reader
        .execute("CREATE TABLE dashboard_scratch (a int)", &[])
        .await;
    let e = format!("{:?}", write.unwrap_err());
    assert!(e.contains("read-only transaction"), "{e}");
    schema.drop().await;
}
