//! An in-process chaos soak: the sanitize, transform, forward and re-drive stages (the very
//! functions the Lambdas call) over real PostgreSQL, a folder for the buckets, and queues with
//! SQS's semantics (visibility, receive counts, a dead-letter queue on the last receive), with
//! seeded faults: invocations killed at a random point (the future dropped, its lease left to
//! lapse, its message back after the visibility timeout), database backends terminated, an
//! object store that fails, queues that refuse a send, an API that fails, hangs, or takes a
//! batch and answers too late. Then it checks what must hold whatever happened: every file
//! final, every row of every accepted file at the API or its file failed with a reason, no
//! record under two idempotency keys, no POST of a batch after its 2xx was recorded, and the
//! file counters equal to `api_call`.
//!
//! What it is not: the release binaries under an emulated Lambda service (no process is
//! killed, the consumer shell of `sluice_lambda` is stood in for by `Worker`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use sluice_core::delivery::{AttemptClass, BatchHeader};
use sluice_core::message::FileSanitized;
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{migrate, Db, DbConfig, Store};
use sluice_local::{FolderError, FolderObjects};
use sluice_stages::delivery::Attempt;
use sluice_stages::delivery::{Target, Targets};
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::ports::{Lease, ObjectMeta, Objects, Outbox, Poster};
use sluice_stages::redrive::{object_created_event, redrive_stuck, RedriveCounts, RedriveStage};
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::transform::{transform_file, Transform};
use sluice_stages::Fault;

use crate::database_url;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "https://api.example.com/orders"
batch_size = 7
max_attempts = 1
timeout_ms = 200
[datasets.orders.mapping]
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "quantity"
column = "qty"
type = "integer"
"#;

/// How hard the soak shakes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub files: usize,
    pub rows: usize,
    pub seed: u64,
    /// Share of invocations killed at a random point.
    pub kill: f64,
    /// Share of object-store and queue calls that fail.
    pub store_errors: f64,
    /// Share of POSTs that fail (500), hang past the timeout, or are taken and answered late.
    pub api_errors: f64,
    /// How often every database backend of the soak is terminated.
    pub db_kill_every: Duration,
    /// Concurrent workers per stage.
    pub workers: usize,
    /// Workers of the forward stage, and how long the API takes per POST: one slow worker
    /// makes a backlog longer than the sweep's stale time.
    pub forward_workers: usize,
    pub api_delay: Duration,
    /// The sweep's stale time and re-drive limit.
    pub stale_after: Duration,
    pub max_redrives: i32,
    /// The soak gives up (and says so) after this long.
    pub limit: Duration,
}

impl Settings {
    pub fn small(seed: u64) -> Self {
        Self {
            files: 40,
            rows: 23,
            seed,
            kill: 0.18,
            store_errors: 0.05,
            api_errors: 0.1,
            db_kill_every: Duration::from_millis(700),
            workers: 3,
            forward_workers: 3,
            api_delay: Duration::ZERO,
            stale_after: Duration::from_secs(3),
            max_redrives: 4,
            limit: Duration::from_secs(150),
        }
    }

    /// No fault at all, but one slow forwarder: a backlog several times the stale time, with
    /// one re-drive allowed. Nothing may fail for waiting.
    pub fn backlog(seed: u64) -> Self {
        Self {
            files: 30,
            kill: 0.0,
            store_errors: 0.0,
            api_errors: 0.0,
            db_kill_every: Duration::from_secs(3600),
            forward_workers: 1,
            api_delay: Duration::from_millis(40),
            stale_after: Duration::from_secs(1),
            max_redrives: 1,
            ..Self::small(seed)
        }
    }
}

/// What the soak saw.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub seconds: f64,
    pub files: usize,
    pub delivered: usize,
    pub failed: usize,
    pub rejected: usize,
    pub not_final: usize,
    /// Uploads that never got a `file_process` row.
    pub no_row: usize,
    pub invocations: u64,
    pub killed: u64,
    pub backends_terminated: u64,
    pub posts: usize,
    pub records_at_api: usize,
    pub dead_letters: usize,
    pub redrives: RedriveCounts,
    /// What must hold and did not, one line each.
    pub violations: Vec<String>,
}

