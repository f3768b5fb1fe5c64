//! The transform and forward stages over the local adapters, with no services: concurrent
//! duplicates do the work once, a resend sends only what is missing, a refused batch fails
//! its file on the message's last delivery.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sluice_core::delivery::{AttemptClass, BatchHeader};
use sluice_core::{FileStatus, PipelineConfig};
use sluice_local::{FolderObjects, MemoryQueue, MemoryStore};
use sluice_stages::delivery::Attempt;
use sluice_stages::delivery::{Target, Targets};
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::ports::{Lease, Leases, Outcomes, Plans, Poster, Progress, Registry};
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::transform::{transform_file, Transform};
use sluice_stages::FaultKind;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "https://api.example.com/orders"
batch_size = 2
max_attempts = 1
[datasets.orders.mapping]
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
"#;

/// An API that answers every POST with `status` and counts what it got, and where.
struct CountingApi {
    status: u16,
    got: Mutex<Vec<String>>,
    at: Mutex<Vec<String>>,
}

impl Poster for CountingApi {
    async fn post(
        &self,
        target: &Target,
        batch: &BatchHeader<'_>,
        _body: Bytes,
        _timeout: Duration,
    ) -> Attempt {
        self.got.lock().unwrap().push(batch.batch_id.to_string());
        self.at.lock().unwrap().push(target.endpoint.to_string());
        let delivered = (200..300).contains(&self.status);
        Attempt {
            class: if delivered {
                AttemptClass::Delivered
            } else {
                AttemptClass::Permanent
            },
            status: Some(self.status),
            latency: Duration::from_millis(1),
            excerpt: None,
            error: (!delivered).then(|| format!("HTTP {}", self.status)),
            retry_after: None,
        }
    }
}

impl CountingApi {
    fn answering(status: u16) -> Self {
        Self {
            status,
            got: Mutex::default(),
            at: Mutex::default(),
        }
    }
}

fn forward_stage<'a>(
    local: &'a Local,
    targets: &'a Targets,
    api: &'a CountingApi,
) -> Forward<'a, FolderObjects, MemoryStore, CountingApi> {
    Forward {
        config: &local.config,
        targets,
        store: &local.store,
        objects: &local.objects,
        poster: api,
        clean_bucket: "clean",
    }
}

struct Local {
    dir: std::path::PathBuf,
    config: PipelineConfig,
    objects: FolderObjects,
    store: MemoryStore,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lease(owner: &str) -> Lease {
    Lease {
        owner: owner.into(),
        until: SystemTime::now() + Duration::from_secs(60),
    }
}

/// A sanitized orders file of five rows; its "file sanitized" message.
async fn sanitized(name: &str) -> (Local, String) {
    sanitized_with(name, CONFIG).await
}

/// [`sanitized`] under the config `config`.
async fn sanitized_with(name: &str, config: &str) -> (Local, String) {
    let dir = std::env::temp_dir().join(format!("sluice-tf-{name}-{}", uuid::Uuid::new_v4()));
    let local = Local {
        objects: FolderObjects::new(&dir),
        dir,
        config: PipelineConfig::parse(config, "test").unwrap(),
        store: MemoryStore::new(),
    };
    let key = "incoming/orders/o.csv";
    let path = local.objects.path("quarantine", key).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "order_id\r\nA\r\nB\r\nC\r\nD\r\nE\r\n").unwrap();
    let queue = MemoryQueue::new();
    let stage = Sanitize {
        config: &local.config,
        store: &local.store,
        objects: &local.objects,
        queue: &queue,
        clean_bucket: "clean",
    };
    let object = ObjectCreated {
        bucket: "quarantine".into(),
        key: key.into(),
        size: 0,
        version_id: None,
    };
    sanitize_object(&stage, &object, None, &lease("s"))
        .await
        .unwrap();
    let message = queue.take_all().pop().unwrap();
    (local, message)
}

fn transform_stage<'a>(
    local: &'a Local,
    queue: &'a MemoryQueue,
) -> Transform<'a, FolderObjects, MemoryStore, MemoryQueue> {
    Transform {
        config: &local.config,
        store: &local.store,
        objects: &local.objects,
        queue,
        clean_bucket: "clean",
    }
}

