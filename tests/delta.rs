//! Re-uploads deliver only what changed (datasets with a `record_key`), end to end through
//! the sanitize, transform and forward stages, against both record-state stores: PostgreSQL
//! (the Lambdas') and the embedded one (`sluice run`). Objects and queues are the local
//! adapters; the API is an in-process fake that keeps every record it was sent.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};
use sluice_core::delivery::{AttemptClass, BatchHeader};
use sluice_core::message::FileSanitized;
use sluice_core::{FileStatus, PipelineConfig};
use sluice_local::{FolderObjects, MemoryQueue};
use sluice_stages::delivery::Attempt;
use sluice_stages::delivery::{Target, Targets};
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::ports::{Lease, Poster, RecordState};
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::transform::{transform_file, Transform};
use uuid::Uuid;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "https://api.example.com/orders"
batch_size = 2
max_attempts = 1
[datasets.orders.mapping]
record_key = ["orderId", "line.sku"]
ON_MISSING
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "line.sku"
column = "sku"
required = true
[[datasets.orders.mapping.fields]]
name = "line.quantity"
column = "qty"
type = "integer"
"#;

/// Runs a scenario against the embedded store and against PostgreSQL. `$two` scenarios get
/// two stores over the same state (for PostgreSQL, two connections: two Lambdas).
macro_rules! on_both_stores {
    ($($name:ident => $scenario:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let store = sluice_local::MemoryStore::new();
                super::$scenario(&store, &store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let schema = sluice_e2e::Schema::create().await;
                let (a, b) = (schema.store().await, schema.store().await);
                super::$scenario(&a, &b).await;
            }
        }
    )*};
}

on_both_stores! {
    reupload => a_reupload_sends_only_the_changed_and_new_records,
    dataset_scope => one_scope_for_the_dataset_compares_across_file_names,
    failed => a_batch_that_failed_is_sent_by_the_next_upload,
    concurrent => two_uploads_at_the_same_moment_never_both_send_a_new_key,
    deletions => missing_keys_are_sent_as_deleted_when_asked,
    full => a_full_replay_sends_everything,
    resend => a_resend_sends_the_planned_batches_again_unchanged,
    unkeyed => a_dataset_without_a_record_key_sends_everything_every_time,
    upload_order => a_morning_file_processed_after_the_afternoons_changes_nothing_it_had,
}

/// An API answering 200, except 500 to the batch sequence numbers in `refuse`.
#[derive(Default)]
struct Api {
    refuse: Mutex<HashSet<u32>>,
    got: Mutex<Vec<Value>>,
}

impl Poster for Api {
    async fn post(
        &self,
        _target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        _timeout: Duration,
    ) -> Attempt {
        let refused = self.refuse.lock().unwrap().contains(&batch.seq);
        if !refused {
            let records: Vec<Value> = serde_json::from_slice(&body).unwrap();
            self.got.lock().unwrap().extend(records);
        }
        Attempt {
            class: if refused {
                AttemptClass::Permanent
            } else {
                AttemptClass::Delivered
            },
            status: Some(if refused { 500 } else { 200 }),
            latency: Duration::from_millis(1),
            excerpt: None,
            error: refused.then(|| "HTTP 500".to_string()),
            retry_after: None,
        }
    }
}

