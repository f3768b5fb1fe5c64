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

/// Shows where it connects, never the password.
impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl DbConfig {
    /// Parses a `postgres://` URL or `key=value` string. With `sslmode=require` (what RDS
    /// needs) the server certificate is verified against the PEM bundle at `ca_file` (the RDS
    /// CA bundle); there is no unverified TLS. `sslmode=disable` (local runs) is plain TCP.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Self, DbError> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Config(format!("DATABASE_URL does not parse: {e}")))?;
        // A database that does not answer must fail the invocation quickly, not at the
        // Lambda timeout.
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(5));
        }
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

    /// Uses these credentials (from a secret) instead of any in the URL; `host`, `port` and
    /// `dbname` replace the URL's when given.
    pub fn with_credentials(
        mut self,
        user: &str,
        password: &str,
        host: Option<&str>,
        port: Option<u16>,
        dbname: Option<&str>,
    ) -> Self {
        self.pg.user(user).password(password);
        if let Some(host) = host {
            self.pg = rebuild_hosts(&self.pg, host);
        }
        if let Some(port) = port {
            self.pg.port(port);
        }
        if let Some(dbname) = dbname {
            self.pg.dbname(dbname);
        }
        self
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

/// The config with its host list replaced by `host` (tokio-postgres can only add hosts).
fn rebuild_hosts(pg: &tokio_postgres::Config, host: &str) -> tokio_postgres::Config {
    let mut fresh = tokio_postgres::Config::new();
    fresh.host(host).ssl_mode(pg.get_ssl_mode());
    if let Some(user) = pg.get_user() {
        fresh.user(user);
    }
    if let Some(password) = pg.get_password() {
        fresh.password(password);
    }
    if let Some(dbname) = pg.get_dbname() {
        fresh.dbname(dbname);
    }
    if let Some(options) = pg.get_options() {
        fresh.options(options);
    }
    if let Some(&port) = pg.get_ports().first() {
        fresh.port(port);
    }
    if let Some(timeout) = pg.get_connect_timeout() {
        fresh.connect_timeout(*timeout);
    }
    fresh
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
