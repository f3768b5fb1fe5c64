//! Each dataset's delivery target, resolved once per container: the endpoint, and headers
//! whose secret values are read from the environment or Secrets Manager here and nowhere else.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use sluice_aws::secrets::{secret_field, secret_string};
use sluice_core::delivery::{BodyShape, HeaderSource, RetryPolicy};
use sluice_core::{Dataset, PipelineConfig};

/// Secret values already read, by secret id and JSON key.
type SecretCache = HashMap<(String, Option<String>), String>;

/// The target of one dataset at `endpoint` (its own, or another for a local run).
pub async fn target(
    dataset: &Dataset,
    endpoint: Url,
    secrets: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<Target, TargetError> {
    resolve_target(dataset, endpoint, secrets, &mut SecretCache::default()).await
}

async fn resolve_target(
    dataset: &Dataset,
    endpoint: Url,
    secrets: Option<&aws_sdk_secretsmanager::Client>,
    cache: &mut SecretCache,
) -> Result<Target, TargetError> {
    let delivery = &dataset.delivery;
    let mut headers = HeaderMap::new();
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
                            None => secret_string(client, id).await,
                        }
                        .map_err(|e| error(e.to_string()))?;
                        cache.insert(cache_key, v.clone());
                        v
                    }
                };
                (format!("{prefix}{value}"), true)
            }
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| error("not a valid header name".into()))?;
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            error("its value is not a valid header value (printable ASCII only)".into())
        })?;
        value.set_sensitive(sensitive);
        headers.insert(header, value);
    }
    Ok(Target {
        endpoint,
        headers,
        timeout: delivery.timeout,
        retry: delivery.retry,
        body: delivery.body,
    })
}

/// Where and how one dataset's batches are POSTed.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Url,
    /// The dataset's own headers; values from secrets are marked sensitive, so they never
    /// show in debug output.
    pub headers: HeaderMap,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub body: BodyShape,
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

/// The delivery targets of every dataset that has an endpoint.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    by_dataset: HashMap<String, Target>,
}

impl Targets {
    /// Resolves every header of every dataset with an endpoint. `secrets` is needed only when
    /// a header names a secret; each secret is read once.
    pub async fn resolve(
        config: &PipelineConfig,
        secrets: Option<&aws_sdk_secretsmanager::Client>,
    ) -> Result<Self, TargetError> {
        let mut by_dataset = HashMap::new();
        let mut cache = SecretCache::default();
        for dataset in config.datasets() {
            if let Some(endpoint) = &dataset.delivery.endpoint {
                let target = resolve_target(dataset, endpoint.clone(), secrets, &mut cache).await?;
                by_dataset.insert(dataset.name.clone(), target);
            }
        }
        Ok(Self { by_dataset })
    }

    /// The target of `dataset`; an error that says why there is none.
    pub fn get(&self, dataset: &str, config: &PipelineConfig) -> Result<&Target, String> {
        match self.by_dataset.get(dataset) {
            Some(target) => Ok(target),
            None => Err(match config.dataset(dataset) {
                Ok(_) => format!("dataset `{dataset}` has no delivery.endpoint"),
                Err(e) => e.to_string(),
            }),
        }
    }
}
