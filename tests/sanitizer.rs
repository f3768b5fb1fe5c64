//! The sanitizer Lambda's handler, end to end: real files in a (moto) S3 quarantine bucket,
//! the handler run with the S3 event, then the clean object, the report, the tags, the SQS
//! message and the database rows checked.

use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use sluice_aws::{ObjectStore, Queue};
use sluice_core::{FileStatus, PipelineConfig};
use sluice_db::{file_id, Db, DbConfig, Store};
use sluice_e2e::{unique, World};
use sluice_lambda::Failure;
use sluice_sanitizer::{handle, Deps, Outcome, Response};

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.sanitize]
required_columns = ["order_id", "sku"]
"#;

fn deps(world: &World, store: Store) -> Deps {
    Deps {
        config: PipelineConfig::parse(CONFIG, "test").unwrap(),
        store,
        objects: ObjectStore::new(world.clients.s3.clone()),
        queue: Queue::new(world.clients.sqs.clone(), world.queue_url.clone()),
        clean_bucket: world.clean.clone(),
        max_receive_count: 3,
        visibility: None,
    }
}

async fn run(deps: &Deps, event: Value) -> Result<Vec<Outcome>, Failure> {
    match handle(LambdaEvent::new(event, Context::default()), deps).await? {
        Response::Outcomes(outcomes) => Ok(outcomes),
        Response::Batch(batch) => panic!("a direct event answered as a batch: {batch:?}"),
    }
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn tags(world: &World, key: &str) -> Vec<(String, String)> {
    let mut tags = ObjectStore::new(world.clients.s3.clone())
        .tags(&world.quarantine, key)
        .await
        .unwrap();
    tags.sort();
    tags
}

/// Puts `body` at `key` in quarantine and runs the handler on its event: the one outcome.
async fn drop_in(world: &World, deps: &Deps, key: &str, body: &[u8]) -> Outcome {
    world.put(key, body.to_vec()).await;
    let mut outcomes = run(deps, world.created_event(key, body.len()))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

/// The sanitize report of file `id`.
async fn report_of(world: &World, id: uuid::Uuid) -> Value {
    let bytes = world
        .get(&world.clean, &format!("reports/{id}/sanitize.json"))
        .await
        .expect("the report is written");
    serde_json::from_slice(&bytes).unwrap()
}

/// The clean file of accepted file `id`, as text.
async fn clean_of(world: &World, id: uuid::Uuid) -> String {
    let bytes = world
        .get(&world.clean, &format!("clean/orders/{id}.csv"))
        .await
        .expect("the clean file is written");
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn accepted_messy_file_goes_clean_with_report_tags_message_and_status() {
    let world = World::new().await;
    let store = world.store_as("sluice_sanitizer").await;
    let deps = deps(&world, store);
    let key = "incoming/orders/2026/11/23/orders-messy.csv";
    let body = example("orders/orders-messy.csv");
    world.put(key, body.clone()).await;

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, "accepted");
    let id = outcomes[0].file_id.unwrap();
    let clean_key = format!("clean/orders/{id}.csv");
    let clean = String::from_utf8(world.get(&world.clean, &clean_key).await.unwrap()).unwrap();
    assert!(clean.starts_with("order_id,order_date,sku,qty,"), "{clean}");
    assert!(!clean.contains("<script"));
    let report: Value = serde_json::from_slice(
        &world
            .get(&world.clean, &format!("reports/{id}/sanitize.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["verdict"], "accepted");
    assert_eq!(report["rejects"][0]["line"], 11);
    // The rejected row, with its cells, for whoever sent the file.
    let errors = world
        .get(&world.clean, &format!("reports/{id}/errors.csv"))
        .await
        .expect("an errors file");
    let errors = String::from_utf8(errors).unwrap();
    assert!(
        errors.starts_with("line,column,reason,order_id,order_date,"),
        "{errors}"
    );
    let row = errors.lines().nth(1).unwrap();
    assert!(
        row.starts_with("11,,\"expected 8 fields, found 5\","),
        "{row}"
    );
    assert_eq!(report["error_rows"], 1);
    assert_eq!(
        tags(&world, key).await,
        [
            ("sluice-file-id".to_string(), id.to_string()),
            ("sluice-verdict".to_string(), "accepted".to_string())
        ]
    );
    let messages = world.drain_queue().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["v"], 1);
    assert_eq!(messages[0]["file_id"], id.to_string());
    assert_eq!(messages[0]["dataset"], "orders");
    assert_eq!(messages[0]["clean_key"], clean_key);
    assert_eq!(messages[0]["rows"], 11);
    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    assert_eq!(row.clean_key.as_deref(), Some(clean_key.as_str()));
    assert_eq!(
        (row.rows_in, row.rows_out, row.rows_rejected),
        (Some(13), Some(11), Some(1))
    );
    let statuses: Vec<FileStatus> = deps
        .store
        .events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [
            FileStatus::Received,
            FileStatus::Sanitizing,
            FileStatus::Sanitized
        ]
    );
    world.clean_up().await;
}

#[tokio::test]
async fn rejected_file_stays_in_quarantine_with_its_report_and_is_not_forwarded() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/export.xlsx";
    let body = example("orders/not-a-csv.xlsx");
    world.put(key, body.clone()).await;

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    assert_eq!(outcomes[0].result, "rejected");
    let id = outcomes[0].file_id.unwrap();
    assert_eq!(world.get(&world.quarantine, key).await.unwrap(), body);
    assert_eq!(
        world.keys(&world.clean).await,
        [format!("reports/{id}/sanitize.json")],
        "no clean file, only the report"
    );
    assert!(tags(&world, key)
        .await
        .contains(&("sluice-verdict".into(), "rejected".into())));
    assert!(world.drain_queue().await.is_empty());
    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Rejected);
    assert!(row.error.unwrap().contains("zip"));
    world.clean_up().await;
}

#[tokio::test]
async fn a_gzip_export_is_read_through_and_a_cut_one_is_rejected_not_retried() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let gz = example("orders/orders-evening.csv.gz");
    let key = "incoming/orders/2026/11/23/orders-evening.csv.gz";
    let outcome = drop_in(&world, &deps, key, &gz).await;
    assert_eq!(outcome.result, "accepted");
    let id = outcome.file_id.unwrap();
    let clean = clean_of(&world, id).await;
    assert!(clean.starts_with("order_id,order_date,sku,"));
    assert_eq!(clean.lines().count(), 4, "header and 3 rows");
    let report = report_of(&world, id).await;
    assert_eq!(report["compression"], "gzip");
    assert_eq!(report["bytes_compressed"], gz.len());

    // Cut short in transit: rejected with the reason at once (a retry reads the same bytes).
    let cut = &gz[..gz.len() - 12];
    let key = "incoming/orders/2026/11/23/orders-cut.csv.gz";
    let outcome = drop_in(&world, &deps, key, cut).await;
    assert_eq!(outcome.result, "rejected");
    let row = deps
        .store
        .file(outcome.file_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, FileStatus::Rejected);
    let error = row.error.unwrap();
    assert!(
        error.contains("gzip data is corrupt or cut short"),
        "{error}"
    );
    world.clean_up().await;
}

