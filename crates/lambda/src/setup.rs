//! What every Lambda does once per container: JSON logs, settings from the environment
//! (checked, naming the bad variable), the pipeline config from a path or `s3://` URI.

use std::path::Path;

use sluice_core::PipelineConfig;
use sluice_db::DbConfig;
use tokio::io::AsyncReadExt;

use sluice_aws::secrets::database_secret;
use sluice_aws::{Clients, ObjectStore};

/// A setting that is missing or wrong; the Lambda refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("pipeline config: {0}")]
    Config(String),
    #[error("database settings: {0}")]
    Database(String),
}

/// Stop this long before Lambda's deadline (at most; a fifth of the time left if that is
/// less), so there is time to clean up and record the error before Lambda retries.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// When a stage should stop working on an invocation whose deadline is `deadline_ms` (Lambda's
/// `Context::deadline`, milliseconds since the epoch); `None` when there is none (0, as in
/// tests and local runs).
pub fn stop_before(deadline_ms: u64) -> Option<std::time::Instant> {
    let deadline = deadline_at(deadline_ms)?;
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    tracing::debug!(
        left_ms = left.as_millis() as u64,
        "time left in this invocation"
    );
    Some(deadline - DEADLINE_MARGIN.min(left / 5))
}

/// Lambda's deadline `deadline_ms` (milliseconds since the epoch) as an instant; `None` when
/// there is none (0).
pub fn deadline_at(deadline_ms: u64) -> Option<std::time::Instant> {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// `SLUICE_MAX_RECEIVE_COUNT`: the consumer queue's `maxReceiveCount` (default 5, 1..=1000);
/// it must equal the queue's, so the last delivery before the dead-letter queue is known.
pub fn receive_count_setting() -> Result<u32, SetupError> {
    const NAME: &str = "SLUICE_MAX_RECEIVE_COUNT";
    let Ok(text) = std::env::var(NAME) else {
        return Ok(5);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(SetupError::Invalid {
            name: NAME,
            reason: "expected a whole number from 1 to 1000".into(),
        }),
    }
}

/// `SLUICE_S3_PARTS_IN_FLIGHT` (part uploads one object keeps in flight, default 4, 8 MiB
/// each) and `SLUICE_S3_RANGES_IN_FLIGHT` (ranged GETs, default 1: one streaming GET; 4 MiB
/// each), both 1..=16.
pub fn in_flight_settings() -> Result<(usize, usize), SetupError> {
    in_flight_from(|name| std::env::var(name).ok())
}

fn in_flight_from(var: impl Fn(&str) -> Option<String>) -> Result<(usize, usize), SetupError> {
    let number = |name: &'static str, default: usize| match var(name) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=16).contains(&n) => Ok(n),
            _ => Err(SetupError::Invalid {
                name,
                reason: "expected a whole number from 1 to 16".into(),
            }),
        },
    };
    Ok((
        number(
            "SLUICE_S3_PARTS_IN_FLIGHT",
            sluice_aws::s3::DEFAULT_PARTS_IN_FLIGHT,
        )?,
        number(
            "SLUICE_S3_RANGES_IN_FLIGHT",
            sluice_aws::s3::DEFAULT_RANGES_IN_FLIGHT,
        )?,
    ))
}

/// The value of a required variable.
pub fn required(name: &'static str) -> Result<String, SetupError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(SetupError::Missing(name)),
    }
}

/// A yes/no variable (`true`/`1`/`yes` or `false`/`0`/`no`), `default` when unset.
pub fn flag(name: &'static str, default: bool) -> Result<bool, SetupError> {
    match std::env::var(name)
        .ok()
        .as_deref()
        .map(str::to_lowercase)
        .as_deref()
    {
        None | Some("") => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(SetupError::Invalid {
            name,
            reason: format!("{other:?} is not true or false"),
        }),
    }
}

/// Loads the pipeline config from a file path or an `s3://bucket/key` URI.
pub async fn load_pipeline_config(
    uri: &str,
    objects: &ObjectStore,
) -> Result<PipelineConfig, SetupError> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| SetupError::Config(format!("{uri} is not s3://bucket/key")))?;
        let (mut body, meta) = objects
            .open(bucket, key, None)
            .await
            .map_err(|e| SetupError::Config(e.to_string()))?;
        let mut text = String::new();
        body.read_to_string(&mut text)
            .await
            .map_err(|e| SetupError::Config(format!("reading {uri}: {e}")))?;
        let version = match &meta.version_id {
            Some(id) => format!("versionId={id}"),
            None => format!("etag={}", meta.etag.trim_matches('"')),
        };
        let config = PipelineConfig::parse(&text, uri)
            .map_err(|e| SetupError::Config(e.to_string()))?
            .with_version(uri, &version);
        // Which version this container starts new files with (each file keeps its own).
        tracing::info!(config = config.version(), "pipeline config loaded");
        return Ok(config);
    }
    PipelineConfig::load(Path::new(uri)).map_err(|e| SetupError::Config(e.to_string()))
}