impl Api {
    /// The records received since the last call, as `orderId/sku:quantity` (or `:deleted`).
    fn take(&self) -> Vec<String> {
        let mut got: Vec<String> = self
            .got
            .lock()
            .unwrap()
            .drain(..)
            .map(|r| {
                let what = match r.get("deleted") {
                    Some(_) => "deleted".to_string(),
                    None => r["line"]["quantity"].to_string(),
                };
                format!(
                    "{}/{}:{what}",
                    r["orderId"].as_str().unwrap(),
                    r["line"]["sku"].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        got
    }
}

/// One machine's pipeline over a store: a folder for the buckets, in-process queues.
struct Chain<'a, S> {
    dir: std::path::PathBuf,
    config: PipelineConfig,
    objects: FolderObjects,
    store: &'a S,
}

impl<S> Drop for Chain<'_, S> {
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

/// A CSV of `order_id,sku,qty` rows.
fn csv(rows: &[(&str, &str, u32)]) -> String {
    let mut text = String::from("order_id,sku,qty\n");
    for (id, sku, qty) in rows {
        text.push_str(&format!("{id},{sku},{qty}\n"));
    }
    text
}

const MONDAY: [(&str, &str, u32); 6] = [
    ("A", "s1", 1),
    ("A", "s2", 1),
    ("B", "s1", 2),
    ("C", "s1", 3),
    ("D", "s1", 4),
    ("E", "s1", 5),
];

impl<'a, S: RecordState> Chain<'a, S> {
    fn new(store: &'a S, on_missing: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-delta-{}", Uuid::new_v4()));
        let text = CONFIG.replace("ON_MISSING", on_missing);
        Self {
            objects: FolderObjects::new(&dir),
            dir,
            config: PipelineConfig::parse(&text, "test").unwrap(),
            store,
        }
    }

    fn unkeyed(store: &'a S) -> Self {
        let mut chain = Self::new(store, "");
        let text = CONFIG
            .replace("record_key = [\"orderId\", \"line.sku\"]", "")
            .replace("ON_MISSING", "");
        chain.config = PipelineConfig::parse(&text, "test").unwrap();
        chain
    }

    /// Uploads `body` as `name` (a new object under a unique key, as `sluice upload` does)
    /// and sanitizes it; the "file sanitized" message.
    async fn sanitized(&self, name: &str, body: &str, full: bool) -> FileSanitized {
        let mut metadata = std::collections::HashMap::new();
        if full {
            metadata.insert("sluice-full".to_string(), "true".to_string());
        }
        self.sanitized_with(name, body, metadata).await
    }

    /// As [`Self::sanitized`], for a file uploaded at `at` (RFC 3339).
    async fn sanitized_at(
        &self,
        name: &str,
        rows: &[(&str, &str, u32)],
        at: &str,
    ) -> FileSanitized {
        let metadata = [("sluice-uploaded-at".to_string(), at.to_string())].into();
        self.sanitized_with(name, &csv(rows), metadata).await
    }

    async fn sanitized_with(
        &self,
        name: &str,
        body: &str,
        metadata: std::collections::HashMap<String, String>,
    ) -> FileSanitized {
        let key = format!("incoming/orders/2026/11/24/{}-{name}", Uuid::new_v4());
        std::fs::create_dir_all(&self.dir).unwrap();
        let path = self.dir.join(format!("upload-{}", Uuid::new_v4()));
        std::fs::write(&path, body).unwrap();
        self.objects
            .put_file("quarantine", &key, &path, metadata)
            .await
            .unwrap();
        let queue = MemoryQueue::new();
        let stage = Sanitize {
            config: &self.config,
            store: self.store,
            objects: &self.objects,
            queue: &queue,
            clean_bucket: "clean",
        };
        let object = ObjectCreated {
            bucket: "quarantine".into(),
            key,
            size: body.len() as i64,
            version_id: None,
        };
        sanitize_object(&stage, &object, None, &lease("s"))
            .await
            .unwrap();
        serde_json::from_str(&queue.take_all().pop().unwrap()).unwrap()
    }

    async fn transform(&self, message: &FileSanitized, queue: &MemoryQueue) {
        let stage = Transform {
            config: &self.config,
            store: self.store,
            objects: &self.objects,
            queue,
            clean_bucket: "clean",
        };
        transform_file(&stage, message, &lease("t")).await.unwrap();
    }

    /// Delivers every batch message once, as its last delivery: a refused batch fails the file.
    async fn forward(&self, api: &Api, batches: Vec<String>, last: bool) {
        let targets = Targets::resolve(&self.config, None).await;
        let stage = Forward {
            config: &self.config,
            targets: &targets,
            store: self.store,
            objects: &self.objects,
            poster: api,
            clean_bucket: "clean",
        };
        let delivery = Delivery {
            receive_count: 1,
            max_receive_count: if last { 1 } else { 3 },
        };
        for body in batches {
            if let Err(fault) = forward_batch(&stage, &body, None, &lease("f")).await {
                let stage = sluice_core::Stage::Forwarder;
                message_failed(self.store, stage, None, delivery, &fault).await;
            }
        }
    }

    /// Uploads, transforms and forwards a file; its id.
    async fn upload(&self, api: &Api, name: &str, rows: &[(&str, &str, u32)]) -> Uuid {
        let message = self.sanitized(name, &csv(rows), false).await;
        let queue = MemoryQueue::new();
        self.transform(&message, &queue).await;
        self.forward(api, queue.take_all(), true).await;
        message.file_id
    }

    fn report(&self, id: Uuid) -> Value {
        let path = self
            .objects
            .path("clean", &format!("reports/{id}/transform.json"))
            .unwrap();
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    async fn status(&self, id: Uuid) -> FileStatus {
        self.store.file(id).await.unwrap().unwrap().status
    }
}

/// The numbers of the report's delta section: new, changed, unchanged, repeated, missing.
fn counts(report: &Value) -> [u64; 5] {
    let d = &report["delta"];
    let n = |k: &str| d[k].as_u64().unwrap_or(u64::MAX);
    [
        n("new"),
        n("changed"),
        n("unchanged"),
        n("repeated"),
        n("missing"),
    ]
}

async fn a_reupload_sends_only_the_changed_and_new_records<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "");
    let api = Api::default();
    let first = chain.upload(&api, "orders.csv", &MONDAY).await;
    assert_eq!(api.take().len(), 6);
    assert_eq!(counts(&chain.report(first)), [6, 0, 0, 0, 0]);
    assert_eq!(chain.status(first).await, FileStatus::Delivered);

    // The afternoon's export: 3 rows changed, 2 added, 1 (E) gone.
    let afternoon = [
        ("A", "s1", 10),
        ("A", "s2", 1),
        ("B", "s1", 20),
        ("C", "s1", 30),
        ("D", "s1", 4),
        ("F", "s1", 6),
        ("G", "s9", 7),
    ];
    let second = chain.upload(&api, "orders.csv", &afternoon).await;
    assert_eq!(
        api.take(),
        ["A/s1:10", "B/s1:20", "C/s1:30", "F/s1:6", "G/s9:7"]
    );
    let report = chain.report(second);
    assert_eq!(counts(&report), [2, 3, 2, 0, 1]);
    assert_eq!(report["delta"]["missing_keys"], json!([["E", "s1"]]));
    assert_eq!(report["delta"]["previous_file"], json!(first));
    assert_eq!(report["delta"]["missing_sent"], json!(false));
    let row = store.file(second).await.unwrap().unwrap();
    assert_eq!(
        (
            row.records_new,
            row.records_changed,
            row.records_unchanged,
            row.records_missing
        ),
        (Some(2), Some(3), Some(2), Some(1))
    );
    assert_eq!(row.status, FileStatus::Delivered);

    // The evening's export is the afternoon's again: nothing to send, and the file is done.
    let third = chain.upload(&api, "orders.csv", &afternoon).await;
    assert!(api.take().is_empty());
    assert_eq!(counts(&chain.report(third)), [0, 0, 7, 0, 0]);
    assert_eq!(chain.status(third).await, FileStatus::Delivered);

    // Another export (another name) is a scope of its own: what it sends is its own business.
    let other = chain.upload(&api, "returns.csv", &[("A", "s1", 10)]).await;
    assert_eq!(api.take(), ["A/s1:10"]);
    assert_eq!(counts(&chain.report(other)), [1, 0, 0, 0, 0]);
}

async fn one_scope_for_the_dataset_compares_across_file_names<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "delta_scope = \"dataset\"");
    let api = Api::default();
    chain.upload(&api, "orders-0800.csv", &MONDAY).await;
    api.take();
    let later = chain.upload(&api, "orders-1400.csv", &MONDAY[1..]).await;
    assert!(api.take().is_empty());
    let report = chain.report(later);
    assert_eq!(counts(&report), [0, 0, 5, 0, 1]);
    assert_eq!(report["delta"]["scope"], json!("dataset"));
}