#[tokio::test]
async fn a_workbook_is_read_from_s3_as_its_first_visible_sheet() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let book = example("orders/orders-warehouse.xlsx");
    let key = "incoming/orders/2026/11/24/orders-warehouse.xlsx";
    let outcome = drop_in(&world, &deps, key, &book).await;
    assert_eq!(outcome.result, "accepted");
    let id = outcome.file_id.unwrap();
    let clean = clean_of(&world, id).await;
    assert!(
        clean.starts_with("order_id,order_date,sku,qty,unit_price_eur,coupon,customer_e_mail,notes\r\nA-1030,2026-11-24T07:55:00,SKU-RED-L,1,21.5,"),
        "{clean}"
    );
    assert!(
        clean.contains("'=HYPERLINK"),
        "the formula-like note is neutralized"
    );
    let report = report_of(&world, id).await;
    assert_eq!(report["spreadsheet"]["format"], "xlsx");
    assert_eq!(report["spreadsheet"]["sheet"], "Orders");
    assert_eq!(report["spreadsheet"]["other_sheets"][0], "Summary");
    world.clean_up().await;
}

#[tokio::test]
async fn key_with_spaces_and_unicode_is_decoded_and_found() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/Orders export (Nov 23) café +1.csv";
    let body = b"Order ID,SKU\n1,A\n".to_vec();
    world.put(key, body.clone()).await;

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    assert_eq!(outcomes[0].key, key);
    assert_eq!(outcomes[0].result, "accepted");
    let row = deps
        .store
        .file(outcomes[0].file_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.source_key, key);
    world.clean_up().await;
}

