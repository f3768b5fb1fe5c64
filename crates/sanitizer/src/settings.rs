//! The sanitizer's environment, read and checked once per container.

use std::path::PathBuf;

use sluice_aws::setup::{database_config, flag, load_pipeline_config, required, SetupError};
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_db::{migrate, Db, Store};

use crate::Deps;

/// Everything the sanitizer needs from its environment (see README, "Configuration").
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path (beside the bootstrap) or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_CLEAN_BUCKET`: where clean files and reports go.
    pub clean_bucket: String,
    /// `SLUICE_TRANSFORM_QUEUE_URL`: where "file sanitized" messages go.
    pub transform_queue_url: String,
    /// `DATABASE_URL`: the status store (its password may come from the secret instead).
    pub database_url: Option<String>,
    /// `DATABASE_SECRET_ARN`: Secrets Manager secret with the database credentials (the
    /// RDS-managed JSON shape: username, password, optionally host, port, dbname).
    pub database_secret: Option<String>,
    /// `SLUICE_DB_CA_FILE`: PEM bundle verifying the database's TLS certificate.
    pub db_ca_file: Option<PathBuf>,
    /// `SLUICE_MIGRATE_ON_START`: apply migrations at cold start (default false).
    pub migrate_on_start: bool,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            clean_bucket: required("SLUICE_CLEAN_BUCKET")?,
            transform_queue_url: required("SLUICE_TRANSFORM_QUEUE_URL")?,
            database_url: optional("DATABASE_URL"),
            database_secret: optional("DATABASE_SECRET_ARN"),
            db_ca_file: std::env::var_os("SLUICE_DB_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            migrate_on_start: flag("SLUICE_MIGRATE_ON_START", false)?,
        })
        .and_then(|s: Settings| {
            if s.database_url.is_none() && s.database_secret.is_none() {
                return Err(SetupError::Missing("DATABASE_URL or DATABASE_SECRET_ARN"));
            }
            Ok(s)
        })
    }
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Deps {
    /// Everything the handler needs, from the environment: settings checked, clients built,
    /// pipeline config loaded, database configured (and migrated if asked). Once per container.
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
            queue: Queue::new(clients.sqs, settings.transform_queue_url),
            clean_bucket: settings.clean_bucket,
        })
    }
}
