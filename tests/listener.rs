//! The listener Lambda end to end, with the whole chain behind it: FTP drops in a (moto) drop
//! bucket, the listener's runs, then the sanitizer, transformer and forwarder handlers fed from
//! their (moto) queues until they are empty, against a real HTTP API on loopback and
//! PostgreSQL. Also the stuck files a killed worker leaves at each stage, re-driven by the
//! listener until they are delivered, or failed after `max_redrives`.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_s3::primitives::ByteStream;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use sluice_aws::{ObjectStore, Queue};
use sluice_core::delivery::Reach;
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{Claim, FileRow, Lease, Store};
use sluice_e2e::api::{MockApi, Reply};
use sluice_e2e::{unique, World};
use sluice_forwarder::Targets;
use sluice_http::HttpPoster;
use sluice_listener::{Budget, Summary};
use uuid::Uuid;

fn config(api: &str) -> String {
    format!(
        r#"
[datasets.orders]
prefix = "incoming/orders/"
drop = {{ pattern = "ftp/{{site}}/orders/**", settle_seconds = 0 }}
[datasets.orders.sanitize]
required_columns = ["order_id"]
[datasets.orders.delivery]
endpoint = "{api}"
allow_private_hosts = ["127.0.0.1"]
batch_size = 2
backoff_base_ms = 10
backoff_max_ms = 50
[datasets.orders.mapping]
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true

[datasets.trains]
prefix = "incoming/trains/"
drop = {{ pattern = "drops/trains/*", settle_seconds = 0, after_copy = "delete" }}

[datasets.archived]
prefix = "incoming/archived/"
drop = {{ pattern = "drops/archived/*", settle_seconds = 0, after_copy = "archive", archive_prefix = "archive/" }}

[datasets.late]
prefix = "incoming/late/"
drop = {{ pattern = "drops/late/*", settle_seconds = 3600 }}
"#
    )
}

/// The chain: a world (quarantine and clean buckets, transform queue, schema), a drop bucket,
/// sanitize and forward queues, an API, and each Lambda's dependencies.
struct Chain {
    world: World,
    api: MockApi,
    drop_bucket: String,
    sanitize_queue: String,
    forward_queue: String,
    sanitizer: sluice_sanitizer::Deps,
    transformer: sluice_transformer::Deps,
    forwarder: sluice_forwarder::Deps,
    listener: sluice_listener::Deps,
}

async fn chain(stale_after: Duration, max_redrives: i32) -> Chain {
    let world = World::new().await;
    let api = MockApi::start().await;
    api.answer_by_default(Reply::Status(200));
    let config = PipelineConfig::parse(&config(&api.url()), "test").unwrap();
    let drop_bucket = unique("sluice-drop");
    world
        .clients
        .s3
        .create_bucket()
        .bucket(&drop_bucket)
        .send()
        .await
        .unwrap();
    let sanitize_queue = world.new_queue("sluice-sanitize").await;
    let forward_queue = world.new_queue("sluice-forward").await;
    let (s3, sqs) = (world.clients.s3.clone(), world.clients.sqs.clone());
    let sanitizer = sluice_sanitizer::Deps {
        config: config.clone(),
        store: world.store_as("sluice_sanitizer").await,
        objects: ObjectStore::new(s3.clone()),
        queue: Queue::new(sqs.clone(), world.queue_url.clone()),
        clean_bucket: world.clean.clone(),
        max_receive_count: 3,
        visibility: None,
    };
    let transformer = sluice_transformer::Deps {
        config: config.clone(),
        store: world.store_as("sluice_transformer").await,
        objects: ObjectStore::new(s3.clone()),
        queue: Queue::new(sqs.clone(), forward_queue.clone()),
        clean_bucket: world.clean.clone(),
        max_receive_count: 3,
        visibility: None,
    };
    let http = HttpPoster::new(Reach::of(&config)).unwrap();
    let forwarder = sluice_forwarder::Deps {
        targets: Targets::resolve(&config, None).await,
        config: config.clone(),
        store: world.store_as("sluice_forwarder").await,
        objects: ObjectStore::new(s3.clone()),
        http,
        concurrency: 2,
        max_receive_count: 3,
        visibility: None,
        clean_bucket: world.clean.clone(),
    };
    let listener = sluice_listener::Deps {
        config: config.clone(),
        store: world.store_as("sluice_listener").await,
        objects: ObjectStore::new(s3),
        drop_bucket: Some(drop_bucket.clone()),
        quarantine_bucket: world.quarantine.clone(),
        clean_bucket: world.clean.clone(),
        sanitize_queue: Queue::new(sqs.clone(), sanitize_queue.clone()),
        transform_queue: Queue::new(sqs.clone(), world.queue_url.clone()),
        forward_queue: Queue::new(sqs, forward_queue.clone()),
        stale_after,
        max_redrives,
        page_size: 1000,
        copy_concurrency: 8,
        reconcile_days: 0,
        reconcile_grace: Duration::ZERO,
        object_dead_letter_queues: Vec::new(),
    };
    Chain {
        world,
        api,
        drop_bucket,
        sanitize_queue,
        forward_queue,
        sanitizer,
        transformer,
        forwarder,
        listener,
    }
}

fn orders_csv(ids: &[&str]) -> Vec<u8> {
    let mut csv = String::from("order_id,qty\r\n");
    for id in ids {
        csv.push_str(&format!("{id},1\r\n"));
    }
    csv.into_bytes()
}

fn sqs_event(bodies: &[Value]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(body.to_string());
            m.attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            m
        })
        .collect();
    event
}

