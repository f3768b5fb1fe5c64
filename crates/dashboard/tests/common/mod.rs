//! What the dashboard tests share: a schema of the test's own in PostgreSQL (scripts/test.sh
//! starts it), migrated, and seeded through the status store.

#![allow(dead_code)]

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

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

pub struct Schema {
    pub name: String,
    pub config: DbConfig,
}

impl Schema {
    pub async fn create() -> Self {
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

    pub fn store(&self) -> Store {
        Store::new(Db::new(self.config.clone()))
    }

    pub fn app(&self) -> axum::Router {
        router(Arc::new(State::new(
            self.config.clone(),
            None,
            Duration::from_secs(3600),
        )))
    }

    pub async fn drop(self) {
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        if let Ok(client) = admin.connect().await {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .await;
        }
    }
}

pub async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

pub async fn json(app: &axum::Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn lease(seconds: i64) -> Lease {
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

pub async fn received(store: &Store, name: &str) -> Uuid {
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
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id
}

pub async fn claim(store: &Store, id: Uuid, stage: Stage, from: FileStatus, to: FileStatus) {
    let won = store.claim(id, stage, from, to, &lease(60)).await.unwrap();
    assert!(matches!(won, Claim::Won { .. }), "{won:?}");
}

pub async fn sanitized(store: &Store, id: Uuid, detail: Value) {
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

pub async fn transformed(store: &Store, id: Uuid, batches: i32) {
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

pub async fn call(store: &Store, file: Uuid, seq: u32, attempt: i32, status: i32) {
    let batch = format!("{file}-{seq:06}");
    let error = (status >= 300).then(|| format!("HTTP {status}"));
    // What a strict API says of a record it refuses.
    let answer = (status == 422).then_some(r#"{"error": "record 2: customer.email is required"}"#);
    store
        .record_call(&ApiCall {
            file_id: file,
            batch_id: &batch,
            attempt,
            http_status: Some(status),
            latency_ms: 10 * attempt,
            response_excerpt: answer,
            error: error.as_deref(),
            endpoint: "https://api.example.com/v1/records",
            simulated: false,
        })
        .await
        .unwrap();
}

pub struct Seeded {
    pub delivered: Uuid,
    pub rejected: Uuid,
    pub failed: Uuid,
    pub stuck: Uuid,
    pub busy: Uuid,
}

pub async fn seed(schema: &Schema) -> Seeded {
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

    // Thousands of attempts on one file (another endpoint, that kept failing), in one go.
    let busy = received(&store, "orders-busy.csv").await;
    sanitized(&store, busy, report).await;
    transformed(&store, busy, 300).await;
    let client = schema.config.connect().await.unwrap();
    client
        .execute(
            "INSERT INTO api_call (file_id, batch_id, attempt, at, http_status, latency_ms, error,
                                   endpoint)
             SELECT $1::uuid, $1::uuid::text || '-' || lpad((1 + i % 300)::text, 6, '0'), 1 + i / 300,
                    now() - (i || ' seconds')::interval,
                    CASE WHEN i % 10 = 0 THEN 200 ELSE 503 END, 20 + i % 50,
                    CASE WHEN i % 10 = 0 THEN NULL ELSE 'HTTP 503' END,
                    'https://slow.example.com/ingest'
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

/// A queue and the dead-letter queue its redrive policy names, in moto.
pub async fn dead_letter_queue(clients: &sluice_aws::Clients, suffix: &str) -> (String, String) {
    let create = |name: String| {
        let sqs = clients.sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url()
                .unwrap()
                .to_string()
        }
    };
    let dead = create(format!("sluice-{suffix}-dlq")).await;
    let source = create(format!("sluice-{suffix}")).await;
    let arn = sluice_aws::dlq::Queues::new(clients.sqs.clone())
        .queue_arn(&dead)
        .await
        .unwrap();
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&source)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .unwrap();
    (dead, source)
}