#[tokio::test]
async fn eight_copies_of_a_sanitized_message_at_once_send_one_set_of_batches() {
    let (local, message) = sanitized("transform").await;
    let message = serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    let stage = transform_stage(&local, &queue);
    let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("t/{i}"))).collect();
    let results =
        futures_util::future::join_all(leases.iter().map(|l| transform_file(&stage, &message, l)))
            .await;
    let waited = results
        .iter()
        .filter(|r| matches!(r, Err(f) if f.kind == FaultKind::Waiting))
        .count();
    let done = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(done + waited, 8, "{results:?}");
    let batches = queue.take_all();
    assert_eq!(batches.len(), 3, "5 records in batches of 2, once");
    // The copies that waited come back later and find the file transformed: no-ops.
    transform_file(&stage, &message, &lease("t/late"))
        .await
        .unwrap();
    assert!(queue.is_empty());
}

#[tokio::test]
async fn a_batch_is_posted_once_by_eight_copies_and_a_resend_sends_only_what_is_missing() {
    let (local, message) = sanitized("forward").await;
    let sanitized_message: sluice_core::message::FileSanitized =
        serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    transform_file(
        &transform_stage(&local, &queue),
        &sanitized_message,
        &lease("t"),
    )
    .await
    .unwrap();
    let batches = queue.take_all();
    let api = CountingApi::answering(200);
    let targets = Targets::resolve(&local.config, None).await;
    let forward = forward_stage(&local, &targets, &api);
    let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("f/{i}"))).collect();
    futures_util::future::join_all(
        leases
            .iter()
            .map(|l| forward_batch(&forward, &batches[0], None, l)),
    )
    .await;
    assert_eq!(
        api.got.lock().unwrap().len(),
        1,
        "one POST for eight copies"
    );
    let id = sanitized_message.file_id;
    assert_eq!(
        local.store.file(id).await.unwrap().unwrap().status,
        FileStatus::Delivering
    );

    // The other two messages are lost; a re-drive's resend sends exactly those.
    let resend = sluice_core::message::FileSanitized {
        resend: true,
        ..sanitized_message
    };
    transform_file(
        &transform_stage(&local, &queue),
        &resend,
        &lease("t/resend"),
    )
    .await
    .unwrap();
    let again = queue.take_all();
    assert_eq!(again.len(), 2);
    for body in &again {
        forward_batch(&forward, body, None, &lease("f/late"))
            .await
            .unwrap();
    }
    assert_eq!(api.got.lock().unwrap().len(), 3);
    assert_eq!(
        local.store.file(id).await.unwrap().unwrap().status,
        FileStatus::Delivered
    );
}

