//! A real HTTP API on loopback for the forwarder's tests and benchmark. It answers from a
//! script (200, 500, 429 with `Retry-After`, hang, slow) and keeps every request it received.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the API answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, with a small JSON body.
    Status(u16),
    /// This status with a body of the test's choosing.
    StatusBody(u16, &'static str),
    /// This status (429, 503) with `Retry-After: value`.
    RetryAfter(u16, &'static str),
    /// Never answer; the connection is dropped after a minute.
    Hang,
    /// Answer this status after a pause (a slow API).
    Slow(Duration, u16),
}

/// One request as the API received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub idempotency_key: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with; `None` when it was not answered.
    pub answered: Option<u16>,
}

#[derive(Default)]
struct State {
    by_key: HashMap<String, VecDeque<Reply>>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    received: Vec<Received>,
    forget_bodies: bool,
    tasks: Vec<JoinHandle<()>>,
}

/// The API. Stops (and drops its connections) when dropped.
pub struct MockApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl MockApi {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr` (to bring an API "back" on the port a test refused before).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind the mock API");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let conn_state = accept_state.clone();
                let conn = tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, conn_state.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut s = accept_state.lock().unwrap();
                s.tasks.retain(|t| !t.is_finished());
                s.tasks.push(conn);
            }
        });
        state.lock().unwrap().tasks.push(accept);
        Self { addr, state }
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Replies for the next requests, in order, whatever their batch.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Replies for the next requests carrying this idempotency key (checked first).
    pub fn script_for(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .unwrap()
            .by_key
            .entry(key.to_string())
            .or_default()
            .extend(replies);
    }

    /// The reply when no script says otherwise (200 unless set).
    pub fn answer_by_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// Keeps requests' headers but not their bodies from now on (for long benchmark runs,
    /// whose memory should be the client's).
    pub fn forget_bodies(&self) {
        self.state.lock().unwrap().forget_bodies = true;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Records of every request answered 2xx, in arrival order (bodies are JSON arrays, or
    /// envelopes with `records`).
    pub fn accepted_records(&self) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        for r in self.received() {
            if !r.answered.is_some_and(|s| (200..300).contains(&s)) {
                continue;
            }
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let array = match json {
                serde_json::Value::Array(a) => a,
                mut envelope => envelope["records"].take().as_array().unwrap().clone(),
            };
            records.extend(array);
        }
        records
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        for task in self.state.lock().unwrap().tasks.drain(..) {
            task.abort();
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Copied, not cloned: a parsed header value shares the connection's read buffer, and
    // keeping it would keep that buffer (and the body in it) for the whole run.
    let headers: HeaderMap = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let owned = hyper::header::HeaderValue::from_bytes(value.as_bytes()).unwrap();
            (name.clone(), owned)
        })
        .collect();
    let key = headers
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
    let (reply, index) = {
        let mut s = state.lock().unwrap();
        let reply = s
            .by_key
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .or_else(|| s.script.pop_front())
            .or_else(|| s.default.clone())
            .unwrap_or(Reply::Status(200));
        let body = if s.forget_bodies { Bytes::new() } else { body };
        s.received.push(Received {
            idempotency_key: key,
            headers,
            body,
            answered: None,
        });
        (reply, s.received.len() - 1)
    };
    let (status, body, retry_after) = match reply {
        Reply::Status(status) => (status, r#"{"ok":true}"#, None),
        Reply::StatusBody(status, body) => (status, body, None),
        Reply::RetryAfter(status, value) => (status, r#"{"error":"slow down"}"#, Some(value)),
        Reply::Slow(pause, status) => {
            pause_for(pause).await;
            (status, r#"{"ok":true}"#, None)
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            // Never reached in a test: the client has long given up and the task is aborted.
            (599, "", None)
        }
    };
    state.lock().unwrap().received[index].answered = Some(status);
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(value) = retry_after {
        response = response.header("retry-after", value);
    }
    Ok(response
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap())
}

/// Waits `pause`. Tokio's timer counts whole milliseconds and rounds up, so a 1 ms sleep
/// takes about 2 ms: short pauses (an API's answer time in a benchmark) sleep on a blocking
/// thread instead, accurate to tens of microseconds.
async fn pause_for(pause: Duration) {
    if pause < Duration::from_millis(50) {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(pause)).await;
    } else {
        tokio::time::sleep(pause).await;
    }
}