impl Chain {
    async fn put_drop(&self, key: &str, body: Vec<u8>) {
        self.world
            .clients
            .s3
            .put_object()
            .bucket(&self.drop_bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    /// One listener run with no time limit (a run of its own: its own lease).
    async fn listen(&self) -> Summary {
        self.listen_with(&self.listener).await
    }

    async fn listen_with(&self, deps: &sluice_listener::Deps) -> Summary {
        let lease = Lease {
            owner: format!("listener/{}", Uuid::new_v4()),
            until: SystemTime::now() + Duration::from_secs(300),
        };
        sluice_listener::run(deps, &lease, Budget::unlimited())
            .await
            .unwrap()
    }

    /// What EventBridge does in AWS: an "Object Created" event on the sanitize queue for each
    /// object now in quarantine (again for old ones too: the sanitizer skips those).
    async fn announce_quarantine(&self) {
        let queue = Queue::new(self.world.clients.sqs.clone(), self.sanitize_queue.clone());
        for key in self.world.keys(&self.world.quarantine).await {
            let event =
                sluice_stages::redrive::object_created_event(&self.world.quarantine, &key, "");
            queue.send_all(&[event.to_string()]).await.unwrap();
        }
    }

    /// Feeds every stage from its queue until all queues are empty.
    async fn pump(&self) {
        for _ in 0..50 {
            let mut moved = 0;
            let bodies = self.world.drain(&self.sanitize_queue).await;
            moved += bodies.len();
            if !bodies.is_empty() {
                let event = serde_json::to_value(sqs_event(&bodies)).unwrap();
                let mut payload = event;
                for r in payload["Records"].as_array_mut().unwrap() {
                    r["eventSource"] = json!("aws:sqs");
                }
                sluice_sanitizer::handle(
                    LambdaEvent::new(payload, Context::default()),
                    &self.sanitizer,
                )
                .await
                .unwrap();
            }
            let bodies = self.world.drain_queue().await;
            moved += bodies.len();
            if !bodies.is_empty() {
                sluice_transformer::handle(
                    LambdaEvent::new(sqs_event(&bodies), Context::default()),
                    &self.transformer,
                )
                .await
                .unwrap();
            }
            let bodies = self.world.drain(&self.forward_queue).await;
            moved += bodies.len();
            if !bodies.is_empty() {
                sluice_forwarder::handle(
                    LambdaEvent::new(sqs_event(&bodies), Context::default()),
                    &self.forwarder,
                )
                .await
                .unwrap();
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the queues did not empty");
    }

    /// The listener's dependencies with a connection of their own.
    async fn another_listener(&self) -> sluice_listener::Deps {
        let d = &self.listener;
        sluice_listener::Deps {
            config: d.config.clone(),
            store: self.world.store_as("sluice_listener").await,
            objects: d.objects.clone(),
            drop_bucket: d.drop_bucket.clone(),
            quarantine_bucket: d.quarantine_bucket.clone(),
            clean_bucket: d.clean_bucket.clone(),
            sanitize_queue: d.sanitize_queue.clone(),
            transform_queue: d.transform_queue.clone(),
            forward_queue: d.forward_queue.clone(),
            stale_after: d.stale_after,
            max_redrives: d.max_redrives,
            page_size: d.page_size,
            copy_concurrency: d.copy_concurrency,
            reconcile_days: d.reconcile_days,
            reconcile_grace: d.reconcile_grace,
            object_dead_letter_queues: d.object_dead_letter_queues.clone(),
        }
    }

    fn store(&self) -> &Store {
        &self.listener.store
    }

    async fn row(&self, id: Uuid) -> FileRow {
        self.store().file(id).await.unwrap().expect("file row")
    }

    /// The file whose quarantine object is `key`.
    async fn file_of(&self, key: &str) -> Uuid {
        let head = self
            .world
            .clients
            .s3
            .head_object()
            .bucket(&self.world.quarantine)
            .key(key)
            .send()
            .await
            .unwrap();
        let etag = head.e_tag().unwrap().trim_matches('"').to_string();
        sluice_db::file_id(&self.world.quarantine, key, &etag)
    }

    async fn quarantine_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .world
            .keys(&self.world.quarantine)
            .await
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        keys
    }

    async fn metadata(&self, bucket: &str, key: &str) -> std::collections::HashMap<String, String> {
        ObjectStore::new(self.world.clients.s3.clone())
            .metadata(bucket, key)
            .await
            .unwrap()
    }

    async fn clean_up(self) {
        for key in self.world.keys(&self.drop_bucket).await {
            let _ = self
                .world
                .clients
                .s3
                .delete_object()
                .bucket(&self.drop_bucket)
                .key(key)
                .send()
                .await;
        }
        let s3 = &self.world.clients.s3;
        let _ = s3.delete_bucket().bucket(&self.drop_bucket).send().await;
        for queue in [&self.sanitize_queue, &self.forward_queue] {
            let _ = self
                .world
                .clients
                .sqs
                .delete_queue()
                .queue_url(queue)
                .send()
                .await;
        }
        self.world.clean_up().await;
    }
}

#[tokio::test]
async fn drops_are_picked_up_once_across_runs_and_reach_the_api_with_their_site() {
    let c = chain(Duration::from_secs(3600), 3).await;
    c.put_drop("ftp/leeds/orders/", Vec::new()).await; // a folder marker
    c.put_drop(
        "ftp/leeds/orders/mon.csv",
        orders_csv(&["L-1", "L-2", "L-3"]),
    )
    .await;
    c.put_drop("ftp/york/orders/2026/11/tue.csv", orders_csv(&["Y-1"]))
        .await;
    c.put_drop("ftp/leeds/misc/notes.csv", orders_csv(&["X-1"]))
        .await;

    // The scheduled event from events/ drives the handler.
    let event: Value =
        serde_json::from_str(include_str!("../events/listener-schedule.json")).unwrap();
    let first = sluice_listener::handle(LambdaEvent::new(event, Context::default()), &c.listener)
        .await
        .unwrap();
    assert_eq!(
        (
            first.sweep.scanned,
            first.sweep.registered,
            first.sweep.copied
        ),
        (3, 2, 2),
        "{first:?}"
    );
    assert_eq!(first.sweep.unmatched, 1, "{first:?}");
    assert!(!first.stopped_early);
    let second = c.listen().await;
    assert_eq!(
        (
            second.sweep.scanned,
            second.sweep.known,
            second.sweep.copied
        ),
        (3, 3, 0),
        "{second:?}"
    );
    assert_eq!(second.sweep.unmatched, 0);

    // Copied under the dataset's quarantine prefix, by date, with site and source.
    let copies = c.quarantine_keys("incoming/orders/").await;
    assert_eq!(copies.len(), 2, "{copies:?}");
    let mut sites = Vec::new();
    for key in &copies {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert!(parts[5].ends_with("-mon.csv") || parts[5].ends_with("-tue.csv"));
        let meta = c.metadata(&c.world.quarantine, key).await;
        sites.push(meta["sluice-site"].clone());
        assert!(meta["sluice-source"].starts_with(&format!("s3://{}/ftp/", c.drop_bucket)));
    }
    sites.sort();
    assert_eq!(sites, ["leeds", "york"]);
    // `keep`: the drops stay.
    assert_eq!(c.world.keys(&c.drop_bucket).await.len(), 4);

    // The path no dataset takes is a rejected file with the reason.
    let unmatched = sluice_db::file_id(&c.drop_bucket, "ftp/leeds/misc/notes.csv", &{
        let head = c
            .world
            .clients
            .s3
            .head_object()
            .bucket(&c.drop_bucket)
            .key("ftp/leeds/misc/notes.csv")
            .send()
            .await
            .unwrap();
        head.e_tag().unwrap().trim_matches('"').to_string()
    });
    let row = c.row(unmatched).await;
    assert_eq!(row.status, FileStatus::Rejected);
    assert_eq!(row.dataset, None);
    assert_eq!(row.failed_stage.as_deref(), Some("listener"));
    assert!(row.error.unwrap().contains("matches no dataset"));

    // The chain takes the copies to the API: each order once.
    c.announce_quarantine().await;
    c.pump().await;
    for key in &copies {
        let row = c.row(c.file_of(key).await).await;
        assert_eq!(row.status, FileStatus::Delivered, "{key}: {:?}", row.error);
        let site = c.metadata(&c.world.quarantine, key).await["sluice-site"].clone();
        assert_eq!(row.site, Some(site));
    }
    let mut ids: Vec<String> = c
        .api
        .accepted_records()
        .iter()
        .map(|r| r["orderId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["L-1", "L-2", "L-3", "Y-1"]);

    // A re-upload with new content to the same path is a new file.
    c.put_drop("ftp/leeds/orders/mon.csv", orders_csv(&["L-1", "L-4"]))
        .await;
    let third = c.listen().await;
    assert_eq!(
        (third.sweep.registered, third.sweep.copied),
        (1, 1),
        "{third:?}"
    );
    assert_eq!(c.quarantine_keys("incoming/orders/").await.len(), 3);
    c.clean_up().await;
}

#[tokio::test]
async fn settle_time_and_the_delete_and_archive_modes() {
    let c = chain(Duration::from_secs(3600), 3).await;
    c.put_drop("drops/trains/t1.csv", b"a\r\n1\r\n".to_vec())
        .await;
    c.put_drop("drops/archived/a1.csv", b"a\r\n1\r\n".to_vec())
        .await;
    c.put_drop("drops/late/still-writing.csv", b"a\r\n1\r\n".to_vec())
        .await;

    let run = c.listen().await;
    assert_eq!((run.sweep.copied, run.sweep.settling), (2, 1), "{run:?}");
    let mut left = c.world.keys(&c.drop_bucket).await;
    left.sort();
    assert_eq!(
        left,
        [
            "archive/drops/archived/a1.csv",
            "drops/late/still-writing.csv"
        ],
        "deleted, archived, and the young one left alone"
    );
    assert_eq!(c.quarantine_keys("incoming/trains/").await.len(), 1);
    assert_eq!(c.quarantine_keys("incoming/archived/").await.len(), 1);
    assert!(c.quarantine_keys("incoming/late/").await.is_empty());

    // Nothing new: the archive is outside the drop areas, the young file still settles.
    let again = c.listen().await;
    assert_eq!(
        (again.sweep.copied, again.sweep.settling),
        (0, 1),
        "{again:?}"
    );
    c.clean_up().await;
}

#[tokio::test]
async fn a_drop_over_several_listing_pages_and_a_run_that_goes_on_from_the_last_ones_cursor() {
    let mut c = chain(Duration::from_secs(3600), 3).await;
    c.listener.page_size = 3;
    for i in 0..10 {
        c.put_drop(&format!("drops/trains/f{i:02}.csv"), b"a\r\n1\r\n".to_vec())
            .await;
    }
    // A run out of time takes nothing new and keeps its place.
    let budget = Budget::until(Some(Instant::now()));
    let lease = Lease {
        owner: "listener/late".into(),
        until: SystemTime::now() + Duration::from_secs(60),
    };
    let late = sluice_listener::run(&c.listener, &lease, budget)
        .await
        .unwrap();
    assert!(late.stopped_early);
    assert_eq!(late.sweep.scanned, 0);

    // An earlier run stopped after f04: this run goes on from there, then starts over.
    let prefix = "drops/trains/";
    let cursor = sluice_db::DropCursor {
        start_after: "drops/trains/f04.csv".into(),
    };
    c.store()
        .save_drop_cursor(&c.drop_bucket, prefix, Some(&cursor))
        .await
        .unwrap();
    let run = c.listen().await;
    assert_eq!((run.sweep.scanned, run.sweep.copied), (5, 5), "{run:?}");
    assert_eq!(
        c.store().drop_cursor(&c.drop_bucket, prefix).await.unwrap(),
        None,
        "the listing reached the end: the next run starts from the beginning"
    );
    let run = c.listen().await;
    assert_eq!((run.sweep.scanned, run.sweep.copied), (5, 5), "{run:?}");
    assert_eq!(c.quarantine_keys("incoming/trains/").await.len(), 10);
    c.clean_up().await;
}

#[tokio::test]
async fn eight_overlapping_runs_copy_each_drop_once() {
    let c = chain(Duration::from_secs(3600), 3).await;
    for i in 0..20 {
        c.put_drop(
            &format!("ftp/site{}/orders/o{i:02}.csv", i % 3),
            orders_csv(&["A-1"]),
        )
        .await;
    }
    let mut runs = Vec::new();
    for _ in 0..8 {
        // Each run its own connection, as eight containers would have.
        runs.push(c.another_listener().await);
    }
    let summaries =
        futures_util::future::join_all(runs.iter().map(|deps| c.listen_with(deps))).await;
    let copied: u64 = summaries.iter().map(|s| s.sweep.copied).sum();
    let registered: u64 = summaries.iter().map(|s| s.sweep.registered).sum();
    assert_eq!((copied, registered), (20, 20), "{summaries:?}");
    assert_eq!(c.quarantine_keys("incoming/orders/").await.len(), 20);
    c.clean_up().await;
}

/// A lease as a killed worker leaves it: lapsed.
fn lapsed(stage: &str) -> Lease {
    Lease {
        owner: format!("{stage}/killed"),
        until: SystemTime::now() - Duration::from_secs(1),
    }
}

impl Chain {
    /// An orders file uploaded to quarantine; returns its id.
    async fn upload(&self, name: &str, ids: &[&str]) -> (Uuid, String) {
        let key = format!("incoming/orders/2026/11/24/{name}");
        self.world.put(&key, orders_csv(ids)).await;
        (self.file_of(&key).await, key)
    }

    /// The sanitizer's run for `key`, directly (not through the queue).
    async fn sanitize(&self, key: &str) {
        let event = self.world.created_event(key, 1);
        sluice_sanitizer::handle(LambdaEvent::new(event, Context::default()), &self.sanitizer)
            .await
            .unwrap();
    }

    async fn claim(&self, id: Uuid, stage: Stage, from: FileStatus, to: FileStatus) {
        let claim = self
            .store()
            .claim(id, stage, from, to, &lapsed(stage.as_str()))
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Won { .. }), "{claim:?}");
    }

    async fn redrives(&self, id: Uuid) -> usize {
        let events = self.store().events(id).await.unwrap();
        events
            .iter()
            .filter(|e| e.detail.get("redrive").is_some())
            .count()
    }
}

#[tokio::test]
async fn a_file_left_sanitizing_by_a_killed_worker_is_redriven_to_delivered() {
    let c = chain(Duration::ZERO, 3).await;
    let (id, key) = c
        .upload("killed-sanitizer.csv", &["S-1", "S-2", "S-3"])
        .await;
    let etag = {
        let out = c
            .world
            .clients
            .s3
            .head_object()
            .bucket(&c.world.quarantine)
            .key(&key)
            .send()
            .await
            .unwrap();
        out.e_tag().unwrap().trim_matches('"').to_string()
    };
    c.store()
        .register(&sluice_db::NewFile {
            dataset: "orders",
            site: None,
            bucket: &c.world.quarantine,
            key: &key,
            etag: &etag,
            size: 1,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap();
    c.claim(
        id,
        Stage::Sanitizer,
        FileStatus::Received,
        FileStatus::Sanitizing,
    )
    .await;

    let run = c.listen().await;
    assert_eq!(run.redrive.redriven_sanitize, 1, "{run:?}");
    c.pump().await;
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered, "{:?}", row.error);
    assert_eq!(c.redrives(id).await, 1);
    assert_eq!(c.api.accepted_records().len(), 3);
    c.clean_up().await;
}

#[tokio::test]
async fn a_file_left_transforming_by_a_killed_worker_is_redriven_to_delivered() {
    let c = chain(Duration::ZERO, 3).await;
    let (id, key) = c
        .upload("killed-transformer.csv", &["T-1", "T-2", "T-3"])
        .await;
    c.sanitize(&key).await;
    // The worker took the message and died: the message is gone, the lease lapsed.
    assert_eq!(c.world.drain_queue().await.len(), 1);
    c.claim(
        id,
        Stage::Transformer,
        FileStatus::Sanitized,
        FileStatus::Transforming,
    )
    .await;

    let run = c.listen().await;
    assert_eq!(run.redrive.redriven_transform, 1, "{run:?}");
    c.pump().await;
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered, "{:?}", row.error);
    assert_eq!(c.api.accepted_records().len(), 3);
    c.clean_up().await;
}

#[tokio::test]
async fn a_file_left_delivering_gets_only_its_undelivered_batches_again() {
    let c = chain(Duration::ZERO, 3).await;
    let ids = ["D-1", "D-2", "D-3", "D-4", "D-5", "D-6", "D-7"];
    let (id, key) = c.upload("lost-batches.csv", &ids).await;
    c.sanitize(&key).await;
    let sanitized = c.world.drain_queue().await;
    sluice_transformer::handle(
        LambdaEvent::new(sqs_event(&sanitized), Context::default()),
        &c.transformer,
    )
    .await
    .unwrap();
    // Four batches; the forwarder delivers the first, the other three messages are lost (a
    // purged queue, a DLQ emptied by hand).
    let mut batches = c.world.drain(&c.forward_queue).await;
    assert_eq!(batches.len(), 4);
    batches.sort_by_key(|b| b["seq"].as_u64());
    sluice_forwarder::handle(
        LambdaEvent::new(sqs_event(&batches[..1]), Context::default()),
        &c.forwarder,
    )
    .await
    .unwrap();
    assert_eq!(c.row(id).await.status, FileStatus::Delivering);

    let run = c.listen().await;
    assert_eq!(run.redrive.redriven_forward, 1, "{run:?}");
    c.pump().await;
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered, "{:?}", row.error);
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(4), Some(4))
    );
    let keys: Vec<String> = c
        .api
        .received()
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        (keys.len(), distinct.len()),
        (4, 4),
        "one POST per batch: {keys:?}"
    );
    let mut got: Vec<String> = c
        .api
        .accepted_records()
        .iter()
        .map(|r| r["orderId"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ids);
    c.clean_up().await;
}