async fn a_batch_that_failed_is_sent_by_the_next_upload<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "");
    let api = Api::default();
    // Batches of two: the second (B/s1, C/s1) is refused, on its last delivery, which fails
    // the file: the third batch, a batch of a final file, is not POSTed.
    api.refuse.lock().unwrap().insert(2);
    let first = chain.upload(&api, "orders.csv", &MONDAY).await;
    assert_eq!(api.take().len(), 2);
    assert_eq!(chain.status(first).await, FileStatus::Failed);

    api.refuse.lock().unwrap().clear();
    let second = chain.upload(&api, "orders.csv", &MONDAY).await;
    // What the API lacks: the refused batch and the one never sent.
    assert_eq!(api.take(), ["B/s1:2", "C/s1:3", "D/s1:4", "E/s1:5"]);
    assert_eq!(counts(&chain.report(second)), [4, 0, 2, 0, 0]);
    assert_eq!(chain.status(second).await, FileStatus::Delivered);
}

async fn two_uploads_at_the_same_moment_never_both_send_a_new_key<S: RecordState>(
    one: &S,
    two: &S,
) {
    let (a, b) = (Chain::new(one, ""), Chain::new(two, ""));
    let api = Api::default();
    // 5,000 records (two key chunks each), the same export uploaded twice at once.
    let rows: Vec<(String, u32)> = (0..5000).map(|i| (format!("K{i:05}"), i)).collect();
    let rows: Vec<(&str, &str, u32)> = rows.iter().map(|(k, i)| (k.as_str(), "s", *i)).collect();
    let (ma, mb) = (
        a.sanitized("orders.csv", &csv(&rows), false).await,
        b.sanitized("orders.csv", &csv(&rows), false).await,
    );
    let (qa, qb) = (MemoryQueue::new(), MemoryQueue::new());
    tokio::join!(a.transform(&ma, &qa), b.transform(&mb, &qb));
    a.forward(&api, qa.take_all(), true).await;
    b.forward(&api, qb.take_all(), true).await;
    let got = api.take();
    assert_eq!(got.len(), 5000, "each record once");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), 5000);
    let (ra, rb) = (counts(&a.report(ma.file_id)), counts(&b.report(mb.file_id)));
    assert_eq!(ra[0] + rb[0], 5000, "{ra:?} {rb:?}");
    assert_eq!(
        ra[3] + rb[3],
        5000,
        "what one sends the other counts as repeated"
    );
    assert_eq!(a.status(ma.file_id).await, FileStatus::Delivered);
    assert_eq!(b.status(mb.file_id).await, FileStatus::Delivered);
}

