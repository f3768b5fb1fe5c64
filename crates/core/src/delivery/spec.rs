//! `[datasets.X.delivery]`: where a dataset's records go and how they are sent.
//!
//! Secrets never live in the config file: a header whose name says it carries a credential
//! (Authorization, a token, a key, ...) must take its value from the environment or from
//! Secrets Manager, and the config only names where.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::{invalid, ConfigError};

/// Where a dataset's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Records per batch (one POST each).
    pub batch_size: usize,
    /// Bytes of records per batch at most (the JSON array), so a file of wide rows cannot
    /// make a batch (and a claim check, and a request) of hundreds of MiB. A record that alone
    /// is larger is not sent: its row is reported as unmapped.
    pub batch_max_bytes: usize,
    /// The API the forwarder POSTs batches to; `None` when the dataset is not delivered (yet).
    pub endpoint: Option<Url>,
    /// Extra request headers, by lowercase name.
    pub headers: BTreeMap<String, HeaderSource>,
    /// Limit on one request, from connecting to the end of the response.
    pub timeout: Duration,
    /// How a batch is retried within one delivery of its message.
    pub retry: RetryPolicy,
    /// What the request body looks like.
    pub body: BodyShape,
    /// Hosts whose names may resolve to private addresses (a VPC's, this machine's test
    /// API's): every other endpoint must resolve to public addresses only (see
    /// [`super::reach`]).
    pub allow_private_hosts: Vec<String>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            endpoint: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            body: BodyShape::Array,
            allow_private_hosts: Vec::new(),
        }
    }
}

/// The default of `delivery.batch_max_bytes`: 1 MiB.
pub const DEFAULT_BATCH_MAX_BYTES: usize = 1024 * 1024;
/// The largest `delivery.batch_max_bytes` allowed: 16 MiB.
pub const MAX_BATCH_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Retries of one batch inside one invocation (SQS redelivery comes on top).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery of the message, the first one included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, plus up to as much again of jitter.
    pub base_delay: Duration,
    /// Ceiling of the doubled wait (before jitter).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// The JSON the API receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyShape {
    /// The batch's records as a JSON array.
    Array,
    /// `{"file_id", "dataset", "batch_id", "seq", "total", "records": [...]}`.
    Envelope,
}

/// Where a header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderSource {
    /// Written in the config: only for headers that carry no credential.
    Literal(String),
    /// An environment variable of the forwarder, with an optional prefix (`"Bearer "`).
    Env { var: String, prefix: String },
    /// A Secrets Manager secret (name or ARN): its string, or the field `key` of its JSON.
    Secret {
        id: String,
        key: Option<String>,
        prefix: String,
    },
}

