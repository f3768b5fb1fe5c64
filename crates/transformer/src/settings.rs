//! The transformer's environment, read and checked once per container.

use sluice_aws::{Queue, Visibility};
use sluice_lambda::setup::{receive_count_setting, required, Common, DatabaseSettings, SetupError};

use crate::Deps;

/// Everything the transformer needs from its environment (the book: docs/src/transformer.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_FORWARD_QUEUE_URL`: where "record batch" messages go.
    pub forward_queue_url: String,
    /// `SLUICE_CLEAN_BUCKET`: the clean files, reports and claim checks.
    pub clean_bucket: String,
    /// `SLUICE_MAX_RECEIVE_COUNT`: the transform queue's `maxReceiveCount` (default 5).
    pub max_receive_count: u32,
    pub database: DatabaseSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            forward_queue_url: required("SLUICE_FORWARD_QUEUE_URL")?,
            clean_bucket: required("SLUICE_CLEAN_BUCKET")?,
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
            visibility: Some(Visibility::new(common.clients.sqs.clone())),
            queue: Queue::new(common.clients.sqs, settings.forward_queue_url),
            clean_bucket: settings.clean_bucket,
            max_receive_count: settings.max_receive_count,
        })
    }
}
