//! An emulated Lambda service for the shipped bootstraps: each "container" is a real process
//! of a function's binary talking to its own Runtime API server (the same HTTP interface
//! Lambda gives a custom runtime), kept warm between invocations, killed at the function's
//! timeout, and killed on purpose mid-invocation when the soak says so. An event source
//! mapping polls an SQS queue (moto), invokes with up to a batch of records, and deletes what
//! the function did not report as a batch item failure; a killed or failed invocation deletes
//! nothing (the batch comes back after the queue's visibility timeout, and moto dead-letters
//! it by the queue's redrive policy). A schedule invokes a function every so often.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A function: its binary, its environment, its timeout.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where its containers' stderr goes (their JSON logs), appended.
    pub log: Option<PathBuf>,
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The function answered.
    Response(Value),
    /// The function reported an error (the runtime's error endpoint).
    Error(String),
    /// The container died: killed on purpose, crashed, or timed out.
    Died(&'static str),
}

/// What the emulator counts.
#[derive(Debug, Default)]
pub struct Counters {
    pub invocations: AtomicU64,
    pub cold_starts: AtomicU64,
    pub killed: AtomicU64,
    pub timed_out: AtomicU64,
    pub errors: AtomicU64,
}

/// One invocation waiting for the container's next `GET .../invocation/next`.
struct Invocation {
    request_id: String,
    deadline_ms: u64,
    event: Bytes,
}

#[derive(Default)]
struct Pending {
    results: HashMap<String, oneshot::Sender<Outcome>>,
}