/// Headers Sluice sets itself, which the config may not replace.
const RESERVED_HEADERS: [&str; 6] = [
    "idempotency-key",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

/// Words in a header name that mean it carries a credential.
const CREDENTIAL_WORDS: [&str; 8] = [
    "authorization",
    "cookie",
    "token",
    "secret",
    "key",
    "password",
    "signature",
    "credential",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    batch_size: Option<usize>,
    batch_max_bytes: Option<usize>,
    endpoint: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, RawHeader>,
    timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    body: Option<BodyShape>,
    #[serde(default)]
    allow_private_hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Literal(String),
    Env {
        env: String,
        #[serde(default)]
        prefix: String,
    },
    Secret {
        secret: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        prefix: String,
    },
}

pub(crate) fn check_delivery(ds: &str, raw: RawDelivery) -> Result<Delivery, ConfigError> {
    let defaults = Delivery::default();
    let allow_private_hosts = raw
        .allow_private_hosts
        .iter()
        .map(|host| {
            super::reach::check_private_host(host)
                .map(|()| host.trim().to_ascii_lowercase())
                .map_err(|why| invalid(ds, "delivery.allow_private_hosts", why))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let batch_size = raw.batch_size.unwrap_or(defaults.batch_size);
    if !(1..=10_000).contains(&batch_size) {
        return Err(invalid(
            ds,
            "delivery.batch_size",
            "must be between 1 and 10000 records",
        ));
    }
    let batch_max_bytes = raw.batch_max_bytes.unwrap_or(defaults.batch_max_bytes);
    if !(1024..=MAX_BATCH_MAX_BYTES).contains(&batch_max_bytes) {
        return Err(invalid(
            ds,
            "delivery.batch_max_bytes",
            format!("must be between 1024 and {MAX_BATCH_MAX_BYTES} bytes"),
        ));
    }
    let endpoint = raw
        .endpoint
        .as_deref()
        .map(|e| check_endpoint(ds, e))
        .transpose()?;
    let headers = raw
        .headers
        .into_iter()
        .map(|(name, raw)| check_header(ds, &name, raw))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let timeout = millis(ds, "delivery.timeout_ms", raw.timeout_ms, 100..=900_000)?
        .unwrap_or(defaults.timeout);
    let max_attempts = raw.max_attempts.unwrap_or(defaults.retry.max_attempts);
    if !(1..=20).contains(&max_attempts) {
        return Err(invalid(
            ds,
            "delivery.max_attempts",
            "must be between 1 and 20",
        ));
    }
    let base_delay = millis(
        ds,
        "delivery.backoff_base_ms",
        raw.backoff_base_ms,
        1..=60_000,
    )?
    .unwrap_or(defaults.retry.base_delay);
    let max_delay = millis(
        ds,
        "delivery.backoff_max_ms",
        raw.backoff_max_ms,
        1..=900_000,
    )?
    .unwrap_or(defaults.retry.max_delay);
    if max_delay < base_delay {
        return Err(invalid(
            ds,
            "delivery.backoff_max_ms",
            "must not be less than backoff_base_ms",
        ));
    }
    Ok(Delivery {
        batch_size,
        batch_max_bytes,
        endpoint,
        headers,
        timeout,
        retry: RetryPolicy {
            max_attempts,
            base_delay,
            max_delay,
        },
        body: raw.body.unwrap_or(defaults.body),
        allow_private_hosts,
    })
}

fn millis(
    ds: &str,
    field: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        Some(ms) if !range.contains(&ms) => Err(invalid(
            ds,
            field,
            format!(
                "must be between {} and {} milliseconds",
                range.start(),
                range.end()
            ),
        )),
        other => Ok(other.map(Duration::from_millis)),
    }
}

/// Checks an endpoint for dataset `ds`: HTTPS, or plain HTTP to this machine only (a
/// credential header must never cross a network in the clear), and no credentials in it.
pub fn check_endpoint(ds: &str, text: &str) -> Result<Url, ConfigError> {
    check_url(text).map_err(|why| invalid(ds, "delivery.endpoint", why))
}

/// Whether `text` is an endpoint records may be sent to: https, or http to this machine; no
/// credentials in it; never a metadata or link-local address. `Err` says why not.
pub fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials: use a header from `env` or `secret`".into());
    }
    if let Some(why) = metadata_or_link_local(url.host()) {
        return Err(format!(
            "{why}: records are never sent there (instance credentials live there)"
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("plain http is only allowed to localhost: use https".into()),
        other => Err(format!("scheme {other:?} is not http(s)")),
    }
}

/// Why a host is off limits: link-local addresses (169.254.0.0/16, fe80::/10, where cloud
/// instance-metadata services answer) and the metadata services' own names and addresses.
fn metadata_or_link_local(host: Option<url::Host<&str>>) -> Option<String> {
    const METADATA_NAMES: [&str; 3] = [
        "metadata.google.internal",
        "metadata.azure.com",
        "instance-data.ec2.internal",
    ];
    match host? {
        url::Host::Ipv4(ip) if ip.is_link_local() => {
            Some(format!("{ip} is a link-local (instance-metadata) address"))
        }
        // Alibaba Cloud's metadata service.
        url::Host::Ipv4(ip) if ip == std::net::Ipv4Addr::new(100, 100, 100, 200) => {
            Some(format!("{ip} is a cloud instance-metadata address"))
        }
        url::Host::Ipv6(ip) => {
            let mapped = ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local());
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            // fd00:ec2::254 is the EC2 metadata service over IPv6.
            let ec2 = ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
            (mapped || link_local || ec2)
                .then(|| format!("{ip} is a link-local (instance-metadata) address"))
        }
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            METADATA_NAMES
                .contains(&name.as_str())
                .then(|| format!("{name} is a cloud instance-metadata service"))
        }
        url::Host::Ipv4(_) => None,
    }
}

