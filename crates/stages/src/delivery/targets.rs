//! Each dataset's delivery target, resolved once per container: the endpoint, and headers
//! whose secret values are read from the environment or Secrets Manager here and nowhere else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_core::delivery::{BodyShape, HeaderSource, RetryPolicy};
use sluice_core::{Dataset, PipelineConfig};
use url::Url;

use crate::ports::{secret_field, SecretSource};

/// Secret values already read, by secret id and JSON key.
type SecretCache = HashMap<(String, Option<String>), String>;

/// A dataset's target (or why it has none), by dataset name and section digest.
type BySection = HashMap<(String, String), Result<Arc<Target>, String>>;

/// The target of one dataset at `endpoint` (its own, or another for a local run).
pub async fn target(
    dataset: &Dataset,
    endpoint: Url,
    secrets: Option<&dyn SecretSource>,
) -> Result<Target, TargetError> {
    resolve_target(dataset, endpoint, secrets, &mut SecretCache::default()).await
}

async fn resolve_target(
    dataset: &Dataset,
    endpoint: Url,
    secrets: Option<&dyn SecretSource>,
    cache: &mut SecretCache,
) -> Result<Target, TargetError> {
    let delivery = &dataset.delivery;
    let mut headers = Vec::with_capacity(delivery.headers.len());
    for (name, source) in &delivery.headers {
        let error = |reason: String| TargetError {
            dataset: dataset.name.clone(),
            header: name.clone(),
            reason,
        };
        let (text, sensitive) = match source {
            HeaderSource::Literal(value) => (value.clone(), false),
            HeaderSource::Env { var, prefix } => {
                let value = std::env::var(var)
                    .map_err(|_| error(format!("environment variable {var} is not set")))?;
                (format!("{prefix}{value}"), true)
            }
            HeaderSource::Secret { id, key, prefix } => {
                let cache_key = (id.clone(), key.clone());
                let value = match cache.get(&cache_key) {
                    Some(v) => v.clone(),
                    None => {
                        let client = secrets.ok_or_else(|| {
                            error(format!(
                                "it comes from Secrets Manager ({id}), which this run cannot read"
                            ))
                        })?;
                        let v = match key {
                            Some(k) => secret_field(client, id, k).await,
                            None => client.secret_string(id).await,
                        }
                        .map_err(|e| error(e.to_string()))?;
                        cache.insert(cache_key, v.clone());
                        v
                    }
                };
                (format!("{prefix}{value}"), true)
            }
        };
        if !is_token(name) {
            return Err(error("not a valid header name".into()));
        }
        if !is_header_value(&text) {
            return Err(error(
                "its value is not a valid header value (printable ASCII only)".into(),
            ));
        }
        headers.push(Header::new(name, &text, sensitive));
    }
    let has_credentials = delivery
        .headers
        .values()
        .any(|source| !matches!(source, HeaderSource::Literal(_)));
    Ok(Target {
        endpoint,
        headers,
        has_credentials,
        timeout: delivery.timeout,
        retry: delivery.retry,
        body: delivery.body,
    })
}

/// Where and how one dataset's batches are POSTed.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Url,
    /// The dataset's own headers; values from the environment or secrets are marked
    /// sensitive, so they never show in debug output.
    pub headers: Vec<Header>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub body: BodyShape,
    /// Some header's value comes from the environment or Secrets Manager: a refused
    /// credential is worth reading again.
    pub has_credentials: bool,
}

impl Target {
    /// Where batches go, as recorded with each call and shown in API health: scheme, host,
    /// port and path, never a query string or credentials (either may carry a secret).
    pub fn label(&self) -> String {
        endpoint_label(&self.endpoint)
    }
}

/// `url` without its query, fragment or credentials.
pub fn endpoint_label(url: &Url) -> String {
    match url.host_str() {
        Some(host) => match url.port() {
            Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
            None => format!("{}://{host}{}", url.scheme(), url.path()),
        },
        None => format!("{}:{}", url.scheme(), url.path()),
    }
}

/// One of a target's own headers, its name and value checked as HTTP allows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    value: String,
    /// From the environment or a secret: never shown.
    pub sensitive: bool,
}

impl Header {
    pub fn new(name: &str, value: &str, sensitive: bool) -> Self {
        Header {
            name: name.to_string(),
            value: value.to_string(),
            sensitive,
        }
    }

    /// The value, to send.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match self.sensitive {
            true => "<sensitive>",
            false => self.value.as_str(),
        };
        f.debug_struct("Header")
            .field("name", &self.name)
            .field("value", &value)
            .finish()
    }
}

/// An HTTP token (RFC 9110): what a header name may be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs: what a header value may hold.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A header that could not be resolved. Names the dataset, the header and where its value
/// should have come from; never the value.
#[derive(Debug, thiserror::Error)]
#[error("dataset `{dataset}`, header `{header}`: {reason}")]
pub struct TargetError {
    dataset: String,
    header: String,
    reason: String,
}

/// The delivery targets of every dataset that has an endpoint, each resolved on its own: a
/// dataset whose secret cannot be read fails its own batches (with the reason), not the whole
/// forwarder. Targets are kept by dataset and section digest: a file pinned to an older
/// section of its dataset ([`sluice_core::plan::ConfigPin`]) is sent where that section said,
/// its target resolved the first time one of its batches comes. A target is resolved again,
/// with fresh secret reads, when its API refuses the credentials ([`Targets::refresh`]).
#[derive(Debug)]
pub struct Targets {
    by_section: RwLock<BySection>,
    secrets: Option<Arc<dyn SecretSource>>,
    to: Destination,
}