#[tokio::test]
async fn a_file_whose_worker_keeps_dying_is_failed_with_the_reason_after_max_redrives() {
    let c = chain(Duration::ZERO, 2).await;
    let (id, key) = c.upload("vanishes.csv", &["V-1"]).await;
    c.sanitize(&key).await;
    c.world.drain_queue().await;
    c.claim(
        id,
        Stage::Transformer,
        FileStatus::Sanitized,
        FileStatus::Transforming,
    )
    .await;
    // Its clean file is gone: every re-drive's transform fails again.
    let clean_key = sluice_core::layout::clean_key("orders", id);
    c.world
        .clients
        .s3
        .delete_object()
        .bucket(&c.world.clean)
        .key(&clean_key)
        .send()
        .await
        .unwrap();
    for round in 1..=2 {
        let run = c.listen().await;
        assert_eq!(run.redrive.redriven_transform, 1, "round {round}: {run:?}");
        assert_eq!(
            run.redrive.resent_idle, 0,
            "round {round}: a dead worker's file"
        );
        // The transformer fails, notes the error and gives its lease back; its message is
        // left for SQS (first delivery of three: the file is not failed).
        let bodies = c.world.drain_queue().await;
        sluice_transformer::handle(
            LambdaEvent::new(sqs_event(&bodies), Context::default()),
            &c.transformer,
        )
        .await
        .unwrap();
        assert_eq!(c.row(id).await.status, FileStatus::Transforming);
        // And the next worker dies holding it.
        let died = c
            .store()
            .claim_in_place(
                id,
                Stage::Transformer,
                &[FileStatus::Transforming],
                &lapsed("transformer"),
            )
            .await
            .unwrap();
        assert!(matches!(died, Claim::Won { .. }), "{died:?}");
    }
    let run = c.listen().await;
    assert_eq!(run.redrive.given_up, 1, "{run:?}");
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("listener"));
    let error = row.error.unwrap();
    assert!(error.contains("after 2 re-drives"), "{error}");
    assert_eq!(c.redrives(id).await, 2);
    // Failed is final: later runs leave it alone.
    let run = c.listen().await;
    assert_eq!(run.redrive, Default::default());
    c.clean_up().await;
}