#[tokio::test]
async fn a_duplicate_delivery_registers_one_file_and_sends_one_message() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/dup.csv";
    let body = b"order_id,sku\n1,A\n2,B\n".to_vec();
    world.put(key, body.clone()).await;
    let event = world.created_event(key, body.len());

    let first = run(&deps, event.clone()).await.unwrap();
    let second = run(&deps, event).await.unwrap();

    assert_eq!(first[0].result, "accepted");
    assert_eq!(second[0].result, "duplicate");
    assert_eq!(first[0].file_id, second[0].file_id);
    assert_eq!(world.drain_queue().await.len(), 1);
    let client = DbConfig::parse(&sluice_e2e::database_url(), None)
        .unwrap()
        .with_schema(&world.schema)
        .connect()
        .await
        .unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM file_process", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    world.clean_up().await;
}

#[tokio::test]
async fn postgres_unavailable_fails_the_invocation_and_writes_nothing_under_the_clean_key() {
    let world = World::new().await;
    let unreachable =
        DbConfig::parse("postgres://postgres@127.0.0.1:1/test?sslmode=disable", None).unwrap();
    let deps = deps(&world, Store::new(Db::new(unreachable)));
    let key = "incoming/orders/2026/11/23/when-db-down.csv";
    let body = b"order_id,sku\n1,A\n".to_vec();
    world.put(key, body.clone()).await;

    let err = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("database"), "{err}");
    // What Lambda reports, for alarms: a stable errorType, not a Rust type name.
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Sluice.DatabaseUnavailable"
    );
    assert!(world.keys(&world.clean).await.is_empty());
    assert!(world.drain_queue().await.is_empty());
    assert!(
        tags(&world, key).await.is_empty(),
        "not tagged: it will be retried"
    );

    // Once the database is back, Lambda's retry of the same event goes through.
    let deps = Deps {
        store: world.store_as("sluice_sanitizer").await,
        ..deps
    };
    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, "accepted");
    assert_eq!(
        outcomes[0].file_id,
        Some(file_id(
            &world.quarantine,
            key,
            &outcome_etag(&world, key).await
        ))
    );
    world.clean_up().await;
}

#[tokio::test]
async fn test_event_and_unrouted_keys_send_nothing() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let test_event = serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
        "Time": "2026-11-23T08:00:00.000Z", "Bucket": world.quarantine});
    assert!(run(&deps, test_event).await.unwrap().is_empty());

    let key = "somewhere/else.csv";
    world.put(key, b"a\n1\n".to_vec()).await;
    let outcomes = run(&deps, world.created_event(key, 4)).await.unwrap();
    assert_eq!(outcomes[0].result, "unrouted");
    assert!(tags(&world, key)
        .await
        .contains(&("sluice-verdict".into(), "unrouted".into())));
    let id = outcomes[0].file_id.expect("a row for the unrouted key");
    let row = world.store().await.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, sluice_core::FileStatus::Rejected);
    assert_eq!(row.dataset.as_deref(), Some(""));
    assert!(world.drain_queue().await.is_empty());
    world.clean_up().await;
}

async fn outcome_etag(world: &World, key: &str) -> String {
    let head = world
        .clients
        .s3
        .head_object()
        .bucket(&world.quarantine)
        .key(key)
        .send()
        .await
        .unwrap();
    head.e_tag().unwrap().trim_matches('"').to_string()
}

