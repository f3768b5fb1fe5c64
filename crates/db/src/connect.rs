//! Connection settings and the one connection a Lambda container keeps.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::DbError;

/// How to reach PostgreSQL: the libpq-style settings plus the TLS roots.
#[derive(Clone)]
pub struct DbConfig {
    pg: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl DbConfig {
    /// Parses a `postgres://` URL or `key=value` string. With `sslmode=require` (what RDS
    /// needs) the server certificate is verified against the PEM bundle at `ca_file` (the RDS
    /// CA bundle); there is no unverified TLS. `sslmode=disable` (local runs) is plain TCP.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Self, DbError> {
        let pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Config(format!("DATABASE_URL does not parse: {e}")))?;
        let tls = match (pg.get_ssl_mode(), ca_file) {
            (SslMode::Disable, _) | (SslMode::Prefer, None) => None,
            (_, Some(path)) => Some(Arc::new(tls_config(path)?)),
            (_, None) => {
                return Err(DbError::Config(
                    "sslmode requires TLS but no CA bundle is set (SLUICE_DB_CA_FILE)".into(),
                ))
            }
        };
        Ok(Self { pg, tls })
    }

    /// Puts every query of these connections in `schema` (tests use one schema each).
    pub fn with_schema(mut self, schema: &str) -> Self {
        self.pg.options(format!("-c search_path={schema}"));
        self
    }

    /// Opens a connection and drives it on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, DbError> {
        match &self.tls {
            None => {
                let (client, connection) = self.pg.connect(NoTls).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) = self.pg.connect(connector).await?;
                tokio::spawn(drive(connection));
                Ok(client)
            }
        }
    }
}

async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "database connection closed");
    }
}

fn tls_config(ca_file: &Path) -> Result<rustls::ClientConfig, DbError> {
    let unreadable = |e: std::io::Error| {
        DbError::Config(format!("cannot read CA bundle {}: {e}", ca_file.display()))
    };
    let pem = std::fs::read(ca_file).map_err(unreadable)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(unreadable)?).map_err(|e| {
            DbError::Config(format!("bad certificate in {}: {e}", ca_file.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(DbError::Config(format!(
            "no certificate in CA bundle {}",
            ca_file.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The database connection of one process (one Lambda container): opened on first use and
/// opened again when the previous one has dropped, so a restart of the database or an idle
/// timeout costs one reconnect, not a dead container. Callers take turns on it; a container
/// handles one invocation at a time.
pub struct Db {
    config: DbConfig,
    client: Mutex<Option<Client>>,
}

impl Db {
    pub fn new(config: DbConfig) -> Self {
        Self {
            config,
            client: Mutex::new(None),
        }
    }

    /// The live connection, reconnecting if the last one is closed.
    pub async fn client(&self) -> Result<MappedMutexGuard<'_, Client>, DbError> {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(self.config.connect().await?);
        }
        Ok(MutexGuard::map(slot, |slot| {
            slot.as_mut().expect("the slot was filled just above")
        }))
    }
}
