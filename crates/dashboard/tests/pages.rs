//! Every page and JSON endpoint of the dashboard against PostgreSQL (scripts/test.sh starts
//! it), in a schema of the test's own: empty, then seeded through the status store with a
//! delivered, a rejected, a failed and a stuck file, one with thousands of API calls, and
//! enough files to page.

mod common;

use axum::http::StatusCode;
use common::{get, json, received, seed, Schema};
use serde_json::{json, Value};
use uuid::Uuid;

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

    // API health per dataset and endpoint, each with its trend over the window.
    let health = json(&app, "/api/health").await;
    let rows = health["datasets"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{health}");
    let (api, slow) = (&rows[0], &rows[1]);
    assert_eq!(
        (&api["dataset"], &api["endpoint"], &api["calls"], &api["ok"]),
        (
            &json!("orders"),
            &json!("https://api.example.com/v1/records"),
            &json!(4),
            &json!(2)
        )
    );
    assert_eq!(
        (&slow["endpoint"], &slow["calls"], &slow["ok"]),
        (
            &json!("https://slow.example.com/ingest"),
            &json!(3000),
            &json!(300)
        )
    );
    assert!(slow["p95_ms"].as_f64().unwrap() >= slow["p50_ms"].as_f64().unwrap());
    let trend = slow["trend"].as_array().unwrap();
    assert_eq!(trend.len(), 12);
    let in_trend: i64 = trend.iter().map(|t| t["calls"].as_i64().unwrap()).sum();
    assert_eq!(in_trend, 3000, "every call is in a slot: {trend:?}");
    assert_eq!(
        trend[11]["calls"], 3000,
        "the last 50 minutes are the last slot"
    );
    let (_, page) = get(&app, "/health").await;
    assert!(page.contains("10.0 %"), "{page}");
    assert!(
        page.contains("<code>https://slow.example.com/ingest</code>"),
        "{page}"
    );
    assert!(page.contains(r#"<rect class="poor""#), "{page}");
    assert!(page.contains("no call"), "{page}");
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

#[tokio::test]
async fn api_health_is_the_same_from_rolled_up_hours_and_from_the_calls() {
    let schema = Schema::create().await;
    seed(&schema).await;
    let app = schema.app();
    let totals = |health: &Value| {
        let rows = health["datasets"].as_array().unwrap();
        let sum = |k: &str| rows.iter().map(|r| r[k].as_i64().unwrap()).sum::<i64>();
        (sum("calls"), sum("ok"))
    };
    let before = json(&app, "/api/health").await;
    assert_eq!(totals(&before), (3004, 302));
    let before = before["datasets"][1].clone();

    // Half the calls three hours back, the roll-up started a day ago, then run (twice: the
    // second finds nothing new).
    let client = schema.config.connect().await.unwrap();
    client
        .batch_execute(
            "UPDATE api_call SET at = at - interval '3 hours' WHERE id % 2 = 0;
             UPDATE api_call_rollup SET until = date_trunc('hour', now() - interval '1 day');",
        )
        .await
        .unwrap();
    let store = schema.store();
    assert!(store.rollup_api_calls().await.unwrap() > 0);
    assert_eq!(store.rollup_api_calls().await.unwrap(), 0);
    let rolled: i64 = client
        .query_one(
            "SELECT COALESCE(sum(calls), 0)::bigint FROM api_call_hour",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(rolled >= 1500, "{rolled} calls rolled up");

    let after = json(&app, "/api/health").await;
    assert_eq!(totals(&after), (3004, 302), "{after}");
    let after = after["datasets"][1].clone();
    // The trend still counts every call, now in two slots (the calls three hours back in an
    // earlier one).
    let trend = after["trend"].as_array().unwrap();
    let in_trend: i64 = trend.iter().map(|t| t["calls"].as_i64().unwrap()).sum();
    assert_eq!(in_trend, 3000, "{trend:?}");
    let slots = trend
        .iter()
        .filter(|t| t["calls"].as_i64().unwrap() > 0)
        .count();
    assert!(slots >= 2, "{trend:?}");
    for p in ["p50_ms", "p95_ms"] {
        let (b, a) = (before[p].as_f64().unwrap(), after[p].as_f64().unwrap());
        assert!((a - b).abs() <= b * 0.1, "{p}: {b} then {a}");
    }
    // The dashboard's role reads the roll-up too (through its views).
    let (_, page) = get(&app, "/health?window=7d").await;
    assert!(page.contains("3000"), "{page}");
    schema.drop().await;
}
