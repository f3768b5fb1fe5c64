//! The listener's environment, read and checked once per container.

use std::time::Duration;

use sluice_aws::Queue;
use sluice_lambda::setup::{required, Common, DatabaseSettings, SetupError};

use crate::Deps;

/// Everything the listener needs from its environment (the book: docs/src/listener.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SLUICE_CONFIG`: pipeline config path or `s3://bucket/key`.
    pub pipeline_config: String,
    /// `SLUICE_DROP_BUCKET`: where FTP/SFTP servers land files; required when a dataset has
    /// a drop pattern.
    pub drop_bucket: Option<String>,
    /// `SLUICE_QUARANTINE_BUCKET`: where drops are copied to.
    pub quarantine_bucket: String,
    /// `SLUICE_CLEAN_BUCKET`: where the sanitize reports are (a re-drive reads them).
    pub clean_bucket: String,
    /// `SLUICE_SANITIZE_QUEUE_URL`: a stuck file's object event goes here.
    pub sanitize_queue_url: String,
    /// `SLUICE_TRANSFORM_QUEUE_URL`: a stuck file's "file sanitized" message goes here.
    pub transform_queue_url: String,
    /// `SLUICE_FORWARD_QUEUE_URL`: only its backlog is read.
    pub forward_queue_url: String,
    /// `SLUICE_STALE_AFTER_SECONDS` (default 3600): no status move for this long is stuck.
    pub stale_after: Duration,
    /// `SLUICE_MAX_REDRIVES` (default 3).
    pub max_redrives: i32,
    /// `SLUICE_DROP_PAGE_SIZE` (default 1000): keys per listing request.
    pub page_size: i32,
    /// `SLUICE_DROP_CONCURRENCY` (default 8): drop objects copied at the same time.
    pub copy_concurrency: usize,
    /// `SLUICE_RECONCILE_DAYS` (default 2, 0 turns it off): days of quarantine prefixes
    /// checked for objects without a row.
    pub reconcile_days: u32,
    /// `SLUICE_RECONCILE_GRACE_SECONDS` (default 900): younger objects are left to their
    /// event.
    pub reconcile_grace: Duration,
    /// `SLUICE_OBJECT_DLQ_URLS` (comma-separated, optional): the dead-letter queues of object
    /// events, swept for files that never got a row.
    pub object_dead_letter_queues: Vec<String>,
    pub database: DatabaseSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, SetupError> {
        Ok(Self {
            pipeline_config: required("SLUICE_CONFIG")?,
            drop_bucket: std::env::var("SLUICE_DROP_BUCKET")
                .ok()
                .filter(|b| !b.trim().is_empty()),
            quarantine_bucket: required("SLUICE_QUARANTINE_BUCKET")?,
            clean_bucket: required("SLUICE_CLEAN_BUCKET")?,
            sanitize_queue_url: required("SLUICE_SANITIZE_QUEUE_URL")?,
            transform_queue_url: required("SLUICE_TRANSFORM_QUEUE_URL")?,
            forward_queue_url: required("SLUICE_FORWARD_QUEUE_URL")?,
            stale_after: Duration::from_secs(number("SLUICE_STALE_AFTER_SECONDS", 3600, 60)?),
            max_redrives: number("SLUICE_MAX_REDRIVES", 3, 0)? as i32,
            page_size: number("SLUICE_DROP_PAGE_SIZE", 1000, 1)?.min(1000) as i32,
            copy_concurrency: number("SLUICE_DROP_CONCURRENCY", 8, 1)?.min(64) as usize,
            reconcile_days: number("SLUICE_RECONCILE_DAYS", 2, 0)?.min(31) as u32,
            reconcile_grace: Duration::from_secs(number("SLUICE_RECONCILE_GRACE_SECONDS", 900, 0)?),
            object_dead_letter_queues: std::env::var("SLUICE_OBJECT_DLQ_URLS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect(),
            database: DatabaseSettings::from_env()?,
        })
    }
}

/// A whole-number setting of at least `min`, `default` when unset.
fn number(name: &'static str, default: u64, min: u64) -> Result<u64, SetupError> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n >= min && n <= 1_000_000 => Ok(n),
        _ => Err(SetupError::Invalid {
            name,
            reason: format!("expected a whole number from {min} to 1000000"),
        }),
    }
}

impl Deps {
    /// Everything a run needs, from the environment. Once per container.
    pub async fn from_env() -> Result<Self, SetupError> {
        let settings = Settings::from_env()?;
        let common = Common::build(&settings.pipeline_config, &settings.database).await?;
        let has_drops = !common.config.drop_prefixes().is_empty();
        if has_drops && settings.drop_bucket.is_none() {
            return Err(SetupError::Missing("SLUICE_DROP_BUCKET"));
        }
        Ok(Deps {
            config: common.config,
            store: common.store,
            objects: common.objects,
            drop_bucket: settings.drop_bucket.filter(|_| has_drops),
            quarantine_bucket: settings.quarantine_bucket,
            clean_bucket: settings.clean_bucket,
            sanitize_queue: Queue::new(common.clients.sqs.clone(), settings.sanitize_queue_url),
            transform_queue: Queue::new(common.clients.sqs.clone(), settings.transform_queue_url),
            forward_queue: Queue::new(common.clients.sqs, settings.forward_queue_url),
            stale_after: settings.stale_after,
            max_redrives: settings.max_redrives,
            page_size: settings.page_size,
            copy_concurrency: settings.copy_concurrency,
            reconcile_days: settings.reconcile_days,
            reconcile_grace: settings.reconcile_grace,
            object_dead_letter_queues: settings.object_dead_letter_queues,
        })
    }
}
