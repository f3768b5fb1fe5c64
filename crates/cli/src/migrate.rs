//! `sluice migrate`: bring the status tables up to date.

use std::path::PathBuf;

use anyhow::Result;
use sluice_db::{migrate, Db, DbConfig};

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// PostgreSQL URL (`postgres://user:password@host:5432/db?sslmode=require`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PEM bundle to verify the server's TLS certificate (the RDS CA bundle).
    #[arg(long, env = "SLUICE_DB_CA_FILE")]
    ca_file: Option<PathBuf>,
}

pub fn run(args: Args) -> u8 {
    match apply(&args) {
        Ok(applied) if applied.is_empty() => {
            eprintln!("database schema is up to date");
            exit::ACCEPTED
        }
        Ok(applied) => {
            eprintln!("applied migrations: {applied:?}");
            exit::ACCEPTED
        }
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

fn apply(args: &Args) -> Result<Vec<u32>> {
    let config = DbConfig::parse(&args.database_url, args.ca_file.as_deref())?;
    let runtime = crate::runtime::start(crate::runtime::Threads::One)?;
    runtime.block_on(async { Ok(migrate(&Db::new(config)).await?) })
}
