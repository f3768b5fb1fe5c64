//! `sluice replay`: re-run finished files from a stage, as new runs. The earlier run is never
//! changed (its row, history and API calls stay; a `replay` event names the new run), and the
//! new run has its own file id, so its batches have their own ids and Idempotency-Keys.
//!
//! - `--from sanitize`: the original is copied to a new key beside it in quarantine, with
//!   `sluice-replay-of` in its metadata; its Object Created event runs it through the whole
//!   chain like any upload.
//! - `--from transform`: the earlier clean file and report are copied to the new run's keys,
//!   the new run's row is made at `sanitized`, and "file sanitized" goes to the transform queue.
//! - `--from forward`: the same, but the transformer sends only the batches the earlier run
//!   did not deliver (a snapshot taken now), after checking it makes the same batches.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde::Serialize;
use sluice_aws::{Clients, CopySource, Head as ObjectHead, ObjectStore, Queue};
use sluice_core::layout;
use sluice_core::message::{CleanFile, DateRange, FileSanitized, MAX_SANITIZE_REPORT_BYTES};
use sluice_core::metadata::UploadMetadata;
use sluice_core::plan::RunOptions;
use sluice_core::transform::delta::original_name;
use sluice_core::FileStatus;
use sluice_db::{Db, DbConfig, Earlier, NewFile, ReplayError, ReplayFrom, Store};
use uuid::Uuid;

use crate::exit;

/// The largest sanitize report read for the clean file's columns.

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice replay 6f1c2d3e-0b7a-5c8e-9d41-2a6b3c4d5e6f                 # from sanitize: the whole chain
  sluice replay 6f1c2d3e-... --from transform --start 2026-11-01 --end 2026-11-30
  sluice replay 6f1c2d3e-... --from forward                         # only the undelivered batches
  sluice replay --dataset orders --since 24h --dry-run               # failed files of the last day
  sluice replay --dataset orders --since 2026-11-20 --status failed,rejected --rate 1

A replay is a new run with a new file id: its batches have new ids, so an API that drops
repeated Idempotency-Keys takes them. The earlier run keeps its row, history and API calls.
For a dataset with a record_key, records the API already acknowledged are not sent again
unless --full.

Needs DATABASE_URL; SLUICE_CLEAN_BUCKET and SLUICE_TRANSFORM_QUEUE_URL for --from transform
or forward; AWS credentials (or AWS_ENDPOINT_URL for a local stand-in).
Exit codes: 0 every file replayed (or listed with --dry-run); 1 a file was refused or could not
be replayed (each line says why), or the database or AWS could not be reached; 2 bad usage.")]
pub struct Args {
    /// Files to replay (ids from `sluice status`, whole or a unique start of at least 4 hex
    /// digits).
    #[arg(required_unless_present = "dataset")]
    file_ids: Vec<String>,
    /// The stage to run again from: sanitize (the original), transform (the clean file) or
    /// forward (the batches the earlier run did not deliver).
    #[arg(long, default_value = "sanitize")]
    from: ReplayFrom,
    /// Date-range filter for the new run (YYYY-MM-DD); default: the one the file was uploaded
    /// with.
    #[arg(long, conflicts_with = "all_dates")]
    start: Option<NaiveDate>,
    /// End of the date-range filter (YYYY-MM-DD, inclusive).
    #[arg(long, conflicts_with = "all_dates")]
    end: Option<NaiveDate>,
    /// No date-range filter, whatever the upload asked for.
    #[arg(long)]
    all_dates: bool,
    /// Send every record again, even those the API acknowledged (a dataset with a record_key).
    #[arg(long)]
    full: bool,
    /// Replay this dataset's finished files (with --since) instead of named ones.
    #[arg(long, conflicts_with = "file_ids", requires = "since")]
    dataset: Option<String>,
    /// With --dataset: files updated since a duration back (30m, 24h, 7d) or a date.
    #[arg(long, requires = "dataset")]
    since: Option<String>,
    /// With --dataset: the final statuses to replay, comma-separated (failed, rejected,
    /// delivered). Files replayed before are left out.
    #[arg(long, value_delimiter = ',', default_value = "failed")]
    status: Vec<String>,
    /// With --dataset: files replayed at most.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Files replayed per second at most.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Say what would be replayed, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// PEM bundle to verify the server's TLS certificate (the RDS CA bundle).
    #[arg(long, env = "SLUICE_DB_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The clean bucket (for --from transform or forward).
    #[arg(long, env = "SLUICE_CLEAN_BUCKET")]
    clean_bucket: Option<String>,
    /// The transform queue (for --from transform or forward).
    #[arg(long, env = "SLUICE_TRANSFORM_QUEUE_URL")]
    transform_queue_url: Option<String>,
}