#[tokio::test]
async fn database_credentials_can_come_from_a_secrets_manager_secret() {
    let world = World::new().await;
    let secret = world
        .clients
        .secrets
        .create_secret()
        .name(format!("{}-db", world.schema))
        .secret_string(r#"{"username": "postgres", "password": "from-the-secret"}"#)
        .send()
        .await
        .unwrap();
    let arn = secret.arn().unwrap();
    let url = format!(
        "{}&options=-csearch_path%3D{}",
        sluice_e2e::database_url(),
        world.schema
    );

    let config = sluice_lambda::setup::database_config(Some(&url), Some(arn), None, &world.clients)
        .await
        .unwrap();
    let db = Db::new(config);
    sluice_db::migrate(&db).await.unwrap();

    // A secret with its own host and no DATABASE_URL means RDS: TLS, so a CA bundle, is a must.
    let rds_style = world
        .clients
        .secrets
        .create_secret()
        .name(format!("{}-rds", world.schema))
        .secret_string(r#"{"username": "u", "password": "p", "host": "db.example", "port": 5432, "dbname": "sluice"}"#)
        .send()
        .await
        .unwrap();
    let err = sluice_lambda::setup::database_config(None, rds_style.arn(), None, &world.clients)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SLUICE_DB_CA_FILE"), "{err}");
    assert!(
        !err.contains("from-the-secret") && !err.contains("\"p\""),
        "{err}"
    );
    world.clean_up().await;
}

#[tokio::test]
async fn the_sample_event_in_events_runs_through_the_handler() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let mut event: Value =
        serde_json::from_str(include_str!("../events/sanitizer-s3-put.json")).unwrap();
    event["Records"][0]["s3"]["bucket"]["name"] = world.quarantine.clone().into();
    let key = "incoming/orders/2026/11/23/Orders export (Nov 23) café.csv";
    world.put(key, example("orders/orders-messy.csv")).await;

    let outcomes = run(&deps, event).await.unwrap();

    assert_eq!(outcomes[0].key, key);
    assert_eq!(outcomes[0].result, "accepted");
    world.clean_up().await;
}

#[tokio::test]
async fn a_large_file_is_written_in_parts_and_appears_whole() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/large.csv";
    let mut body = b"order_id,sku,note\n".to_vec();
    let mut i = 0;
    while body.len() < 3 * sluice_aws::s3::PART_BYTES + 1000 {
        body.extend_from_slice(format!("{i},SKU-{},\"a note, with a comma\"\n", i % 97).as_bytes());
        i += 1;
    }
    world.put(key, body.clone()).await;

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    let id = outcomes[0].file_id.unwrap();
    let clean = world
        .get(&world.clean, &format!("clean/orders/{id}.csv"))
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(
        &world
            .get(&world.clean, &format!("reports/{id}/sanitize.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["rows_out"], i);
    assert_eq!(report["bytes_out"], clean.len());
    assert!(clean.len() > 3 * sluice_aws::s3::PART_BYTES);
    assert!(clean.ends_with(
        format!(
            "{},SKU-{},\"a note, with a comma\"\r\n",
            i - 1,
            (i - 1) % 97
        )
        .as_bytes()
    ));
    world.clean_up().await;
}

#[tokio::test]
async fn an_s3_failure_mid_way_leaves_a_visible_error_and_lets_lambda_retry() {
    let world = World::new().await;
    let mut deps = deps(&world, world.store_as("sluice_sanitizer").await);
    deps.clean_bucket = format!("{}-missing", world.clean);
    let key = "incoming/orders/2026/11/23/retry-me.csv";
    let body = b"order_id,sku\n1,A\n".to_vec();
    world.put(key, body.clone()).await;

    let err = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("S3"), "{err}");
    let id = file_id(&world.quarantine, key, &outcome_etag(&world, key).await);
    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Sanitizing,
        "not final: the retry may succeed"
    );
    assert!(row.error.unwrap().contains(&deps.clean_bucket));
    let events = deps.store.events(id).await.unwrap();
    assert_eq!(events.last().unwrap().detail["retry"], true);
    assert!(world.drain_queue().await.is_empty());
    assert!(tags(&world, key).await.is_empty());

    // The retry, with the bucket there, goes through and the file moves on.
    deps.clean_bucket = world.clean.clone();
    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, "accepted");
    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    assert_eq!(row.error, None);
    world.clean_up().await;
}

#[tokio::test]
async fn an_object_deleted_before_the_event_arrives_is_skipped_not_retried() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/already-gone.csv";

    let outcomes = run(&deps, world.created_event(key, 10)).await.unwrap();

    assert_eq!(outcomes[0].result, "gone");
    assert!(world.keys(&world.clean).await.is_empty());
    world.clean_up().await;
}

#[tokio::test]
async fn the_uploaders_tags_are_kept_beside_the_verdict() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let key = "incoming/orders/2026/11/23/tagged.csv";
    let body = example("orders/orders-messy.csv");
    world
        .clients
        .s3
        .put_object()
        .bucket(&world.quarantine)
        .key(key)
        .tagging("uploaded-by=alice&transfer-server=s-1234")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    let id = outcomes[0].file_id.unwrap().to_string();
    let found = tags(&world, key).await;
    let found: Vec<(&str, &str)> = found
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("sluice-file-id", id.as_str()),
            ("sluice-verdict", "accepted"),
            ("transfer-server", "s-1234"),
            ("uploaded-by", "alice"),
        ]
    );
    world.clean_up().await;
}