/// A file whose stage fails and gives its lease back is waiting for its message, not dead:
/// the sweep re-sends its input (never failing it), and the message's last delivery fails it
/// through the consumer's one last-delivery rule.
#[tokio::test]
async fn a_file_whose_stage_keeps_failing_is_resent_and_failed_by_its_last_delivery() {
    let c = chain(Duration::ZERO, 1).await;
    let (id, key) = c.upload("gone.csv", &["G-1"]).await;
    c.sanitize(&key).await;
    c.world.drain_queue().await;
    let clean_key = sluice_core::layout::clean_key("orders", id);
    c.world
        .clients
        .s3
        .delete_object()
        .bucket(&c.world.clean)
        .key(&clean_key)
        .send()
        .await
        .unwrap();
    for round in 1..=3 {
        let run = c.listen().await;
        assert_eq!(
            (
                run.redrive.redriven_transform,
                run.redrive.resent_idle,
                run.redrive.given_up
            ),
            (1, 1, 0),
            "round {round}: {run:?}"
        );
        let bodies = c.world.drain_queue().await;
        sluice_transformer::handle(
            LambdaEvent::new(sqs_event(&bodies), Context::default()),
            &c.transformer,
        )
        .await
        .unwrap();
        // With no stale time, each doubled spacing is due at once.
        assert_ne!(c.row(id).await.status, FileStatus::Failed, "round {round}");
    }
    // Its message on its last delivery (3 of 3).
    c.listen().await;
    let bodies = c.world.drain_queue().await;
    let mut event = sqs_event(&bodies);
    for m in &mut event.records {
        m.attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
    }
    sluice_transformer::handle(LambdaEvent::new(event, Context::default()), &c.transformer)
        .await
        .unwrap();
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.failed_stage.as_deref(), Some("transformer"));
    let error = row.error.unwrap();
    assert!(error.contains("delivery 3 of 3"), "{error}");
    c.clean_up().await;
}