async fn missing_keys_are_sent_as_deleted_when_asked<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "on_missing = \"send\"");
    let api = Api::default();
    chain.upload(&api, "orders.csv", &MONDAY).await;
    api.take();
    let without = &MONDAY[..4];
    let second = chain.upload(&api, "orders.csv", without).await;
    assert_eq!(api.take(), ["D/s1:deleted", "E/s1:deleted"]);
    let report = chain.report(second);
    assert_eq!(counts(&report), [0, 0, 4, 0, 2]);
    assert_eq!(report["delta"]["missing_sent"], json!(true));
    assert_eq!(chain.status(second).await, FileStatus::Delivered);
    // A deleted key that comes back is new again; nothing is missing twice.
    let third = chain.upload(&api, "orders.csv", &MONDAY).await;
    assert_eq!(api.take(), ["D/s1:4", "E/s1:5"]);
    assert_eq!(counts(&chain.report(third)), [2, 0, 4, 0, 0]);
}

async fn a_full_replay_sends_everything<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "");
    let api = Api::default();
    chain.upload(&api, "orders.csv", &MONDAY).await;
    api.take();
    let message = chain.sanitized("orders.csv", &csv(&MONDAY), true).await;
    assert!(message.full);
    let queue = MemoryQueue::new();
    chain.transform(&message, &queue).await;
    chain.forward(&api, queue.take_all(), true).await;
    assert_eq!(api.take().len(), 6);
    let report = chain.report(message.file_id);
    assert_eq!(counts(&report), [0, 0, 6, 0, 0]);
    assert_eq!(report["delta"]["full"], json!(true));
    // What the replay delivered is the state: the next upload sends nothing.
    chain.upload(&api, "orders.csv", &MONDAY).await;
    assert!(api.take().is_empty());
}

async fn a_resend_sends_the_planned_batches_again_unchanged<S: RecordState>(store: &S, _: &S) {
    let chain = Chain::new(store, "");
    let api = Api::default();
    chain.upload(&api, "orders.csv", &MONDAY).await;
    api.take();
    let changed = [
        ("A", "s1", 9),
        ("B", "s1", 9),
        ("C", "s1", 9),
        ("D", "s1", 9),
    ];
    let rows: Vec<_> = changed.iter().chain(&MONDAY[4..]).copied().collect();
    let message = chain.sanitized("orders.csv", &csv(&rows), false).await;
    let queue = MemoryQueue::new();
    chain.transform(&message, &queue).await;
    let batches = queue.take_all();
    assert_eq!(batches.len(), 2);
    // The first batch gets through; the second is refused (not yet its last delivery).
    api.refuse.lock().unwrap().insert(2);
    chain.forward(&api, batches.clone(), false).await;
    assert_eq!(api.take(), ["A/s1:9", "B/s1:9"]);
    api.refuse.lock().unwrap().clear();
    // A re-drive's resend: the plan is kept, the delivered batch is not sent again, and the
    // other carries the same records under the same batch id.
    let resend = FileSanitized {
        resend: true,
        ..message.clone()
    };
    chain.transform(&resend, &queue).await;
    let again = queue.take_all();
    assert_eq!(again, batches[1..]);
    chain.forward(&api, again, true).await;
    assert_eq!(api.take(), ["C/s1:9", "D/s1:9"]);
    assert_eq!(chain.status(message.file_id).await, FileStatus::Delivered);
}