/// A small seeded generator (SplitMix64): the same seed, the same faults.
pub struct Dice(Mutex<u64>);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    pub fn next(&self) -> u64 {
        let mut s = self.0.lock().unwrap();
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn chance(&self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn below(&self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A fault the soak injected.
#[derive(Debug)]
pub struct Injected(&'static str);

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "injected fault: {}", self.0)
    }
}

impl std::error::Error for Injected {}

/// A message in a [`SimQueue`].
struct Message {
    id: u64,
    body: String,
    visible_at: Instant,
    receives: u32,
}

/// A queue with SQS's delivery rules: a received message is hidden for the visibility timeout,
/// and one received more than `max_receives` times goes to the dead-letter queue instead.
pub struct SimQueue {
    messages: Mutex<Vec<Message>>,
    dead: Mutex<Vec<String>>,
    next: AtomicU64,
    visibility: Duration,
    max_receives: u32,
    dice: Arc<Dice>,
    send_errors: f64,
}

impl SimQueue {
    fn new(dice: Arc<Dice>, send_errors: f64, visibility: Duration, max_receives: u32) -> Self {
        Self {
            messages: Mutex::default(),
            dead: Mutex::default(),
            next: AtomicU64::new(1),
            visibility,
            max_receives,
            dice,
            send_errors,
        }
    }

    fn receive(&self, max: usize) -> Vec<(u64, String, u32)> {
        let now = Instant::now();
        let mut messages = self.messages.lock().unwrap();
        let mut dead = Vec::new();
        let mut got = Vec::new();
        messages.retain_mut(|m| {
            if got.len() == max || m.visible_at > now {
                return true;
            }
            if m.receives >= self.max_receives {
                dead.push(m.body.clone());
                return false;
            }
            m.receives += 1;
            m.visible_at = now + self.visibility;
            got.push((m.id, m.body.clone(), m.receives));
            true
        });
        self.dead.lock().unwrap().extend(dead);
        got
    }

    fn delete(&self, id: u64) {
        self.messages.lock().unwrap().retain(|m| m.id != id);
    }

    /// Back in sight after `after` (the consumer shell's backoff).
    fn give_back(&self, id: u64, after: Duration) {
        if let Some(m) = self
            .messages
            .lock()
            .unwrap()
            .iter_mut()
            .find(|m| m.id == id)
        {
            m.visible_at = Instant::now() + after;
        }
    }

    fn push(&self, body: String) {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.messages.lock().unwrap().push(Message {
            id,
            body,
            visible_at: Instant::now(),
            receives: 0,
        });
    }

    fn is_empty(&self) -> bool {
        self.messages.lock().unwrap().is_empty()
    }
}

impl Outbox for SimQueue {
    type Error = Injected;

    async fn send_all(&self, bodies: &[String]) -> Result<(), Injected> {
        if self.dice.chance(self.send_errors) {
            return Err(Injected("the queue refused the send"));
        }
        for body in bodies {
            self.push(body.clone());
        }
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, Injected> {
        Ok(self.messages.lock().unwrap().len() as u64)
    }
}

/// A folder of buckets whose calls fail now and then.
pub struct FlakyObjects {
    inner: FolderObjects,
    dice: Arc<Dice>,
    errors: f64,
}

impl FlakyObjects {
    /// Fails with probability `errors`, as S3 does now and then.
    fn fault(&self, op: &'static str, bucket: &str, key: &str) -> Result<(), FolderError> {
        match self.dice.chance(self.errors) {
            true => Err(FolderError::new(
                op,
                bucket,
                key,
                std::io::Error::other("injected fault: 503 Slow Down"),
            )),
            false => Ok(()),
        }
    }
}

impl Objects for FlakyObjects {
    type Error = FolderError;
    type Reader = tokio::fs::File;
    type Upload = sluice_local::FolderUpload;

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<(tokio::fs::File, ObjectMeta)>, Self::Error> {
        self.fault("open", bucket, key)?;
        self.inner.open(bucket, key, version).await
    }

    async fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<HashMap<String, String>>, Self::Error> {
        self.fault("head", bucket, key)?;
        self.inner.metadata(bucket, key).await
    }

