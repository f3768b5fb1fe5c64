//! One POST of one batch, and what came of it.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sluice_core::delivery::EXCERPT_BYTES;
use sluice_core::delivery::{
    classify_status, excerpt, parse_retry_after, AttemptClass, BatchHeader,
};

use crate::delivery::targets::Target;

/// The HTTP client every delivery shares (one connection pool per container). Redirects are
/// not followed: a redirected POST would reach a different URL, or turn into a GET.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
        .build()
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub class: AttemptClass,
    /// The answer's status, if there was an answer.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The start of the answer's body (kept in `api_call`, never logged: an API may echo
    /// record contents back).
    pub excerpt: Option<String>,
    /// Why the attempt did not deliver.
    pub error: Option<String>,
    /// How long the API asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// POSTs `body` to the target once, within `timeout` (connecting, sending and reading the
/// start of the answer).
pub async fn post(
    client: &reqwest::Client,
    target: &Target,
    batch: &BatchHeader<'_>,
    body: Bytes,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let request = client
        .post(target.endpoint.clone())
        .headers(target.headers.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("idempotency-key", batch.batch_id)
        .header("x-sluice-file-id", batch.file_id.to_string())
        .header("x-sluice-dataset", batch.dataset)
        .header("x-sluice-batch", format!("{}/{}", batch.seq, batch.total))
        .timeout(timeout)
        .body(body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Attempt {
                class: AttemptClass::Transient,
                status: None,
                latency: started.elapsed(),
                excerpt: None,
                error: Some(describe_error(&e, timeout)),
                retry_after: None,
            }
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let head = read_head(response).await;
    let latency = started.elapsed();
    let class = classify_status(status.as_u16());
    let error = match class {
        AttemptClass::Delivered => None,
        AttemptClass::Transient => Some(format!("HTTP {status}")),
        AttemptClass::Permanent => Some(format!("HTTP {status} (not retried)")),
    };
    Attempt {
        class,
        status: Some(status.as_u16()),
        latency,
        excerpt: Some(excerpt(&head)),
        error,
        retry_after,
    }
}

/// The first bytes of the body, enough for the excerpt; the rest is not waited for. An error
/// while reading leaves what was read: the status already says how the attempt went.
async fn read_head(mut response: reqwest::Response) -> Vec<u8> {
    let mut head = Vec::new();
    while head.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    head
}

/// A request error in words, without the URL (it is in the config; keep rows short).
fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}