/// What came of one file.
#[derive(Debug, Serialize)]
struct Line {
    file_id: Uuid,
    from: &'static str,
    /// `replayed`, `would replay` (--dry-run), `refused` or `failed`.
    result: &'static str,
    /// The new run's file id.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<Uuid>,
    /// A replay from sanitize: the copy's key in quarantine.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// A replay from forward: the earlier run's batches left out, as delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped_batches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Line {
    fn new(file_id: Uuid, from: ReplayFrom, result: &'static str) -> Self {
        Line {
            file_id,
            from: from.as_str(),
            result,
            replay: None,
            key: None,
            skipped_batches: None,
            reason: None,
        }
    }

    fn text(&self) -> String {
        let mut out = format!("{}  {:<12} from {}", self.file_id, self.result, self.from);
        if let Some(new) = self.replay {
            out.push_str(&format!("  as {new}"));
        }
        if let Some(key) = &self.key {
            out.push_str(&format!("  ({key})"));
        }
        if let Some(n) = self.skipped_batches {
            out.push_str(&format!("  ({n} delivered batch(es) left out)"));
        }
        if let Some(reason) = &self.reason {
            out.push_str(&format!("  {reason}"));
        }
        out
    }
}

pub fn run(args: Args) -> u8 {
    if let Err(why) = check_usage(&args) {
        eprintln!("sluice replay: {why}");
        return exit::USAGE;
    }
    let runtime = match crate::runtime::start(crate::runtime::Threads::One) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice replay: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(replay_all(&args)) {
        Ok(true) => exit::ACCEPTED,
        Ok(false) => exit::OPERATIONAL,
        Err(e) => {
            eprintln!("sluice replay: {}", crate::exit::describe(&e));
            exit::of(&e)
        }
    }
}

fn check_usage(args: &Args) -> Result<(), String> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(format!(
            "--rate {}: give files per second above 0",
            args.rate
        ));
    }
    if args.from == ReplayFrom::Forward && (args.start.is_some() || args.end.is_some() || args.full)
    {
        return Err(
            "--from forward re-sends the earlier run's own batches: it takes no \
                    --start, --end or --full (replay --from transform for those)"
                .into(),
        );
    }
    if let (Some(start), Some(end)) = (args.start, args.end) {
        if start > end {
            return Err(format!("--start {start} is after --end {end}"));
        }
    }
    // A dry run looks at the clean file too, so it needs the bucket as much as the real one.
    if args.from != ReplayFrom::Sanitize && args.clean_bucket.is_none() {
        return Err("--from transform or forward needs the clean bucket: set \
                    SLUICE_CLEAN_BUCKET or --clean-bucket"
            .into());
    }
    if args.from != ReplayFrom::Sanitize && !args.dry_run && args.transform_queue_url.is_none() {
        return Err(
            "--from transform or forward needs the transform queue: set \
                    SLUICE_TRANSFORM_QUEUE_URL or --transform-queue-url"
                .into(),
        );
    }
    statuses(args)?;
    Ok(())
}

fn statuses(args: &Args) -> Result<Vec<FileStatus>, String> {
    args.status
        .iter()
        .map(|s| match s.parse::<FileStatus>() {
            Ok(status) if status.is_final() => Ok(status),
            _ => Err(format!(
                "--status {s:?}: give final statuses (failed, rejected, delivered)"
            )),
        })
        .collect()
}

