//! Connection settings and the one connection a Lambda container keeps.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::{RwLock, RwLockMappedWriteGuard, RwLockReadGuard, RwLockWriteGuard};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls, Statement};

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
    /// Parses a `postgres://` URL or `key=value` string.
    ///
    /// TLS with certificate and host-name verification (against the PEM bundle at `ca_file`,
    /// the RDS CA bundle in AWS) is mandatory for any host that is not loopback, whatever the
    /// URL's `sslmode` says: `disable` is refused and `prefer`/`allow`, which would fall back
    /// to plaintext when the server declines TLS, are taken as `require`. To loopback hosts
    /// (`localhost`, `127.0.0.0/8`, `::1`, a Unix socket) plaintext is allowed unless
    /// `sslmode` is `require` or stricter, or a CA bundle is given with `prefer`.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Self, DbError> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Config(format!("DATABASE_URL does not parse: {e}")))?;
        // A database that does not answer must fail the invocation quickly, not at the
        // Lambda timeout.
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(5));
        }
        let remote = pg
            .get_hosts()
            .iter()
            .find(|h| !is_loopback(h))
            .map(describe);
        let mode = pg.get_ssl_mode();
        let needs_tls = match (&remote, mode) {
            (Some(host), SslMode::Disable) => {
                return Err(DbError::Config(format!(
                    "sslmode=disable is refused for {host}: TLS is mandatory for any database \
                     host that is not loopback (remove sslmode, or use sslmode=require)"
                )))
            }
            (Some(_), _) => true,
            (None, SslMode::Disable) => false,
            (None, SslMode::Prefer) => ca_file.is_some(),
            (None, _) => true,
        };
        if !needs_tls {
            return Ok(Self { pg, tls: None });
        }
        let Some(ca_file) = ca_file else {
            let host = remote.unwrap_or_else(|| "this host".into());
            return Err(DbError::Config(format!(
                "TLS is needed to reach {host} but no CA bundle is set: point \
                 SLUICE_DB_CA_FILE at the PEM bundle that signed the server's certificate (for \
                 RDS, the RDS global bundle)"
            )));
        };
        // Never fall back to plaintext when the server declines TLS.
        pg.ssl_mode(SslMode::Require);
        Ok(Self {
            pg,
            tls: Some(Arc::new(tls_config(ca_file)?)),
        })
    }

    /// Whether connections use (verified) TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's host name and port (the first of each given), when it is reached over TCP.
    pub fn endpoint(&self) -> Option<(String, u16)> {
        let host = match self.pg.get_hosts().first()? {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => return None,
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        Some((host, port))
    }

    /// Uses these credentials (from a secret) instead of any in the URL; `host`, `port` and
    /// `dbname` replace the URL's when given. A host that is not loopback needs TLS, so the
    /// URL must have asked for it.
    pub fn with_credentials(
        mut self,
        user: &str,
        password: &str,
        host: Option<&str>,
        port: Option<u16>,
        dbname: Option<&str>,
    ) -> Result<Self, DbError> {
        self.pg.user(user).password(password);
        if let Some(host) = host {
            self.pg = rebuild_hosts(&self.pg, host);
            let tcp = Host::Tcp(host.to_string());
            if self.tls.is_none() && !is_loopback(&tcp) {
                return Err(DbError::Config(format!(
                    "TLS is mandatory for {} (from the secret), but the settings turn it off",
                    describe(&tcp)
                )));
            }
            if self.tls.is_some() {
                self.pg.ssl_mode(SslMode::Require);
            }
        }
        if let Some(port) = port {
            self.pg.port(port);
        }
        if let Some(dbname) = dbname {
            self.pg.dbname(dbname);
        }
        Ok(self)
    }

    /// Puts every query of these connections in `schema` (tests use one schema each).
    pub fn with_schema(self, schema: &str) -> Self {
        self.with_option(&format!("search_path={schema}"))
    }

    /// Connections that act as `role` (a function's, see migration V19), whoever logs in: the
    /// grants of that role alone.
    pub fn acting_as(self, role: &str) -> Self {
        self.with_option(&format!("role={role}"))
    }

    /// Connections that act as `role` (the dashboard's `sluice_dashboard`, which may read only
    /// the dashboard views) in read-only transactions, whoever logs in.
    pub fn read_only_as(self, role: &str) -> Self {
        self.with_option(&format!("role={role}"))
            .with_option("default_transaction_read_only=on")
    }

    /// Adds `-c name=value` to the connection's options, after any the URL gave.
    fn with_option(mut self, setting: &str) -> Self {
        let options = match self.pg.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} -c {setting}"),
            _ => format!("-c {setting}"),
        };
        self.pg.options(options);
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

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}

