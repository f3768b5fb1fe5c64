//! The transformer Lambda's handler, end to end: a clean file in (moto) S3 and its row in
//! PostgreSQL, the handler run with an SQS event carrying "file sanitized", then the record
//! batches on the forward queue, the claim checks, the report and the status checked.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use sluice_aws::{ObjectStore, Queue};
use sluice_core::message::{DateRange, FileSanitized, V1};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_e2e::World;
use sluice_transformer::{handle, Deps};
use uuid::Uuid;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
batch_size = 2
[datasets.orders.mapping]
date_field = "orderedAt"
max_error_share = 0.5
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "orderedAt"
column = "order_date"
type = "date"
[[datasets.orders.mapping.fields]]
name = "line.quantity"
column = "qty"
type = "integer"
[[datasets.orders.mapping.fields]]
name = "note"
column = "note"
"#;

struct Setup {
    world: World,
    deps: Deps,
    forward: String,
    /// The schema owner's store: what the stages before the transformer did (its own role
    /// registers no file).
    owner: sluice_db::Store,
}

async fn setup() -> Setup {
    let world = World::new().await;
    let forward = world.new_queue("sluice-forward").await;
    let deps = Deps {
        config: PipelineConfig::parse(CONFIG, "test").unwrap(),
        store: world.store_as("sluice_transformer").await,
        objects: ObjectStore::new(world.clients.s3.clone()),
        queue: Queue::new(world.clients.sqs.clone(), forward.clone()),
        clean_bucket: world.clean.clone(),
        max_receive_count: 3,
        visibility: None,
    };
    let owner = world.store().await;
    Setup {
        world,
        deps,
        forward,
        owner,
    }
}

impl Setup {
    /// A sanitized file: its clean CSV in the clean bucket and its row at `sanitized`.
    async fn sanitized_file(&self, name: &str, clean_csv: &str) -> FileSanitized {
        let id = self.world.sanitized_file(&self.owner, name).await;
        let clean_key = sluice_core::layout::clean_key("orders", id);
        self.world
            .put_clean(&clean_key, clean_csv.as_bytes().to_vec())
            .await;
        FileSanitized {
            v: V1,
            file_id: id,
            dataset: "orders".into(),
            clean_bucket: self.world.clean.clone(),
            clean_key,
            rows: 0,
            columns: vec![],
            date_range: None,
            resend: false,
            full: false,
        }
    }

    async fn run(&self, bodies: &[String]) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("m{i}"));
                m.body = Some(body.clone());
                m
            })
            .collect();
        let response = handle(LambdaEvent::new(event, Context::default()), &self.deps)
            .await
            .unwrap();
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    async fn batches(&self) -> Vec<Value> {
        let mut batches = self.world.drain(&self.forward).await;
        batches.sort_by_key(|b| b["seq"].as_u64());
        batches
    }

    async fn clean_up(self) {
        let _ = self
            .world
            .clients
            .sqs
            .delete_queue()
            .queue_url(&self.forward)
            .send()
            .await;
        self.world.clean_up().await;
    }
}

const CLEAN: &str = "order_id,order_date,qty,note\r\n\
                     A-1,2026-11-22,1,\r\n\
                     A-2,2026-11-23,2,\"gift, wrapped\"\r\n\
                     A-3,2026-11-23,3,\r\n\
                     A-4,2026-11-24,4,\r\n\
                     A-5,2026-11-24,5,\r\n";

fn records(batches: &[Value]) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| b["records"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_clean_file_becomes_numbered_batches_on_the_forward_queue() {
    let s = setup().await;
    let message = s.sanitized_file("a.csv", CLEAN).await;

    let failures = s.run(&[serde_json::to_string(&message).unwrap()]).await;

    assert!(failures.is_empty());
    let batches = s.batches().await;
    assert_eq!(batches.len(), 3);
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch["v"], 1);
        assert_eq!(batch["seq"], i as u64 + 1);
        assert_eq!(batch["total"], 3);
        assert_eq!(
            batch["batch_id"],
            format!("{}-{:06}", message.file_id, i + 1)
        );
    }
    let records = records(&batches);
    assert_eq!(records.len(), 5);
    assert_eq!(
        records[1],
        json!({"orderId": "A-2", "orderedAt": "2026-11-23", "line": {"quantity": 2}, "note": "gift, wrapped"})
    );
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Transformed);
    assert_eq!((row.records, row.batches_sent), (Some(5), Some(3)));
    s.clean_up().await;
}