/// Replays every file asked for, at most `rate` a second; false when one was not replayed.
async fn replay_all(args: &Args) -> Result<bool> {
    let config =
        DbConfig::parse(&args.database_url, args.ca_file.as_deref()).context("DATABASE_URL")?;
    let store = Store::new(Db::new(config));
    let ids = match &args.dataset {
        None => {
            let mut ids = Vec::new();
            for text in &args.file_ids {
                ids.push(crate::ids::resolve(&store, text).await?);
            }
            ids
        }
        Some(dataset) => {
            let since = args.since.as_deref().unwrap_or_default();
            let since =
                crate::duration::since(since, SystemTime::now()).map_err(anyhow::Error::msg)?;
            let statuses = statuses(args).map_err(anyhow::Error::msg)?;
            store
                .replay_candidates(dataset, since, &statuses, args.limit.max(1))
                .await
                .context("reading file_process")?
        }
    };
    let clients = Clients::from_env().await;
    let ctx = Replayer {
        args,
        store: &store,
        objects: ObjectStore::new(clients.s3.clone()),
        queue: args
            .transform_queue_url
            .as_ref()
            .map(|url| Queue::new(clients.sqs.clone(), url.clone())),
    };
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut done, mut not_done) = (0usize, 0usize);
    for id in ids {
        ticks.tick().await;
        let line = ctx.replay(id).await;
        match line.result {
            "replayed" | "would replay" => done += 1,
            _ => not_done += 1,
        }
        match args.json {
            true => outln!("{}", serde_json::to_string(&line).unwrap_or_default()),
            false => outln!("{}", line.text()),
        }
    }
    if !args.json {
        let verb = if args.dry_run {
            "to replay"
        } else {
            "replayed"
        };
        outln!("{done} file(s) {verb}, {not_done} not");
    }
    Ok(not_done == 0)
}

struct Replayer<'a> {
    args: &'a Args,
    store: &'a Store,
    objects: ObjectStore,
    queue: Option<Queue>,
}