#[tokio::test]
async fn the_sanitizer_works_against_a_database_reached_over_verified_tls() {
    // The TLS-only server scripts/test.sh starts, reached by a name that is not loopback: the
    // stage's own database setup must choose verified TLS by itself.
    let url = std::env::var("SLUICE_TEST_TLS_DATABASE_URL")
        .expect("SLUICE_TEST_TLS_DATABASE_URL is not set: run the tests with scripts/test.sh");
    let ca = std::path::PathBuf::from(
        std::env::var_os("SLUICE_TEST_DB_CA_FILE").expect("SLUICE_TEST_DB_CA_FILE is not set"),
    );
    let world = World::new().await;
    let config = sluice_lambda::setup::database_config(Some(&url), None, Some(&ca), &world.clients)
        .await
        .unwrap();
    assert!(config.uses_tls());
    let schema = world.schema.clone();
    let admin = Db::new(config.clone());
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let db = Db::new(config.clone().with_schema(&schema));
    sluice_db::migrate(&db).await.unwrap();
    let deps = deps(&world, Store::new(db));
    let key = "incoming/orders/2026/11/23/over-tls.csv";
    let body = example("orders/orders-messy.csv");
    world.put(key, body.clone()).await;

    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();

    assert_eq!(outcomes[0].result, "accepted");
    let row = deps
        .store
        .file(outcomes[0].file_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    admin
        .client()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    world.clean_up().await;
}

#[tokio::test]
async fn eight_copies_of_one_event_at_the_same_moment_sanitize_the_file_once() {
    let world = World::new().await;
    let key = "incoming/orders/2026/11/23/eight-at-once.csv";
    let body = example("orders/orders-messy.csv");
    world.put(key, body.clone()).await;
    let event = world.created_event(key, body.len());
    // Eight invocations, each with its own database connection, as eight Lambda containers.
    let mut all = Vec::new();
    for _ in 0..8 {
        all.push(deps(&world, world.store_as("sluice_sanitizer").await));
    }
    let runs = all.iter().map(|deps| run(deps, event.clone()));
    let outcomes: Vec<Vec<Outcome>> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let results: Vec<&str> = outcomes.iter().map(|o| o[0].result).collect();
    assert_eq!(
        results.iter().filter(|r| **r == "accepted").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == "duplicate").count(),
        7,
        "{results:?}"
    );
    let id = outcomes[0][0].file_id.unwrap();
    assert_eq!(
        world.drain_queue().await.len(),
        1,
        "one \"file sanitized\" message"
    );
    assert_eq!(
        world.keys(&world.clean).await,
        [
            sluice_core::layout::clean_key("orders", id),
            sluice_core::layout::errors_key(id),
            sluice_core::layout::sanitize_report_key(id)
        ],
        "one clean file, one errors file (its ragged row), one report"
    );
    let events = all[0].store.events(id).await.unwrap();
    let sanitizing = events
        .iter()
        .filter(|e| e.status == FileStatus::Sanitizing)
        .count();
    assert_eq!(sanitizing, 1);
    world.clean_up().await;
}

/// An SQS event whose message bodies are `bodies`, each delivered `receive_count` times.
fn sqs_event(bodies: &[String], receive_count: u32) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            serde_json::json!({
                "messageId": format!("m{i}"),
                "eventSource": "aws:sqs",
                "attributes": { "ApproximateReceiveCount": receive_count.to_string() },
                "body": body,
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// The EventBridge "Object Created" event S3 sends for `key` in the world's quarantine bucket.
fn object_created(world: &World, key: &str, size: usize) -> String {
    serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-23T08:14:05Z", "region": "us-east-1",
        "resources": [], "detail": { "version": "0", "bucket": { "name": world.quarantine },
            "object": { "key": key, "size": size }, "reason": "PutObject" }
    })
    .to_string()
}

async fn batch_failures(deps: &Deps, event: Value) -> Vec<String> {
    match handle(LambdaEvent::new(event, Context::default()), deps)
        .await
        .unwrap()
    {
        Response::Batch(batch) => batch
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect(),
        Response::Outcomes(o) => panic!("an SQS event answered with outcomes: {o:?}"),
    }
}