#[tokio::test]
async fn bad_rows_are_reported_and_counted_without_failing_the_file() {
    let s = setup().await;
    let csv = "order_id,order_date,qty,note\r\nA-1,2026-11-22,1,\r\n,2026-11-22,2,\r\nA-3,2026-11-22,three,\r\nA-4,2026-11-22,4,\r\nA-5,2026-11-22,5,\r\n";
    let message = s.sanitized_file("bad.csv", csv).await;

    assert!(s
        .run(&[serde_json::to_string(&message).unwrap()])
        .await
        .is_empty());

    assert_eq!(records(&s.batches().await).len(), 3);
    let report: Value = serde_json::from_slice(
        &s.world
            .get(
                &s.world.clean,
                &format!("reports/{}/transform.json", message.file_id),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["rows_failed"], 2);
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["errors"][0]["field"], "orderId");
    assert_eq!(report["errors"][1]["field"], "line.quantity");
    assert_eq!(report["errors"][1]["value"], "three");
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Transformed);
    assert_eq!((row.records, row.rows_unmapped), (Some(3), Some(2)));
    s.clean_up().await;
}

#[tokio::test]
async fn the_message_date_range_filters_records() {
    let s = setup().await;
    let mut message = s.sanitized_file("range.csv", CLEAN).await;
    message.date_range = Some(DateRange {
        start: Some("2026-11-23".into()),
        end: Some("2026-11-23".into()),
    });

    assert!(s
        .run(&[serde_json::to_string(&message).unwrap()])
        .await
        .is_empty());

    let ids: Vec<Value> = records(&s.batches().await)
        .iter()
        .map(|r| r["orderId"].clone())
        .collect();
    assert_eq!(ids, [json!("A-2"), json!("A-3")]);
    s.clean_up().await;
}

#[tokio::test]
async fn a_batch_over_the_sqs_limit_travels_by_claim_check() {
    let s = setup().await;
    let big = "x".repeat(300 * 1024);
    let csv = format!(
        "order_id,order_date,qty,note\r\nA-1,2026-11-22,1,{big}\r\nA-2,2026-11-22,2,small\r\n"
    );
    let message = s.sanitized_file("big.csv", &csv).await;

    assert!(s
        .run(&[serde_json::to_string(&message).unwrap()])
        .await
        .is_empty());

    let batches = s.batches().await;
    assert_eq!(batches.len(), 1);
    let pointer = &batches[0]["s3"];
    assert_eq!(pointer["bucket"], s.world.clean);
    assert_eq!(
        pointer["key"],
        format!("batches/{}/000001.json", message.file_id)
    );
    assert!(batches[0].get("records").is_none());
    let stored: Vec<Value> = serde_json::from_slice(
        &s.world
            .get(&s.world.clean, pointer["key"].as_str().unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["note"].as_str().unwrap().len(), 300 * 1024);
    s.clean_up().await;
}

#[tokio::test]
async fn a_duplicate_message_sends_no_second_set_of_batches() {
    let s = setup().await;
    let message = s.sanitized_file("dup.csv", CLEAN).await;
    let body = serde_json::to_string(&message).unwrap();

    assert!(s.run(std::slice::from_ref(&body)).await.is_empty());
    assert!(s.run(&[body]).await.is_empty());

    assert_eq!(s.batches().await.len(), 3);
    s.clean_up().await;
}

#[tokio::test]
async fn a_bad_message_fails_alone_and_the_others_go_through() {
    let s = setup().await;
    let good = s.sanitized_file("good.csv", CLEAN).await;
    let mut unknown = good.clone();
    unknown.file_id = Uuid::from_u128(42);

    let failures = s
        .run(&[
            "{not json".to_string(),
            serde_json::to_string(&good).unwrap(),
            serde_json::to_string(&unknown).unwrap(),
        ])
        .await;

    assert_eq!(failures, ["m0", "m2"]);
    assert_eq!(s.batches().await.len(), 3);
    s.clean_up().await;
}

#[tokio::test]
async fn the_sample_event_in_events_parses_as_an_sqs_event() {
    let event: SqsEvent =
        serde_json::from_str(include_str!("../events/transformer-sqs.json")).unwrap();
    let body = event.records[0].body.as_deref().unwrap();
    let message: FileSanitized = serde_json::from_str(body).unwrap();
    assert_eq!(message.dataset, "orders");
}

#[tokio::test]
async fn too_many_bad_rows_fail_the_file_and_send_nothing() {
    let s = setup().await;
    let csv =
        "order_id,order_date,qty,note\r\n,2026-11-22,1,\r\n,2026-11-22,2,\r\nA-3,2026-11-22,3,\r\n";
    let message = s.sanitized_file("mostly-bad.csv", csv).await;

    assert!(s
        .run(&[serde_json::to_string(&message).unwrap()])
        .await
        .is_empty());

    assert!(s.batches().await.is_empty());
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("transformer"));
    assert!(row.error.unwrap().contains("2 of 3 rows"));
    assert_eq!(row.rows_unmapped, Some(2));
    s.clean_up().await;
}

