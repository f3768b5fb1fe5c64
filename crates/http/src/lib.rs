//! The delivery engine: the one place in the workspace that speaks HTTP to an API. It
//! implements the stages' [`Poster`] port with one reqwest client per container (rustls, no
//! redirects followed); what to send, when to retry and what an answer means are the stages'
//! and core's ([`sluice_stages::delivery`], [`sluice_core::delivery`]). Every address an
//! endpoint resolves to is checked against the deliveries' [`Reach`] before it is connected to
//! ([`resolve`]). Knows no other adapter.

mod resolve;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sluice_core::delivery::{
    classify_status, excerpt, parse_retry_after, AttemptClass, BatchHeader, Reach, Refused,
    EXCERPT_BYTES,
};
use sluice_stages::delivery::{Attempt, Target};
use sluice_stages::ports::Poster;

pub use resolve::{Lookingup, Lookup, System};

/// POSTs batches over HTTP(S), sharing one connection pool.
#[derive(Clone)]
pub struct HttpPoster {
    client: reqwest::Client,
    reach: Arc<Reach>,
}

impl std::fmt::Debug for HttpPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPoster")
            .field("reach", &self.reach)
            .finish()
    }
}

impl HttpPoster {
    /// The client every delivery of a container shares, sending only within `reach`, names
    /// resolved by the system. Redirects are not followed: a redirected POST would reach a
    /// different URL, or turn into a GET. No proxy is used: a proxy would resolve the names
    /// itself, out of the reach check.
    pub fn new(reach: Reach) -> Result<Self, reqwest::Error> {
        Self::with_lookup(reach, Arc::new(System))
    }

    /// As [`HttpPoster::new`], names resolved by `lookup` (a test's table).
    pub fn with_lookup(reach: Reach, lookup: Arc<dyn Lookup>) -> Result<Self, reqwest::Error> {
        let reach = Arc::new(reach);
        let resolver = resolve::Checked {
            reach: reach.clone(),
            lookup,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .build()?;
        Ok(HttpPoster { client, reach })
    }
}

impl Poster for HttpPoster {
    fn post(
        &self,
        target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Attempt> + Send {
        post(self, target, batch, body, timeout)
    }
}

/// The target's own headers as HTTP headers; secret values marked sensitive.
fn headers(target: &Target) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for header in &target.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("header `{}`: not a valid header name", header.name))?;
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("header `{}`: not a valid header value", header.name))?;
        value.set_sensitive(header.sensitive);
        map.insert(name, value);
    }
    Ok(map)
}

