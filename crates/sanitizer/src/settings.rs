//! The sanitizer's environment, read and checked once per container.

use sluice_aws::Queue;
use sluice_lambda::setup::{receive_count_setting, required, Common, DatabaseSettings, SetupError};

use crate::Deps;

/// Everything the sanitizer needs from its environment (the book: docs/src/sanitizer.md, "Configuration").
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path (beside the bootstrap) or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_CLEAN_BUCKET`: where clean files and reports go.
    pub clean_bucket: String,
    /// `SLUICE_TRANSFORM_QUEUE_URL`: where "file sanitized" messages go.
    pub transform_queue_url: String,
    /// `SLUICE_MAX_RECEIVE_COUNT`: the sanitize queue's `maxReceiveCount` (default 5).
    pub max_receive_count: u32,
    pub database: DatabaseSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            clean_bucket: required("SLUICE_CLEAN_BUCKET")?,
            transform_queue_url: required("SLUICE_TRANSFORM_QUEUE_URL")?,
            max_receive_count: receive_count_setting()?,
            database: DatabaseSettings::from_env()?,
        })
    }
}

impl Deps {
    /// Everything the handler needs, from the environment. Once per container.
    pub async fn from_env() -> Result<Self, SetupError> {
        let settings = Settings::from_env()?;
        let common = Common::build(&settings.pipeline_config, &settings.database).await?;
        Ok(Deps {
            config: common.config,
            store: common.store,
            objects: common.objects,
            visibility: Some(sluice_aws::Visibility::new(common.clients.sqs.clone())),
            queue: Queue::new(common.clients.sqs, settings.transform_queue_url),
            clean_bucket: settings.clean_bucket,
            max_receive_count: settings.max_receive_count,
        })
    }
}