#[tokio::test]
async fn a_drop_whose_copy_keeps_failing_is_retried_then_failed_with_the_reason() {
    let mut c = chain(Duration::from_secs(3600), 2).await;
    c.put_drop("drops/trains/t.csv", b"a\r\n1\r\n".to_vec())
        .await;
    let quarantine = std::mem::replace(
        &mut c.listener.quarantine_bucket,
        unique("sluice-no-such-bucket"),
    );
    let first = c.listen().await;
    assert_eq!(
        (first.sweep.registered, first.sweep.copy_errors),
        (1, 1),
        "{first:?}"
    );
    let second = c.listen().await;
    assert_eq!(
        (second.sweep.registered, second.sweep.copy_errors),
        (0, 1),
        "{second:?}"
    );
    let third = c.listen().await;
    assert_eq!(third.sweep.drops_given_up, 1, "{third:?}");

    let etag = c
        .world
        .clients
        .s3
        .head_object()
        .bucket(&c.drop_bucket)
        .key("drops/trains/t.csv")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let row = c
        .row(sluice_db::file_id(
            &c.drop_bucket,
            "drops/trains/t.csv",
            &etag,
        ))
        .await;
    assert_eq!(row.status, FileStatus::Failed);
    assert_eq!(row.dataset.as_deref(), Some("trains"));
    assert!(row.error.unwrap().contains("failed 2 times"));
    // Final: with the bucket back, the drop is not copied after all.
    c.listener.quarantine_bucket = quarantine;
    let fourth = c.listen().await;
    assert_eq!(
        (fourth.sweep.known, fourth.sweep.copied),
        (1, 0),
        "{fourth:?}"
    );
    assert_eq!(c.world.keys(&c.drop_bucket).await, ["drops/trains/t.csv"]);
    c.clean_up().await;
}

