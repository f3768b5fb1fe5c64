//! The forwarder Lambda's handler, end to end: files in PostgreSQL, "record batch" messages in
//! an SQS event, a real HTTP API on loopback that answers as each test scripts it, and then
//! what the API received, the `api_call` rows, the batch item failures and the file status.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use sluice_aws::ObjectStore;
use sluice_core::delivery::Reach;
use sluice_core::message::batch_id;
use sluice_core::transform::batch::{claim_check_message, inline_message, Batch};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{ApiCallRow, Store, TransformCounts};
use sluice_e2e::api::{MockApi, Reply};
use sluice_e2e::{unique, World};
use sluice_forwarder::{handle, Deps, Targets};
use sluice_http::HttpPoster;
use uuid::Uuid;

/// A config whose `orders` dataset delivers to `endpoint`, with `extra` lines added to its
/// `[datasets.orders.delivery]` table.
fn config(endpoint: &str, extra: &str) -> String {
    format!(
        r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "{endpoint}"
allow_private_hosts = ["127.0.0.1"]
backoff_base_ms = 20
backoff_max_ms = 200
{extra}
"#
    )
}

struct Setup {
    world: World,
    deps: Deps,
    /// The schema owner's store: what the stages before the forwarder did (the forwarder's
    /// own role registers no file and finishes no transform).
    owner: Store,
}

async fn setup(config_text: &str) -> Setup {
    let world = World::new().await;
    let config = PipelineConfig::parse(config_text, "test").unwrap();
    let targets = Targets::resolve(
        &config,
        Some(std::sync::Arc::new(sluice_aws::secrets::SecretsManager(
            world.clients.secrets.clone(),
        ))),
    )
    .await;
    let http = HttpPoster::new(Reach::of(&config)).unwrap();
    let deps = Deps {
        config,
        targets,
        store: world.store_as("sluice_forwarder").await,
        objects: ObjectStore::new(world.clients.s3.clone()),
        http,
        concurrency: 4,
        max_receive_count: 3,
        visibility: None,
        clean_bucket: world.clean.clone(),
    };
    let owner = world.store().await;
    Setup { world, deps, owner }
}

/// Three orders per batch: `A-<seq>-1` .. `A-<seq>-3`.
fn records(seq: u32) -> Vec<Value> {
    (1..=3)
        .map(|i| json!({"orderId": format!("A-{seq}-{i}"), "line": {"quantity": i, "unitPriceEur": 19.90}}))
        .collect()
}

fn batch(seq: u32) -> Batch {
    let records = serde_json::to_vec(&records(seq)).unwrap();
    Batch { records, count: 3 }
}

impl Setup {
    /// A file the transformer has finished: `total` batches recorded as sent (or, with
    /// `transformed: false`, still `transforming`).
    async fn file(&self, name: &str, total: i32, transformed: bool) -> Uuid {
        let store: &Store = &self.owner;
        let id = self.world.sanitized_file(store, name).await;
        store
            .advance(id, Stage::Transformer, FileStatus::Transforming, json!({}))
            .await
            .unwrap();
        if transformed {
            self.transformed(id, total).await;
        }
        id
    }

    async fn transformed(&self, id: Uuid, total: i32) {
        let counts = TransformCounts {
            records: total as i64 * 3,
            batches: total,
            rows_unmapped: 0,
        };
        self.owner
            .finish_transform(id, FileStatus::Transformed, counts, None, json!({}))
            .await
            .unwrap();
        self.deps.store.settle_delivery(id).await.unwrap();
    }

    /// Runs the handler on these message bodies (delivered `receive_count` times so far).
    async fn run(&self, bodies: &[String], receive_count: u32) -> Vec<String> {
        self.run_with(bodies, receive_count, Context::default())
            .await
    }

    async fn run_with(&self, bodies: &[String], receive_count: u32, ctx: Context) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| message(&format!("m{i}"), body, receive_count))
            .collect();
        failures(handle(LambdaEvent::new(event, ctx), &self.deps).await)
    }

    async fn row(&self, id: Uuid) -> sluice_db::FileRow {
        self.deps.store.file(id).await.unwrap().unwrap()
    }

    async fn calls(&self, id: Uuid) -> Vec<ApiCallRow> {
        self.deps.store.calls(id).await.unwrap()
    }
}

