//! The transformer's environment, read and checked once per container.

use std::path::PathBuf;

use sluice_aws::setup::{database_config, flag, load_pipeline_config, required, SetupError};
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_db::{migrate, Db, Store};

use crate::Deps;

/// Everything the transformer needs from its environment (see README, "Configuration").
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_FORWARD_QUEUE_URL`: where "record batch" messages go.
    pub forward_queue_url: String,
    pub database_url: Option<String>,
    pub database_secret: Option<String>,
    pub db_ca_file: Option<PathBuf>,
    pub migrate_on_start: bool,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let settings = Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            forward_queue_url: required("SLUICE_FORWARD_QUEUE_URL")?,
            database_url: optional("DATABASE_URL"),
            database_secret: optional("DATABASE_SECRET_ARN"),
            db_ca_file: optional("SLUICE_DB_CA_FILE").map(PathBuf::from),
            migrate_on_start: flag("SLUICE_MIGRATE_ON_START", false)?,
        };
        if settings.database_url.is_none() && settings.database_secret.is_none() {
            return Err(SetupError::Missing("DATABASE_URL or DATABASE_SECRET_ARN"));
        }
        Ok(settings)
    }
}

impl Deps {
    /// Everything the handler needs, from the environment. Once per container.
    pub async fn from_env() -> anyhow::Result<Self> {
        let settings = Settings::from_env()?;
        let clients = Clients::from_env().await;
        let objects = ObjectStore::new(clients.s3.clone());
        let config = load_pipeline_config(&settings.pipeline_config, &objects).await?;
        let db = Db::new(
            database_config(
                settings.database_url.as_deref(),
                settings.database_secret.as_deref(),
                settings.db_ca_file.as_deref(),
                &clients,
            )
            .await?,
        );
        if settings.migrate_on_start {
            migrate(&db).await?;
        }
        Ok(Deps {
            config,
            store: Store::new(db),
            objects,
            queue: Queue::new(clients.sqs, settings.forward_queue_url),
        })
    }
}
