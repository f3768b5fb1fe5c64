//! `sluice replay` against moto server and PostgreSQL (scripts/test.sh starts both): an
//! earlier run goes through the real stage code (sanitize, transform, forward to an API double
//! that refuses one batch) and fails; it is then replayed from each stage, and each new run is
//! driven through the stages again.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_core::delivery::{classify_status, BatchHeader};
use sluice_core::message::FileSanitized;
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{migrate, Db, DbConfig, Lease, Store};
use sluice_stages::delivery::Attempt;
use sluice_stages::delivery::{Target, Targets};
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::ports::Poster;
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::transform::{transform_file, Transform};
use uuid::Uuid;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "https://api.invalid/orders"
batch_size = 2
[datasets.orders.mapping]
date_field = "orderedAt"
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "quantity"
column = "qty"
type = "integer"
[[datasets.orders.mapping.fields]]
name = "orderedAt"
column = "order_date"
type = "date"
"#;

const CSV: &str = "order_id,qty,order_date\nA-1,1,2026-11-20\nA-2,2,2026-11-21\n\
                   A-3,3,2026-11-22\nA-4,4,2026-11-23\nA-5,5,2026-11-24\n";

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// An API double: answers each batch id with the status scripted for its sequence number (by
/// default 200), and remembers what it was sent.
#[derive(Default)]
struct Api {
    refuse_seq: Mutex<Option<u32>>,
    sent: Mutex<Vec<(String, String)>>,
}

impl Poster for Api {
    async fn post(
        &self,
        _target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        _timeout: Duration,
    ) -> Attempt {
        let refused = *self.refuse_seq.lock().unwrap() == Some(batch.seq);
        let status = if refused { 422 } else { 200 };
        self.sent.lock().unwrap().push((
            batch.batch_id.to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        Attempt {
            class: classify_status(status),
            status: Some(status),
            latency: Duration::from_millis(1),
            excerpt: None,
            error: refused.then(|| "HTTP 422 (not retried)".to_string()),
            retry_after: None,
        }
    }
}

struct World {
    clients: Clients,
    config: PipelineConfig,
    store: Store,
    objects: ObjectStore,
    quarantine: String,
    clean: String,
    transform_url: String,
    forward_url: String,
    schema: String,
    url: String,
    api: Api,
    targets: Targets,
}

fn lease() -> Lease {
    Lease {
        owner: format!("test/{}", Uuid::new_v4()),
        until: SystemTime::now() + Duration::from_secs(300),
    }
}

impl World {
    async fn new() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
        );
        let clients = Clients::from_env().await;
        let id = Uuid::new_v4().simple().to_string();
        let (quarantine, clean) = (
            format!("sluice-replay-q-{id}"),
            format!("sluice-replay-c-{id}"),
        );
        for bucket in [&quarantine, &clean] {
            clients
                .s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
        }
        let mut urls = Vec::new();
        for name in ["transform", "forward"] {
            let out = clients
                .sqs
                .create_queue()
                .queue_name(format!("sluice-replay-{name}-{id}"))
                .send()
                .await
                .unwrap();
            urls.push(out.queue_url().unwrap().to_string());
        }
        let schema = format!("sluice_replay_{id}");
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        admin
            .connect()
            .await
            .expect("PostgreSQL is reachable (scripts/test.sh starts it)")
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let db = Db::new(admin.with_schema(&schema));
        migrate(&db).await.unwrap();
        let base = database_url();
        let url = format!(
            "{}?sslmode=disable&options=-c%20search_path%3D{schema}",
            base.split('?').next().unwrap()
        );
        let config = PipelineConfig::parse(CONFIG, "test").unwrap();
        let targets = Targets::headless(&"https://api.invalid/orders".parse().unwrap());
        World {
            objects: ObjectStore::new(clients.s3.clone()),
            clients,
            config,
            store: Store::new(db),
            quarantine,
            clean,
            transform_url: urls[0].clone(),
            forward_url: urls[1].clone(),
            schema,
            url,
            api: Api::default(),
            targets,
        }
    }