/// Each batch id and its records, from "record batch" messages.
fn batches_by_id(bodies: &[String]) -> std::collections::BTreeMap<String, serde_json::Value> {
    bodies
        .iter()
        .map(|body| {
            let batch: serde_json::Value = serde_json::from_str(body).unwrap();
            let id = batch["batch_id"].as_str().unwrap().to_string();
            (id, batch["records"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_config_changed_while_a_file_is_in_flight_leaves_its_batches_as_planned() {
    let (mut local, message) = sanitized("plan").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    let first = batches_by_id(&queue.take_all());
    assert_eq!(first.len(), 3, "5 records in batches of 2");

    // None of them got through; meanwhile the operator changes the batch size and a re-drive
    // re-sends the file under the new config.
    local.config =
        PipelineConfig::parse(&CONFIG.replace("batch_size = 2", "batch_size = 3"), "new").unwrap();
    let resend = sluice_core::message::FileSanitized {
        resend: true,
        ..message.clone()
    };
    transform_file(
        &transform_stage(&local, &queue),
        &resend,
        &lease("t/resend"),
    )
    .await
    .unwrap();
    let again = batches_by_id(&queue.take_all());
    assert_eq!(again, first, "the same ids name the same records");

    // A new file is cut with the new config.
    let new = CONFIG.replace("batch_size = 2", "batch_size = 3");
    let (local, message) = sanitized_with("plan-new", &new).await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t/new"))
        .await
        .unwrap();
    assert_eq!(queue.take_all().len(), 2, "5 records in batches of 3");
}

#[tokio::test]
async fn a_file_is_cut_and_sent_with_the_config_it_was_sanitized_with() {
    let (mut local, message) = sanitized("pinned").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let started = local.config.version().to_string();
    // Before its transform starts, the operator points the dataset at another API with
    // another batch size, and the containers that handle the file next loaded that config.
    let changed = CONFIG
        .replace("batch_size = 2", "batch_size = 5")
        .replace("api.example.com/orders", "api.example.net/v2/orders");
    local.config = PipelineConfig::parse(&changed, "changed").unwrap();
    let queue = MemoryQueue::new();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    let batches = queue.take_all();
    assert_eq!(batches.len(), 3, "cut in batches of 2, as when it started");
    let plan = local
        .store
        .fix_plan(message.file_id, &serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan["config_version"], started.as_str(), "{plan}");
    let api = CountingApi::answering(200);
    let targets = Targets::resolve(&local.config, None).await;
    let forward = forward_stage(&local, &targets, &api);
    for (i, body) in batches.iter().enumerate() {
        forward_batch(&forward, body, None, &lease(&format!("f/{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        *api.at.lock().unwrap(),
        vec!["https://api.example.com/orders"; 3],
        "sent where its config said"
    );
    let row = local.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Delivered);

    // A file that starts under the changed config goes by it.
    let (local, message) = sanitized_with("pinned-new", &changed).await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    let batches = queue.take_all();
    assert_eq!(batches.len(), 1, "5 records in one batch of 5");
    let api = CountingApi::answering(200);
    let targets = Targets::resolve(&local.config, None).await;
    forward_batch(
        &forward_stage(&local, &targets, &api),
        &batches[0],
        None,
        &lease("f"),
    )
    .await
    .unwrap();
    assert_eq!(
        *api.at.lock().unwrap(),
        vec!["https://api.example.net/v2/orders"]
    );
}

#[tokio::test]
async fn a_batch_cut_other_than_its_recorded_mark_fails_the_file_and_is_not_sent() {
    let (local, message) = sanitized("marks").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    assert_eq!(queue.take_all().len(), 3);
    let id = message.file_id;
    // Each batch's first cut is on the plan: its place and its hash.
    let plan = local
        .store
        .mark_batches(id, &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(plan, Some(serde_json::json!({})));
    let recorded = local
        .store
        .mark_batches(
            id,
            &serde_json::json!({ "2": { "first": 9, "records": 9, "sha256": "x" } }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded["2"]["first"], 2, "the first cut wins: {recorded}");
    assert_eq!(recorded["2"]["records"], 2);

    // A transformer that cut batch 2 differently (another version, say) took the plan first:
    // the resend finds batch 2 differs, sends nothing of it or after it, and fails the file.
    let (local, message) = sanitized("marks-other").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let other =
        serde_json::json!({ "2": { "first": 2, "records": 2, "sha256": "0000000000000000" } });
    local
        .store
        .mark_batches(message.file_id, &other)
        .await
        .unwrap();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t2"))
        .await
        .unwrap();
    let sent = queue.take_all();
    assert!(
        sent.is_empty(),
        "batches 1 and 2 are flushed together: none sent: {sent:?}"
    );
    let row = local.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert!(
        row.error
            .as_deref()
            .unwrap_or("")
            .contains("batch 2 came out other than"),
        "{:?}",
        row.error
    );
}

#[tokio::test]
async fn a_refused_batch_is_retried_and_on_its_last_delivery_fails_the_file() {
    let (local, message) = sanitized("refused").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    let batches = queue.take_all();
    let api = CountingApi::answering(422);
    let targets = Targets::resolve(&local.config, None).await;
    let forward = forward_stage(&local, &targets, &api);
    let delivery = |n| Delivery {
        receive_count: n,
        max_receive_count: 2,
    };
    let fault = forward_batch(&forward, &batches[0], None, &lease("f/1"))
        .await
        .unwrap_err();
    assert_ne!(fault.kind, FaultKind::Waiting);
    assert_eq!(
        fault.file,
        Some(message.file_id),
        "the fault names its file"
    );
    let rule = |n, fault| {
        let store = &local.store;
        async move {
            message_failed(
                store,
                sluice_core::Stage::Forwarder,
                None,
                delivery(n),
                &fault,
            )
            .await
        }
    };
    assert!(!rule(1, fault).await, "not the last delivery");
    let row = local.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Delivering,
        "retried, not failed yet"
    );
    assert!(row.error.unwrap().contains("HTTP 422"));
    let fault = forward_batch(&forward, &batches[0], None, &lease("f/2"))
        .await
        .unwrap_err();
    assert!(
        rule(2, fault).await,
        "the last delivery fails the file, once"
    );
    let row = local.store.file(message.file_id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert!(row.error.unwrap().contains("delivery 2 of 2"));
    assert_eq!(row.failed_stage.as_deref(), Some("forwarder"));
}

/// The one rule for final files: once a file is `failed`, a late copy of any of its batch
/// messages is dropped with an event, never POSTed (defect 2 of the reliability issue: the
/// forwarder kept delivering a failed file's batches); a late "file sanitized" likewise.
#[tokio::test]
async fn no_batch_of_a_final_file_is_posted_and_the_drop_is_in_its_history() {
    let (local, message) = sanitized("final").await;
    let message: sluice_core::message::FileSanitized = serde_json::from_str(&message).unwrap();
    let queue = MemoryQueue::new();
    transform_file(&transform_stage(&local, &queue), &message, &lease("t"))
        .await
        .unwrap();
    let batches = queue.take_all();
    assert_eq!(batches.len(), 3);
    let id = message.file_id;
    local
        .store
        .fail(id, sluice_core::Stage::Listener, "given up (test)")
        .await
        .unwrap();
    let api = CountingApi::answering(200);
    let targets = Targets::resolve(&local.config, None).await;
    let forward = forward_stage(&local, &targets, &api);
    for body in &batches {
        forward_batch(&forward, body, None, &lease("f/late"))
            .await
            .expect("a late batch of a final file is dropped, not retried");
    }
    assert!(api.got.lock().unwrap().is_empty(), "nothing POSTed");
    transform_file(&transform_stage(&local, &queue), &message, &lease("t/late"))
        .await
        .unwrap();
    assert!(queue.take_all().is_empty(), "nothing sent again");
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.batches_delivered.unwrap_or(0), 0);
    let dropped: Vec<_> = local
        .store
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.detail.get("dropped").is_some())
        .collect();
    assert_eq!(
        dropped.len(),
        4,
        "three batches and one late message: {dropped:?}"
    );
}

#[tokio::test]
async fn a_message_dead_lettered_ahead_of_its_file_leaves_the_file_to_its_re_drive() {
    use sluice_stages::ports::NewFile;
    use sluice_stages::Fault;
    let store = MemoryStore::new();
    let new = |key: &'static str| NewFile {
        dataset: "orders",
        site: None,
        bucket: "quarantine",
        key,
        etag: "e",
        size: 1,
        replay_of: None,
        uploaded_by: None,
        uploaded_at: None,
    };
    let last = Delivery {
        receive_count: 8,
        max_receive_count: 8,
    };
    let fault = Fault::new(FaultKind::Store, "database: connection closed");
    // A sanitizer sent "file sanitized" and died before recording it: the file is still
    // sanitizing when the transform message runs out of deliveries.
    let early = store
        .register(&new("incoming/orders/early.csv"))
        .await
        .unwrap()
        .id;
    store
        .claim(
            early,
            sluice_core::Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease("s"),
        )
        .await
        .unwrap();
    let failed = message_failed(
        &store,
        sluice_core::Stage::Transformer,
        Some(early),
        last,
        &fault,
    )
    .await;
    assert!(!failed);
    let row = store.file(early).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitizing);
    assert!(
        row.error
            .as_deref()
            .unwrap_or("")
            .contains("while the file was still sanitizing"),
        "{:?}",
        row.error
    );
    // The same message for a file that did reach its stage fails it, with the reason.
    let due = store
        .register(&new("incoming/orders/due.csv"))
        .await
        .unwrap()
        .id;
    store
        .claim(
            due,
            sluice_core::Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease("s"),
        )
        .await
        .unwrap();
    store
        .finish_sanitize(
            due,
            FileStatus::Sanitized,
            Some("clean/orders/due.csv"),
            sluice_stages::ports::RowCounts::default(),
            None,
            serde_json::json!({}),
        )
        .await
        .unwrap();
    assert!(
        message_failed(
            &store,
            sluice_core::Stage::Transformer,
            Some(due),
            last,
            &fault
        )
        .await
    );
    assert_eq!(
        store.file(due).await.unwrap().unwrap().status,
        FileStatus::Failed
    );
}