    fn upload(&self, bucket: &str, key: &str, content_type: &str) -> Self::Upload {
        self.inner.upload(bucket, key, content_type)
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), Self::Error> {
        self.fault("put", bucket, key)?;
        self.inner.put(bucket, key, body, content_type).await
    }

    async fn merge_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(&str, &str)],
    ) -> Result<Vec<String>, Self::Error> {
        self.fault("tag", bucket, key)?;
        self.inner.merge_tags(bucket, key, tags).await
    }
}

/// One POST the API saw.
pub struct Post {
    pub batch_id: String,
    pub at: SystemTime,
    /// The API kept the records (a 2xx, or a batch taken and answered too late).
    pub taken: bool,
    /// The records' `orderId`s.
    pub records: Vec<String>,
}

/// An API that fails, hangs, or takes a batch and answers after the client gave up.
pub struct ChaosApi {
    dice: Arc<Dice>,
    errors: f64,
    delay: Duration,
    posts: Mutex<Vec<Post>>,
}

impl Poster for ChaosApi {
    async fn post(
        &self,
        _target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        timeout: Duration,
    ) -> Attempt {
        tokio::time::sleep(self.delay).await;
        let roll = self.dice.below(3);
        let fails = self.dice.chance(self.errors);
        let records: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
        let ids = records
            .iter()
            .filter_map(|r| r["orderId"].as_str().map(str::to_string))
            .collect();
        let (taken, class, status, error) = match (fails, roll) {
            (false, _) => (true, AttemptClass::Delivered, Some(200), None),
            (true, 0) => (false, AttemptClass::Transient, Some(500), Some("HTTP 500")),
            (true, 1) => {
                tokio::time::sleep(timeout.min(Duration::from_millis(50))).await;
                (false, AttemptClass::Transient, None, Some("timed out"))
            }
            (true, _) => (
                true,
                AttemptClass::Transient,
                None,
                Some("timed out (taken late)"),
            ),
        };
        self.posts.lock().unwrap().push(Post {
            batch_id: batch.batch_id.to_string(),
            at: SystemTime::now(),
            taken,
            records: ids,
        });
        Attempt {
            class,
            status,
            latency: Duration::from_millis(1),
            excerpt: None,
            error: error.map(str::to_string),
            retry_after: None,
        }
    }
}

/// Which stage a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sanitize,
    Transform,
    Forward,
}

/// Everything the workers share.
struct Chain {
    config: PipelineConfig,
    targets: Targets,
    store: Store,
    objects: FlakyObjects,
    api: ChaosApi,
    sanitize_q: SimQueue,
    transform_q: SimQueue,
    forward_q: SimQueue,
    dice: Arc<Dice>,
    kill: f64,
    invocations: AtomicU64,
    killed: AtomicU64,
}

const LEASE: Duration = Duration::from_millis(1500);
const MAX_RECEIVES: u32 = 8;

impl Chain {
    fn queue(&self, role: Role) -> &SimQueue {
        match role {
            Role::Sanitize => &self.sanitize_q,
            Role::Transform => &self.transform_q,
            Role::Forward => &self.forward_q,
        }
    }