#[tokio::test]
async fn a_drop_over_the_single_copy_limit_is_copied_in_parts_byte_for_byte() {
    let c = chain(Duration::from_secs(3600), 3).await;
    let body: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    c.put_drop("drops/trains/big.bin", body.clone()).await;
    let listed = c
        .listener
        .objects
        .list_page(&c.drop_bucket, "drops/trains/", None, 10)
        .await
        .unwrap();
    let big = &listed.objects[0];
    let source = sluice_aws::CopySource {
        bucket: &c.drop_bucket,
        key: &big.key,
        etag: &big.etag,
        size: big.size,
    };
    let part = 5 * 1024 * 1024;
    let etag = c
        .listener
        .objects
        .copy_with_parts(
            source,
            &c.world.quarantine,
            "incoming/trains/big.bin",
            &[("sluice-site", "x")],
            part,
            part,
        )
        .await
        .unwrap();
    assert!(etag.ends_with("-3"), "three parts: {etag}");
    let copied = c
        .world
        .get(&c.world.quarantine, "incoming/trains/big.bin")
        .await;
    assert!(copied.as_deref() == Some(&body[..]), "the copy differs");
    let meta = c
        .metadata(&c.world.quarantine, "incoming/trains/big.bin")
        .await;
    assert_eq!(meta["sluice-site"], "x");
    // (The copy is pinned to the listed ETag with x-amz-copy-source-if-match; moto ignores
    // that header, so its refusal of a changed object is AWS's to show, not this test's.)
    c.clean_up().await;
}

#[tokio::test]
async fn eight_copies_of_one_resend_at_the_same_moment_send_the_missing_batches_once() {
    let c = chain(Duration::ZERO, 3).await;
    let ids = ["R-1", "R-2", "R-3", "R-4", "R-5"];
    let (id, key) = c.upload("resend-race.csv", &ids).await;
    c.sanitize(&key).await;
    let sanitized = c.world.drain_queue().await;
    sluice_transformer::handle(
        LambdaEvent::new(sqs_event(&sanitized), Context::default()),
        &c.transformer,
    )
    .await
    .unwrap();
    // Three batches; the first is delivered, the other two messages are lost.
    let mut batches = c.world.drain(&c.forward_queue).await;
    batches.sort_by_key(|b| b["seq"].as_u64());
    assert_eq!(batches.len(), 3);
    sluice_forwarder::handle(
        LambdaEvent::new(sqs_event(&batches[..1]), Context::default()),
        &c.forwarder,
    )
    .await
    .unwrap();
    assert_eq!(c.listen().await.redrive.redriven_forward, 1);
    let resend = c.world.drain_queue().await;
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0]["resend"], true);

    // Eight transformers (each its own connection) get the same resend at once.
    let mut workers = Vec::new();
    for _ in 0..8 {
        workers.push(sluice_transformer::Deps {
            config: c.transformer.config.clone(),
            store: c.world.store_as("sluice_transformer").await,
            objects: c.transformer.objects.clone(),
            queue: c.transformer.queue.clone(),
            clean_bucket: c.transformer.clean_bucket.clone(),
            max_receive_count: 3,
            visibility: None,
        });
    }
    let runs = workers.iter().map(|deps| {
        sluice_transformer::handle(
            LambdaEvent::new(sqs_event(&resend), Context::default()),
            deps,
        )
    });
    let answers = futures_util::future::join_all(runs).await;
    let retried = answers
        .into_iter()
        .map(|a| a.unwrap().batch_item_failures.len())
        .sum::<usize>();
    let mut again = c.world.drain(&c.forward_queue).await;
    again.sort_by_key(|b| b["seq"].as_u64());
    let seqs: Vec<u64> = again.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        [2, 3],
        "the two missing batches, once ({retried} copies waited)"
    );
    // The waiting copies come back later and find nothing left to do.
    sluice_forwarder::handle(
        LambdaEvent::new(sqs_event(&again), Context::default()),
        &c.forwarder,
    )
    .await
    .unwrap();
    assert_eq!(c.row(id).await.status, FileStatus::Delivered);
    sluice_transformer::handle(
        LambdaEvent::new(sqs_event(&resend), Context::default()),
        &c.transformer,
    )
    .await
    .unwrap();
    assert!(c.world.drain(&c.forward_queue).await.is_empty());
    assert_eq!(c.api.received().len(), 3, "one POST per batch");
    c.clean_up().await;
}