/// The database settings: `url` (`DATABASE_URL`), with the credentials (and host, port and
/// database, when it has them) of the Secrets Manager secret `secret_id`
/// (`DATABASE_SECRET_ARN`) when that is set. Without a URL, TLS is required.
pub async fn database_config(
    url: Option<&str>,
    secret_id: Option<&str>,
    ca_file: Option<&Path>,
    clients: &Clients,
) -> Result<DbConfig, SetupError> {
    let invalid = |e: &dyn std::fmt::Display| SetupError::Database(e.to_string());
    let config =
        DbConfig::parse(url.unwrap_or("sslmode=require"), ca_file).map_err(|e| invalid(&e))?;
    let Some(secret_id) = secret_id else {
        return match url {
            Some(_) => Ok(config),
            None => Err(SetupError::Missing("DATABASE_URL or DATABASE_SECRET_ARN")),
        };
    };
    let secret = database_secret(&clients.secrets, secret_id)
        .await
        .map_err(|e| invalid(&e))?;
    if url.is_none() && secret.host.is_none() {
        return Err(SetupError::Database(
            "the secret in DATABASE_SECRET_ARN has no host: set DATABASE_URL too".into(),
        ));
    }
    config
        .with_credentials(
            &secret.username,
            &secret.password,
            secret.host.as_deref(),
            secret.port,
            secret.dbname.as_deref(),
        )
        .map_err(|e| invalid(&e))
}

/// The status-store settings every stage reads (the book: the stages' chapters under docs/src/).
#[derive(Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (its password may come from the secret instead).
    pub url: Option<String>,
    /// `DATABASE_SECRET_ARN`: Secrets Manager secret with the credentials (RDS's JSON shape).
    pub secret: Option<String>,
    /// `SLUICE_DB_CA_FILE`: PEM bundle verifying the database's TLS certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// `SLUICE_MIGRATE_ON_START`: apply migrations at cold start (default false), as the
    /// URL's or the secret's user (the schema's owner).
    pub migrate_on_start: bool,
    /// `SLUICE_DB_IAM_USER`: log in as this user with an RDS IAM token signed with the
    /// function's own role (the host and database from `DATABASE_URL`, TLS verified); the
    /// secret is then read only to migrate.
    pub iam_user: Option<String>,
}

/// Shows the URL with its password masked.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url.as_deref().map(sluice_db::redact_url))
            .field("secret", &self.secret)
            .field("ca_file", &self.ca_file)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("iam_user", &self.iam_user)
            .finish()
    }
}

impl DatabaseSettings {
    pub fn from_env() -> Result<Self, SetupError> {
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let settings = Self {
            url: optional("DATABASE_URL"),
            secret: optional("DATABASE_SECRET_ARN"),
            ca_file: optional("SLUICE_DB_CA_FILE").map(std::path::PathBuf::from),
            migrate_on_start: flag("SLUICE_MIGRATE_ON_START", false)?,
            iam_user: optional("SLUICE_DB_IAM_USER"),
        };
        if settings.url.is_none() && settings.secret.is_none() {
            return Err(SetupError::Missing("DATABASE_URL or DATABASE_SECRET_ARN"));
        }
        if settings.iam_user.is_some() && settings.url.is_none() {
            return Err(SetupError::Missing(
                "DATABASE_URL (the host an RDS IAM login connects to)",
            ));
        }
        Ok(settings)
    }
}

/// What every stage builds once per container: clients, the pipeline config and the status
/// store (migrated first if asked).
pub struct Common {
    pub clients: Clients,
    pub objects: ObjectStore,
    pub config: PipelineConfig,
    pub store: sluice_db::Store,
}

impl Common {
    pub async fn build(
        pipeline_config: &str,
        database: &DatabaseSettings,
    ) -> Result<Self, SetupError> {
        let clients = Clients::from_env().await;
        let (parts, ranges) = in_flight_settings()?;
        let objects = ObjectStore::new(clients.s3.clone())
            .with_parts_in_flight(parts)
            .with_ranges_in_flight(ranges);
        let config = load_pipeline_config(pipeline_config, &objects).await?;
        if database.migrate_on_start {
            let owner = owner_db(database, &clients).await?;
            sluice_db::migrate(&owner)
                .await
                .map_err(|e| SetupError::Database(e.to_string()))?;
        }
        let db = match &database.iam_user {
            Some(user) => iam_db(database, user, &clients).await?,
            None => owner_db(database, &clients).await?,
        };
        Ok(Self {
            clients,
            objects,
            config,
            store: sluice_db::Store::new(db),
        })
    }
}

