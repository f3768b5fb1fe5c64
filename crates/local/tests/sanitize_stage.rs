//! The sanitize stage over the local adapters: no services, the same decisions as the Lambda
//! (accepted, rejected, duplicate, unrouted, gone; a failure noted and retried; the last
//! delivery failing the file; the deadline).

use std::time::{Duration, Instant, SystemTime};

use sluice_core::{FileStatus, PipelineConfig};
use sluice_local::{FolderObjects, MemoryQueue, MemoryStore};
use sluice_stages::ports::{Lease, Objects, Outbox, Plans, Registry};
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::FaultKind;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.sanitize]
required_columns = ["order_id"]
"#;

struct Local {
    dir: std::path::PathBuf,
    config: PipelineConfig,
    objects: FolderObjects,
    store: MemoryStore,
    queue: MemoryQueue,
}

impl Local {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sluice-stage-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            objects: FolderObjects::new(&dir),
            dir,
            config: PipelineConfig::parse(CONFIG, "test").unwrap(),
            store: MemoryStore::new(),
            queue: MemoryQueue::new(),
        }
    }

    fn stage(&self) -> Sanitize<'_, FolderObjects, MemoryStore, MemoryQueue> {
        self.stage_with(&self.queue)
    }

    fn stage_with<'a, Q: Outbox>(
        &'a self,
        queue: &'a Q,
    ) -> Sanitize<'a, FolderObjects, MemoryStore, Q> {
        Sanitize {
            config: &self.config,
            store: &self.store,
            objects: &self.objects,
            queue,
            clean_bucket: "clean",
        }
    }

    fn drop_in(&self, key: &str, body: &[u8]) -> ObjectCreated {
        let path = self.objects.path("quarantine", key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
        ObjectCreated {
            bucket: "quarantine".into(),
            key: key.into(),
            size: body.len() as i64,
            version_id: None,
        }
    }

    /// Every file under the clean bucket's folder, temporary ones included.
    fn clean_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![self.dir.join("clean")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(self.dir.join("clean")).unwrap();
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }
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

const ORDERS: &[u8] = b"Order ID,Qty\r\nA-1,2\r\nA-2,=1+1\r\n";

#[tokio::test]
async fn an_accepted_file_is_clean_reported_tagged_announced_and_recorded() {
    let local = Local::new("accepted");
    let object = local.drop_in("incoming/orders/a.csv", ORDERS);
    let outcome = sanitize_object(&local.stage(), &object, None, &lease("t/1"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "accepted");
    let id = outcome.file_id.unwrap();
    assert_eq!(
        local.clean_files(),
        [
            format!("clean/orders/{id}.csv"),
            format!("reports/{id}/sanitize.json")
        ]
    );
    let clean =
        std::fs::read_to_string(local.dir.join(format!("clean/clean/orders/{id}.csv"))).unwrap();
    assert!(clean.starts_with("order_id,qty\r\n"), "{clean}");
    assert!(
        clean.contains("'=1+1"),
        "the formula is neutralized: {clean}"
    );
    let messages = local.queue.take_all();
    assert_eq!(messages.len(), 1);
    let message: serde_json::Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(message["file_id"], id.to_string());
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    assert_eq!((row.rows_in, row.rows_out), (Some(2), Some(2)));
    let tags = local.objects.tags("quarantine", "incoming/orders/a.csv");
    assert!(tags.contains(&("sluice-verdict".into(), "accepted".into())));
}

#[tokio::test]
async fn eight_copies_of_one_event_at_once_sanitize_the_file_once() {
    let local = Local::new("duplicates");
    let object = local.drop_in("incoming/orders/d.csv", ORDERS);
    let stage = local.stage();
    let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("t/{i}"))).collect();
    let outcomes = futures_util::future::join_all(
        leases
            .iter()
            .map(|l| sanitize_object(&stage, &object, None, l)),
    )
    .await;
    let results: Vec<&str> = outcomes
        .iter()
        .map(|o| o.as_ref().unwrap().result)
        .collect();
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
    assert_eq!(local.queue.len(), 1);
    assert_eq!(
        local.clean_files().len(),
        2,
        "one clean file and one report"
    );
    // Long after, the same event again: a duplicate, nothing new.
    let again = sanitize_object(&stage, &object, None, &lease("t/late"))
        .await
        .unwrap();
    assert_eq!(again.result, "duplicate");
    assert_eq!(local.queue.len(), 1);
}