    /// One invocation for one message: the stage, perhaps killed part way.
    async fn invoke(&self, role: Role, worker: &str, id: u64, body: String, receives: u32) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let lease = Lease {
            owner: format!("{worker}/{id}/{receives}"),
            until: SystemTime::now() + LEASE,
        };
        let deadline = Instant::now() + LEASE - Duration::from_millis(200);
        let work = self.run(role, &body, deadline, &lease);
        let result = match self.dice.chance(self.kill) {
            true => {
                let at = Duration::from_micros(self.dice.below(30_000));
                tokio::time::timeout(at, work).await.ok()
            }
            false => Some(work.await),
        };
        let queue = self.queue(role);
        match result {
            // Killed: nothing more happens; the message and the lease run out by themselves.
            None => {
                self.killed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(())) => queue.delete(id),
            Some(Err((fault, file))) => {
                let delivery = Delivery {
                    receive_count: receives,
                    max_receive_count: MAX_RECEIVES,
                };
                let stage = match role {
                    Role::Sanitize => Stage::Sanitizer,
                    Role::Transform => Stage::Transformer,
                    Role::Forward => Stage::Forwarder,
                };
                message_failed(&self.store, stage, file, delivery, &fault).await;
                let backoff = Duration::from_millis(20 * 2u64.pow(receives.min(5)));
                queue.give_back(id, backoff);
            }
        }
    }

    async fn run(
        &self,
        role: Role,
        body: &str,
        deadline: Instant,
        lease: &Lease,
    ) -> Result<(), (Fault, Option<uuid::Uuid>)> {
        match role {
            Role::Sanitize => {
                let event: Value = serde_json::from_str(body).unwrap_or_default();
                let object = ObjectCreated {
                    bucket: event["detail"]["bucket"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    key: event["detail"]["object"]["key"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    size: 0,
                    version_id: None,
                };
                let stage = Sanitize {
                    config: &self.config,
                    store: &self.store,
                    objects: &self.objects,
                    queue: &self.transform_q,
                    clean_bucket: "clean",
                };
                sanitize_object(&stage, &object, Some(deadline), lease)
                    .await
                    .map(|_| ())
                    .map_err(|f| (f, None))
            }
            Role::Transform => {
                let message: FileSanitized = serde_json::from_str(body).expect("ours");
                let stage = Transform {
                    config: &self.config,
                    store: &self.store,
                    objects: &self.objects,
                    queue: &self.forward_q,
                    clean_bucket: "clean",
                };
                transform_file(&stage, &message, lease)
                    .await
                    .map_err(|f| (f, Some(message.file_id)))
            }
            Role::Forward => {
                let file = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["file_id"].as_str().and_then(|s| s.parse().ok()));
                let stage = Forward {
                    config: &self.config,
                    targets: &self.targets,
                    store: &self.store,
                    objects: &self.objects,
                    poster: &self.api,
                    clean_bucket: "clean",
                };
                forward_batch(&stage, body, Some(deadline), lease)
                    .await
                    .map_err(|f| (f, file))
            }
        }
    }
}

/// A stage's worker: receives up to ten messages at a time, like an event source mapping.
async fn worker(chain: Arc<Chain>, role: Role, name: String, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let got = chain.queue(role).receive(10);
        if got.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for (id, body, receives) in got {
            chain.invoke(role, &name, id, body, receives).await;
        }
    }
}

