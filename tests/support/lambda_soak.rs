//! The chaos soak of the shipped Lambda binaries: the sanitizer, transformer, forwarder and
//! listener bootstraps run as processes under an emulated Lambda service
//! ([`crate::lambda_emu`]: warm containers, event source mappings with batch item failures
//! and the queues' visibility and redrive policies in moto, the listener on a schedule) over
//! moto and PostgreSQL, with seeded faults: containers killed mid-invocation, database
//! backends terminated and connections refused (a proxy in front of PostgreSQL), S3 requests
//! answered `503 Slow Down` (a proxy in front of moto's S3), an API that fails, hangs and
//! takes a batch but answers too late, uploads whose "Object Created" event is lost, and a
//! forwarder slower than the uploads. Then the same checks as the in-process soak
//! ([`crate::chaos::check`]).
//!
//! What it is not: S3's direct asynchronous invocation (the template has none: S3 events
//! reach the sanitizer through EventBridge and its queue; here the harness sends the
//! EventBridge message itself), and Lambda's scaling of a mapping's pollers (each mapping
//! has a fixed number of containers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sluice_aws::Clients;
use sluice_db::{migrate, Db, DbConfig, Store};
use sluice_stages::redrive::object_created_event;
use tokio::net::TcpListener;

use crate::chaos::{self, all_final, check, Dice, Post};
use crate::database_url;
use crate::fault_proxy::{Fault, FaultProxy};
use crate::lambda_emu::{poll, schedule, Counters, Function, Killer, Mapping};

/// How hard the soak shakes, and with which binaries.
#[derive(Debug, Clone)]
pub struct Settings {
    pub files: usize,
    pub rows: usize,
    pub seed: u64,
    /// Where `sluice-sanitizer`, `-transformer`, `-forwarder` and `-listener` are.
    pub binaries: PathBuf,
    /// Share of invocations whose container is killed part way.
    pub kill: f64,
    /// Share of new database connections refused.
    pub db_refuse: f64,
    /// Share of S3 connections answered `503 Slow Down`.
    pub s3_errors: f64,
    /// Share of POSTs that fail (500), hang past the timeout, or are taken and answered late.
    pub api_errors: f64,
    /// How long the API takes per POST (a slow API makes a backlog).
    pub api_delay: Duration,
    /// Share of uploads whose "Object Created" message never reaches the sanitize queue.
    pub lost_events: f64,
    /// How often every database backend of the soak's functions is terminated.
    pub db_kill_every: Duration,
    /// Containers per mapping (sanitizer, transformer), and the forwarder's.
    pub concurrency: usize,
    pub forward_concurrency: usize,
    /// The listener's schedule; its stale time (at least 60 s) and re-drive limit.
    pub listener_every: Duration,
    pub stale_after_s: u64,
    pub max_redrives: u32,
    /// The soak gives up (and says so) after this long.
    pub limit: Duration,
    /// Where the functions' JSON logs go (one file per function), if anywhere.
    pub logs: Option<PathBuf>,
}