fn describe(host: &Host) -> String {
    match host {
        Host::Tcp(name) => format!("host {name}"),
        Host::Unix(path) => format!("socket {}", path.display()),
    }
}

/// A database URL fit to show: the password of a `postgres://user:password@` URL or of a
/// `password=` setting replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            let tail = redact_password_setting(tail);
            return format!("{scheme}://{user}{masked}@{host}{tail}");
        }
        return format!("{scheme}://{authority}{}", redact_password_setting(tail));
    }
    redact_password_setting(url)
}

fn redact_password_setting(text: &str) -> String {
    text.split_inclusive([' ', '&', '?'])
        .map(|part| {
            let key = part.split('=').next().unwrap_or_default().trim();
            if key.eq_ignore_ascii_case("password") && part.contains('=') {
                let sep = part.chars().last().filter(|c| matches!(c, ' ' | '&' | '?'));
                format!("password=***{}", sep.map(String::from).unwrap_or_default())
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// The config with its host list replaced by `host` (tokio-postgres can only add hosts).
fn rebuild_hosts(pg: &tokio_postgres::Config, host: &str) -> tokio_postgres::Config {
    let mut fresh = tokio_postgres::Config::new();
    fresh.host(host).ssl_mode(pg.get_ssl_mode());
    for addr in pg.get_hostaddrs() {
        fresh.hostaddr(*addr);
    }
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
    let bad = |e: &dyn std::fmt::Display| {
        DbError::Config(format!("bad certificate in {}: {e}", ca_file.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(DbError::Config(format!(
            "no certificate in CA bundle {}",
            ca_file.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Fetches connection settings anew: a rotated password from Secrets Manager, say.
pub type Refresh =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<DbConfig, DbError>> + Send>> + Send + Sync>;

/// The database connection of one process (one Lambda container): opened on first use and
/// opened again when the previous one has dropped, so a restart of the database or an idle
/// timeout costs one reconnect, not a dead container. A container handles one invocation at
/// a time, but an invocation may have several tasks on it (the forwarder's deliveries in
/// flight): single prepared statements share the connection, and tokio-postgres pipelines
/// them, while [`Self::client`] (anything that may open a transaction) has it to itself.
///
/// When the server refuses the credentials (RDS rotates its managed secret), the settings are
/// read again once through the [`Refresh`] given, before the failure counts.
pub struct Db {
    state: RwLock<State>,
    refresh: Option<Refresh>,
}

struct State {
    config: DbConfig,
    client: Option<Client>,
    /// Statements prepared on `client`, by their SQL: the queries every batch or file runs
    /// are parsed once per connection, not once per call. Filled by tasks that share the
    /// connection, so it has a (never awaited) lock of its own.
    statements: std::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl State {
    fn live(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    fn statement(&self, sql: &str) -> Option<Statement> {
        let statements = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        statements.get(sql).cloned()
    }
}

impl Db {
    pub fn new(config: DbConfig) -> Self {
        Self {
            state: RwLock::new(State {
                config,
                client: None,
                statements: std::sync::Mutex::new(HashMap::new()),
            }),
            refresh: None,
        }
    }

    /// The same, re-reading the settings through `refresh` when the credentials are refused.
    pub fn with_refresh(config: DbConfig, refresh: Refresh) -> Self {
        Self {
            refresh: Some(refresh),
            ..Self::new(config)
        }
    }

    /// The live connection to itself (for transactions), reconnecting if the last one is
    /// closed. It waits for statements in flight on the shared connection to finish.
    pub async fn client(&self) -> Result<RwLockMappedWriteGuard<'_, Client>, DbError> {
        let mut state = self.state.write().await;
        self.connect_if_needed(&mut state).await?;
        Ok(RwLockWriteGuard::map(state, |state| {
            state
                .client
                .as_mut()
                .expect("the slot was filled just above")
        }))
    }

    /// The live connection, shared with other tasks' single statements, and `sql` prepared
    /// on it (once per connection). For one statement outside a transaction only: a `BEGIN`
    /// sent here would take in other tasks' statements.
    pub async fn prepared(
        &self,
        sql: &'static str,
    ) -> Result<(RwLockReadGuard<'_, Client>, Statement), DbError> {
        let mut state = self.state.read().await;
        if !state.live() {
            drop(state);
            let mut exclusive = self.state.write().await;
            self.connect_if_needed(&mut exclusive).await?;
            state = exclusive.downgrade();
        }
        let statement = match state.statement(sql) {
            Some(statement) => statement,
            None => {
                let client = state.client.as_ref().expect("connected just above");
                let statement = client.prepare(sql).await?;
                state
                    .statements
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sql, statement.clone());
                statement
            }
        };
        let client = RwLockReadGuard::map(state, |state| {
            state.client.as_ref().expect("connected just above")
        });
        Ok((client, statement))
    }

    async fn connect_if_needed(&self, state: &mut State) -> Result<(), DbError> {
        if state.live() {
            return Ok(());
        }
        state
            .statements
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let client = match (state.config.connect().await, &self.refresh) {
            (Err(e), Some(refresh)) if is_auth_failure(&e) => {
                tracing::info!(
                    "the database refused the credentials: reading them again (rotated?)"
                );
                state.config = refresh().await?;
                state.config.connect().await?
            }
            (result, _) => result?,
        };
        state.client = Some(client);
        Ok(())
    }
}

/// The server refused the user or password (not: it could not be reached).
fn is_auth_failure(error: &DbError) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(error, DbError::Postgres(e) if e.code().is_some_and(|code| {
        *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/sluice?sslmode=require"),
            "postgres://app:***@db.example:5432/sluice?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db.example/sluice"),
            "postgres://app@db.example/sluice"
        );
        assert_eq!(
            redact_url("postgres://db.example/sluice?user=app&password=s3cret&sslmode=require"),
            "postgres://db.example/sluice?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("host=db.example password=s3cret user=app"),
            "host=db.example password=*** user=app"
        );
    }

    #[test]
    fn loopback_may_be_plaintext_anything_else_may_not() {
        let local = DbConfig::parse("postgres://u@127.0.0.1/test?sslmode=disable", None).unwrap();
        assert!(!local.uses_tls());
        let local = DbConfig::parse("postgres://u@localhost/test", None).unwrap();
        assert!(!local.uses_tls());
        let err = DbConfig::parse("postgres://u:pw@10.0.0.5/test", None).unwrap_err();
        assert!(err.to_string().contains("SLUICE_DB_CA_FILE"), "{err}");
        let err =
            DbConfig::parse("postgres://u:pw@db.example/test?sslmode=disable", None).unwrap_err();
        assert!(err.to_string().contains("mandatory"), "{err}");
        let local = DbConfig::parse("postgres://u@127.0.0.1/test?sslmode=disable", None).unwrap();
        let err = local
            .with_credentials("u", "pw", Some("db.example"), None, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("mandatory"), "{err}");
    }
}
