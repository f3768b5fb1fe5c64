//! The forwarder's environment, read and checked once per container.

use std::sync::Arc;

use sluice_aws::secrets::SecretsManager;
use sluice_lambda::setup::{required, Common, DatabaseSettings, SetupError};

use crate::Deps;
use sluice_core::delivery::Reach;
use sluice_http::HttpPoster;
use sluice_stages::delivery::Targets;

/// Everything the forwarder needs from its environment (the book: docs/src/forwarder.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_FORWARD_CONCURRENCY`: messages delivered at the same time (default 4).
    pub concurrency: usize,
    /// `SLUICE_MAX_RECEIVE_COUNT`: the forward queue's `maxReceiveCount` (default 5).
    pub max_receive_count: u32,
    /// `SLUICE_CLEAN_BUCKET`: where claim checks are.
    pub clean_bucket: String,
    pub database: DatabaseSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            concurrency: number("SLUICE_FORWARD_CONCURRENCY", 4, 1..=64)? as usize,
            max_receive_count: number("SLUICE_MAX_RECEIVE_COUNT", 5, 1..=1000)?,
            clean_bucket: required("SLUICE_CLEAN_BUCKET")?,
            database: DatabaseSettings::from_env()?,
        })
    }
}

fn number(
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, SetupError> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(SetupError::Invalid {
            name,
            reason: format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        }),
    }
}

impl Deps {
    /// Everything the handler needs, from the environment. Once per container; a header
    /// whose secret cannot be read fails that dataset's batches only.
    pub async fn from_env() -> Result<Self, SetupError> {
        let settings = Settings::from_env()?;
        let common = Common::build(&settings.pipeline_config, &settings.database).await?;
        let targets = Targets::resolve(
            &common.config,
            Some(Arc::new(SecretsManager(common.clients.secrets.clone()))),
        )
        .await;
        // Endpoints reach private addresses only for the hosts datasets list, and never the
        // Runtime API's port.
        let runtime_api = std::env::var("AWS_LAMBDA_RUNTIME_API").ok();
        let reach = Reach::of(&common.config).in_lambda(runtime_api.as_deref());
        let http =
            HttpPoster::new(reach).map_err(|e| SetupError::Config(format!("HTTP client: {e}")))?;
        Ok(Deps {
            config: common.config,
            targets,
            store: common.store,
            objects: common.objects,
            http,
            concurrency: settings.concurrency,
            max_receive_count: settings.max_receive_count,
            visibility: Some(sluice_aws::Visibility::new(common.clients.sqs.clone())),
            clean_bucket: settings.clean_bucket,
        })
    }
}