/// POSTs `body` to the target once, within `timeout` (connecting, sending and reading the
/// start of the answer).
async fn post(
    poster: &HttpPoster,
    target: &Target,
    batch: &BatchHeader<'_>,
    body: Bytes,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let failed = |class, error: String| Attempt {
        class,
        status: None,
        latency: started.elapsed(),
        excerpt: None,
        error: Some(error),
        retry_after: None,
    };
    // Checked when the target was resolved; a target built by hand could still hold one.
    let own = match headers(target) {
        Ok(own) => own,
        Err(e) => return failed(AttemptClass::Permanent, e),
    };
    // An address in the URL is not looked up, so it is checked here; names are checked as
    // they resolve.
    if let Err(refused) = literal_within(&poster.reach, &target.endpoint) {
        let why = format!("dataset {}: {refused}", batch.dataset);
        return failed(AttemptClass::Permanent, why);
    }
    let request = poster
        .client
        .post(target.endpoint.clone())
        .headers(own)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("idempotency-key", batch.batch_id)
        .header("x-sluice-file-id", batch.file_id.to_string())
        .header("x-sluice-dataset", batch.dataset)
        .header("x-sluice-batch", format!("{}/{}", batch.seq, batch.total))
        .timeout(timeout)
        .body(body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => match refused_in(&e) {
            // Not retried: the name resolves where records are not sent.
            Some(refused) => {
                let why = format!("dataset {}: {refused}", batch.dataset);
                return failed(AttemptClass::Permanent, why);
            }
            None => return failed(AttemptClass::Transient, describe_error(&e, timeout)),
        },
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

/// Whether the endpoint's port may be reached, and, when its host is an address literal (not
/// looked up), the address.
fn literal_within(reach: &Reach, endpoint: &reqwest::Url) -> Result<(), Refused> {
    let host = endpoint.host_str().unwrap_or_default();
    reach.check_port(host, endpoint.port_or_known_default().unwrap_or_default())?;
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(address) => reach.check(host, address),
        Err(_) => Ok(()),
    }
}

/// The reach check's refusal, if that is why a request failed.
fn refused_in(e: &reqwest::Error) -> Option<&Refused> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::delivery::{BodyShape, RetryPolicy};
    use sluice_stages::delivery::Header;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn target(endpoint: &str, headers: Vec<Header>) -> Target {
        Target {
            endpoint: endpoint.parse().unwrap(),
            headers,
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            body: BodyShape::Array,
            has_credentials: false,
        }
    }

    fn batch() -> BatchHeader<'static> {
        BatchHeader {
            file_id: uuid::Uuid::nil(),
            dataset: "orders",
            batch_id: "b-000001",
            seq: 1,
            total: 1,
        }
    }

    /// One connection answered with `answer`; gives back what the request said.
    async fn api(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers and a short body arrive together on loopback.
            while !String::from_utf8_lossy(&seen).contains("[]") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_post_carries_the_batch_headers_and_reads_the_answer() {
        let (url, seen) = api(
            "HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 17\r\nconnection: close\r\n\r\n{\"error\":\"email\"}",
        )
        .await;
        let headers = vec![Header::new("x-api-key", "k-1", true)];
        let poster = HttpPoster::new(Reach::new(["127.0.0.1"])).unwrap();
        let attempt = poster
            .post(
                &target(&url, headers),
                &batch(),
                Bytes::from_static(b"[]"),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(attempt.status, Some(422));
        assert_eq!(attempt.class, AttemptClass::Permanent);
        assert_eq!(attempt.excerpt.as_deref(), Some("{\"error\":\"email\"}"));
        let request = seen.await.unwrap().to_lowercase();
        for line in [
            "x-api-key: k-1",
            "idempotency-key: b-000001",
            "x-sluice-batch: 1/1",
            "content-type: application/json",
        ] {
            assert!(request.contains(line), "{line}: {request}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_attempt_in_words() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        drop(listener);
        let attempt = HttpPoster::new(Reach::new(["127.0.0.1"]))
            .unwrap()
            .post(
                &target(&url, Vec::new()),
                &batch(),
                Bytes::new(),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(attempt.class, AttemptClass::Transient);
        assert_eq!(attempt.status, None);
        assert!(
            attempt
                .error
                .as_deref()
                .unwrap()
                .starts_with("connection failed"),
            "{attempt:?}"
        );
    }

    /// Names as a test's table resolves them: `api.test` to this machine, `meta.test` to the
    /// instance-metadata address, `both.test` to a public address and this machine.
    struct Table;

    impl Lookup for Table {
        fn lookup(&self, host: &str) -> Lookingup {
            let found: Vec<IpAddr> = match host {
                "api.test" => vec!["127.0.0.1".parse().unwrap()],
                "meta.test" => vec!["169.254.169.254".parse().unwrap()],
                "both.test" => vec![
                    "93.184.216.34".parse().unwrap(),
                    "127.0.0.1".parse().unwrap(),
                ],
                _ => Vec::new(),
            };
            Box::pin(async move { Ok(found) })
        }
    }

    async fn post_to(reach: Reach, url: &str) -> Attempt {
        HttpPoster::with_lookup(reach, Arc::new(Table))
            .unwrap()
            .post(
                &target(url, Vec::new()),
                &batch(),
                Bytes::from_static(b"[]"),
                Duration::from_secs(5),
            )
            .await
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_this_machine_is_refused_at_send_time_unless_listed() {
        let (url, seen) =
            api("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let port = url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let by_name = format!("http://api.test:{port}/ingest");

        let refused = post_to(Reach::new([]), &by_name).await;
        assert_eq!(refused.class, AttemptClass::Permanent, "{refused:?}");
        assert_eq!(
            refused.error.as_deref(),
            Some(
                "dataset orders: api.test resolves to 127.0.0.1, a loopback address: records go \
                 only to public addresses, unless the dataset lists the host in \
                 delivery.allow_private_hosts"
            )
        );
        // The same API by its address, unlisted: refused before any connection.
        let literal = post_to(Reach::new([]), &url).await;
        assert!(literal
            .error
            .as_deref()
            .unwrap()
            .contains("127.0.0.1 resolves to 127.0.0.1"));

        let listed = post_to(Reach::new(["api.test"]), &by_name).await;
        assert_eq!(listed.status, Some(200), "{listed:?}");
        assert!(seen
            .await
            .unwrap()
            .to_lowercase()
            .contains("host: api.test"));
    }

    #[tokio::test]
    async fn the_metadata_service_and_a_name_with_one_private_address_are_never_reached() {
        let metadata = post_to(Reach::new(["meta.test"]), "http://meta.test/latest").await;
        assert_eq!(metadata.class, AttemptClass::Permanent);
        assert!(
            metadata.error.as_deref().unwrap().contains(
                "meta.test resolves to 169.254.169.254, a link-local (instance-metadata) address: \
                 records are never sent there"
            ),
            "{metadata:?}"
        );
        // Every address a name has must pass, not only the first.
        let mixed = post_to(Reach::new([]), "https://both.test/ingest").await;
        assert!(mixed
            .error
            .as_deref()
            .unwrap()
            .contains("both.test resolves to 127.0.0.1"));
        // Inside Lambda, the Runtime API's port on this machine, listed or not.
        let lambda = Reach::new(["api.test"]).in_lambda(Some("127.0.0.1:9001"));
        let runtime = post_to(lambda, "http://api.test:9001/2018-06-01").await;
        assert!(
            runtime.error.as_deref().unwrap().contains("Runtime API"),
            "{runtime:?}"
        );
    }
}
