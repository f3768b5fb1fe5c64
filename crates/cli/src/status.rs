//! `sluice status`: where files are and why, from the status store (PostgreSQL): a list of
//! files (by dataset, status, time, or stuck), or one file with its history and API calls.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_core::transform::delta::original_name;
use sluice_core::FileStatus;
use sluice_db::{ApiCallRow, Db, DbConfig, EventRow, FileQuery, FileRow, Store};
use uuid::Uuid;

use crate::exit;

/// API calls shown for one file in the table (all of them with --json).
const SHOWN_CALLS: usize = 20;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice status --dataset orders --since 24h
  sluice status --status failed --since 2026-11-01 --json
  sluice status --stuck
  sluice status 6f1c2d3e-0b7a-5c8e-9d41-2a6b3c4d5e6f

Exit codes: 0 shown; 1 no such file, or the database could not be read; 2 bad usage.")]
pub struct Args {
    /// One file: its row, its history (file_event) and its API calls (what each failed call
    /// got back). A whole id, or its start (at least 4 hex digits) if only one file has it.
    file_id: Option<String>,
    /// Only this dataset's files.
    #[arg(long, conflicts_with = "file_id")]
    dataset: Option<String>,
    /// Only files in this status (received, sanitizing, sanitized, rejected, transforming,
    /// transformed, delivering, delivered, failed).
    #[arg(long, conflicts_with = "file_id")]
    status: Option<String>,
    /// Only files updated since: a duration back from now (`30m`, `24h`, `7d`) or a date
    /// (`YYYY-MM-DD`, UTC).
    #[arg(long, conflicts_with = "file_id")]
    since: Option<String>,
    /// Only files stuck in a stage: an expired lease, or no move for --stale-after seconds.
    #[arg(long, conflicts_with_all = ["file_id", "status"])]
    stuck: bool,
    /// With --stuck: seconds without a move that make a file with no lease stuck (the
    /// listener's SLUICE_STALE_AFTER_SECONDS).
    #[arg(long, default_value_t = 3600)]
    stale_after: u64,
    /// Files listed at most.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// With a file id: wait up to this many seconds for the file to be final (delivered,
    /// rejected or failed), then show it; exit 1 if it is not final by then. A file not yet
    /// in the status store (an upload the sanitizer has not seen) is waited for too.
    #[arg(long, requires = "file_id")]
    wait: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// PostgreSQL URL (`postgres://user:password@host:5432/db?sslmode=require`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PEM bundle to verify the server's TLS certificate (the RDS CA bundle).
    #[arg(long, env = "SLUICE_DB_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// Why the command stopped.
enum Stop {
    Usage(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

pub fn run(args: Args) -> u8 {
    match show(&args) {
        Ok(text) => {
            out!("{text}");
            exit::ACCEPTED
        }
        Err(Stop::Usage(why)) => {
            eprintln!("sluice status: {why}");
            exit::USAGE
        }
        Err(Stop::Failed(e)) => {
            eprintln!("sluice status: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

fn show(args: &Args) -> Result<String, Stop> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            s.parse::<FileStatus>().map_err(|_| {
                let all: Vec<&str> = FileStatus::ALL.iter().map(|s| s.as_str()).collect();
                Stop::Usage(format!(
                    "unknown status {s:?}: give one of {}",
                    all.join(", ")
                ))
            })
        })
        .transpose()?;
    let since = args
        .since
        .as_deref()
        .map(|s| crate::duration::since(s, SystemTime::now()).map_err(Stop::Usage))
        .transpose()?;
    let config =
        DbConfig::parse(&args.database_url, args.ca_file.as_deref()).context("DATABASE_URL")?;
    let runtime = crate::runtime::start(crate::runtime::Threads::One)?;
    runtime.block_on(async {
        let store = Store::new(Db::new(config));
        match &args.file_id {
            Some(text) => {
                let id =
                    crate::ids::resolve(&store, text).await.map_err(|e| match e
                        .downcast_ref::<crate::exit::Usage>()
                    {
                        Some(usage) => Stop::Usage(usage.to_string()),
                        None => Stop::Failed(e),
                    })?;
                if let Some(seconds) = args.wait {
                    wait_final(&store, id, Duration::from_secs(seconds)).await?;
                }
                one_file(&store, id, args.json).await
            }
            None => {
                let files = if args.stuck {
                    stuck(&store, args, since).await?
                } else {
                    let query = FileQuery {
                        dataset: args.dataset.as_deref(),
                        status,
                        since,
                        limit: args.limit.max(1),
                    };
                    store.files(&query).await.context("reading file_process")?
                };
                Ok(match args.json {
                    true => format!(
                        "{:#}\n",
                        Value::Array(files.iter().map(file_json).collect())
                    ),
                    false => file_table(&files),
                })
            }
        }
    })
}

async fn stuck(store: &Store, args: &Args, since: Option<SystemTime>) -> Result<Vec<FileRow>> {
    let stale = Duration::from_secs(args.stale_after);
    let mut files = Vec::new();
    for file in store.stuck_files(stale, args.limit.max(1)).await? {
        let Some(row) = store.file(file.id).await? else {
            continue;
        };
        let in_dataset = args
            .dataset
            .as_deref()
            .is_none_or(|d| row.dataset.as_deref() == Some(d));
        let recent = since.is_none_or(|s| row.updated_at >= s);
        if in_dataset && recent {
            files.push(row);
        }
    }
    Ok(files)
}

/// Waits for file `id` to be final, looking once a second.
async fn wait_final(store: &Store, id: Uuid, limit: Duration) -> Result<(), Stop> {
    let until = std::time::Instant::now() + limit;
    loop {
        let status = store
            .file(id)
            .await
            .context("reading file_process")?
            .map(|f| f.status);
        if status.is_some_and(|s| s.is_final()) {
            return Ok(());
        }
        if std::time::Instant::now() >= until {
            let now = status.map_or("not in the status store".into(), |s| format!("still {s}"));
            return Err(Stop::Failed(anyhow::anyhow!(
                "file {id} is {now} after {} s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn one_file(store: &Store, id: Uuid, json: bool) -> Result<String, Stop> {
    let Some(file) = store.file(id).await.context("reading file_process")? else {
        return Err(Stop::Failed(anyhow::anyhow!(
            "no file {id} in the status store"
        )));
    };
    let events = store.events(id).await.context("reading file_event")?;
    let calls = store.calls(id).await.context("reading api_call")?;
    if json {
        let out = json!({
            "file": file_json(&file),
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
            "api_calls": calls.iter().map(call_json).collect::<Vec<_>>(),
        });
        return Ok(format!("{out:#}\n"));
    }
    Ok(file_text(&file, &events, &calls))
}

fn time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn file_json(f: &FileRow) -> Value {
    json!({
        "id": f.id,
        "dataset": f.dataset,
        "site": f.site,
        "status": f.status.as_str(),
        "failed_stage": f.failed_stage,
        "error": f.error,
        "name": original_name(&f.source_key),
        "source": format!("s3://{}/{}", f.source_bucket, f.source_key),
        "source_size": f.source_size,
        "clean_key": f.clean_key,
        "rows_in": f.rows_in,
        "rows_out": f.rows_out,
        "rows_rejected": f.rows_rejected,
        "records": f.records,
        "rows_unmapped": f.rows_unmapped,
        "records_new": f.records_new,
        "records_changed": f.records_changed,
        "records_unchanged": f.records_unchanged,
        "records_missing": f.records_missing,
        "records_superseded": f.records_superseded,
        "uploaded_at": f.uploaded_at.map(time),
        "batches_sent": f.batches_sent,
        "batches_delivered": f.batches_delivered,
        "replay_of": f.replay_of,
        "replay_from": f.replay_from,
        "config_version": f.config_version,
        "config_digest": f.config_digest,
        "received_at": time(f.received_at),
        "updated_at": time(f.updated_at),
    })
}

fn event_json(e: &EventRow) -> Value {
    json!({ "at": time(e.at), "stage": e.stage, "status": e.status.as_str(), "detail": e.detail })
}

fn call_json(c: &ApiCallRow) -> Value {
    json!({
        "at": time(c.at),
        "batch_id": c.batch_id,
        "attempt": c.attempt,
        "http_status": c.http_status,
        "latency_ms": c.latency_ms,
        "error": c.error,
        "response_excerpt": c.response_excerpt,
    })
}

/// An error as a list shows it: the cause first, without the dead-letter boilerplate, ids
/// cut to their first 8 digits, at most 100 characters.
fn cause(error: &str) -> String {
    let error = error
        .split("; delivery ")
        .next()
        .unwrap_or(error)
        .trim_end();
    let mut out = String::new();
    let mut rest = error;
    // A file or batch id is 36 characters (8-4-4-4-12); keep its first 8.
    while let Some(at) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match tail.get(..36).and_then(|t| Uuid::parse_str(t).ok()) {
            Some(_) => {
                out.push_str(&tail[..8]);
                out.push('…');
                rest = &tail[36..];
            }
            None => {
                let next = tail.chars().next().map_or(1, char::len_utf8);
                out.push_str(&tail[..next]);
                rest = &tail[next..];
            }
        }
    }
    out.push_str(rest);
    match out.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

fn file_table(files: &[FileRow]) -> String {
    let mut out = format!(
        "{:<36}  {:<24} {:<14} {:<12} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<20}  {}\n",
        "file",
        "name",
        "dataset",
        "status",
        "rows_in",
        "rows_out",
        "rejected",
        "records",
        "batches",
        "updated",
        "cause"
    );
    for f in files {
        let batches = match (f.batches_delivered, f.batches_sent) {
            (d, Some(b)) => format!("{}/{b}", d.unwrap_or(0)),
            _ => "-".into(),
        };
        let name: String = original_name(&f.source_key).chars().take(24).collect();
        let cause = f.error.as_deref().map(cause).unwrap_or_default();
        out.push_str(&format!(
            "{:<36}  {name:<24} {:<14} {:<12} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<20}  {cause}\n",
            f.id,
            f.dataset.as_deref().unwrap_or("-"),
            f.status.as_str(),
            cell(f.rows_in),
            cell(f.rows_out),
            cell(f.rows_rejected),
            cell(f.records),
            batches,
            time(f.updated_at),
        ));
    }
    out.push_str(&format!("{} file(s)\n", files.len()));
    out
}

fn file_text(f: &FileRow, events: &[EventRow], calls: &[ApiCallRow]) -> String {
    let mut out = format!(
        "file      {}\ndataset   {}\nstatus    {}{}\nsource    s3://{}/{} ({} bytes)\n",
        f.id,
        f.dataset.as_deref().unwrap_or("-"),
        f.status.as_str(),
        f.failed_stage
            .as_deref()
            .map_or(String::new(), |s| format!(" (at {s})")),
        f.source_bucket,
        f.source_key,
        f.source_size,
    );
    if let (Some(of), Some(from)) = (f.replay_of, &f.replay_from) {
        out.push_str(&format!("replay    of {of}, from {from}\n"));
    }
    if let Some(version) = &f.config_version {
        let digest = f.config_digest.as_deref().unwrap_or("-");
        out.push_str(&format!("config    {version} (dataset section {digest})\n"));
    }
    if let Some(error) = &f.error {
        out.push_str(&format!("error     {error}\n"));
    }
    out.push_str(&format!(
        "rows      {} in, {} out, {} rejected, {} unmapped\nrecords   {}",
        cell(f.rows_in),
        cell(f.rows_out),
        cell(f.rows_rejected),
        cell(f.rows_unmapped),
        cell(f.records),
    ));
    if let (Some(n), Some(c), Some(u)) = (f.records_new, f.records_changed, f.records_unchanged) {
        out.push_str(&format!(" ({n} new, {c} changed, {u} unchanged"));
        match f.records_superseded {
            Some(s) if s > 0 => out.push_str(&format!(", {s} superseded by a newer upload)")),
            _ => out.push(')'),
        }
    }
    out.push_str(&format!(
        "\nbatches   {} delivered of {}\nreceived  {}\nupdated   {}\n\nhistory\n",
        cell(f.batches_delivered),
        cell(f.batches_sent),
        time(f.received_at),
        time(f.updated_at),
    ));
    for e in events {
        out.push_str(&format!(
            "  {}  {:<12} {:<12} {}\n",
            time(e.at),
            e.stage,
            e.status.as_str(),
            e.detail
        ));
    }
    let delivered = calls
        .iter()
        .filter(|c| c.http_status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    out.push_str(&format!(
        "\napi calls: {} attempts, {delivered} with a 2xx{}\n",
        calls.len(),
        if calls.len() > SHOWN_CALLS {
            format!(" (the last {SHOWN_CALLS} below; all with --json)")
        } else {
            String::new()
        }
    ));
    for c in calls.iter().skip(calls.len().saturating_sub(SHOWN_CALLS)) {
        out.push_str(&format!(
            "  {}  {}  attempt {}  {}  {} ms  {}\n",
            time(c.at),
            c.batch_id,
            c.attempt,
            c.http_status
                .map_or("no answer".into(), |s| format!("HTTP {s}")),
            cell(c.latency_ms),
            c.error.as_deref().unwrap_or(""),
        ));
        let failed = !c.http_status.is_some_and(|s| (200..300).contains(&s));
        if let (true, Some(answer)) = (failed, &c.response_excerpt) {
            out.push_str(&format!("      the API answered: {answer}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_cause_comes_first_with_short_ids_and_no_boilerplate() {
        let error = "batch 6f1c2d3e-0b7a-5c8e-9d41-2a6b3c4d5e6f-000002 refused: HTTP 422 \
                     field customer.email: invalid address; delivery 5 of 5, so the message goes \
                     to the dead-letter queue";
        assert_eq!(
            cause(error),
            "batch 6f1c2d3e…-000002 refused: HTTP 422 field customer.email: invalid address"
        );
        let long = "x".repeat(150);
        assert_eq!(cause(&long).chars().count(), 101);
        assert_eq!(cause("café: naïve"), "café: naïve");
    }
}