/// One file through the chain twice: over the AWS adapters (moto, PostgreSQL, the Lambda
/// handlers) and over the local ones (a folder, in-process queues, the embedded store), with
/// the same stage functions. Same records at the API, same status and counts.
#[tokio::test]
async fn the_aws_and_the_local_adapters_give_the_same_records_and_statuses() {
    use sluice_local::{FolderObjects, MemoryQueue, MemoryStore};
    use sluice_stages::forward::{forward_batch, Forward};
    use sluice_stages::ports::Registry;
    use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
    use sluice_stages::transform::{transform_file, Transform};

    let body = orders_csv(&["O-1", "O-2", "O-3", "O-4", "O-5"]);
    // Over AWS.
    let c = chain(Duration::from_secs(3600), 3).await;
    let (aws_id, _) = c
        .upload("same.csv", &["O-1", "O-2", "O-3", "O-4", "O-5"])
        .await;
    c.announce_quarantine().await;
    c.pump().await;
    let aws_row = c.row(aws_id).await;

    // Over the local adapters, to a second API.
    let local_api = MockApi::start().await;
    local_api.answer_by_default(Reply::Status(200));
    let config = PipelineConfig::parse(&config(&local_api.url()), "test").unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-same-{}", Uuid::new_v4()));
    let objects = FolderObjects::new(&dir);
    let store = MemoryStore::new();
    let (transform_queue, forward_queue) = (MemoryQueue::new(), MemoryQueue::new());
    let key = "incoming/orders/2026/11/24/same.csv";
    let path = objects.path("quarantine", key).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &body).unwrap();
    let lease = Lease {
        owner: "run/1".into(),
        until: SystemTime::now() + Duration::from_secs(60),
    };
    let sanitize = Sanitize {
        config: &config,
        store: &store,
        objects: &objects,
        queue: &transform_queue,
        clean_bucket: "clean",
    };
    let object = ObjectCreated {
        bucket: "quarantine".into(),
        key: key.into(),
        size: body.len() as i64,
        version_id: None,
    };
    let outcome = sanitize_object(&sanitize, &object, None, &lease)
        .await
        .unwrap();
    let local_id = outcome.file_id.unwrap();
    let transform = Transform {
        config: &config,
        store: &store,
        objects: &objects,
        queue: &forward_queue,
        clean_bucket: "clean",
    };
    for message in transform_queue.take_all() {
        let message = serde_json::from_str(&message).unwrap();
        transform_file(&transform, &message, &lease).await.unwrap();
    }
    let targets = Targets::resolve(&config, None).await;
    let http = HttpPoster::new(Reach::of(&config)).unwrap();
    let forward = Forward {
        config: &config,
        targets: &targets,
        store: &store,
        objects: &objects,
        poster: &http,
        clean_bucket: "clean",
    };
    for message in forward_queue.take_all() {
        forward_batch(&forward, &message, None, &lease)
            .await
            .unwrap();
    }
    let local_row = store.file(local_id).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let records = |api: &MockApi| {
        let mut r: Vec<String> = api
            .accepted_records()
            .iter()
            .map(|r| r.to_string())
            .collect();
        r.sort();
        r
    };
    assert_eq!(records(&c.api), records(&local_api));
    assert_eq!(records(&local_api).len(), 5);
    assert_eq!(aws_row.status, FileStatus::Delivered);
    assert_eq!(local_row.status, aws_row.status);
    let counts = |r: &FileRow| {
        (
            r.rows_in,
            r.rows_out,
            r.rows_rejected,
            r.records,
            r.batches_sent,
            r.batches_delivered,
        )
    };
    assert_eq!(counts(&local_row), counts(&aws_row));
    c.clean_up().await;
}

/// Defect 1 of the reliability issue: an upload whose event never reached the sanitizer (all
/// its deliveries failed before registration) gets a row from the listener's reconciliation,
/// and goes through the chain; an object still within the grace period is left to its event.
#[tokio::test]
async fn an_upload_whose_event_never_arrived_is_registered_and_delivered() {
    let mut c = chain(Duration::from_secs(3600), 3).await;
    c.listener.reconcile_days = 2;
    c.listener.reconcile_grace = Duration::ZERO;
    let today = sluice_listener::reconcile::day_prefixes("incoming/orders/", SystemTime::now(), 1)
        .remove(0);
    let key = format!("{today}{}-lost.csv", Uuid::new_v4());
    c.world.put(&key, orders_csv(&["L-1", "L-2"])).await;
    let id = c.file_of(&key).await;
    assert!(
        c.store().file(id).await.unwrap().is_none(),
        "no event, no row"
    );

    // Within the grace period: left alone.
    let mut patient = c.another_listener().await;
    patient.reconcile_grace = Duration::from_secs(3600);
    let run = c.listen_with(&patient).await;
    assert_eq!(run.reconcile.reconcile_registered, 0, "{run:?}");
    assert!(run.reconcile.reconcile_listed >= 1, "{run:?}");
    assert!(c.store().file(id).await.unwrap().is_none());

    let run = c.listen().await;
    assert_eq!(run.reconcile.reconcile_registered, 1, "{run:?}");
    assert_eq!(c.row(id).await.status, FileStatus::Received);
    // A second run finds the row: nothing registered or sent twice.
    let again = c.listen().await;
    assert_eq!(again.reconcile.reconcile_registered, 0, "{again:?}");
    c.pump().await;
    let row = c.row(id).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(row.records, Some(2));
    c.clean_up().await;
}