/// A container's Runtime API: `next`, `response`, `error`.
struct RuntimeApi {
    addr: SocketAddr,
    invocations: mpsc::Sender<Invocation>,
    pending: Arc<Mutex<Pending>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl RuntimeApi {
    async fn start(function_arn: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel::<Invocation>(1);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let pending = Arc::new(Mutex::new(Pending::default()));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (pending, tasks_in) = (pending.clone(), tasks.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (rx, pending, arn) = (rx.clone(), pending.clone(), function_arn.clone());
                    let conn = tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            runtime_call(req, rx.clone(), pending.clone(), arn.clone())
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    tasks_in.lock().unwrap().push(conn);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        Self {
            addr,
            invocations: tx,
            pending,
            tasks,
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

async fn runtime_call(
    request: Request<Incoming>,
    next: Arc<tokio::sync::Mutex<mpsc::Receiver<Invocation>>>,
    pending: Arc<Mutex<Pending>>,
    function_arn: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let accepted = || {
        Response::builder()
            .status(202)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    if request.method() == Method::GET && path.ends_with("/runtime/invocation/next") {
        let Some(invocation) = next.lock().await.recv().await else {
            return Ok(Response::builder()
                .status(500)
                .body(Full::new(Bytes::new()))
                .unwrap());
        };
        return Ok(Response::builder()
            .status(200)
            .header("lambda-runtime-aws-request-id", &invocation.request_id)
            .header(
                "lambda-runtime-deadline-ms",
                invocation.deadline_ms.to_string(),
            )
            .header("lambda-runtime-invoked-function-arn", function_arn)
            .header("content-type", "application/json")
            .body(Full::new(invocation.event))
            .unwrap());
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // /2018-06-01/runtime/invocation/{id}/response | /error, /runtime/init/error
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let outcome = match parts.as_slice() {
        [_, "runtime", "invocation", id, "response"] => Some((
            id.to_string(),
            Outcome::Response(serde_json::from_slice(&body).unwrap_or(Value::Null)),
        )),
        [_, "runtime", "invocation", id, "error"] => Some((
            id.to_string(),
            Outcome::Error(String::from_utf8_lossy(&body).into_owned()),
        )),
        _ => None,
    };
    if let Some((id, outcome)) = outcome {
        if let Some(tx) = pending.lock().unwrap().results.remove(&id) {
            let _ = tx.send(outcome);
        }
    }
    Ok(accepted())
}

/// A warm container: the process and its Runtime API, created and dropped together.
struct Container {
    child: Child,
    api: RuntimeApi,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One concurrency slot of a function: a container, started when needed (a cold start) and
/// kept until it dies.
pub struct Slot {
    function: Arc<Function>,
    counters: Arc<Counters>,
    container: Option<Container>,
    seq: u64,
}

impl Slot {
    pub fn new(function: Arc<Function>, counters: Arc<Counters>) -> Self {
        Self {
            function,
            counters,
            container: None,
            seq: 0,
        }
    }

    async fn start(&mut self) -> &mut Container {
        if self.container.is_none() {
            self.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
            let f = &self.function;
            let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{}", f.name);
            let api = RuntimeApi::start(arn).await;
            // The JSON logs go to stdout, as in Lambda; a panic to stderr. Both to the log.
            let log = f.log.as_ref().and_then(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()
            });
            let (stdout, stderr) = match log.and_then(|l| Some((l.try_clone().ok()?, l))) {
                Some((out, err)) => (Stdio::from(out), Stdio::from(err)),
                None => (Stdio::null(), Stdio::null()),
            };
            let child = Command::new(&f.binary)
                .envs(f.env.iter().map(|(k, v)| (k, v)))
                .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", &f.name)
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env(
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{}", f.name),
                )
                .env("AWS_LAMBDA_LOG_STREAM_NAME", "emulated")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", f.binary.display()));
            self.container = Some(Container { child, api });
        }
        self.container.as_mut().unwrap()
    }

    /// Invokes the function with `event`; `kill_after` kills the container that long into
    /// the invocation (a crash, an out-of-memory kill, a host gone).
    pub async fn invoke(&mut self, event: &Value, kill_after: Option<Duration>) -> Outcome {
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        self.seq += 1;
        let request_id = uuid::Uuid::new_v4().to_string();
        let timeout = self.function.timeout;
        let counters = self.counters.clone();
        let deadline_ms = (SystemTime::now() + timeout)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let container = self.start().await;
        let (tx, rx) = oneshot::channel();
        container
            .api
            .pending
            .lock()
            .unwrap()
            .results
            .insert(request_id.clone(), tx);
        let invocation = Invocation {
            request_id,
            deadline_ms,
            event: Bytes::from(serde_json::to_vec(event).unwrap()),
        };
        if container.api.invocations.send(invocation).await.is_err() {
            self.container = None;
            return Outcome::Died("the runtime API is gone");
        }
        let kill_at = kill_after.unwrap_or(Duration::MAX).min(timeout);
        let outcome = tokio::select! {
            outcome = rx => outcome.unwrap_or(Outcome::Died("no answer")),
            _ = container.child.wait() => Outcome::Died("the process exited"),
            _ = tokio::time::sleep(kill_at) => {
                if kill_after.is_some_and(|k| k < timeout) {
                    counters.killed.fetch_add(1, Ordering::Relaxed);
                    Outcome::Died("killed")
                } else {
                    counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    Outcome::Died("timed out")
                }
            }
        };
        match &outcome {
            Outcome::Died(_) => {
                if let Some(mut c) = self.container.take() {
                    let _ = c.child.start_kill();
                    let _ = c.child.wait().await;
                }
            }
            Outcome::Error(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Response(_) => {}
        }
        outcome
    }
}

/// An SQS event source mapping's settings.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    /// Containers polling at once (the mapping's maximum concurrency).
    pub concurrency: usize,
}

/// Decides whether (and when) an invocation is killed.
pub type Killer = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// Runs one poller of `mapping` for `function` until `stop`.
pub async fn poll(
    sqs: aws_sdk_sqs::Client,
    mapping: Mapping,
    function: Arc<Function>,
    counters: Arc<Counters>,
    killer: Killer,
    stop: Arc<AtomicBool>,
) {
    let mut slot = Slot::new(function, counters);
    while !stop.load(Ordering::Relaxed) {
        let received = sqs
            .receive_message()
            .queue_url(&mapping.queue_url)
            .max_number_of_messages(mapping.batch_size)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": mapping.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event = json!({ "Records": records });
        let outcome = slot.invoke(&event, killer()).await;
        let Outcome::Response(response) = outcome else {
            // Nothing deleted: the batch comes back after the visibility timeout.
            continue;
        };
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let done: Vec<_> = messages
            .iter()
            .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            let _ = sqs
                .delete_message_batch()
                .queue_url(&mapping.queue_url)
                .set_entries(Some(done))
                .send()
                .await;
        }
    }
}

/// Invokes `function` with `event` every `every` until `stop` (an EventBridge schedule).
pub async fn schedule(
    function: Arc<Function>,
    counters: Arc<Counters>,
    event: Value,
    every: Duration,
    killer: Killer,
    stop: Arc<AtomicBool>,
) {
    let mut slot = Slot::new(function, counters);
    while !stop.load(Ordering::Relaxed) {
        let started = tokio::time::Instant::now();
        let _ = slot.invoke(&event, killer()).await;
        tokio::time::sleep_until(started + every).await;
    }
}