#[tokio::test]
async fn a_message_that_overtakes_the_sanitizers_status_write_is_retried_not_dropped() {
    let s = setup().await;
    // The file as the sanitizer leaves it just before it records `sanitized`: the clean object
    // written and the message sent, the row still `sanitizing`.
    let store = &s.owner;
    let id = store
        .register(&sluice_db::NewFile {
            dataset: "orders",
            site: None,
            bucket: &s.world.quarantine,
            key: "incoming/orders/early.csv",
            etag: "e",
            size: 1,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id;
    store
        .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json!({}))
        .await
        .unwrap();
    let clean_key = sluice_core::layout::clean_key("orders", id);
    s.world
        .put_clean(&clean_key, CLEAN.as_bytes().to_vec())
        .await;
    let message = FileSanitized {
        v: V1,
        file_id: id,
        dataset: "orders".into(),
        clean_bucket: s.world.clean.clone(),
        clean_key: clean_key.clone(),
        rows: 5,
        columns: vec![],
        date_range: None,
        resend: false,
        full: false,
    };
    let body = serde_json::to_string(&message).unwrap();

    assert_eq!(s.run(std::slice::from_ref(&body)).await, ["m0"]);
    assert!(s.batches().await.is_empty());

    store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            Some(&clean_key),
            sluice_db::RowCounts::default(),
            None,
            json!({}),
        )
        .await
        .unwrap();
    assert!(s.run(&[body]).await.is_empty());
    assert_eq!(s.batches().await.len(), 3);
    s.clean_up().await;
}

#[tokio::test]
async fn a_message_naming_another_object_is_refused_and_nothing_is_read_or_sent() {
    let s = setup().await;
    let message = s.sanitized_file("victim.csv", CLEAN).await;
    // The quarantine object of another upload, and another file's clean CSV.
    s.world
        .put("incoming/orders/secret.csv", CLEAN.as_bytes().to_vec())
        .await;
    let mut other_bucket = message.clone();
    other_bucket.clean_bucket = s.world.quarantine.clone();
    other_bucket.clean_key = "incoming/orders/secret.csv".into();
    let mut other_key = message.clone();
    other_key.clean_key = sluice_core::layout::clean_key("orders", uuid::Uuid::from_u128(1));

    for forged in [other_bucket, other_key] {
        let failures = s.run(&[serde_json::to_string(&forged).unwrap()]).await;
        assert_eq!(failures, ["m0"]);
    }
    assert!(s.batches().await.is_empty());
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Sanitized,
        "a forged message changes nothing"
    );
    s.clean_up().await;
}