fn message(id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_string());
    m.body = Some(body.to_string());
    m.attributes = HashMap::from([(
        "ApproximateReceiveCount".to_string(),
        receive_count.to_string(),
    )]);
    m
}

fn failures(
    response: Result<aws_lambda_events::sqs::SqsBatchResponse, lambda_runtime::Error>,
) -> Vec<String> {
    let mut ids: Vec<String> = response
        .unwrap()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    ids.sort();
    ids
}

fn messages(id: Uuid, total: u32) -> Vec<String> {
    (1..=total)
        .map(|seq| {
            String::from_utf8(inline_message(id, "orders", seq, total, &batch(seq))).unwrap()
        })
        .collect()
}

/// Asserts the API accepted every record of batches `1..=total` exactly once.
fn assert_each_record_accepted_once(api: &MockApi, total: u32) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in api.accepted_records() {
        *seen
            .entry(record["orderId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (1..=total)
        .flat_map(records)
        .map(|r| (r["orderId"].as_str().unwrap().to_string(), 1))
        .collect();
    assert_eq!(seen, expected);
}

fn statuses(calls: &[ApiCallRow]) -> Vec<(i32, Option<i32>)> {
    calls.iter().map(|c| (c.attempt, c.http_status)).collect()
}

#[tokio::test]
async fn every_batch_is_posted_once_with_its_idempotency_key_and_headers() {
    let api = MockApi::start().await;
    std::env::set_var("SLUICE_TEST_ORDERS_TOKEN", "tok-123");
    let world_secrets = World::new().await;
    let secret_name = unique("sluice-orders-api");
    world_secrets
        .clients
        .secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"api_key":"key-456"}"#)
        .send()
        .await
        .unwrap();
    let s = setup(&config(
        &api.url(),
        &format!(
            r#"[datasets.orders.delivery.headers]
"X-Source" = "sluice"
Authorization = {{ env = "SLUICE_TEST_ORDERS_TOKEN", prefix = "Bearer " }}
"X-Api-Key" = {{ secret = "{secret_name}", key = "api_key" }}"#
        ),
    ))
    .await;
    let id = s.file("three-batches.csv", 3, true).await;

    assert!(s.run(&messages(id, 3), 1).await.is_empty());

    let received = api.received();
    assert_eq!(received.len(), 3);
    let mut keys: Vec<&str> = received
        .iter()
        .map(|r| r.idempotency_key.as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, [batch_id(id, 1), batch_id(id, 2), batch_id(id, 3)]);
    for r in &received {
        let h = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(h("content-type"), "application/json");
        assert_eq!(h("authorization"), "Bearer tok-123");
        assert_eq!(h("x-api-key"), "key-456");
        assert_eq!(h("x-source"), "sluice");
        assert_eq!(h("x-sluice-file-id"), id.to_string());
        assert_eq!(h("x-sluice-dataset"), "orders");
        assert!(h("user-agent").starts_with("sluice/"));
        let seq: u32 = r
            .idempotency_key
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(h("x-sluice-batch"), format!("{seq}/3"));
        // The body is the records exactly as the transformer wrote them (19.90 keeps its 0).
        assert_eq!(r.body.as_ref(), batch(seq).records.as_slice());
    }
    assert_each_record_accepted_once(&api, 3);

    let calls = s.calls(id).await;
    assert_eq!(calls.len(), 3);
    for c in &calls {
        assert_eq!(
            (c.attempt, c.http_status, c.error.as_deref()),
            (1, Some(200), None)
        );
        assert_eq!(c.response_excerpt.as_deref(), Some(r#"{"ok":true}"#));
        assert!(c.latency_ms.is_some());
        assert_eq!(c.endpoint.as_deref(), Some(api.url().as_str()));
    }
    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(3), Some(3))
    );
    assert_eq!(row.error, None);
    let events = s.deps.store.events(id).await.unwrap();
    let last: Vec<(&str, FileStatus)> = events[events.len() - 2..]
        .iter()
        .map(|e| (e.stage.as_str(), e.status))
        .collect();
    assert_eq!(
        last,
        [
            ("forwarder", FileStatus::Delivering),
            ("forwarder", FileStatus::Delivered)
        ]
    );
    world_secrets.clean_up().await;
    s.world.clean_up().await;
}

#[tokio::test]
async fn server_errors_are_retried_in_the_invocation_and_every_attempt_is_on_record() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("flaky.csv", 1, true).await;
    api.script([
        Reply::StatusBody(500, "{\"error\":\"database\nunavailable\"}"),
        Reply::Status(503),
    ]);

    assert!(s.run(&messages(id, 1), 1).await.is_empty());

    let calls = s.calls(id).await;
    assert_eq!(
        statuses(&calls),
        [(1, Some(500)), (2, Some(503)), (3, Some(200))]
    );
    assert_eq!(
        calls[0].response_excerpt.as_deref(),
        Some("{\"error\":\"database unavailable\"}"),
        "the excerpt is one line"
    );
    assert!(calls[0].error.as_deref().unwrap().starts_with("HTTP 500"));
    let keys: Vec<String> = api
        .received()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        vec![batch_id(id, 1); 3],
        "every retry carries the same key"
    );
    assert_each_record_accepted_once(&api, 1);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_asks() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("throttled.csv", 1, true).await;
    api.script([Reply::RetryAfter(429, "1")]);

    let started = Instant::now();
    assert!(s.run(&messages(id, 1), 1).await.is_empty());
    let waited = started.elapsed();

    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert_eq!(
        statuses(&s.calls(id).await),
        [(1, Some(429)), (2, Some(200))]
    );
    assert_each_record_accepted_once(&api, 1);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_request_that_hangs_past_the_timeout_is_retried_with_the_same_key() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "timeout_ms = 300")).await;
    let id = s.file("hang.csv", 1, true).await;
    api.script([Reply::Hang]);

    let started = Instant::now();
    assert!(s.run(&messages(id, 1), 1).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));

    let calls = s.calls(id).await;
    assert_eq!(statuses(&calls), [(1, None), (2, Some(200))]);
    assert_eq!(calls[0].error.as_deref(), Some("no answer within 300 ms"));
    assert!(calls[0].latency_ms.unwrap() >= 300);
    let received = api.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].answered, None);
    assert_eq!(received[0].idempotency_key, received[1].idempotency_key);
    assert_each_record_accepted_once(&api, 1);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    s.world.clean_up().await;
}