/// The connection as the URL's or the secret's user, reading the secret again when the
/// server refuses it (RDS rotates its managed secret).
async fn owner_db(
    database: &DatabaseSettings,
    clients: &Clients,
) -> Result<sluice_db::Db, SetupError> {
    let config = database_config(
        database.url.as_deref(),
        database.secret.as_deref(),
        database.ca_file.as_deref(),
        clients,
    )
    .await?;
    if database.secret.is_none() {
        return Ok(sluice_db::Db::new(config));
    }
    let (database, clients) = (database.clone(), clients.clone());
    let refresh: sluice_db::Refresh = std::sync::Arc::new(move || {
        let (database, clients) = (database.clone(), clients.clone());
        Box::pin(async move {
            database_config(
                database.url.as_deref(),
                database.secret.as_deref(),
                database.ca_file.as_deref(),
                &clients,
            )
            .await
            .map_err(|e| sluice_db::DbError::Config(e.to_string()))
        })
    });
    Ok(sluice_db::Db::with_refresh(config, refresh))
}

/// The connection as `user` with an RDS IAM token: a token opens connections for 15 minutes,
/// so a reconnect after that is refused once and made again with a new one.
async fn iam_db(
    database: &DatabaseSettings,
    user: &str,
    clients: &Clients,
) -> Result<sluice_db::Db, SetupError> {
    iam_db_with(database, user, clients, |config| config).await
}

/// As [`iam_db`], each connection's settings passed through `adjust` (the dashboard reads as
/// its role in read-only transactions).
pub async fn iam_db_with(
    database: &DatabaseSettings,
    user: &str,
    clients: &Clients,
    adjust: fn(DbConfig) -> DbConfig,
) -> Result<sluice_db::Db, SetupError> {
    let config = adjust(iam_config(database, user, clients).await?);
    let (database, user, clients) = (database.clone(), user.to_string(), clients.clone());
    let refresh: sluice_db::Refresh = std::sync::Arc::new(move || {
        let (database, user, clients) = (database.clone(), user.clone(), clients.clone());
        Box::pin(async move {
            iam_config(&database, &user, &clients)
                .await
                .map(adjust)
                .map_err(|e| sluice_db::DbError::Config(e.to_string()))
        })
    });
    Ok(sluice_db::Db::with_refresh(config, refresh))
}

async fn iam_config(
    database: &DatabaseSettings,
    user: &str,
    clients: &Clients,
) -> Result<DbConfig, SetupError> {
    let invalid = |e: &dyn std::fmt::Display| SetupError::Database(e.to_string());
    let url = database.url.as_deref().unwrap_or("sslmode=require");
    let config = DbConfig::parse(url, database.ca_file.as_deref()).map_err(|e| invalid(&e))?;
    if !config.uses_tls() {
        return Err(SetupError::Database(
            "an RDS IAM login needs TLS: DATABASE_URL must not be a loopback or plaintext one"
                .into(),
        ));
    }
    let (host, port) = config.endpoint().ok_or_else(|| {
        SetupError::Database("an RDS IAM login needs DATABASE_URL's host and port".into())
    })?;
    let token = clients
        .rds_auth_token(&host, port, user)
        .await
        .map_err(|e| invalid(&e))?;
    config
        .with_credentials(user, &token, None, None, None)
        .map_err(|e| invalid(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_settings_never_show_the_password() {
        let settings = DatabaseSettings {
            url: Some("postgres://app:hunter2@db.example:5432/sluice?sslmode=require".into()),
            secret: None,
            ca_file: None,
            migrate_on_start: false,
            iam_user: Some("sluice_sanitizer".into()),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.example:5432/sluice"),
            "{shown}"
        );
    }

    #[test]
    fn s3_in_flight_settings_default_and_refuse_out_of_range() {
        let none = |_: &str| None;
        assert_eq!(in_flight_from(none).unwrap(), (4, 1));
        let set = |name: &str| (name == "SLUICE_S3_RANGES_IN_FLIGHT").then(|| " 8 ".to_string());
        assert_eq!(in_flight_from(set).unwrap(), (4, 8));
        for bad in ["0", "17", "four"] {
            let set = |name: &str| (name == "SLUICE_S3_PARTS_IN_FLIGHT").then(|| bad.to_string());
            let err = in_flight_from(set).unwrap_err().to_string();
            assert!(err.contains("SLUICE_S3_PARTS_IN_FLIGHT"), "{err}");
        }
    }
}