fn check_header(
    ds: &str,
    name: &str,
    raw: RawHeader,
) -> Result<(String, HeaderSource), ConfigError> {
    let field = format!("delivery.headers.{name}");
    let is_token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(invalid(ds, &field, "not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-sluice-") {
        return Err(invalid(ds, &field, "Sluice sets this header itself"));
    }
    let value_ok = |v: &str| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    let source = match raw {
        RawHeader::Literal(value) => {
            if CREDENTIAL_WORDS.iter().any(|w| lower.contains(w)) {
                return Err(invalid(
                    ds,
                    &field,
                    "looks like a credential: take it from the environment \
                     ({ env = \"VAR\" }) or Secrets Manager ({ secret = \"arn...\" }), \
                     never from the config file",
                ));
            }
            if !value_ok(&value) {
                return Err(invalid(
                    ds,
                    &field,
                    "header values are printable ASCII on one line",
                ));
            }
            HeaderSource::Literal(value)
        }
        RawHeader::Env { env, prefix } => {
            if env.is_empty() || !value_ok(&prefix) {
                return Err(invalid(
                    ds,
                    &field,
                    "`env` names a variable; `prefix` is printable ASCII",
                ));
            }
            HeaderSource::Env { var: env, prefix }
        }
        RawHeader::Secret {
            secret,
            key,
            prefix,
        } => {
            if secret.is_empty() || !value_ok(&prefix) {
                return Err(invalid(
                    ds,
                    &field,
                    "`secret` names a secret; `prefix` is printable ASCII",
                ));
            }
            HeaderSource::Secret {
                id: secret,
                key,
                prefix,
            }
        }
    };
    Ok((lower, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PipelineConfig;

    fn delivery(table: &str) -> Result<Delivery, ConfigError> {
        let text = format!("[datasets.orders]\nprefix = \"incoming/orders/\"\n{table}");
        PipelineConfig::parse(&text, "test").map(|c| c.dataset("orders").unwrap().delivery.clone())
    }

    fn error(table: &str) -> String {
        delivery(table).unwrap_err().to_string()
    }

    #[test]
    fn delivery_defaults_when_the_table_is_absent() {
        assert_eq!(delivery("").unwrap(), Delivery::default());
    }

    #[test]
    fn reads_endpoint_headers_timeout_retry_and_body() {
        let d = delivery(
            r#"
            [datasets.orders.delivery]
            batch_size = 250
            endpoint = "https://api.example.com/v1/orders/bulk"
            timeout_ms = 2500
            max_attempts = 3
            backoff_base_ms = 50
            backoff_max_ms = 1000
            body = "envelope"
            [datasets.orders.delivery.headers]
            "X-Source" = "sluice"
            Authorization = { env = "ORDERS_API_TOKEN", prefix = "Bearer " }
            "X-Api-Key" = { secret = "arn:aws:secretsmanager:eu-west-1:1:secret:orders", key = "api_key" }
            "#,
        )
        .unwrap();
        assert_eq!(d.batch_size, 250);
        assert_eq!(
            d.endpoint.unwrap().as_str(),
            "https://api.example.com/v1/orders/bulk"
        );
        assert_eq!(d.timeout, Duration::from_millis(2500));
        assert_eq!(
            d.retry,
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(1),
            }
        );
        assert_eq!(d.body, BodyShape::Envelope);
        assert_eq!(
            d.headers["x-source"],
            HeaderSource::Literal("sluice".into())
        );
        assert_eq!(
            d.headers["authorization"],
            HeaderSource::Env {
                var: "ORDERS_API_TOKEN".into(),
                prefix: "Bearer ".into()
            }
        );
        assert_eq!(
            d.headers["x-api-key"],
            HeaderSource::Secret {
                id: "arn:aws:secretsmanager:eu-west-1:1:secret:orders".into(),
                key: Some("api_key".into()),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn credentials_written_in_the_config_are_refused() {
        for name in ["Authorization", "X-Api-Key", "X-Auth-Token", "Cookie"] {
            let e = error(&format!(
                "[datasets.orders.delivery.headers]\n\"{name}\" = \"hunter2\""
            ));
            assert!(e.contains("looks like a credential"), "{name}: {e}");
            assert!(
                !e.contains("hunter2"),
                "the error must not echo the value: {e}"
            );
        }
    }

    #[test]
    fn headers_sluice_sets_cannot_be_replaced() {
        for name in ["Idempotency-Key", "content-type", "X-Sluice-Batch", "Host"] {
            let e = error(&format!(
                "[datasets.orders.delivery.headers]\n\"{name}\" = \"x\""
            ));
            assert!(e.contains("Sluice sets this header itself"), "{name}: {e}");
        }
        let e = error("[datasets.orders.delivery.headers]\n\"bad name\" = \"x\"");
        assert!(e.contains("not a valid HTTP header name"), "{e}");
        let e = error("[datasets.orders.delivery.headers]\n\"X-Note\" = \"a\\nb\"");
        assert!(e.contains("printable ASCII"), "{e}");
    }

    #[test]
    fn endpoints_must_be_https_unless_local() {
        let endpoint =
            |url: &str| delivery(&format!("[datasets.orders.delivery]\nendpoint = \"{url}\""));
        assert!(endpoint("http://127.0.0.1:8080/ingest").is_ok());
        assert!(endpoint("http://localhost/ingest").is_ok());
        assert!(endpoint("http://[::1]:9/x").is_ok());
        let e = endpoint("http://api.example.com/ingest")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("delivery.endpoint") && e.contains("use https"),
            "{e}"
        );
        let e = endpoint("https://user:pw@api.example.com/")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("must not carry credentials") && !e.contains("pw@"),
            "{e}"
        );
        assert!(endpoint("ftp://api.example.com/").is_err());
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://[fe80::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[::ffff:169.254.169.254]/x",
            "https://metadata.google.internal./computeMetadata/v1/",
            "https://100.100.100.200/latest",
        ] {
            let e = endpoint(url).unwrap_err().to_string();
            assert!(e.contains("never sent there"), "{url}: {e}");
        }
        assert!(endpoint("not a url").is_err());
    }

    #[test]
    fn numbers_out_of_range_name_the_field() {
        for (table, field) in [
            ("batch_size = 0", "delivery.batch_size"),
            ("batch_max_bytes = 100", "delivery.batch_max_bytes"),
            ("timeout_ms = 10", "delivery.timeout_ms"),
            ("max_attempts = 0", "delivery.max_attempts"),
            (
                "backoff_base_ms = 500\nbackoff_max_ms = 100",
                "delivery.backoff_max_ms",
            ),
        ] {
            let e = error(&format!("[datasets.orders.delivery]\n{table}"));
            assert!(e.contains(field), "{table}: {e}");
        }
        let e = error("[datasets.orders.delivery]\nbody = \"xml\"");
        assert!(e.contains("xml"), "{e}");
    }
}