#[tokio::test]
async fn refused_connections_fail_the_batch_until_the_api_is_back() {
    // A port with nothing listening on it: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/ingest");
    let s = setup(&config(&url, "max_attempts = 2")).await;
    let id = s.file("refused.csv", 2, true).await;
    let bodies = messages(id, 2);

    assert_eq!(s.run(&bodies[..1], 1).await, ["m0"]);

    let calls = s.calls(id).await;
    assert_eq!(statuses(&calls), [(1, None), (2, None)]);
    for c in &calls {
        let error = c.error.as_deref().unwrap();
        assert!(error.starts_with("connection failed"), "{error}");
    }
    let row = s.row(id).await;
    assert_eq!(
        row.status,
        FileStatus::Delivering,
        "not failed while SQS still retries"
    );
    let error = row.error.unwrap();
    assert!(
        error.contains("batch 1/2") && error.contains("connection failed"),
        "{error}"
    );

    // The API comes back; SQS delivers the message again, and the other one.
    let api = MockApi::start_on(addr).await;
    assert!(s.run(&bodies, 2).await.is_empty());
    let calls = s.calls(id).await;
    let first: Vec<(i32, Option<i32>)> = calls
        .iter()
        .filter(|c| c.batch_id == batch_id(id, 1))
        .map(|c| (c.attempt, c.http_status))
        .collect();
    assert_eq!(
        first,
        [(1, None), (2, None), (3, Some(200))],
        "attempts count on"
    );
    assert_each_record_accepted_once(&api, 2);
    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(row.error, None);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_fails_the_file_on_the_last_delivery() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("refused-by-api.csv", 2, true).await;
    let bodies = messages(id, 2);
    let bad = batch_id(id, 2);
    api.script_for(&bad, [Reply::StatusBody(422, r#"{"error":"unknown sku"}"#)]);

    assert_eq!(
        s.run(&bodies, 1).await,
        ["m1"],
        "only the refused batch fails"
    );
    let calls = s.calls(id).await;
    let refused: Vec<&ApiCallRow> = calls.iter().filter(|c| c.batch_id == bad).collect();
    assert_eq!(refused.len(), 1, "a 4xx is not retried in the invocation");
    assert_eq!(refused[0].http_status, Some(422));
    assert_eq!(
        refused[0].response_excerpt.as_deref(),
        Some(r#"{"error":"unknown sku"}"#)
    );
    assert!(refused[0].error.as_deref().unwrap().contains("not retried"));
    assert_eq!(s.row(id).await.status, FileStatus::Delivering);

    // The last delivery before the dead-letter queue (max receive count 3).
    api.script_for(&bad, [Reply::Status(422)]);
    assert_eq!(s.run(&bodies[1..], 3).await, ["m0"]);
    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("forwarder"));
    let error = row.error.unwrap();
    assert!(
        error.contains("batch 2/2") && error.contains("422") && error.contains("dead-letter"),
        "{error}"
    );
    assert_eq!(row.batches_delivered, Some(1));
    assert_each_record_accepted_once(&api, 1);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_delivered_batch_is_not_sent_again() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("twice.csv", 2, true).await;
    let bodies = messages(id, 2);
    assert!(s.run(&bodies, 1).await.is_empty());
    // SQS delivers both again (at least once), and one of them twice in the same event: the
    // two copies race for the batch's claim, and a copy that loses comes back later.
    let again = [bodies[0].clone(), bodies[1].clone(), bodies[1].clone()];
    let lost = s.run(&again, 2).await;
    assert!(
        lost.len() <= 1 && !lost.contains(&"m0".to_string()),
        "{lost:?}"
    );
    assert!(s.run(&[bodies[1].clone()], 3).await.is_empty());
    assert_eq!(api.received().len(), 2);
    assert_eq!(s.calls(id).await.len(), 2);
    assert_each_record_accepted_once(&api, 2);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_claim_checked_batch_is_read_from_s3_and_sent_in_an_envelope() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "body = \"envelope\"")).await;
    let id = s.file("big.csv", 1, true).await;
    let key = format!("batches/{id}/000001.json");
    s.world.put_clean(&key, batch(1).records).await;
    let body = claim_check_message(id, "orders", 1, 1, 3, &s.world.clean, &key);

    assert!(s
        .run(&[String::from_utf8(body).unwrap()], 1)
        .await
        .is_empty());

    let received = api.received();
    let envelope: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(envelope["batch_id"], batch_id(id, 1));
    assert_eq!(envelope["file_id"], id.to_string());
    assert_eq!(
        (envelope["seq"].as_u64(), envelope["total"].as_u64()),
        (Some(1), Some(1))
    );
    assert_each_record_accepted_once(&api, 1);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    s.world.clean_up().await;
}

#[tokio::test]
async fn retries_stop_when_the_invocations_time_runs_out() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("slow-down.csv", 1, true).await;
    api.script([Reply::RetryAfter(429, "30")]);
    let mut ctx = Context::default();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ctx.deadline = now_ms + 3_000;

    let started = Instant::now();
    assert_eq!(s.run_with(&messages(id, 1), 1, ctx).await, ["m0"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let calls = s.calls(id).await;
    assert_eq!(statuses(&calls), [(1, Some(429))]);
    let error = s.row(id).await.error.unwrap();
    assert!(
        error.contains("would not fit in this invocation"),
        "{error}"
    );
    s.world.clean_up().await;
}

#[tokio::test]
async fn batches_that_overtake_the_transformers_status_write_are_delivered_and_settled_later() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("race.csv", 2, false).await;

    assert!(s.run(&messages(id, 2), 1).await.is_empty());
    let row = s.row(id).await;
    assert_eq!(
        row.status,
        FileStatus::Transforming,
        "the transformer's status is left alone"
    );
    assert_eq!(row.batches_delivered, Some(2));

    s.transformed(id, 2).await;
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    assert_each_record_accepted_once(&api, 2);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_dataset_without_an_endpoint_or_a_bad_message_fails_alone() {
    let api = MockApi::start().await;
    let text = format!(
        "{}\n[datasets.audit]\nprefix = \"incoming/audit/\"\n",
        config(&api.url(), "")
    );
    let s = setup(&text).await;
    let id = s.file("mixed.csv", 1, true).await;
    let audit = String::from_utf8(inline_message(id, "audit", 2, 2, &batch(9))).unwrap();
    let bodies = [
        audit,
        messages(id, 1).remove(0),
        "{\"v\":1,\"not\":\"a batch\"}".to_string(),
    ];
    assert_eq!(s.run(&bodies, 1).await, ["m0", "m2"]);
    assert_each_record_accepted_once(&api, 1);
    let error = s.row(id).await.error;
    // The file's own batch went through; the audit batch's reason is in the log and on the row.
    assert!(
        error
            .as_deref()
            .is_none_or(|e| e.contains("no delivery.endpoint")),
        "{error:?}"
    );
    s.world.clean_up().await;
}

#[tokio::test]
async fn the_sample_event_in_events_is_delivered() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("sample.csv", 1, true).await;
    let event: SqsEvent =
        serde_json::from_str(include_str!("../events/forwarder-sqs.json")).unwrap();
    // The sample's file is not in this test's store: deliver its first batch as this file's.
    let sample = event.records[0].body.clone().unwrap();
    let sample_id = "08f71419-5ae1-5692-b2a7-16e553884bfd";
    let body = sample
        .replace("\"total\":2", "\"total\":1")
        .replace(sample_id, &id.to_string());
    let mut message = event.records[0].clone();
    message.body = Some(body);
    let mut ours = SqsEvent::default();
    ours.records = vec![message];
    assert!(failures(handle(LambdaEvent::new(ours, Context::default()), &s.deps).await).is_empty());
    let received = api.received();
    let records: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(records[0]["orderId"], "A-1001");
    assert_eq!(
        std::str::from_utf8(&received[0].body)
            .unwrap()
            .matches("19.90")
            .count(),
        1
    );
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    // The second sample message is a claim check.
    let claim = event.records[1].body.as_deref().unwrap();
    assert!(claim.contains("\"s3\":{\"bucket\""));
    s.world.clean_up().await;
}

/// Receives what is on `queue_url` now, as the Lambda event source would hand it over.
async fn receive(world: &World, queue_url: &str) -> Vec<SqsMessage> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let received = world
        .clients
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    received
        .messages()
        .iter()
        .map(|m| {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id().map(str::to_string);
            message.receipt_handle = m.receipt_handle().map(str::to_string);
            message.body = m.body().map(str::to_string);
            message.attributes = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            message
        })
        .collect()
}