async fn a_dataset_without_a_record_key_sends_everything_every_time<S: RecordState>(
    store: &S,
    _: &S,
) {
    let chain = Chain::unkeyed(store);
    let api = Api::default();
    let first = chain.upload(&api, "orders.csv", &MONDAY).await;
    chain.upload(&api, "orders.csv", &MONDAY).await;
    assert_eq!(api.take().len(), 12);
    let report = chain.report(first);
    assert!(report.get("delta").is_none());
    let row = store.file(first).await.unwrap().unwrap();
    assert_eq!(row.records_new, None);
}

/// Files are compared in upload order, not in the order they are processed: the morning's
/// export, held up until after the afternoon's went through, neither overwrites the afternoon's
/// newer values at the API nor sends deletions for keys only the afternoon has.
async fn a_morning_file_processed_after_the_afternoons_changes_nothing_it_had<S: RecordState>(
    store: &S,
    _: &S,
) {
    let chain = Chain::new(store, "on_missing = \"send\"");
    let api = Api::default();
    let sunday: Vec<_> = MONDAY.iter().copied().chain([("G", "s1", 7)]).collect();
    let afternoon = afternoon_rows();
    let sunday = chain
        .sanitized_at("orders.csv", &sunday, "2026-11-22T08:00:00Z")
        .await;
    let morning = chain
        .sanitized_at("orders.csv", &MONDAY, "2026-11-23T09:00:00Z")
        .await;
    let afternoon = chain
        .sanitized_at("orders.csv", &afternoon, "2026-11-23T15:00:00Z")
        .await;
    for message in [&sunday, &afternoon] {
        let queue = MemoryQueue::new();
        chain.transform(message, &queue).await;
        chain.forward(&api, queue.take_all(), true).await;
        if message.file_id == sunday.file_id {
            assert_eq!(api.take().len(), 7);
        }
    }
    assert_eq!(
        api.take(),
        ["B/s1:20", "C/s1:deleted", "F/s1:6", "G/s1:deleted"],
        "the afternoon against Sunday"
    );

    // The morning's file, re-driven an hour late.
    let queue = MemoryQueue::new();
    chain.transform(&morning, &queue).await;
    chain.forward(&api, queue.take_all(), true).await;
    let report = chain.report(morning.file_id);
    // B's 2 is older than the afternoon's 20, and C was deleted by the afternoon: neither is
    // sent. F is not the morning's to delete.
    assert_eq!(api.take(), Vec::<String>::new());
    assert_eq!(report["delta"]["superseded"], json!(2), "{report}");
    assert_eq!(report["delta"]["missing"], Value::Null, "{report}");
    assert_eq!(
        report["delta"]["newer_file"],
        json!(afternoon.file_id.to_string()),
        "{report}"
    );
    assert_eq!(counts(&report)[..4], [0, 0, 4, 0]);
    let row = store.file(morning.file_id).await.unwrap().unwrap();
    assert_eq!(row.records_superseded, Some(2));
    assert_eq!(row.status, FileStatus::Delivered);

    // What the API was last sent is still the afternoon's: a re-upload of it sends nothing.
    let evening = chain
        .sanitized_at("orders.csv", &afternoon_rows(), "2026-11-23T18:00:00Z")
        .await;
    let queue = MemoryQueue::new();
    chain.transform(&evening, &queue).await;
    chain.forward(&api, queue.take_all(), true).await;
    assert_eq!(api.take(), Vec::<String>::new());
    assert_eq!(counts(&chain.report(evening.file_id)), [0, 0, 6, 0, 0]);
}

fn afternoon_rows() -> Vec<(&'static str, &'static str, u32)> {
    vec![
        ("A", "s1", 1),
        ("A", "s2", 1),
        ("B", "s1", 20),
        ("D", "s1", 4),
        ("E", "s1", 5),
        ("F", "s1", 6),
    ]
}