impl Replayer<'_> {
    async fn replay(&self, id: Uuid) -> Line {
        let from = self.args.from;
        let earlier = match self.store.replay_source(id).await {
            Ok(Some(earlier)) => earlier,
            Ok(None) => return refused(id, from, format!("no file {id} in the status store")),
            Err(e) => return failed(id, from, format!("reading file_process: {e}")),
        };
        // The same checks for a dry run as for the real one: what the status store says of the
        // file, then that what the replay copies is still there.
        match self.store.check_replay(id, from).await {
            Ok(()) => {}
            Err(ReplayError::Refused(why)) => return refused(id, from, why),
            Err(e) => return failed(id, from, format!("reading file_process: {e}")),
        }
        let head = match self.source_of(&earlier, from).await {
            Ok(head) => head,
            Err((result, why)) => {
                let mut line = Line::new(id, from, result);
                line.reason = Some(why);
                return line;
            }
        };
        if self.args.dry_run {
            return Line::new(id, from, "would replay");
        }
        let replayed = match from {
            ReplayFrom::Sanitize => self.copy_original(&earlier, head).await,
            ReplayFrom::Transform | ReplayFrom::Forward => {
                self.copy_clean_run(&earlier, from, head).await
            }
        };
        replayed.unwrap_or_else(|(result, why)| {
            let mut line = Line::new(id, from, result);
            line.reason = Some(why);
            line
        })
    }

    /// What the replay copies, if it is still there: the original in quarantine (from
    /// sanitize) or the clean file (from transform or forward). When it is gone, the refusal
    /// names the other replay only if that one can still be made.
    async fn source_of(
        &self,
        earlier: &Earlier,
        from: ReplayFrom,
    ) -> Result<ObjectHead, (&'static str, String)> {
        let original = || async {
            let (bucket, key) = (&earlier.source_bucket, &earlier.source_key);
            self.objects
                .head(bucket, key)
                .await
                .map_err(|e| ("failed", e.to_string()))
        };
        let clean = || async {
            let (Some(bucket), Some(key)) = (&self.args.clean_bucket, &earlier.clean_key) else {
                return Ok(None);
            };
            self.objects
                .head(bucket, key)
                .await
                .map_err(|e| ("failed", e.to_string()))
        };
        let id = earlier.id;
        match from {
            ReplayFrom::Sanitize => {
                if let Some(head) = original().await? {
                    return Ok(head);
                }
                let gone = format!(
                    "the original s3://{}/{} is gone from quarantine (expired?)",
                    earlier.source_bucket, earlier.source_key
                );
                Err(match clean().await? {
                    Some(_) => ("refused", format!("{gone}: replay it --from transform (its clean file is still there)")),
                    None => ("refused", format!("{gone}, and file {id} has no clean file left: it cannot be replayed; upload the source file again")),
                })
            }
            ReplayFrom::Transform | ReplayFrom::Forward => {
                if let Some(head) = clean().await? {
                    return Ok(head);
                }
                let gone = match &self.args.clean_bucket {
                    Some(bucket) => format!(
                        "the clean file s3://{bucket}/{} is gone",
                        earlier.clean_key.as_deref().unwrap_or("-")
                    ),
                    None => "no clean bucket given (SLUICE_CLEAN_BUCKET or --clean-bucket)".into(),
                };
                Err(match original().await? {
                    Some(_) => ("refused", format!("{gone}: replay it --from sanitize (its original is still in quarantine)")),
                    None => ("refused", format!("{gone}, and the original is gone from quarantine too: file {id} cannot be replayed; upload the source file again")),
                })
            }
        }
    }

    /// A copy of the original beside it in quarantine, under a new name, naming the earlier
    /// run, and the new run's row (`received`, so `sluice status` knows it at once); the
    /// sanitizer takes it from its Object Created event.
    async fn copy_original(
        &self,
        earlier: &Earlier,
        head: ObjectHead,
    ) -> Result<Line, (&'static str, String)> {
        let (bucket, key) = (&earlier.source_bucket, &earlier.source_key);
        let mut said = self.metadata_for_copy(UploadMetadata::read(&head.metadata));
        said.replay_of = Some(earlier.id.to_string());
        let mut metadata = head.metadata.clone();
        said.write_into(&mut metadata);
        let metadata: Vec<(&str, &str)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let new_key = sibling_key(key, Uuid::new_v4());
        let source = CopySource {
            bucket,
            key,
            etag: &head.etag,
            size: head.size,
        };
        let etag = self
            .objects
            .copy(source, bucket, &new_key, &metadata)
            .await
            .map_err(|e| ("failed", e.to_string()))?;
        let registered = self
            .store
            .register(&NewFile {
                dataset: earlier.dataset.as_deref().unwrap_or_default(),
                site: said.site.as_deref(),
                bucket,
                key: &new_key,
                etag: &etag,
                size: head.size,
                replay_of: Some(earlier.id),
                uploaded_by: said.uploaded_by.as_deref(),
                uploaded_at: said.uploaded_at(head.last_modified),
            })
            .await
            .map_err(|e| {
                let why = format!("copied to {new_key}, but registering its run failed: {e} (the sanitizer registers it when it takes the copy)");
                ("failed", why)
            })?;
        let new = registered.id;
        self.store
            .note_replay(earlier.id, new, ReplayFrom::Sanitize)
            .await
            .map_err(|e| {
                let why =
                    format!("copied to {new_key} (its run is {new}), but noting it failed: {e}");
                ("failed", why)
            })?;
        let mut line = Line::new(earlier.id, ReplayFrom::Sanitize, "replayed");
        line.replay = Some(new);
        line.key = Some(new_key);
        Ok(line)
    }

    /// The upload's metadata with this replay's date range and full flag.
    fn metadata_for_copy(&self, mut said: UploadMetadata) -> UploadMetadata {
        let args = self.args;
        if args.all_dates || args.start.is_some() || args.end.is_some() {
            said.date_range = DateRange::between(args.start, args.end);
        }
        said.full |= args.full;
        said
    }

    /// The earlier clean file and report copied to the new run's keys, its row at
    /// `sanitized`, and "file sanitized" sent.
    async fn copy_clean_run(
        &self,
        earlier: &Earlier,
        from: ReplayFrom,
        head: ObjectHead,
    ) -> Result<Line, (&'static str, String)> {
        let fail = |e: &dyn std::fmt::Display| ("failed", e.to_string());
        let (Some(clean_bucket), Some(queue)) = (&self.args.clean_bucket, &self.queue) else {
            return Err(("failed", "no clean bucket or transform queue".into()));
        };
        let (date_range, full) = self.date_range_of(earlier).await?;
        let dataset = earlier.dataset.clone().unwrap_or_default();
        let earlier_clean = earlier.clean_key.clone().unwrap_or_default();
        // On the new row, so a re-drive of the run keeps them.
        let options = RunOptions {
            date_range: date_range.clone(),
            full,
        };
        let new = Uuid::new_v4();
        let clean_key = layout::clean_key(&dataset, new);
        let source = CopySource {
            bucket: clean_bucket,
            key: &earlier_clean,
            etag: &head.etag,
            size: head.size,
        };
        self.objects
            .copy(source, clean_bucket, &clean_key, &[])
            .await
            .map_err(|e| fail(&e))?;
        let report = self.copy_report(clean_bucket, earlier.id, new).await?;
        let replayed = match self
            .store
            .start_replay(earlier.id, new, from, &clean_key, &options)
            .await
        {
            Ok(replayed) => replayed,
            Err(ReplayError::Refused(why)) => return Err(("refused", why)),
            Err(e) => return Err(fail(&e)),
        };
        // The row counts are the earlier run's, as on the new row.
        let clean = CleanFile {
            columns: report.map(|r| r.columns).unwrap_or_default(),
            rows: replayed.rows.max(0) as u64,
        };
        let message = FileSanitized::rebuilt(new, &dataset, clean_bucket, clean, options, false);
        let body = serde_json::to_string(&message).map_err(|e| fail(&e))?;
        queue.send_all(&[body]).await.map_err(|e| {
            let why = format!(
                "run {new} was made but \"file sanitized\" could not be sent ({e}): the listener \
                 re-drives it once it is stale"
            );
            ("failed", why)
        })?;
        let mut line = Line::new(earlier.id, from, "replayed");
        line.replay = Some(new);
        line.skipped_batches = replayed.skip.map(|s| s.delivered.len());
        Ok(line)
    }

    /// The date range and full flag of the new run: asked for now, or the upload's, which
    /// only its quarantine object knows.
    async fn date_range_of(
        &self,
        earlier: &Earlier,
    ) -> Result<(Option<DateRange>, bool), (&'static str, String)> {
        let args = self.args;
        let asked = DateRange::between(args.start, args.end);
        let (bucket, key) = (&earlier.source_bucket, &earlier.source_key);
        let head = self
            .objects
            .head(bucket, key)
            .await
            .map_err(|e| ("failed", e.to_string()))?;
        match head {
            Some(head) => {
                let said = UploadMetadata::read(&head.metadata);
                let uploaded = said.date_range;
                let range = match (args.all_dates, asked) {
                    (true, _) => None,
                    (false, Some(asked)) => Some(asked),
                    (false, None) => uploaded,
                };
                Ok((range, args.full || said.full))
            }
            None if args.all_dates || asked.is_some() => Ok((asked, args.full)),
            None => Err((
                "refused",
                format!(
                    "the original s3://{bucket}/{key} is gone from quarantine, so the date \
                     range it was uploaded with is unknown: give --start/--end or --all-dates"
                ),
            )),
        }
    }

    /// Copies the earlier sanitize report to the new run's key (for the listener's re-drive
    /// and for operators) and returns what it says of the clean file (`None` without one).
    async fn copy_report(
        &self,
        bucket: &str,
        earlier: Uuid,
        new: Uuid,
    ) -> Result<Option<CleanFile>, (&'static str, String)> {
        let fail = |e: &dyn std::fmt::Display| ("failed", e.to_string());
        let key = layout::sanitize_report_key(earlier);
        let Some(head) = self
            .objects
            .head(bucket, &key)
            .await
            .map_err(|e| fail(&e))?
        else {
            return Ok(None);
        };
        let source = CopySource {
            bucket,
            key: &key,
            etag: &head.etag,
            size: head.size,
        };
        self.objects
            .copy(source, bucket, &layout::sanitize_report_key(new), &[])
            .await
            .map_err(|e| fail(&e))?;
        let report = self
            .objects
            .read_small(bucket, &key, MAX_SANITIZE_REPORT_BYTES)
            .await
            .map_err(|e| fail(&e))?;
        CleanFile::from_report(&report, &key)
            .map(Some)
            .map_err(|e| fail(&e))
    }
}