#[tokio::test]
async fn queued_eventbridge_and_s3_events_are_sanitized_and_a_bad_message_fails_alone() {
    let world = World::new().await;
    let deps = deps(&world, world.store_as("sluice_sanitizer").await);
    let body = example("orders/orders-messy.csv");
    let (a, b) = (
        "incoming/orders/2026/11/23/from eventbridge.csv",
        "incoming/orders/2026/11/23/from-s3.csv",
    );
    world.put(a, body.clone()).await;
    world.put(b, body.clone()).await;
    let bodies = [
        object_created(&world, a, body.len()),
        world.created_event(b, body.len()).to_string(),
        "not json".to_string(),
    ];

    assert_eq!(batch_failures(&deps, sqs_event(&bodies, 1)).await, ["m2"]);

    let messages = world.drain_queue().await;
    assert_eq!(messages.len(), 2, "one \"file sanitized\" message per file");
    world.clean_up().await;
}

#[tokio::test]
async fn a_queued_event_failing_on_its_last_delivery_fails_its_file() {
    let world = World::new().await;
    let mut deps = deps(&world, world.store_as("sluice_sanitizer").await);
    // The clean bucket is not there: writing the clean file fails after the file is claimed.
    deps.clean_bucket = unique("sluice-missing");
    let key = "incoming/orders/2026/11/23/doomed.csv";
    let body = example("orders/orders-messy.csv");
    world.put(key, body.clone()).await;
    let bodies = [object_created(&world, key, body.len())];

    assert_eq!(batch_failures(&deps, sqs_event(&bodies, 1)).await, ["m0"]);
    let id = file_id(&world.quarantine, key, &outcome_etag(&world, key).await);
    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Sanitizing,
        "retried, not failed yet"
    );
    assert_eq!(batch_failures(&deps, sqs_event(&bodies, 3)).await, ["m0"]);

    let row = deps.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("sanitizer"));
    assert!(row.error.unwrap().contains("delivery 3 of 3"));
    world.clean_up().await;
}

/// A versioned config bucket of its own, with `text` as `pipelines.toml`: its URI and the
/// version id S3 gave the object.
async fn config_in_s3(world: &World, bucket: &str, text: &str) -> (String, String) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let s3 = &world.clients.s3;
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let put = s3
        .put_object()
        .bucket(bucket)
        .key("pipelines.toml")
        .body(text.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().expect("a versioned bucket").to_string();
    (format!("s3://{bucket}/pipelines.toml"), version)
}

async fn remove_config_bucket(world: &World, bucket: &str) {
    let s3 = &world.clients.s3;
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    for v in versions.versions() {
        let _ = s3
            .delete_object()
            .bucket(bucket)
            .key(v.key().unwrap_or_default())
            .set_version_id(v.version_id().map(str::to_string))
            .send()
            .await;
    }
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}

#[tokio::test]
async fn a_file_records_the_s3_version_of_the_config_it_was_sanitized_with() {
    let world = World::new().await;
    let bucket = unique("sluice-config");
    let objects = ObjectStore::new(world.clients.s3.clone());
    let (uri, first) = config_in_s3(&world, &bucket, CONFIG).await;
    let config = sluice_lambda::setup::load_pipeline_config(&uri, &objects)
        .await
        .unwrap();
    assert_eq!(config.version(), format!("{uri}#versionId={first}"));
    let deps = Deps {
        config,
        ..deps(&world, world.store_as("sluice_sanitizer").await)
    };
    let key = "incoming/orders/2026/12/07/orders.csv";
    let body = b"order_id,sku\r\nA-1,X\r\n".to_vec();
    world.put(key, body.clone()).await;
    let outcomes = run(&deps, world.created_event(key, body.len()))
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, "accepted");
    let id = outcomes[0].file_id.unwrap();
    let row = world.store().await.file(id).await.unwrap().unwrap();
    assert_eq!(
        row.config_version.as_deref(),
        Some(format!("{uri}#versionId={first}").as_str())
    );
    let digest = &deps.config.dataset("orders").unwrap().digest;
    assert_eq!(row.config_digest.as_ref(), Some(digest));

    // The operator publishes a new version: a container that starts now works with it.
    let changed = CONFIG.replace(r#"["order_id", "sku"]"#, r#"["order_id"]"#);
    let (_, second) = config_in_s3(&world, &bucket, &changed).await;
    assert_ne!(second, first);
    let config = sluice_lambda::setup::load_pipeline_config(&uri, &objects)
        .await
        .unwrap();
    assert_eq!(config.version(), format!("{uri}#versionId={second}"));
    assert_ne!(&config.dataset("orders").unwrap().digest, digest);
    remove_config_bucket(&world, &bucket).await;
    world.clean_up().await;
}