#[tokio::test]
async fn wide_rows_are_cut_into_batches_by_bytes_and_a_row_too_wide_for_any_batch_is_reported() {
    let s = setup().await;
    let wide = "w".repeat(600 * 1024);
    let too_wide = "t".repeat(1100 * 1024);
    let mut csv = String::from("order_id,order_date,qty,note\r\n");
    for i in 1..=4 {
        csv.push_str(&format!("A-{i},2026-11-22,{i},{wide}\r\n"));
    }
    csv.push_str(&format!("A-5,2026-11-22,5,{too_wide}\r\n"));
    let message = s.sanitized_file("wide.csv", &csv).await;

    assert!(s
        .run(&[serde_json::to_string(&message).unwrap()])
        .await
        .is_empty());

    // batch_size is 2, but two of these rows are over the default 1 MiB a batch may hold.
    let batches = s.batches().await;
    assert_eq!(batches.len(), 4);
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch["count"], 1);
        assert_eq!(batch["total"], 4);
        let key = batch["s3"]["key"].as_str().unwrap();
        let stored = s.world.get(&s.world.clean, key).await.unwrap();
        assert!(
            stored.len() <= 1024 * 1024,
            "batch {} is {} bytes",
            i + 1,
            stored.len()
        );
    }
    let report: Value = serde_json::from_slice(
        &s.world
            .get(
                &s.world.clean,
                &sluice_core::layout::transform_report_key(message.file_id),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["rows_failed"], 1);
    assert_eq!(report["errors"][0]["line"], 6);
    let reason = report["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("batch_max_bytes"), "{reason}");
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.batches_sent, Some(4));
    s.clean_up().await;
}

#[tokio::test]
async fn eight_copies_of_one_message_at_the_same_moment_send_one_set_of_batches() {
    let s = setup().await;
    let message = s.sanitized_file("eight.csv", CLEAN).await;
    let body = serde_json::to_string(&message).unwrap();
    let mut all = Vec::new();
    for _ in 0..8 {
        all.push(Deps {
            config: s.deps.config.clone(),
            store: s.world.store_as("sluice_transformer").await,
            objects: ObjectStore::new(s.world.clients.s3.clone()),
            queue: Queue::new(s.world.clients.sqs.clone(), s.forward.clone()),
            clean_bucket: s.world.clean.clone(),
            max_receive_count: 3,
            visibility: None,
        });
    }
    let runs = all.iter().map(|deps| {
        let mut event = SqsEvent::default();
        let mut m = SqsMessage::default();
        m.message_id = Some("m0".into());
        m.body = Some(body.clone());
        event.records = vec![m];
        handle(LambdaEvent::new(event, Context::default()), deps)
    });
    let responses = futures_util::future::join_all(runs).await;
    // Losers report the message as failed (SQS brings it back, and then it is a no-op) or skip
    // it as done; exactly one transforms.
    for response in &responses {
        assert!(response.is_ok());
    }

    let batches = s.batches().await;
    assert_eq!(batches.len(), 3, "one set of batches");
    let seqs: Vec<u64> = batches.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Transformed);
    let events = s.deps.store.events(message.file_id).await.unwrap();
    let transforming = events
        .iter()
        .filter(|e| e.status == FileStatus::Transforming)
        .count();
    assert_eq!(transforming, 1);
    // A late copy now finds the file done.
    assert!(s.run(&[body]).await.is_empty());
    assert!(s.batches().await.is_empty());
    s.clean_up().await;
}

/// Runs the handler on one message delivered `receive_count` times.
async fn run_delivery(s: &Setup, body: &str, receive_count: u32) -> Vec<String> {
    let mut event = SqsEvent::default();
    let mut m = SqsMessage::default();
    m.message_id = Some("m0".into());
    m.body = Some(body.to_string());
    m.attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    event.records = vec![m];
    handle(LambdaEvent::new(event, Context::default()), &s.deps)
        .await
        .unwrap()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

#[tokio::test]
async fn a_message_failing_on_its_last_delivery_fails_its_file_with_the_reason() {
    let s = setup().await;
    let message = s.sanitized_file("vanished.csv", CLEAN).await;
    // The clean object is gone: every delivery fails reading it.
    s.world
        .clients
        .s3
        .delete_object()
        .bucket(&s.world.clean)
        .key(&message.clean_key)
        .send()
        .await
        .unwrap();
    let body = serde_json::to_string(&message).unwrap();

    assert_eq!(run_delivery(&s, &body, 1).await, ["m0"]);
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Transforming,
        "retried, not failed yet"
    );
    assert_eq!(run_delivery(&s, &body, 3).await, ["m0"]);

    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("transformer"));
    let error = row.error.unwrap();
    assert!(
        error.contains("delivery 3 of 3") && error.contains("dead-letter"),
        "{error}"
    );
    s.clean_up().await;
}