fn refused(id: Uuid, from: ReplayFrom, why: String) -> Line {
    let mut line = Line::new(id, from, "refused");
    line.reason = Some(why);
    line
}

fn failed(id: Uuid, from: ReplayFrom, why: String) -> Line {
    let mut line = Line::new(id, from, "failed");
    line.reason = Some(why);
    line
}

/// A new key beside `key` for the same file name: `<dir>/<uuid>-<name>`, with the upload's own
/// `<uuid>-` taken off the name, so a replay keeps the file's name (and its delta scope).
fn sibling_key(key: &str, uuid: Uuid) -> String {
    let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
    let name = original_name(key);
    match dir {
        "" => format!("{uuid}-{name}"),
        dir => format!("{dir}/{uuid}-{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_copy_sits_beside_the_original_under_the_same_name() {
        let uuid = Uuid::nil();
        assert_eq!(
            sibling_key(
                "incoming/orders/2026/11/23/6f1c2d3e-0b7a-4c8e-9d41-2a6b3c4d5e6f-orders am.csv",
                uuid
            ),
            format!("incoming/orders/2026/11/23/{uuid}-orders am.csv")
        );
        assert_eq!(
            sibling_key("incoming/orders/a.csv", uuid),
            format!("incoming/orders/{uuid}-a.csv")
        );
        assert_eq!(sibling_key("a.csv", uuid), format!("{uuid}-a.csv"));
    }
}
