//! `sluice dashboard`: the dashboard on a local port, over the status store in PostgreSQL
//! (the same router as the dashboard Lambda).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_aws::{Clients, ObjectStore};
use sluice_dashboard::{router, Dlqs, Guard, Links, State};
use sluice_db::DbConfig;

use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/test sluice dashboard
  sluice dashboard --listen 0.0.0.0:8080 --dlq-urls \"$FORWARD_DLQ_URL,$TRANSFORM_DLQ_URL\" \\
    --clean-bucket sluice-clean-123456789012

It prints the link to open, with its token: http://127.0.0.1:8080/?token=... (the token is
kept in a cookie and the page shown without it). Scripts send `Authorization: Bearer <token>`.
Pages: / (overview), /files, /files/<id>, /health, /dlq; the same data as JSON under /api/.
A request under another Host than the dashboard's address (and --allow-host) gets 421: a web
page cannot reach it by DNS rebinding. With --clean-bucket (and AWS credentials), a file's page links to its
original, its clean CSV and its reports (presigned, 15 minutes). It reads the dashboard views as the read-only role sluice_dashboard (made by the
migrations; run `sluice migrate` first).
Exit codes: 0 stopped with Ctrl-C; 1 the port or the database could not be used; 2 bad usage.")]
pub struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PEM bundle to verify the server's TLS certificate (the RDS CA bundle).
    #[arg(long, env = "SLUICE_DB_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Dead-letter queue URLs whose depth the overview shows (comma-separated; needs AWS
    /// credentials or AWS_ENDPOINT_URL).
    #[arg(long, env = "SLUICE_DLQ_URLS")]
    dlq_urls: Option<String>,
    /// The clean bucket: a file's page then links to its objects (presigned GETs signed with
    /// these AWS credentials, valid 15 minutes).
    #[arg(long, env = "SLUICE_CLEAN_BUCKET")]
    clean_bucket: Option<String>,
    /// The token a request must carry (a new random one each start when not set; printed in
    /// the link only then).
    #[arg(long = "token", env = "SLUICE_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Another HOST:PORT the dashboard is reached by (repeatable): requests under any Host
    /// but its listening address (and, on loopback, localhost) are refused.
    #[arg(long = "allow-host", value_name = "HOST:PORT")]
    allow_hosts: Vec<String>,
    /// Seconds without a move that make an unfinished file with no lease stuck.
    #[arg(long, env = "SLUICE_STALE_AFTER_SECONDS", default_value_t = 3600)]
    stale_after: u64,
}

pub fn run(args: Args) -> u8 {
    let runtime = match crate::runtime::start(crate::runtime::Threads::Many) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice dashboard: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => exit::ACCEPTED,
        Err(e) => {
            eprintln!("sluice dashboard: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

async fn serve(args: Args) -> Result<()> {
    let config =
        DbConfig::parse(&args.database_url, args.ca_file.as_deref()).context("DATABASE_URL")?;
    let clients = Clients::from_env().await;
    let dlqs = args
        .dlq_urls
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|urls| Dlqs {
            queues: clients.queues(),
            urls: urls.split(',').map(|u| u.trim().to_string()).collect(),
        });
    let links = args
        .clean_bucket
        .filter(|b| !b.trim().is_empty())
        .map(|clean_bucket| Links {
            objects: ObjectStore::new(clients.s3.clone()),
            clean_bucket,
        });
    let state = State::new(config, dlqs, Duration::from_secs(args.stale_after)).with_links(links);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "sluice dashboard: warning: listening on {bound}, beyond this machine: anyone who \
             can reach it and has the token reads file names, uploaders and API answers; \
             prefer 127.0.0.1 and an SSH tunnel"
        );
    }
    let (token, chosen) = match args.token.filter(|t| !t.trim().is_empty()) {
        Some(token) => (token.trim().to_string(), true),
        None => (new_token(), false),
    };
    let guard = Guard::new(&token, bound, &args.allow_hosts);
    let open = match bound.ip().is_unspecified() {
        true => format!("127.0.0.1:{}", bound.port()),
        false => guard.hosts().first().cloned().unwrap_or_default(),
    };
    match chosen {
        true => outln!("sluice dashboard on http://{open}/ (token: SLUICE_DASHBOARD_TOKEN)"),
        false => outln!("sluice dashboard on http://{open}/?token={token}"),
    }
    axum::serve(listener, guard.around(router(Arc::new(state))))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

/// 244 random bits, as URL-safe hex.
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