#[tokio::test]
async fn a_rejected_file_gets_its_report_and_reason_and_nothing_else() {
    let local = Local::new("rejected");
    let object = local.drop_in("incoming/orders/r.csv", b"sku,qty\r\nX,1\r\n");
    let outcome = sanitize_object(&local.stage(), &object, None, &lease("t/1"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "rejected");
    let id = outcome.file_id.unwrap();
    assert_eq!(local.clean_files(), [format!("reports/{id}/sanitize.json")]);
    assert!(local.queue.is_empty());
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Rejected);
    assert!(row.error.unwrap().contains("order_id"));
}

#[tokio::test]
async fn an_unrouted_object_is_a_rejected_file_and_a_vanished_one_leaves_none() {
    let local = Local::new("unrouted");
    let stray = local.drop_in("elsewhere/x.csv", ORDERS);
    let outcome = sanitize_object(&local.stage(), &stray, None, &lease("t/1"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "unrouted");
    let id = outcome.file_id.expect("an unrouted object gets a row");
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Rejected);
    assert!(
        row.error.as_deref().unwrap().contains("`elsewhere/x.csv`"),
        "{row:?}"
    );
    // The same event again finds the same file, final, and changes nothing.
    let again = sanitize_object(&local.stage(), &stray, None, &lease("t/2"))
        .await
        .unwrap();
    assert_eq!(again.file_id, Some(id));
    assert_eq!(
        local.store.events(id).await.unwrap().len(),
        3,
        "received, sanitizing, rejected"
    );
    let gone = ObjectCreated {
        bucket: "quarantine".into(),
        key: "incoming/orders/never-there.csv".into(),
        size: 0,
        version_id: None,
    };
    let outcome = sanitize_object(&local.stage(), &gone, None, &lease("t/1"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "gone");
    assert!(local.clean_files().is_empty());
}

/// A queue that is down.
struct DownQueue;

#[derive(Debug, thiserror::Error)]
#[error("the queue is down")]
struct Down;

impl Outbox for DownQueue {
    type Error = Down;

    async fn send_all(&self, _: &[String]) -> Result<(), Down> {
        Err(Down)
    }

    async fn backlog(&self) -> Result<u64, Down> {
        Err(Down)
    }
}

#[tokio::test]
async fn a_failure_is_noted_and_retried_and_on_the_last_delivery_fails_the_file() {
    let local = Local::new("failure");
    let object = local.drop_in("incoming/orders/f.csv", ORDERS);
    let down = DownQueue;
    let stage = local.stage_with(&down);
    let fault = sanitize_object(&stage, &object, None, &lease("t/1"))
        .await
        .unwrap_err();
    assert_eq!(fault.kind, FaultKind::Queue);
    let (_, meta) = local
        .objects
        .open("quarantine", "incoming/orders/f.csv", None)
        .await
        .unwrap()
        .unwrap();
    let id = sluice_stages::ports::file_id("quarantine", "incoming/orders/f.csv", &meta.etag);
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(
        row.status,
        FileStatus::Sanitizing,
        "not final: it is retried"
    );
    assert!(row.error.unwrap().contains("the queue is down"));
    // The claim was released: the retry (another worker) claims at once, and on the
    // message's last delivery the failure fails the file with the reason.
    let fault = sanitize_object(&stage, &object, None, &lease("t/2"))
        .await
        .unwrap_err();
    assert_eq!(fault.kind, FaultKind::Queue);
    assert_eq!(fault.file, Some(id), "the fault names its file");
    let last = sluice_stages::final_status::Delivery {
        receive_count: 5,
        max_receive_count: 5,
    };
    let stage_name = sluice_core::Stage::Sanitizer;
    assert!(
        sluice_stages::final_status::message_failed(&local.store, stage_name, None, last, &fault)
            .await
    );
    let row = local.store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert!(row.error.unwrap().contains("delivery 5 of 5"));
}

#[tokio::test]
async fn a_retry_after_the_config_changed_sanitizes_with_the_config_the_file_started_with() {
    let local = Local::new("pinned");
    let object = local.drop_in("incoming/orders/p.csv", ORDERS);
    // The first run pins the config it began with, then fails (the queue is down).
    let fault = sanitize_object(&local.stage_with(&DownQueue), &object, None, &lease("t/1"))
        .await
        .unwrap_err();
    assert_eq!(fault.kind, FaultKind::Queue);
    let id = fault.file.expect("the fault names its file");
    // The operator now requires a column this file lacks; the retry runs in a container that
    // loaded the new config, and sanitizes the file by the one it started with.
    let changed = PipelineConfig::parse(
        &CONFIG.replace(r#"["order_id"]"#, r#"["order_id", "customer"]"#),
        "changed",
    )
    .unwrap();
    let stage = Sanitize {
        config: &changed,
        ..local.stage()
    };
    let outcome = sanitize_object(&stage, &object, None, &lease("t/2"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "accepted");
    let plan = local
        .store
        .fix_plan(id, &serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan["config_version"], local.config.version(), "{plan}");
    assert_eq!(
        plan["config"],
        local.config.dataset("orders").unwrap().digest.as_str()
    );
    // A new file goes by the new config.
    let fresh = local.drop_in("incoming/orders/q.csv", ORDERS);
    let outcome = sanitize_object(&stage, &fresh, None, &lease("t/3"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "rejected");
}

#[tokio::test]
async fn a_pinned_config_that_no_longer_loads_fails_the_file_with_the_reason() {
    let local = Local::new("unloadable");
    let object = local.drop_in("incoming/orders/u.csv", ORDERS);
    // What an older version of Sluice may have pinned: a section this one refuses.
    let (_, meta) = local
        .objects
        .open("quarantine", &object.key, None)
        .await
        .unwrap()
        .unwrap();
    let registered = local
        .store
        .register(&sluice_stages::ports::NewFile {
            dataset: "orders",
            site: None,
            bucket: "quarantine",
            key: &object.key,
            etag: &meta.etag,
            size: meta.size,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap();
    let mut section = local.config.dataset_snapshot("orders").unwrap().clone();
    section["sanitize"]["no_such_option"] = serde_json::json!(true);
    let pin = serde_json::json!({ "dataset": section, "config": "old" });
    local.store.fix_plan(registered.id, &pin).await.unwrap();
    let outcome = sanitize_object(&local.stage(), &object, None, &lease("t"))
        .await
        .unwrap();
    assert_eq!(outcome.result, "failed");
    assert_eq!(outcome.file_id, Some(registered.id));
    let row = local.store.file(registered.id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    let error = row.error.unwrap();
    assert!(
        error.contains("no longer loads") && error.contains("no_such_option"),
        "{error}"
    );
    assert!(local.queue.is_empty(), "nothing announced");
    assert!(local.clean_files().is_empty(), "nothing written");
}

#[tokio::test]
async fn past_the_deadline_nothing_is_left_under_the_clean_key() {
    let local = Local::new("deadline");
    let object = local.drop_in("incoming/orders/late.csv", ORDERS);
    let fault = sanitize_object(&local.stage(), &object, Some(Instant::now()), &lease("t/1"))
        .await
        .unwrap_err();
    assert_eq!(fault.kind, FaultKind::Deadline);
    assert!(local.clean_files().is_empty(), "{:?}", local.clean_files());
    assert!(local.queue.is_empty());
}