/// Where the targets send.
#[derive(Debug, Clone)]
enum Destination {
    /// Each dataset's own endpoint.
    Own,
    /// Every dataset to this endpoint (a local run's `--api`), with its own headers.
    At(Url),
    /// Every dataset to this endpoint with no headers: requests written to a file.
    Headless(Url),
}

impl Targets {
    /// Resolves every header of every dataset with an endpoint. `secrets` is needed only when
    /// a header names a secret; each secret is read once. Failures are kept per dataset and
    /// logged.
    pub async fn resolve(config: &PipelineConfig, secrets: Option<Arc<dyn SecretSource>>) -> Self {
        Self::resolve_to(config, secrets, None).await
    }

    /// [`Targets::resolve`], every dataset sending to `endpoint` when it is set (a local
    /// run's `--api`) instead of its own.
    pub async fn resolve_to(
        config: &PipelineConfig,
        secrets: Option<Arc<dyn SecretSource>>,
        endpoint: Option<&Url>,
    ) -> Self {
        let to = match endpoint {
            Some(url) => Destination::At(url.clone()),
            None => Destination::Own,
        };
        let targets = Self::empty(secrets, to);
        let mut cache = SecretCache::default();
        let mut by_section = HashMap::new();
        for dataset in config.datasets() {
            if let Some(target) = targets.resolve_one(dataset, &mut cache).await {
                by_section.insert(section_key(dataset), target);
            }
        }
        *targets
            .by_section
            .write()
            .unwrap_or_else(|e| e.into_inner()) = by_section;
        targets
    }

    /// Targets for requests written to a file rather than sent: every dataset at `endpoint`
    /// with no headers (a requests file carries none, so no secret is read).
    pub fn headless(endpoint: &Url) -> Self {
        Self::empty(None, Destination::Headless(endpoint.clone()))
    }

    fn empty(secrets: Option<Arc<dyn SecretSource>>, to: Destination) -> Self {
        Self {
            by_section: RwLock::new(HashMap::new()),
            secrets,
            to,
        }
    }

    /// The target of `dataset` (as loaded, or as a file's plan pinned it); an error that
    /// says why there is none.
    pub async fn get(&self, dataset: &Dataset) -> Result<Arc<Target>, String> {
        let known = self
            .by_section
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&section_key(dataset))
            .cloned();
        if let Some(target) = known {
            return target;
        }
        let Some(target) = self.resolve_one(dataset, &mut SecretCache::default()).await else {
            return Err(format!(
                "dataset `{}` has no delivery.endpoint",
                dataset.name
            ));
        };
        let mut by_section = self.by_section.write().unwrap_or_else(|e| e.into_inner());
        // Two batches may resolve one section at once: the first kept is the one used.
        by_section
            .entry(section_key(dataset))
            .or_insert(target)
            .clone()
    }

    /// Resolves `dataset`'s target again, reading its environment variables and secrets
    /// afresh (a rotated API key), and keeps the result for later batches.
    pub async fn refresh(&self, dataset: &Dataset) -> Result<Arc<Target>, String> {
        let fresh = self
            .resolve_one(dataset, &mut SecretCache::default())
            .await
            .unwrap_or_else(|| {
                Err(format!(
                    "dataset `{}` has no delivery.endpoint",
                    dataset.name
                ))
            });
        let mut by_section = self.by_section.write().unwrap_or_else(|e| e.into_inner());
        by_section.insert(section_key(dataset), fresh.clone());
        fresh
    }

    /// `dataset`'s target at this destination; `None` when it has no endpoint to send to.
    async fn resolve_one(
        &self,
        dataset: &Dataset,
        cache: &mut SecretCache,
    ) -> Option<Result<Arc<Target>, String>> {
        let endpoint = match &self.to {
            Destination::Own => dataset.delivery.endpoint.clone()?,
            Destination::At(url) => url.clone(),
            Destination::Headless(url) => {
                let delivery = &dataset.delivery;
                return Some(Ok(Arc::new(Target {
                    endpoint: url.clone(),
                    headers: Vec::new(),
                    has_credentials: false,
                    timeout: delivery.timeout,
                    retry: delivery.retry,
                    body: delivery.body,
                })));
            }
        };
        let resolved = resolve_target(dataset, endpoint, self.secrets.as_deref(), cache)
            .await
            .map(Arc::new)
            .map_err(|e| {
                tracing::error!(dataset = %dataset.name, section = %dataset.digest, error = %e,
                    "delivery target unresolved: this dataset's batches will fail");
                e.to_string()
            });
        Some(resolved)
    }
}

fn section_key(dataset: &Dataset) -> (String, String) {
    (dataset.name.clone(), dataset.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_label_keeps_no_query_and_no_credentials() {
        let url: Url = "https://user:pw@api.example.com:8443/v1/orders?token=secret#x"
            .parse()
            .unwrap();
        assert_eq!(
            endpoint_label(&url),
            "https://api.example.com:8443/v1/orders"
        );
        let plain: Url = "http://127.0.0.1/ingest".parse().unwrap();
        assert_eq!(endpoint_label(&plain), "http://127.0.0.1/ingest");
        let file: Url = "file:///tmp/requests.jsonl".parse().unwrap();
        assert_eq!(endpoint_label(&file), "file:/tmp/requests.jsonl");
    }

    #[test]
    fn header_names_and_values_are_checked_and_secret_values_never_shown() {
        assert!(is_token("x-api-key") && is_token("Authorization"));
        assert!(!is_token("") && !is_token("bad header") && !is_token("x:y"));
        assert!(is_header_value("Bearer abc.def\t1"));
        assert!(!is_header_value("line\nbreak") && !is_header_value("é"));
        let shown = format!("{:?}", Header::new("authorization", "Bearer s3cr3t", true));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let plain = format!("{:?}", Header::new("x-source", "sluice", false));
        assert!(plain.contains("sluice"), "{plain}");
    }
}