    /// Puts an upload into quarantine and sanitizes it (what the sanitizer Lambda does with its
    /// Object Created event); returns its file id.
    async fn upload(&self, key: &str) -> Uuid {
        self.clients
            .s3
            .put_object()
            .bucket(&self.quarantine)
            .key(key)
            .body(CSV.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
        self.sanitize(key).await
    }

    async fn sanitize(&self, key: &str) -> Uuid {
        let queue = Queue::new(self.clients.sqs.clone(), self.transform_url.clone());
        let stage = Sanitize {
            config: &self.config,
            store: &self.store,
            objects: &self.objects,
            queue: &queue,
            clean_bucket: &self.clean,
        };
        let object = ObjectCreated {
            bucket: self.quarantine.clone(),
            key: key.to_string(),
            size: CSV.len() as i64,
            version_id: None,
        };
        let outcome = sanitize_object(&stage, &object, None, &lease())
            .await
            .unwrap();
        assert_eq!(outcome.result, "accepted", "{outcome:?}");
        outcome.file_id.unwrap()
    }

    /// Transforms what is on the transform queue (each message `copies` times at once).
    async fn transform(&self, copies: usize) -> Vec<FileSanitized> {
        let queue = Queue::new(self.clients.sqs.clone(), self.forward_url.clone());
        let stage = Transform {
            config: &self.config,
            store: &self.store,
            objects: &self.objects,
            queue: &queue,
            clean_bucket: &self.clean,
        };
        let messages: Vec<FileSanitized> = drain(&self.clients, &self.transform_url)
            .await
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        for message in &messages {
            let runs = (0..copies).map(|_| async {
                let lease = lease();
                transform_file(&stage, message, &lease).await
            });
            let results = futures_util::future::join_all(runs).await;
            assert!(results.iter().any(Result::is_ok), "{results:?}");
        }
        messages
    }

    /// Forwards what is on the forward queue, on the message's last delivery.
    async fn forward(&self) -> Vec<String> {
        let stage = Forward {
            config: &self.config,
            targets: &self.targets,
            store: &self.store,
            objects: &self.objects,
            poster: &self.api,
            clean_bucket: &self.clean,
        };
        let last = Delivery {
            receive_count: 5,
            max_receive_count: 5,
        };
        let mut ids = Vec::new();
        for batch in drain(&self.clients, &self.forward_url).await {
            ids.push(batch["batch_id"].as_str().unwrap().to_string());
            if let Err(fault) = forward_batch(&stage, &batch.to_string(), None, &lease()).await {
                message_failed(&self.store, Stage::Forwarder, None, last, &fault).await;
            }
        }
        ids.sort();
        ids
    }

    fn replay(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("replay")
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("SLUICE_CLEAN_BUCKET", &self.clean)
            .env("SLUICE_TRANSFORM_QUEUE_URL", &self.transform_url)
            .output()
            .unwrap()
    }

    async fn status(&self, id: Uuid) -> sluice_db::FileRow {
        self.store.file(id).await.unwrap().unwrap()
    }

    async fn clean_up(self) {
        for url in [&self.transform_url, &self.forward_url] {
            let _ = self.clients.sqs.delete_queue().queue_url(url).send().await;
        }
        for bucket in [&self.quarantine, &self.clean] {
            let listed = self
                .clients
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .unwrap();
            for object in listed.contents() {
                let _ = self
                    .clients
                    .s3
                    .delete_object()
                    .bucket(bucket)
                    .key(object.key().unwrap())
                    .send()
                    .await;
            }
            let _ = self.clients.s3.delete_bucket().bucket(bucket).send().await;
        }
        let admin = DbConfig::parse(&database_url(), None).unwrap();
        if let Ok(client) = admin.connect().await {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .await;
        }
    }
}

async fn drain(clients: &Clients, url: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let out = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
            clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

fn new_run(output: &Output) -> Uuid {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let lines = lines(output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["result"], "replayed", "{lines:?}");
    lines[0]["replay"].as_str().unwrap().parse().unwrap()
}

fn seqs(ids: &[String], file: Uuid) -> Vec<u32> {
    ids.iter()
        .map(|id| {
            let seq = id.strip_prefix(&format!("{file}-")).expect(id);
            seq.parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_file_is_replayed_from_each_stage_as_new_runs_and_its_history_stays() {
    let w = World::new().await;

    // The earlier run: batch 2 of 3 is refused on its last delivery, so the file fails, and
    // batch 3, a batch of a final file, is dropped unsent.
    let earlier = w
        .upload("incoming/orders/2026/11/24/0b7a6f1c-2d3e-4c8e-9d41-2a6b3c4d5e6f-orders.csv")
        .await;
    w.transform(1).await;
    *w.api.refuse_seq.lock().unwrap() = Some(2);
    assert_eq!(seqs(&w.forward().await, earlier), [1, 2, 3]);
    *w.api.refuse_seq.lock().unwrap() = None;
    let failed = w.status(earlier).await;
    assert_eq!(failed.status, FileStatus::Failed);
    assert_eq!(failed.batches_delivered, Some(1));
    let calls_before = w.store.calls(earlier).await.unwrap().len();

    // The bulk form finds it; a dry run changes nothing.
    let listed = w.replay(&[
        "--dataset",
        "orders",
        "--since",
        "1h",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    let listed = lines(&listed);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["file_id"], earlier.to_string());
    assert_eq!(listed[0]["result"], "would replay");
    assert!(drain(&w.clients, &w.transform_url).await.is_empty());

    // From forward: only the batches the earlier run did not deliver, under the new run's id;
    // two copies of its message at once send it once.
    let id = earlier.to_string();
    let replayed = w.replay(&[&id, "--from", "forward", "--json"]);
    let forward_run = new_run(&replayed);
    assert_eq!(lines(&replayed)[0]["skipped_batches"], 1);
    w.transform(2).await;
    let sent = w.forward().await;
    assert_eq!(seqs(&sent, forward_run), [2, 3]);
    let row = w.status(forward_run).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(2), Some(2))
    );
    assert_eq!(row.replay_of, Some(earlier));
    assert_eq!(row.replay_from.as_deref(), Some("forward"));
    let bodies: Vec<String> = w
        .api
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("A-3") && b.contains("A-4")),
        "{bodies:?}"
    );

    // The earlier run is as it was, with the replay in its history.
    let after = w.status(earlier).await;
    assert_eq!(after.status, FileStatus::Failed);
    assert_eq!(after.error, failed.error);
    assert_eq!(w.store.calls(earlier).await.unwrap().len(), calls_before);
    let events = w.store.events(earlier).await.unwrap();
    let noted = events.iter().find(|e| e.stage == "replay").unwrap();
    assert_eq!(noted.detail["replayed_as"], forward_run.to_string());

    // A replayed file is not picked again by the bulk form; nor is the delivered new run.
    let listed = w.replay(&[
        "--dataset",
        "orders",
        "--since",
        "1h",
        "--dry-run",
        "--json",
    ]);
    assert!(lines(&listed).is_empty(), "{listed:?}");
    // And nothing is left to re-send from the delivered run's batches.
    let nothing = w.replay(&[&forward_run.to_string(), "--from", "forward", "--json"]);
    assert_eq!(nothing.status.code(), Some(1));
    let nothing = lines(&nothing);
    assert_eq!(nothing[0]["result"], "refused");
    assert!(
        nothing[0]["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to re-send"),
        "{nothing:?}"
    );

    // From transform, with a date range: every record again, under new batch ids.
    let replayed = w.replay(&[
        &id,
        "--from",
        "transform",
        "--start",
        "2026-01-01",
        "--json",
    ]);
    let transform_run = new_run(&replayed);
    // The options are on the new row, so a re-drive rebuilt from the upload keeps them.
    let plan = w
        .store
        .fix_plan(transform_run, &serde_json::json!({}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan["date_range"]["start"], "2026-01-01", "{plan}");
    let messages = w.transform(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].file_id, transform_run);
    assert_eq!(
        messages[0].date_range.as_ref().unwrap().start.as_deref(),
        Some("2026-01-01")
    );
    assert_eq!(seqs(&w.forward().await, transform_run), [1, 2, 3]);
    assert_eq!(w.status(transform_run).await.status, FileStatus::Delivered);

    // From sanitize: a copy beside the original, naming the earlier run; the sanitizer's run
    // of it is linked to the earlier one and goes through the chain.
    let replayed = w.replay(&[&id, "--from", "sanitize", "--json"]);
    let sanitize_run = new_run(&replayed);
    let key = lines(&replayed)[0]["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("incoming/orders/2026/11/24/") && key.ends_with("-orders.csv"),
        "{key}"
    );
    assert_ne!(
        key,
        "incoming/orders/2026/11/24/0b7a6f1c-2d3e-4c8e-9d41-2a6b3c4d5e6f-orders.csv"
    );
    // Known at once, before the sanitizer has seen the copy.
    let known = w.status(sanitize_run).await;
    assert_eq!(known.status, FileStatus::Received);
    assert_eq!(known.replay_of, Some(earlier));
    assert_eq!(w.sanitize(&key).await, sanitize_run);
    let row = w.status(sanitize_run).await;
    assert_eq!(row.replay_of, Some(earlier));
    assert_eq!(row.replay_from.as_deref(), Some("sanitize"));
    w.transform(1).await;
    assert_eq!(seqs(&w.forward().await, sanitize_run), [1, 2, 3]);
    assert_eq!(w.status(sanitize_run).await.status, FileStatus::Delivered);

    // A file still on its way is refused, and nothing is made for it.
    let pending = w.upload("incoming/orders/2026/11/24/pending.csv").await;
    let refused = w.replay(&[&pending.to_string(), "--from", "transform", "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    let refused = lines(&refused);
    assert_eq!(refused[0]["result"], "refused");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("still sanitized"),
        "{refused:?}"
    );
    // (Its own "file sanitized" is the only message on the queue.)
    let queued = drain(&w.clients, &w.transform_url).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["file_id"], pending.to_string());

    // Every replay of the earlier file is in its history, oldest first.
    let replays: HashMap<String, String> = w
        .store
        .events(earlier)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.stage == "replay")
        .map(|e| {
            (
                e.detail["from"].as_str().unwrap().to_string(),
                e.detail["replayed_as"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(replays.len(), 3);
    assert_eq!(replays["sanitize"], sanitize_run.to_string());
    assert_eq!(replays["transform"], transform_run.to_string());
    w.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_refuses_what_the_real_replay_would_and_the_advice_leads_somewhere() {
    let w = World::new().await;
    let key = "incoming/orders/2026/11/24/expiring-orders.csv";
    let earlier = w.upload(key).await;
    w.transform(1).await;
    *w.api.refuse_seq.lock().unwrap() = Some(1);
    w.forward().await;
    *w.api.refuse_seq.lock().unwrap() = None;
    assert_eq!(w.status(earlier).await.status, FileStatus::Failed);
    let id = earlier.to_string();
    let result = |output: &Output| {
        let line = lines(output).remove(0);
        (
            line["result"].as_str().unwrap().to_string(),
            line["reason"].as_str().unwrap_or_default().to_string(),
        )
    };

    // The original expires from quarantine: both runs refuse the replay from sanitize, and
    // send the operator to the clean file, which is there.
    w.clients
        .s3
        .delete_object()
        .bucket(&w.quarantine)
        .key(key)
        .send()
        .await
        .unwrap();
    for dry in [true, false] {
        let mut args = vec![id.as_str(), "--from", "sanitize", "--json"];
        if dry {
            args.push("--dry-run");
        }
        let out = w.replay(&args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let (result, reason) = result(&out);
        assert_eq!(result, "refused", "dry run {dry}: {reason}");
        assert!(reason.contains("replay it --from transform"), "{reason}");
    }
    let dry = w.replay(&[&id, "--from", "transform", "--dry-run", "--json"]);
    assert_eq!(result(&dry).0, "would replay");

    // The clean file goes too: no advice that leads back, and no replay either way.
    let clean_key = w.status(earlier).await.clean_key.unwrap();
    w.clients
        .s3
        .delete_object()
        .bucket(&w.clean)
        .key(&clean_key)
        .send()
        .await
        .unwrap();
    for from in ["sanitize", "transform", "forward"] {
        let out = w.replay(&[&id, "--from", from, "--dry-run", "--json"]);
        let (result, reason) = result(&out);
        assert_eq!(result, "refused", "{from}: {reason}");
        assert!(!reason.contains("replay it --from"), "{from}: {reason}");
        assert!(reason.contains("cannot be replayed"), "{from}: {reason}");
    }
    assert!(drain(&w.clients, &w.transform_url).await.is_empty());
    w.clean_up().await;
}

#[test]
fn bad_usage_is_refused_before_anything_is_read() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("replay")
            .args(args)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env_remove("SLUICE_CLEAN_BUCKET")
            .env_remove("SLUICE_TRANSFORM_QUEUE_URL")
            .output()
            .unwrap()
    };
    let id = Uuid::new_v4().to_string();
    for (args, says) in [
        (vec![&id[..], "--from", "forward", "--full"], "takes no"),
        (vec![&id[..], "--from", "transform"], "SLUICE_CLEAN_BUCKET"),
        (vec![&id[..], "--rate", "0"], "--rate"),
        (
            vec![
                "--dataset",
                "orders",
                "--since",
                "1d",
                "--status",
                "sanitized",
            ],
            "final statuses",
        ),
        (
            vec![&id[..], "--from", "deliver"],
            "sanitize, transform or forward",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