#[tokio::test]
async fn object_events_that_died_are_registered_from_their_dead_letter_queue() {
    let mut c = chain(Duration::from_secs(3600), 3).await;
    // No listing: only the dead letters can tell of these objects.
    c.listener.reconcile_days = 0;
    let dlq = c.world.new_queue("sluice-object-dlq").await;
    c.listener.object_dead_letter_queues = vec![dlq.clone()];
    let dead = |key: &str| {
        sluice_stages::redrive::object_created_event(&c.world.quarantine, key, "").to_string()
    };
    let send = |body: String| {
        let (sqs, dlq) = (c.world.clients.sqs.clone(), dlq.clone());
        async move {
            sqs.send_message()
                .queue_url(dlq)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
    };

    // A file whose event died before its row (no date in its key: the listing would not
    // find it), one that has its row and is delivered already, a key no dataset routes, and
    // a message that is no object event.
    let lost = format!("incoming/orders/{}-dead.csv", Uuid::new_v4());
    c.world.put(&lost, orders_csv(&["D-1", "D-2"])).await;
    let done = format!("incoming/orders/{}-done.csv", Uuid::new_v4());
    c.world.put(&done, orders_csv(&["D-3"])).await;
    c.announce_quarantine().await;
    c.world.drain(&c.sanitize_queue).await;
    let queue = Queue::new(c.world.clients.sqs.clone(), c.sanitize_queue.clone());
    queue.send_all(&[dead(&done)]).await.unwrap();
    c.pump().await;
    let done_id = c.file_of(&done).await;
    assert_eq!(c.row(done_id).await.status, FileStatus::Delivered);
    let unrouted = format!("elsewhere/{}.csv", Uuid::new_v4());
    c.world.put(&unrouted, orders_csv(&["X-1"])).await;
    for body in [
        dead(&lost),
        dead(&done),
        dead(&unrouted),
        "not an event".into(),
    ] {
        send(body).await;
    }
    let lost_id = c.file_of(&lost).await;
    assert!(c.store().file(lost_id).await.unwrap().is_none());

    let run = c.listen().await;
    let d = &run.dead_letters;
    assert_eq!(
        (
            d.dead_letters_returned,
            d.dead_letters_settled,
            d.dead_letters_kept
        ),
        (2, 1, 1),
        "{run:?}"
    );
    assert_eq!(c.row(lost_id).await.status, FileStatus::Received);
    // The kept message is still there, visible, and kept again by the next run.
    let again = c.listen().await;
    assert_eq!(again.dead_letters.dead_letters_kept, 1, "{again:?}");
    assert_eq!(again.dead_letters.dead_letters_returned, 0, "{again:?}");

    c.pump().await;
    let row = c.row(lost_id).await;
    assert_eq!(row.status, FileStatus::Delivered);
    assert_eq!(row.records, Some(2));
    let rejected = c.row(c.file_of(&unrouted).await).await;
    assert_eq!(rejected.status, FileStatus::Rejected);
    assert_eq!(c.row(done_id).await.status, FileStatus::Delivered);
    let left = c
        .world
        .clients
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = left.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        ["not an event"],
        "only the message that is no event is left"
    );
    c.world.delete_queue(&dlq).await;
    c.clean_up().await;
}

#[tokio::test]
async fn two_listener_runs_at_once_return_each_dead_object_event_once() {
    let mut c = chain(Duration::from_secs(3600), 3).await;
    c.listener.reconcile_days = 0;
    let dlq = c.world.new_queue("sluice-object-dlq").await;
    c.listener.object_dead_letter_queues = vec![dlq.clone()];
    let mut keys = Vec::new();
    for i in 0..6 {
        let key = format!("incoming/orders/{}-dead-{i}.csv", Uuid::new_v4());
        c.world.put(&key, orders_csv(&[&format!("E-{i}")])).await;
        let event = sluice_stages::redrive::object_created_event(&c.world.quarantine, &key, "");
        c.world
            .clients
            .sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(event.to_string())
            .send()
            .await
            .unwrap();
        keys.push(key);
    }

    // Two runs on their own connections, started together.
    let other = c.another_listener().await;
    let (one, two) = tokio::join!(c.listen(), c.listen_with(&other));
    let returned = one.dead_letters.dead_letters_returned + two.dead_letters.dead_letters_returned;
    assert_eq!(
        returned, 6,
        "each dead event returned once: {one:?} {two:?}"
    );
    let sent = c.world.drain(&c.sanitize_queue).await;
    assert_eq!(sent.len(), 6, "{sent:?}");
    for key in &keys {
        assert_eq!(
            sent.iter()
                .filter(|b| b["detail"]["object"]["key"] == key.as_str())
                .count(),
            1,
            "{key}"
        );
        let id = c.file_of(key).await;
        assert_eq!(c.row(id).await.status, FileStatus::Received);
    }
    assert_eq!(
        sluice_aws::dlq::Queues::new(c.world.clients.sqs.clone())
            .depth(&dlq)
            .await
            .unwrap(),
        0
    );
    c.world.delete_queue(&dlq).await;
    c.clean_up().await;
}