/// Messages on the queue (visible or not).
async fn waiting(world: &World, queue_url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = world
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attributes.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

/// One poll of the event source: the handler runs on what the queue gives, and the messages
/// it did not report as failures are deleted. Returns how many messages were handled.
async fn poll_once(s: &Setup, queue_url: &str) -> usize {
    let messages = receive(&s.world, queue_url).await;
    if messages.is_empty() {
        return 0;
    }
    let mut event = SqsEvent::default();
    event.records = messages.clone();
    let failed = failures(handle(LambdaEvent::new(event, Context::default()), &s.deps).await);
    for m in &messages {
        if !failed.contains(m.message_id.as_ref().unwrap()) {
            s.world
                .clients
                .sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.as_deref().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    messages.len()
}

#[tokio::test]
async fn a_batch_that_keeps_failing_ends_in_the_dead_letter_queue_and_fails_its_file() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "max_attempts = 2")).await;
    let sqs = &s.world.clients.sqs;
    let dlq = s.world.new_queue("sluice-forward-dlq").await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    // maxReceiveCount 3, as the handler's `max_receive_count`; a short visibility timeout
    // so SQS hands a failed message back within a second.
    let queue = sqs
        .create_queue()
        .queue_name(unique("sluice-forward"))
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let id = s.file("poison.csv", 2, true).await;
    let bodies = messages(id, 2);
    for body in &bodies {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    api.answer_by_default(Reply::Status(503));
    api.script_for(&batch_id(id, 1), [Reply::Status(200)]);

    // Poll as the event source would until SQS has moved the message on (each empty poll
    // waits a second, as long as the visibility timeout).
    let mut handled = 0;
    for _ in 0..15 {
        handled += poll_once(&s, &queue).await;
        if waiting(&s.world, &dlq).await > 0 {
            break;
        }
    }
    assert_eq!(handled, 4, "batch 1 once, batch 2 three times");

    let dead = s.world.drain(&dlq).await;
    assert_eq!(
        dead.len(),
        1,
        "the failing batch is in the dead-letter queue"
    );
    assert_eq!(dead[0]["batch_id"], batch_id(id, 2));
    let calls = s.calls(id).await;
    let bad: Vec<(i32, Option<i32>)> = calls
        .iter()
        .filter(|c| c.batch_id == batch_id(id, 2))
        .map(|c| (c.attempt, c.http_status))
        .collect();
    assert_eq!(
        bad,
        (1..=6).map(|a| (a, Some(503))).collect::<Vec<_>>(),
        "2 attempts on each of 3 deliveries"
    );
    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Failed);
    let error = row.error.unwrap();
    assert!(
        error.contains("batch 2/2") && error.contains("dead-letter"),
        "{error}"
    );
    assert_eq!(row.batches_delivered, Some(1));
    assert_each_record_accepted_once(&api, 1);
    for url in [&queue, &dlq] {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
    s.world.clean_up().await;
}

#[tokio::test]
async fn from_clean_file_to_api_every_record_arrives_exactly_once_despite_faults_and_duplicates() {
    use sluice_core::message::{FileSanitized, V1};
    let api = MockApi::start().await;
    let mapping = r#"
[datasets.orders.mapping]
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "line.quantity"
column = "qty"
type = "integer"
"#;
    let text = format!(
        "{}{mapping}",
        config(&api.url(), "batch_size = 7\ntimeout_ms = 300")
    );
    let s = setup(&text).await;
    let forward = s.world.new_queue("sluice-forward").await;
    let transformer = sluice_transformer::Deps {
        config: s.deps.config.clone(),
        store: s.world.store_as("sluice_transformer").await,
        objects: ObjectStore::new(s.world.clients.s3.clone()),
        queue: sluice_aws::Queue::new(s.world.clients.sqs.clone(), forward.clone()),
        clean_bucket: s.world.clean.clone(),
        max_receive_count: 3,
        visibility: None,
    };
    // A sanitized file of 100 orders: its clean object, and its row at `sanitized`.
    let mut csv = String::from("order_id,qty\r\n");
    for i in 1..=100 {
        csv.push_str(&format!("O-{i:03},{i}\r\n"));
    }
    let id = s.world.sanitized_file(&s.owner, "chain.csv").await;
    let clean_key = sluice_core::layout::clean_key("orders", id);
    s.world.put_clean(&clean_key, csv.into_bytes()).await;
    let sanitized = FileSanitized {
        v: V1,
        file_id: id,
        dataset: "orders".into(),
        clean_bucket: s.world.clean.clone(),
        clean_key,
        rows: 100,
        columns: vec!["order_id".into(), "qty".into()],
        date_range: None,
        resend: false,
        full: false,
    };
    let mut event = SqsEvent::default();
    event.records = vec![message(
        "t0",
        &serde_json::to_string(&sanitized).unwrap(),
        1,
    )];
    let response =
        sluice_transformer::handle(LambdaEvent::new(event, Context::default()), &transformer)
            .await
            .unwrap();
    assert!(response.batch_item_failures.is_empty());

    // 15 batches (7 records each, the last 2). The API fails now and then.
    api.script([
        Reply::Status(500),
        Reply::Hang,
        Reply::RetryAfter(503, "0"),
        Reply::Status(502),
    ]);
    let mut polls = 0;
    while poll_once(&s, &forward).await > 0 || polls < 2 {
        polls += 1;
        assert!(polls < 20, "the queue did not empty");
    }
    // SQS delivers every batch again, long after: nothing is sent twice.
    let bodies: Vec<String> = (1..=15)
        .map(|seq| {
            String::from_utf8(inline_message(
                id,
                "orders",
                seq,
                15,
                &Batch {
                    records: b"[]".to_vec(),
                    count: 0,
                },
            ))
            .unwrap()
        })
        .collect();
    let before = api.received().len();
    assert!(s.run(&bodies, 2).await.is_empty());
    assert_eq!(api.received().len(), before);

    let mut ids: Vec<String> = api
        .accepted_records()
        .iter()
        .map(|r| r["orderId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let expected: Vec<String> = (1..=100).map(|i| format!("O-{i:03}")).collect();
    assert_eq!(ids, expected, "every record exactly once");
    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(15), Some(15))
    );
    assert_eq!(s.calls(id).await.len(), 15 + 4, "one row per attempt");
    let _ = s
        .world
        .clients
        .sqs
        .delete_queue()
        .queue_url(&forward)
        .send()
        .await;
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_refused_api_key_is_read_again_once_and_the_rotated_one_delivers() {
    let api = MockApi::start().await;
    let world_secrets = World::new().await;
    let secret_name = unique("sluice-rotating-key");
    let secrets = &world_secrets.clients.secrets;
    secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(r#"{"api_key":"key-old"}"#)
        .send()
        .await
        .unwrap();
    let s = setup(&config(
        &api.url(),
        &format!(
            r#"[datasets.orders.delivery.headers]
"X-Api-Key" = {{ secret = "{secret_name}", key = "api_key" }}"#
        ),
    ))
    .await;
    // The key rotates after the container started: the API now refuses the old one.
    secrets
        .put_secret_value()
        .secret_id(&secret_name)
        .secret_string(r#"{"api_key":"key-new"}"#)
        .send()
        .await
        .unwrap();
    api.script([Reply::Status(401), Reply::Status(200)]);
    let id = s.file("rotated.csv", 1, true).await;

    assert!(s.run(&messages(id, 1), 1).await.is_empty());

    let keys: Vec<String> = api
        .received()
        .iter()
        .map(|r| r.headers["x-api-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["key-old", "key-new"]);
    assert_eq!(
        statuses(&s.calls(id).await),
        [(1, Some(401)), (2, Some(200))]
    );
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    world_secrets.clean_up().await;
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_dataset_whose_secret_cannot_be_read_fails_only_its_own_batches() {
    let api = MockApi::start().await;
    let missing = unique("sluice-no-such-secret");
    let text = format!(
        r#"{}
[datasets.orders.delivery.headers]
"X-Api-Key" = {{ secret = "{missing}", key = "api_key" }}

[datasets.returns]
prefix = "incoming/returns/"
[datasets.returns.delivery]
endpoint = "{}"
allow_private_hosts = ["127.0.0.1"]
"#,
        config(&api.url(), ""),
        api.url()
    );
    let s = setup(&text).await;
    let orders = s.file("orders.csv", 1, true).await;
    let failed = s.run(&messages(orders, 1), 1).await;
    assert_eq!(failed.len(), 1);
    let row = s.row(orders).await;
    let error = row.error.unwrap_or_default();
    assert!(
        error.contains("x-api-key") && error.contains(&missing),
        "{error}"
    );
    assert!(api.received().is_empty());

    // Another dataset of the same container delivers.
    let returns = s.file("returns.csv", 1, true).await;
    let mut body: Value = serde_json::from_str(&messages(returns, 1)[0]).unwrap();
    body["dataset"] = json!("returns");
    assert!(s.run(&[body.to_string()], 1).await.is_empty());
    assert_eq!(api.received().len(), 1);
    s.world.clean_up().await;
}

#[tokio::test]
async fn a_claim_check_outside_the_files_own_key_is_refused_and_nothing_is_posted() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("forged.csv", 1, true).await;
    s.world
        .put("incoming/orders/private.csv", b"[{\"a\":1}]".to_vec())
        .await;
    let forged = [
        claim_check_message(
            id,
            "orders",
            1,
            1,
            1,
            &s.world.quarantine,
            "incoming/orders/private.csv",
        ),
        claim_check_message(
            id,
            "orders",
            1,
            1,
            1,
            &s.world.clean,
            &format!("batches/{}/000001.json", Uuid::from_u128(9)),
        ),
    ];
    for body in forged {
        let failed = s.run(&[String::from_utf8(body).unwrap()], 1).await;
        assert_eq!(failed.len(), 1);
    }
    assert!(api.received().is_empty());
    assert!(s.calls(id).await.is_empty());
    s.world.clean_up().await;
}

#[tokio::test]
async fn eight_copies_of_one_batch_at_the_same_moment_post_it_once() {
    let api = MockApi::start().await;
    // A slow API, so the copies overlap the POST.
    api.answer_by_default(Reply::Slow(Duration::from_millis(300), 200));
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("eight.csv", 1, true).await;
    let body = messages(id, 1).remove(0);
    let mut all = Vec::new();
    for _ in 0..8 {
        let config = s.deps.config.clone();
        let http = HttpPoster::new(Reach::of(&config)).unwrap();
        all.push(Deps {
            targets: Targets::resolve(&config, None).await,
            config,
            store: s.world.store_as("sluice_forwarder").await,
            objects: ObjectStore::new(s.world.clients.s3.clone()),
            http,
            concurrency: 4,
            max_receive_count: 3,
            visibility: None,
            clean_bucket: s.world.clean.clone(),
        });
    }
    let runs = all.iter().map(|deps| {
        let mut event = SqsEvent::default();
        event.records = vec![message("m0", &body, 1)];
        handle(LambdaEvent::new(event, Context::default()), deps)
    });
    let responses = futures_util::future::join_all(runs).await;
    let lost = responses
        .into_iter()
        .map(|r| r.unwrap().batch_item_failures.len())
        .sum::<usize>();

    assert_eq!(api.received().len(), 1, "one POST");
    assert_eq!(s.calls(id).await.len(), 1, "one api_call row");
    assert!(lost <= 7);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    // The copies that lost come back and find the batch delivered.
    assert!(s.run(&[body], 2).await.is_empty());
    assert_eq!(api.received().len(), 1);
    s.world.clean_up().await;
}

#[tokio::test]
async fn copies_of_one_batch_in_one_event_share_a_connection_and_post_it_once() {
    let api = MockApi::start().await;
    // A slow API, so the copies, delivered side by side on the container's one database
    // connection, overlap the POST.
    api.answer_by_default(Reply::Slow(Duration::from_millis(300), 200));
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("one-event.csv", 1, true).await;
    let body = messages(id, 1).remove(0);
    let mut event = SqsEvent::default();
    event.records = (0..4)
        .map(|n| message(&format!("m{n}"), &body, 1))
        .collect();
    let response = handle(LambdaEvent::new(event, Context::default()), &s.deps)
        .await
        .unwrap();

    assert_eq!(api.received().len(), 1, "one POST");
    assert_eq!(s.calls(id).await.len(), 1, "one api_call row");
    assert!(response.batch_item_failures.len() <= 3);
    assert_eq!(s.row(id).await.status, FileStatus::Delivered);
    // The copies that lost come back and find the batch delivered.
    assert!(s.run(&[body], 2).await.is_empty());
    assert_eq!(api.received().len(), 1);
    s.world.clean_up().await;
}

#[tokio::test]
async fn an_error_before_delivery_on_the_last_delivery_fails_the_file() {
    let api = MockApi::start().await;
    let s = setup(&config(&api.url(), "")).await;
    let id = s.file("lost-claim-check.csv", 1, true).await;
    // The claim check the message points at is not there (S3 fails before any POST).
    let key = sluice_core::layout::claim_check_key(id, 1);
    let body = String::from_utf8(claim_check_message(
        id,
        "orders",
        1,
        1,
        3,
        &s.world.clean,
        &key,
    ))
    .unwrap();

    assert_eq!(s.run(std::slice::from_ref(&body), 1).await.len(), 1);
    assert!(
        !s.row(id).await.status.is_final(),
        "retried, not failed yet"
    );
    assert_eq!(s.run(&[body], 3).await.len(), 1);

    let row = s.row(id).await;
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("forwarder"));
    assert!(row.error.unwrap().contains("dead-letter"));
    assert!(api.received().is_empty());
    s.world.clean_up().await;
}