#[tokio::test]
async fn a_message_that_only_waits_never_fails_its_file() {
    let s = setup().await;
    let message = s.sanitized_file("busy.csv", CLEAN).await;
    // Another worker holds the file.
    let busy = sluice_db::Lease {
        owner: "other/req".into(),
        until: std::time::SystemTime::now() + std::time::Duration::from_secs(600),
    };
    s.deps
        .store
        .claim(
            message.file_id,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            &busy,
        )
        .await
        .unwrap();
    let body = serde_json::to_string(&message).unwrap();
    assert_eq!(run_delivery(&s, &body, 3).await, ["m0"]);
    let row = s.deps.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Transforming);
    assert!(s.batches().await.is_empty());
    s.clean_up().await;
}

/// Defect 5 of the reliability issue: a message given back for a retry comes back after a
/// backoff of seconds (`ChangeMessageVisibility`), not after the queue's visibility timeout
/// (600 s here; 5,400 s on the template's transform queue).
#[tokio::test]
async fn a_message_given_back_comes_back_after_its_backoff_not_the_visibility_timeout() {
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
    let mut s = setup().await;
    let sqs = s.world.clients.sqs.clone();
    s.deps.visibility = Some(sluice_aws::Visibility::new(sqs.clone()));
    let queue = sqs
        .create_queue()
        .queue_name(sluice_e2e::unique("sluice-transform"))
        .attributes(QueueAttributeName::VisibilityTimeout, "600")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    // A file the sanitizer has registered but not finished: its "file sanitized" won the
    // race, so the transformer gives it back (it waits; it does not fail the file).
    let mut message = s.sanitized_file("early.csv", "order_id\r\nA\r\n").await;
    let early = s
        .owner
        .register(&sluice_db::NewFile {
            dataset: "orders",
            site: None,
            bucket: &s.world.quarantine,
            key: "incoming/orders/early.csv",
            etag: "early",
            size: 1,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id;
    message.file_id = early;
    message.clean_key = sluice_core::layout::clean_key("orders", early);
    sqs.send_message()
        .queue_url(&queue)
        .message_body(serde_json::to_string(&message).unwrap())
        .send()
        .await
        .unwrap();
    let receive = |wait: i32| {
        let (sqs, queue, arn) = (sqs.clone(), queue.clone(), arn.clone());
        async move {
            let out = sqs
                .receive_message()
                .queue_url(&queue)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(wait)
                .send()
                .await
                .unwrap();
            out.messages()
                .iter()
                .map(|m| {
                    let mut message = SqsMessage::default();
                    message.message_id = m.message_id().map(str::to_string);
                    message.receipt_handle = m.receipt_handle().map(str::to_string);
                    message.body = m.body().map(str::to_string);
                    message.event_source_arn = Some(arn.clone());
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
                .collect::<Vec<_>>()
        }
    };
    let first = receive(1).await;
    assert_eq!(first.len(), 1);
    let mut event = SqsEvent::default();
    event.records = first.clone();
    let response = handle(LambdaEvent::new(event, Context::default()), &s.deps)
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "given back");
    assert!(
        receive(0).await.is_empty(),
        "not visible again at once (the backoff is at least 2.5 s)"
    );
    // Within the backoff's ceiling for a waiting message (5 s), far short of 600 s.
    let again = receive(10).await;
    assert_eq!(again.len(), 1, "back after its backoff");
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].attributes["ApproximateReceiveCount"], "2");
    let row = s.deps.store.file(early).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Received, "waiting fails nothing");
    sqs.delete_queue().queue_url(&queue).send().await.unwrap();
    s.world.clean_up().await;
}