/// Runs the soak; the schema it makes is dropped at the end.
pub async fn soak(settings: Settings) -> Figures {
    let started = Instant::now();
    let dice = Arc::new(Dice::new(settings.seed));
    let schema = format!("sluice_chaos_{}", uuid::Uuid::new_v4().simple());
    let app = format!("sluice-chaos-{}", &schema[13..21]);
    let base = database_url();
    let admin = DbConfig::parse(&base, None).unwrap();
    let admin_client = admin.connect().await.expect("PostgreSQL is reachable");
    admin_client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let url = format!(
        "{}?sslmode=disable&application_name={app}",
        base.split('?').next().unwrap()
    );
    let db = Db::new(DbConfig::parse(&url, None).unwrap().with_schema(&schema));
    migrate(&db).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-chaos-{}", uuid::Uuid::new_v4()));
    let config = PipelineConfig::parse(CONFIG, "chaos").unwrap();
    let visibility = Duration::from_millis(1200);
    let errors = settings.store_errors;
    let chain = Arc::new(Chain {
        targets: Targets::resolve(&config, None).await,
        config,
        store: Store::new(db),
        objects: FlakyObjects {
            inner: FolderObjects::new(&dir),
            dice: dice.clone(),
            errors,
        },
        api: ChaosApi {
            dice: dice.clone(),
            errors: settings.api_errors,
            delay: settings.api_delay,
            posts: Mutex::default(),
        },
        sanitize_q: SimQueue::new(dice.clone(), 0.0, visibility, MAX_RECEIVES),
        transform_q: SimQueue::new(dice.clone(), errors, visibility, MAX_RECEIVES),
        forward_q: SimQueue::new(dice.clone(), errors, visibility, MAX_RECEIVES),
        dice: dice.clone(),
        kill: settings.kill,
        invocations: AtomicU64::new(0),
        killed: AtomicU64::new(0),
    });

    // The uploads: every row a unique order, so the API's records can be counted exactly.
    let mut uploads = Vec::new();
    for f in 0..settings.files {
        let key = format!(
            "incoming/orders/2026/12/05/{}-f{f}.csv",
            uuid::Uuid::new_v4()
        );
        let mut text = String::from("order_id,qty\n");
        for r in 0..settings.rows {
            text.push_str(&format!("F{f}-R{r},{}\n", r + 1));
        }
        let path = chain.objects.inner.path("quarantine", &key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        chain
            .sanitize_q
            .push(object_created_event("quarantine", &key, "").to_string());
        uploads.push(key);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for role in [Role::Sanitize, Role::Transform, Role::Forward] {
        let workers = match role {
            Role::Forward => settings.forward_workers,
            _ => settings.workers,
        };
        for w in 0..workers {
            let name = format!("{role:?}-{w}").to_lowercase();
            tasks.push(tokio::spawn(worker(
                chain.clone(),
                role,
                name,
                stop.clone(),
            )));
        }
    }
    // Database backends terminated now and then, whatever they were doing.
    let terminated = Arc::new(AtomicU64::new(0));
    let killer = terminate_backends(
        admin_client,
        app.clone(),
        settings.db_kill_every,
        stop.clone(),
        terminated.clone(),
    );
    // The listener's sweep, on a short schedule.
    let mut redrives = RedriveCounts::default();
    let stage = RedriveStage {
        store: &chain.store,
        objects: &chain.objects,
        sanitize_queue: &chain.sanitize_q,
        transform_queue: &chain.transform_q,
        forward_queue: &chain.forward_q,
        clean_bucket: "clean",
        stale_after: settings.stale_after,
        max_redrives: settings.max_redrives,
    };
    let mut finished = false;
    while started.elapsed() < settings.limit {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = redrive_stuck(&stage, || false, &mut redrives).await;
        if all_final(&chain.store, settings.files).await
            && chain.sanitize_q.is_empty()
            && chain.transform_q.is_empty()
            && chain.forward_q.is_empty()
        {
            finished = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let admin_client = killer.await.unwrap();

    let calls = admin_client
        .query(
            &format!("SELECT file_id, batch_id, http_status, at FROM {schema}.api_call WHERE http_status IS NOT NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let posts = std::mem::take(&mut *chain.api.posts.lock().unwrap());
    let mut figures = check(&chain.store, &posts, &uploads, settings.rows, calls).await;
    if !finished {
        figures.violations.push(format!(
            "not every file was final with its queues empty after {} s",
            settings.limit.as_secs()
        ));
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.invocations = chain.invocations.load(Ordering::Relaxed);
    figures.killed = chain.killed.load(Ordering::Relaxed);
    figures.backends_terminated = terminated.load(Ordering::Relaxed);
    figures.redrives = redrives;
    figures.dead_letters = [&chain.sanitize_q, &chain.transform_q, &chain.forward_q]
        .iter()
        .map(|q| q.dead.lock().unwrap().len())
        .sum();
    let _ = admin_client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

pub async fn all_final(store: &Store, files: usize) -> bool {
    let Ok(rows) = store
        .files(&sluice_db::FileQuery {
            limit: files as i64 * 2 + 10,
            ..Default::default()
        })
        .await
    else {
        return false;
    };
    rows.len() >= files && rows.iter().all(|f| f.status.is_final())
}

/// What must hold, checked against the store, `api_call` (`calls`: file, batch, status, time)
/// and what the API took (`posts`). Upload `f` (`uploads[f]`) had `rows_per_file` rows with
/// `orderId`s `F{f}-R{r}`.
pub async fn check(
    store: &Store,
    posts: &[Post],
    uploads: &[String],
    rows_per_file: usize,
    calls: Vec<(uuid::Uuid, String, i32, SystemTime)>,
) -> Figures {
    let mut figures = Figures {
        files: uploads.len(),
        ..Figures::default()
    };
    let mut v = Vec::new();
    let rows = loop {
        // The last backend termination may still be in the way.
        match store
            .files(&sluice_db::FileQuery {
                limit: uploads.len() as i64 * 2 + 10,
                ..Default::default()
            })
            .await
        {
            Ok(rows) => break rows,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let by_key: HashMap<&str, _> = rows.iter().map(|f| (f.source_key.as_str(), f)).collect();

    // What the API took, per record: the idempotency keys (batch ids) it came under.
    figures.posts = posts.len();
    let mut keys_of: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for post in posts.iter().filter(|p| p.taken) {
        for record in &post.records {
            keys_of.entry(record).or_default().insert(&post.batch_id);
        }
    }
    figures.records_at_api = keys_of.len();
    for (record, keys) in &keys_of {
        if keys.len() > 1 {
            v.push(format!(
                "record {record} under {} idempotency keys",
                keys.len()
            ));
        }
    }

    for (f, key) in uploads.iter().enumerate() {
        let Some(file) = by_key.get(key.as_str()) else {
            figures.no_row += 1;
            v.push(format!("upload {key} has no file_process row"));
            continue;
        };
        match file.status {
            FileStatus::Delivered => {
                figures.delivered += 1;
                let missing = (0..file.rows_out.unwrap_or(0))
                    .filter(|r| !keys_of.contains_key(format!("F{f}-R{r}").as_str()))
                    .count();
                if missing > 0 || file.rows_out != Some(rows_per_file as i64) {
                    v.push(format!(
                        "file {} delivered with {missing} of its records not at the API",
                        file.id
                    ));
                }
            }
            FileStatus::Failed => {
                figures.failed += 1;
                if file.error.as_deref().unwrap_or("").is_empty() {
                    v.push(format!("file {} failed without a reason", file.id));
                }
            }
            FileStatus::Rejected => {
                figures.rejected += 1;
                v.push(format!("file {} rejected: {:?}", file.id, file.error));
            }
            other => {
                figures.not_final += 1;
                v.push(format!("file {} is still {other}", file.id));
            }
        }
    }

    // api_call against the counters and against the POSTs.
    let mut first_2xx: HashMap<&str, SystemTime> = HashMap::new();
    let mut delivered_batches: HashMap<uuid::Uuid, HashSet<&str>> = HashMap::new();
    for (file, batch, status, at) in &calls {
        if (200..300).contains(status) {
            let t = first_2xx.entry(batch.as_str()).or_insert(*at);
            *t = (*t).min(*at);
            delivered_batches.entry(*file).or_default().insert(batch);
        }
    }
    for post in posts.iter() {
        if let Some(recorded) = first_2xx.get(post.batch_id.as_str()) {
            // A margin for the two clocks: the POST's time is taken after it answered.
            if post.at > *recorded + Duration::from_millis(5) && post.taken {
                v.push(format!(
                    "batch {} POSTed again after its 2xx was recorded",
                    post.batch_id
                ));
            }
        }
    }
    for file in rows.iter().filter(|f| f.status == FileStatus::Delivered) {
        let counted = file.batches_delivered.unwrap_or(-1) as usize;
        let in_calls = delivered_batches.get(&file.id).map_or(0, HashSet::len);
        if counted != in_calls || file.batches_sent.map(|b| b as usize) != Some(in_calls) {
            v.push(format!(
                "file {}: batches_delivered {counted}, batches_sent {:?}, 2xx batches in api_call {in_calls}",
                file.id, file.batches_sent
            ));
        }
    }
    figures.violations = v;
    figures
}

/// Terminates every PostgreSQL backend of application `app` every `every` until `stop`,
/// whatever it is doing, counting them in `terminated`; gives the admin connection back.
pub fn terminate_backends(
    admin: tokio_postgres::Client,
    app: String,
    every: Duration,
    stop: Arc<AtomicBool>,
    terminated: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<tokio_postgres::Client> {
    tokio::spawn(async move {
        let mut next = Instant::now() + every;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + every;
            let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                       WHERE application_name = $1";
            if let Ok(row) = admin.query_one(sql, &[&app]).await {
                terminated.fetch_add(row.get::<_, i64>(0) as u64, Ordering::Relaxed);
            }
        }
        admin
    })
}