impl Settings {
    /// Two to seven minutes on two cores: 24 files, every fault.
    pub fn small(seed: u64, binaries: PathBuf) -> Self {
        Self {
            files: 24,
            rows: 23,
            seed,
            binaries,
            kill: 0.18,
            db_refuse: 0.05,
            s3_errors: 0.03,
            api_errors: 0.1,
            api_delay: Duration::ZERO,
            lost_events: 0.1,
            db_kill_every: Duration::from_secs(6),
            concurrency: 2,
            forward_concurrency: 2,
            listener_every: Duration::from_secs(5),
            stale_after_s: 60,
            max_redrives: 3,
            // Each kill costs a visibility timeout (25 s) and a re-drive waits out the 60 s
            // stale time, doubling: a run with many kills needs minutes to converge.
            limit: Duration::from_secs(900),
            logs: None,
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
    pub no_row: usize,
    pub lost_events: usize,
    pub invocations: u64,
    pub cold_starts: u64,
    pub killed: u64,
    pub timed_out: u64,
    pub function_errors: u64,
    pub backends_terminated: u64,
    pub db_refused: u64,
    pub s3_503: u64,
    pub posts: usize,
    pub records_at_api: usize,
    pub dead_letters: u64,
    pub violations: Vec<String>,
}

const FUNCTION_TIMEOUT: Duration = Duration::from_secs(20);
const VISIBILITY_S: i32 = 25;
const MAX_RECEIVES: u32 = 8;

/// The API: fails, hangs, or takes a batch and answers too late, as the dice say.
struct SoakApi {
    dice: Arc<Dice>,
    errors: f64,
    delay: Duration,
    /// The client's timeout (the config's `timeout_ms`).
    timeout: Duration,
    posts: Mutex<Vec<Post>>,
}

async fn api_answer(
    request: Request<Incoming>,
    api: Arc<SoakApi>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !api.delay.is_zero() {
        tokio::time::sleep(api.delay).await;
    }
    let records: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    let ids = records
        .iter()
        .filter_map(|r| r["orderId"].as_str().map(str::to_string))
        .collect();
    let fails = api.dice.chance(api.errors);
    let roll = api.dice.below(3);
    let (taken, status) = match (fails, roll) {
        (false, _) => (true, 200),
        (true, 0) => (false, 500),
        // Hangs past the client's timeout, and takes nothing.
        (true, 1) => {
            tokio::time::sleep(api.timeout + Duration::from_millis(500)).await;
            (false, 504)
        }
        // Takes the batch, and answers after the client gave up.
        (true, _) => {
            tokio::time::sleep(api.timeout + Duration::from_millis(500)).await;
            (true, 200)
        }
    };
    api.posts.lock().unwrap().push(Post {
        batch_id: key,
        at: SystemTime::now(),
        taken,
        records: ids,
    });
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
        .unwrap())
}

async fn start_api(api: Arc<SoakApi>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let api = api.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| api_answer(req, api.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

fn config(api: SocketAddr) -> String {
    format!(
        r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.delivery]
endpoint = "http://{api}/orders"
allow_private_hosts = ["127.0.0.1"]
batch_size = 7
max_attempts = 3
timeout_ms = 1500
[datasets.orders.mapping]
[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true
[[datasets.orders.mapping.fields]]
name = "quantity"
column = "qty"
type = "integer"
"#
    )
}

/// `host:port` of a URL, resolved to a loopback socket address.
fn socket_of(url: &str, default_port: u16) -> SocketAddr {
    let parsed = url::Url::parse(url).expect("a URL");
    let host = match parsed.host_str() {
        Some("localhost") | None => "127.0.0.1",
        Some(h) => h,
    };
    format!("{host}:{}", parsed.port().unwrap_or(default_port))
        .parse()
        .expect("a numeric host")
}

/// A queue with its dead-letter queue; returns (url, arn, dlq url).
async fn queue_with_dlq(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let arn_of = |url: String| async move {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .unwrap();
        (url, attrs.attributes().unwrap()[&A::QueueArn].clone())
    };
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let (dlq_url, dlq_arn) = arn_of(dlq_url).await;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, VISIBILITY_S.to_string())
        .attributes(
            A::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let (url, arn) = arn_of(url).await;
    (url, arn, dlq_url)
}

/// Messages on a queue, visible or in flight.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let Ok(attrs) = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
    else {
        return u64::MAX;
    };
    attrs
        .attributes()
        .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(u64::MAX)
}

/// Runs the soak; its schema, buckets and queues are removed at the end.
pub async fn soak(settings: Settings) -> Figures {
    let started = Instant::now();
    let dice = Arc::new(Dice::new(settings.seed));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let schema = format!("sluice_lsoak_{tag}");
    let app = format!("sluice-lsoak-{tag}");
    let clients = Clients::from_env().await;
    let (s3, sqs) = (clients.s3.clone(), clients.sqs.clone());
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: moto server");

    // The database, and a proxy in front of it that refuses some connections.
    let base = database_url();
    let admin = DbConfig::parse(&base, None).unwrap();
    let admin_client = admin.connect().await.expect("PostgreSQL is reachable");
    admin_client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let store = Store::new(Db::new(admin.clone().with_schema(&schema)));
    migrate(&Db::new(admin.clone().with_schema(&schema)))
        .await
        .unwrap();
    let pg = socket_of(&base.replace("postgres://", "http://"), 5432);
    let pg_proxy = {
        let (dice, p) = (dice.clone(), settings.db_refuse);
        FaultProxy::start(pg, Fault::Refuse, Arc::new(move || dice.chance(p))).await
    };
    let db_url = {
        let without_host = base.split('@').nth(1).unwrap_or("127.0.0.1:5432/test");
        let database = without_host
            .split('/')
            .nth(1)
            .unwrap_or("test")
            .split('?')
            .next()
            .unwrap();
        let user = base
            .trim_start_matches("postgres://")
            .split('@')
            .next()
            .unwrap_or("postgres");
        format!(
            "postgres://{user}@{}/{database}?sslmode=disable&application_name={app}&options=-c%20search_path%3D{schema}",
            pg_proxy.addr
        )
    };
    let s3_proxy = {
        let (dice, p) = (dice.clone(), settings.s3_errors);
        FaultProxy::start(
            socket_of(&moto, 80),
            Fault::Http503,
            Arc::new(move || dice.chance(p)),
        )
        .await
    };

    // Buckets and queues, as the template makes them.
    let quarantine = format!("sluice-lsoak-q-{tag}");
    let clean = format!("sluice-lsoak-c-{tag}");
    for bucket in [&quarantine, &clean] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let sanitize_q = queue_with_dlq(&sqs, &format!("sluice-lsoak-sanitize-{tag}")).await;
    let transform_q = queue_with_dlq(&sqs, &format!("sluice-lsoak-transform-{tag}")).await;
    let forward_q = queue_with_dlq(&sqs, &format!("sluice-lsoak-forward-{tag}")).await;

    // The API, and the config the functions read.
    let api = Arc::new(SoakApi {
        dice: dice.clone(),
        errors: settings.api_errors,
        delay: settings.api_delay,
        timeout: Duration::from_millis(1500),
        posts: Mutex::default(),
    });
    let (api_addr, api_task) = start_api(api.clone()).await;
    let dir = std::env::temp_dir().join(format!("sluice-lsoak-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("sluice.toml");
    std::fs::write(&config_path, config(api_addr)).unwrap();

    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.clone()),
        ("AWS_ENDPOINT_URL_S3", format!("http://{}", s3_proxy.addr)),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("SLUICE_S3_PATH_STYLE", "true".into()),
        ("DATABASE_URL", db_url),
        ("SLUICE_CONFIG", config_path.display().to_string()),
        ("SLUICE_CLEAN_BUCKET", clean.clone()),
        ("SLUICE_QUARANTINE_BUCKET", quarantine.clone()),
        ("SLUICE_SANITIZE_QUEUE_URL", sanitize_q.0.clone()),
        ("SLUICE_TRANSFORM_QUEUE_URL", transform_q.0.clone()),
        ("SLUICE_FORWARD_QUEUE_URL", forward_q.0.clone()),
        ("SLUICE_MAX_RECEIVE_COUNT", MAX_RECEIVES.to_string()),
        (
            "SLUICE_STALE_AFTER_SECONDS",
            settings.stale_after_s.to_string(),
        ),
        ("SLUICE_MAX_REDRIVES", settings.max_redrives.to_string()),
        ("SLUICE_RECONCILE_GRACE_SECONDS", "3".into()),
        ("SLUICE_RECONCILE_DAYS", "1".into()),
        // Retries in seconds, as on the local stack: the forwarder's production backoff (2, 4,
        // 8 min) would make a batch that failed three deliveries wait longer than the soak.
        ("SLUICE_RETRY_BASE_SECONDS", "2".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let function = |name: &str, timeout: Duration| {
        Arc::new(Function {
            name: format!("sluice-{name}"),
            binary: settings.binaries.join(format!("sluice-{name}")),
            env: env.clone(),
            timeout,
            log: settings
                .logs
                .as_ref()
                .map(|d| d.join(format!("{name}.log"))),
        })
    };
    if let Some(logs) = &settings.logs {
        std::fs::create_dir_all(logs).unwrap();
    }

    // The uploads: every row a unique order, so the API's records can be counted exactly.
    // Some events are lost on the way: the listener's reconciliation must find those files.
    let day = sluice_listener::reconcile::day_prefixes("incoming/orders/", SystemTime::now(), 1)
        .remove(0);
    let mut uploads = Vec::new();
    let mut lost = 0;
    for f in 0..settings.files {
        let key = format!("{day}{}-f{f}.csv", uuid::Uuid::new_v4());
        let mut text = String::from("order_id,qty\n");
        for r in 0..settings.rows {
            text.push_str(&format!("F{f}-R{r},{}\n", r + 1));
        }
        s3.put_object()
            .bucket(&quarantine)
            .key(&key)
            .body(text.into_bytes().into())
            .send()
            .await
            .unwrap();
        if dice.chance(settings.lost_events) {
            lost += 1;
        } else {
            sqs.send_message()
                .queue_url(&sanitize_q.0)
                .message_body(object_created_event(&quarantine, &key, "").to_string())
                .send()
                .await
                .unwrap();
        }
        uploads.push(key);
    }

    // The functions.
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let killer: Killer = {
        let (dice, p) = (dice.clone(), settings.kill);
        Arc::new(move || {
            dice.chance(p)
                .then(|| Duration::from_millis(dice.below(150)))
        })
    };
    let mut tasks = Vec::new();
    for (name, queue, batch, n) in [
        ("sanitizer", &sanitize_q, 1, settings.concurrency),
        ("transformer", &transform_q, 1, settings.concurrency),
        ("forwarder", &forward_q, 10, settings.forward_concurrency),
    ] {
        let f = function(name, FUNCTION_TIMEOUT);
        for _ in 0..n {
            let mapping = Mapping {
                queue_url: queue.0.clone(),
                queue_arn: queue.1.clone(),
                batch_size: batch,
                concurrency: n,
            };
            tasks.push(tokio::spawn(poll(
                sqs.clone(),
                mapping,
                f.clone(),
                counters.clone(),
                killer.clone(),
                stop.clone(),
            )));
        }
    }
    let schedule_event: Value =
        serde_json::from_str(include_str!("../../events/listener-schedule.json")).unwrap();
    tasks.push(tokio::spawn(schedule(
        function("listener", Duration::from_secs(30)),
        counters.clone(),
        schedule_event,
        settings.listener_every,
        killer.clone(),
        stop.clone(),
    )));

    // Database backends terminated now and then, whatever they were doing.
    let terminated = Arc::new(AtomicU64::new(0));
    let db_killer = chaos::terminate_backends(
        admin_client,
        app.clone(),
        settings.db_kill_every,
        stop.clone(),
        terminated.clone(),
    );

    let mut finished = false;
    while started.elapsed() < settings.limit {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !all_final(&store, settings.files).await {
            continue;
        }
        let mut depth = 0;
        for q in [&sanitize_q, &transform_q, &forward_q] {
            depth += queue_depth(&sqs, &q.0).await;
        }
        if depth == 0 {
            finished = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let admin_client = db_killer.await.unwrap();
    api_task.abort();

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
    let posts = std::mem::take(&mut *api.posts.lock().unwrap());
    let checked = check(&store, &posts, &uploads, settings.rows, calls).await;
    let mut dead_letters = 0;
    for q in [&sanitize_q, &transform_q, &forward_q] {
        dead_letters += queue_depth(&sqs, &q.2).await;
    }
    let mut figures = Figures {
        seconds: started.elapsed().as_secs_f64(),
        files: checked.files,
        delivered: checked.delivered,
        failed: checked.failed,
        rejected: checked.rejected,
        not_final: checked.not_final,
        no_row: checked.no_row,
        lost_events: lost,
        invocations: counters.invocations.load(Ordering::Relaxed),
        cold_starts: counters.cold_starts.load(Ordering::Relaxed),
        killed: counters.killed.load(Ordering::Relaxed),
        timed_out: counters.timed_out.load(Ordering::Relaxed),
        function_errors: counters.errors.load(Ordering::Relaxed),
        backends_terminated: terminated.load(Ordering::Relaxed),
        db_refused: pg_proxy.faulted.load(Ordering::Relaxed),
        s3_503: s3_proxy.faulted.load(Ordering::Relaxed),
        posts: checked.posts,
        records_at_api: checked.records_at_api,
        dead_letters,
        violations: checked.violations,
    };
    if !finished {
        figures.violations.push(format!(
            "not every file was final with its queues empty after {} s",
            settings.limit.as_secs()
        ));
    }

    // Clean up: the schema, the queues, the buckets, the folder.
    let _ = admin_client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    for q in [&sanitize_q, &transform_q, &forward_q] {
        for url in [&q.0, &q.2] {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }
    for bucket in [&quarantine, &clean] {
        empty_and_delete(&s3, bucket).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

async fn empty_and_delete(s3: &aws_sdk_s3::Client, bucket: &str) {
    let mut token = None;
    loop {
        let Ok(page) = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
        else {
            break;
        };
        for o in page.contents() {
            let _ = s3
                .delete_object()
                .bucket(bucket)
                .key(o.key().unwrap_or_default())
                .send()
                .await;
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}
