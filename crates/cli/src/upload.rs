//! `sluice upload`: files and folders into the quarantine bucket under unique keys, as the
//! pipeline expects them, with the date range in their metadata. Large files go in parts
//! whose upload state is kept on disk, so an interrupted upload resumes where it stopped
//! (ListParts); a file whose content was uploaded before is skipped (by its SHA-256).

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_aws::{AwsError, Clients, ObjectStore};
use sluice_core::drop::quarantine_key;
use sluice_core::message::DateRange;
use sluice_core::metadata::UploadMetadata;
use sluice_core::PipelineConfig;
use uuid::Uuid;

use crate::exit;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice upload exports/orders-2026-11-24.csv --dataset orders
  sluice upload ftp-backlog/ --dataset train_movements --concurrency 8
  sluice upload big.csv --dataset orders --start 2026-11-01 --end 2026-11-30

Each file goes to incoming/<dataset>/<yyyy>/<mm>/<dd>/<uuid>-<name> in the quarantine bucket
(--bucket or SLUICE_QUARANTINE_BUCKET). Files larger than --multipart-threshold go in parts;
what was sent is kept under --state, so running the same command again after an interruption
resumes the unfinished files and skips the ones already uploaded (same content).
Exit codes: 0 every file uploaded or skipped; 1 a file failed (the summary says why); 2 bad usage.")]
pub struct Args {
    /// Files, or folders (searched recursively; hidden files are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The dataset the files belong to (its key prefix).
    #[arg(long)]
    dataset: String,
    /// Keep only records on or after this date (YYYY-MM-DD), as upload metadata.
    #[arg(long)]
    start: Option<NaiveDate>,
    /// Keep only records on or before this date (YYYY-MM-DD), as upload metadata.
    #[arg(long)]
    end: Option<NaiveDate>,
    /// Files in flight at once (and parts in flight within a large file).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Files at least this many MiB go in parts.
    #[arg(long, default_value_t = 64)]
    multipart_threshold: u64,
    /// Part size in MiB (at least 5, S3's minimum).
    #[arg(long, default_value_t = 16)]
    part_size: u64,
    /// Where upload state is kept between runs.
    #[arg(long, default_value = ".sluice-upload")]
    state: PathBuf,
    /// Quarantine bucket.
    #[arg(long, env = "SLUICE_QUARANTINE_BUCKET")]
    bucket: String,
    /// Pipeline config (for the dataset's prefix).
    #[arg(long, env = "SLUICE_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// Who is uploading, kept as the objects' `sluice-uploaded-by` metadata and named in the
    /// files' notifications (default: the USER environment variable).
    #[arg(long, env = "SLUICE_UPLOADED_BY")]
    uploaded_by: Option<String>,
    /// Send nothing: check that each file's content is in S3 under the key this machine
    /// uploaded it to (its SHA-256 against the object's `sluice-sha256`). Exit 1 if one is
    /// not.
    #[arg(long)]
    verify: bool,
    /// Print one JSON object per file (path, result, key, bytes, parts) and a summary object
    /// last, instead of the summary line.
    #[arg(long)]
    json: bool,
}

/// What is kept on disk per file content (`<state>/<sha256>.json`). The key is chosen and
/// saved before anything is sent, so a run that dies at any point resumes under the same key:
/// the same content never goes to two keys (two files in the pipeline).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Uploading {
    bucket: String,
    key: String,
    size: u64,
    /// The multipart upload under way, if the file goes in parts.
    upload_id: Option<String>,
    /// Its parts sent so far: (number, ETag), saved as each one gets through.
    #[serde(default)]
    parts: Vec<(i32, String)>,
    done: bool,
}

/// How one file went.
enum Outcome {
    Uploaded {
        key: String,
        bytes: u64,
        resumed_parts: usize,
        parts: usize,
    },
    Skipped {
        key: String,
    },
    /// An earlier run's upload had finished, though its state was not saved: found in S3
    /// with this content's hash, and nothing sent.
    Found {
        key: String,
    },
}

/// What S3 has under a key, as far as this content goes.
enum AtKey {
    Absent,
    /// The object is there with this content's hash.
    Ours,
    /// Something else is there.
    Other,
}

async fn at_key(objects: &ObjectStore, bucket: &str, key: &str, hash: &str) -> Result<AtKey> {
    let head = objects.head(bucket, key).await?;
    Ok(match head {
        None => AtKey::Absent,
        Some(head) => match head.metadata.get(sluice_core::metadata::CONTENT_SHA256) {
            Some(theirs) if theirs == hash => AtKey::Ours,
            _ => AtKey::Other,
        },
    })
}

pub fn run(args: Args) -> u8 {
    if args.part_size < 5 || args.concurrency == 0 {
        eprintln!("sluice upload: --part-size is at least 5 (MiB) and --concurrency at least 1");
        return exit::USAGE;
    }
    let runtime = match crate::runtime::start(crate::runtime::Threads::Many) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice upload: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    match runtime.block_on(upload_all(&args)) {
        Ok(true) => exit::ACCEPTED,
        Ok(false) => exit::OPERATIONAL,
        Err(e) => {
            eprintln!("sluice upload: {}", crate::exit::describe(&e));
            exit::of(&e)
        }
    }
}

/// Uploads every file; returns whether all of them got there.
async fn upload_all(args: &Args) -> Result<bool> {
    let config = PipelineConfig::load(&args.config)?;
    let prefix = match config.dataset(&args.dataset) {
        Ok(dataset) => dataset.prefix.clone(),
        Err(e) => return Err(crate::exit::Usage(e.to_string()).into()),
    };
    if args.verify {
        return verify_all(args).await;
    }
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("cannot create {}", args.state.display()))?;
    let objects = ObjectStore::new(Clients::from_env().await.s3);
    let bars = MultiProgress::new();
    let overall = bars.add(overall_bar());
    let started = Instant::now();
    let ctx = Ctx {
        args,
        prefix: &prefix,
        objects: &objects,
        bars: &bars,
    };
    // Paths are walked lazily and a bounded number are in flight: memory does not grow with
    // the number of files.
    let mut tally = Tally::default();
    let mut outcomes = stream::iter(walk(&args.paths))
        .map(|path| {
            let ctx = &ctx;
            async move {
                match path {
                    Ok(path) => {
                        let outcome = upload_file(ctx, &path).await;
                        (path, outcome)
                    }
                    Err(e) => (PathBuf::new(), Err(e)),
                }
            }
        })
        .buffer_unordered(args.concurrency);
    while let Some((path, outcome)) = outcomes.next().await {
        overall.inc(1);
        let line = tally.add(&ctx, &overall, &path, outcome).await;
        if args.json {
            overall.suspend(|| outln!("{line}"));
        }
        overall.set_message(format!(
            "{} uploaded, {} skipped, {} failed",
            tally.uploaded, tally.skipped, tally.failed
        ));
    }
    overall.finish_and_clear();
    tally.summary(args, &prefix, started.elapsed().as_secs_f64());
    Ok(tally.failed == 0)
}

/// The spinner over the whole run.
fn overall_bar() -> ProgressBar {
    let overall = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos} file(s) done, {msg} [{elapsed_precise}]")
    {
        overall.set_style(style);
    }
    overall.enable_steady_tick(Duration::from_millis(200));
    overall
}

/// What a run has done so far.
#[derive(Default)]
struct Tally {
    uploaded: u64,
    skipped: u64,
    failed: u64,
    bytes: u64,
}

impl Tally {
    /// Counts one file's outcome, says it (unless `--json`), and returns its JSON line.
    async fn add(
        &mut self,
        ctx: &Ctx<'_>,
        overall: &ProgressBar,
        path: &Path,
        outcome: Result<Outcome>,
    ) -> serde_json::Value {
        let (args, objects) = (ctx.args, ctx.objects);
        let say_it = |text: String| {
            if !args.json {
                say(overall, text);
            }
        };
        let mut line = json!({ "path": path.display().to_string() });
        match outcome {
            Ok(Outcome::Uploaded {
                key,
                bytes,
                resumed_parts,
                parts,
            }) => {
                self.uploaded += 1;
                self.bytes += bytes;
                let id = file_of(objects, &args.bucket, &key).await;
                say_it(format!(
                    "uploaded {} as s3://{}/{key} (file {})",
                    path.display(),
                    args.bucket,
                    id.map_or("-".to_string(), |id| id.to_string())
                ));
                if resumed_parts > 0 {
                    say_it(format!(
                        "resumed {key}: {resumed_parts} of {parts} part(s) were already there"
                    ));
                }
                line["file_id"] = json!(id);
                line["result"] = json!("uploaded");
                line["key"] = json!(key);
                line["bytes"] = json!(bytes);
                line["parts"] = json!(parts);
                line["resumed_parts"] = json!(resumed_parts);
            }
            Ok(Outcome::Found { key }) => {
                self.skipped += 1;
                say_it(format!(
                    "found {key} complete in S3 (an earlier run's upload): nothing sent"
                ));
                line["result"] = json!("found");
                line["file_id"] = json!(file_of(objects, &args.bucket, &key).await);
                line["key"] = json!(key);
                line["bytes"] = json!(0);
            }
            Ok(Outcome::Skipped { key }) => {
                self.skipped += 1;
                say_it(format!("skipped (already uploaded as {key})"));
                line["result"] = json!("skipped");
                line["file_id"] = json!(file_of(objects, &args.bucket, &key).await);
                line["key"] = json!(key);
            }
            Err(e) => {
                self.failed += 1;
                let why = crate::exit::describe(&e);
                say_it(format!("FAILED {}: {why}", path.display()));
                line["result"] = json!("failed");
                line["error"] = json!(why);
            }
        }
        line
    }

    /// The run's last line: a sentence, or a JSON summary with `--json`.
    fn summary(&self, args: &Args, prefix: &str, secs: f64) {
        if args.json {
            let summary = json!({
                "summary": true,
                "uploaded": self.uploaded,
                "skipped": self.skipped,
                "failed": self.failed,
                "bytes": self.bytes,
                "seconds": (secs * 10.0).round() / 10.0,
                "bucket": args.bucket,
                "prefix": prefix,
            });
            outln!("{summary}");
            return;
        }
        outln!(
            "{} uploaded ({:.1} MB), {} skipped (already uploaded), {} failed, in {secs:.1} s; \
             s3://{}/{prefix}",
            self.uploaded,
            self.bytes as f64 / 1e6,
            self.skipped,
            self.failed,
            args.bucket
        );
    }
}

/// A line on standard error, above the progress bars (which hide when it is not a terminal).
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

struct Ctx<'a> {
    args: &'a Args,
    prefix: &'a str,
    objects: &'a ObjectStore,
    bars: &'a MultiProgress,
}

async fn upload_file(ctx: &Ctx<'_>, path: &Path) -> Result<Outcome> {
    let args = ctx.args;
    let (hash, size) = hash_file(path).await?;
    // Held until this content is sent or given up: another run of the same command (an
    // overlapping cron job), or a copy of the file in the same folder, waits for it here and
    // then finds it done, instead of choosing a second key for it.
    let _held = hold(&args.state, &hash, path).await?;
    let state_file = args.state.join(format!("{hash}.json"));
    let saved: Option<Uploading> = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Uploading| s.bucket == args.bucket && s.size == size);
    if let Some(state) = saved.as_ref().filter(|s| s.done) {
        return Ok(Outcome::Skipped {
            key: state.key.clone(),
        });
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let saved_key = saved.as_ref().map(|s| s.key.clone());
    let mut state = saved.unwrap_or_else(|| Uploading {
        bucket: args.bucket.clone(),
        key: quarantine_key(
            ctx.prefix,
            DateTime::<Utc>::from(SystemTime::now()),
            Uuid::new_v4(),
            &name,
        ),
        size,
        upload_id: None,
        parts: Vec::new(),
        done: false,
    });
    let metadata = metadata(args, &name, &hash);
    let objects = ctx.objects;
    // Saved before the first byte is sent: a rerun after a crash anywhere below finds the
    // key, and looks at it before sending anything.
    if saved_key.is_none() {
        save(&state_file, &state)?;
    } else {
        match at_key(objects, &state.bucket, &state.key, &hash).await? {
            // The earlier run got through (a PUT, or a completion) and died before saying so.
            AtKey::Ours => return found(&state_file, state),
            AtKey::Other => bail!(
                "s3://{}/{} holds other content than this file: delete {} to upload it afresh",
                state.bucket,
                state.key,
                state_file.display()
            ),
            AtKey::Absent => {}
        }
    }
    let multipart = size >= args.multipart_threshold * 1024 * 1024;
    let (mut resumed_parts, mut parts) = (0, 1);
    let mut sent_bytes = size;
    if !multipart {
        let body = tokio::fs::read(path)
            .await
            .with_context(|| path.display().to_string())?;
        retry(|| async {
            objects
                .put_with_metadata(&state.bucket, &state.key, body.clone(), &metadata)
                .await
                .map_err(anyhow::Error::from)
        })
        .await?;
    } else {
        let sent = match send_parts(ctx, path, &name, &mut state, &state_file, &metadata).await {
            // S3 dropped the upload an earlier run started (a lifecycle rule aborts old ones;
            // nothing is under the key, checked above): start it again under the same key.
            Err(e) if gone(&e) => {
                eprintln!(
                    "{}: the multipart upload an earlier run started is gone from S3 (aborted \
                     after it expired?): sending the file again under the same key",
                    path.display()
                );
                state.upload_id = None;
                state.parts.clear();
                save(&state_file, &state)?;
                send_parts(ctx, path, &name, &mut state, &state_file, &metadata).await?
            }
            other => other?,
        };
        (resumed_parts, parts, sent_bytes) = (sent.resumed, sent.parts, sent.bytes);
        let (upload_id, done) = (sent.upload_id, sent.done);
        let completed = retry(|| async {
            objects
                .complete_upload(&state.bucket, &state.key, &upload_id, &done)
                .await
                .map_err(anyhow::Error::from)
        })
        .await;
        if let Err(e) = completed {
            // A completion that timed out may have happened (a retry then finds no upload).
            if let AtKey::Ours = at_key(objects, &state.bucket, &state.key, &hash).await? {
                return found(&state_file, state);
            }
            // Gone without an object: the next run starts the parts again, same key.
            state.upload_id = None;
            state.parts.clear();
            save(&state_file, &state)?;
            return Err(e.context(
                "CompleteMultipartUpload (the upload is gone and nothing is under its key: \
                 run the same command again to send it afresh under the same key)",
            ));
        }
    }
    state.done = true;
    state.upload_id = None;
    state.parts.clear();
    save(&state_file, &state)?;
    Ok(Outcome::Uploaded {
        key: state.key,
        bytes: sent_bytes,
        resumed_parts,
        parts,
    })
}

/// What the parts of a multipart upload came to.
struct PartsSent {
    upload_id: String,
    /// Every part, (number, ETag), in order.
    done: Vec<(i32, String)>,
    /// Parts an earlier run had sent.
    resumed: usize,
    parts: usize,
    /// Bytes this run sent.
    bytes: u64,
}

/// S3 no longer has the multipart upload (a lifecycle rule aborts old ones, or someone did).
fn gone(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<AwsError>(),
        Some(AwsError::UploadGone { .. })
    )
}

/// Sends the parts S3 does not have yet, starting the multipart upload if none is under way,
/// and saving each part as it gets through. Fails with `AwsError::UploadGone` when the upload an
/// earlier run started is no longer in S3.
async fn send_parts(
    ctx: &Ctx<'_>,
    path: &Path,
    name: &str,
    state: &mut Uploading,
    state_file: &Path,
    metadata: &[(String, String)],
) -> Result<PartsSent> {
    let (args, objects) = (ctx.args, ctx.objects);
    let size = state.size;
    // Parts are listed only for an upload an earlier run started: a new one has none.
    let resuming = state.upload_id.is_some();
    if !resuming {
        let id = objects
            .start_upload(&state.bucket, &state.key, None, metadata)
            .await?;
        state.upload_id = Some(id);
        save(state_file, state)?;
    }
    let upload_id = state
        .upload_id
        .clone()
        .ok_or_else(|| anyhow!("no upload id"))?;
    let part_size = args.part_size * 1024 * 1024;
    let parts = size.div_ceil(part_size).max(1) as usize;
    // What S3 says it has; else (a server without ListParts, such as moto, whose answer the
    // SDK cannot read) the parts this machine saw through.
    let already = match resuming {
        true => match objects
            .listed_parts(&state.bucket, &state.key, &upload_id)
            .await
            .map_err(anyhow::Error::from)
        {
            Ok(listed) => listed,
            Err(e) if gone(&e) => return Err(e),
            Err(e) => {
                note_unlisted(&path.display().to_string(), &e);
                state.parts.clone()
            }
        },
        false => Vec::new(),
    };
    let resumed = already.len();
    let bar = ctx.bars.add(ProgressBar::new(size));
    if let Ok(style) = ProgressStyle::with_template("  {msg} {bytes}/{total_bytes} {bar:30}") {
        bar.set_style(style);
    }
    bar.set_message(name.to_string());
    let todo: Vec<i32> = (1..=parts as i32)
        .filter(|n| !already.iter().any(|(p, _)| p == n))
        .collect();
    bar.inc((resumed as u64 * part_size).min(size));
    state.parts = already.clone();
    let shared = std::sync::Mutex::new(state.clone());
    let sent: Result<Vec<(i32, String)>> = stream::iter(todo)
        .map(|number| {
            let (state, upload_id, bar, shared) = (&*state, &upload_id, &bar, &shared);
            async move {
                let offset = (number as u64 - 1) * part_size;
                let len = part_size.min(size - offset);
                let body = read_range(path, offset, len).await?;
                let etag = retry(|| async {
                    objects
                        .upload_part(&state.bucket, &state.key, upload_id, number, body.clone())
                        .await
                        .map_err(anyhow::Error::from)
                })
                .await
                .with_context(|| format!("UploadPart {number}"))?;
                {
                    let mut saved = shared.lock().unwrap_or_else(|e| e.into_inner());
                    saved.parts.push((number, etag.clone()));
                    save(state_file, &saved)?;
                }
                bar.inc(len);
                Ok::<_, anyhow::Error>((number, etag))
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await;
    bar.finish_and_clear();
    *state = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut done = already;
    done.extend(sent?);
    done.sort();
    Ok(PartsSent {
        upload_id,
        done,
        resumed,
        parts,
        bytes: size.saturating_sub((resumed as u64 * part_size).min(size)),
    })
}

/// `--verify`: each file's content against the object this machine uploaded it to.
async fn verify_all(args: &Args) -> Result<bool> {
    let objects = ObjectStore::new(Clients::from_env().await.s3);
    let (mut good, mut bad) = (0u64, 0u64);
    for path in walk(&args.paths) {
        let path = path?;
        let (hash, _) = hash_file(&path).await?;
        let state_file = args.state.join(format!("{hash}.json"));
        let saved: Option<Uploading> = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (result, key) = match saved {
            None => ("not uploaded from here", None),
            Some(state) if state.bucket != args.bucket => ("uploaded to another bucket", None),
            Some(state) => {
                let there = at_key(&objects, &state.bucket, &state.key, &hash).await?;
                let result = match (there, state.done) {
                    (AtKey::Ours, _) => "verified",
                    (AtKey::Other, _) => "DIFFERENT content in S3",
                    (AtKey::Absent, true) => "MISSING from S3",
                    (AtKey::Absent, false) => "not finished (run the upload again)",
                };
                (result, Some(state.key))
            }
        };
        match result {
            "verified" => good += 1,
            _ => bad += 1,
        }
        let line = json!({ "path": path.display().to_string(), "result": result, "key": key });
        match args.json {
            true => outln!("{line}"),
            false => outln!(
                "{result}: {}{}",
                path.display(),
                key.map(|k| format!(" (s3://{}/{k})", args.bucket))
                    .unwrap_or_default()
            ),
        }
    }
    if !args.json {
        outln!("{good} verified, {bad} not");
    }
    Ok(bad == 0)
}

/// The id the pipeline gives the object now under `key` (from its bucket, key and ETag), as
/// `sluice status` takes it; `None` if it cannot be read.
async fn file_of(objects: &ObjectStore, bucket: &str, key: &str) -> Option<Uuid> {
    let head = objects.head(bucket, key).await.ok()??;
    Some(sluice_db::file_id(bucket, key, &head.etag))
}

/// An upload an earlier run finished: its state saved as done, nothing sent.
fn found(state_file: &Path, mut state: Uploading) -> Result<Outcome> {
    state.done = true;
    state.upload_id = None;
    state.parts.clear();
    save(state_file, &state)?;
    Ok(Outcome::Found { key: state.key })
}

fn note_unlisted(file: &str, e: &anyhow::Error) {
    eprintln!(
        "{file}: S3 could not list the upload's parts ({e:#}); resuming from the parts saved here"
    );
}

/// The object's metadata: what the pipeline reads, and the content's SHA-256, by which a
/// resumed or verified upload recognises its object.
fn metadata(args: &Args, name: &str, hash: &str) -> Vec<(String, String)> {
    let who = args
        .uploaded_by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|w| !w.trim().is_empty());
    let (start, end) = (args.start, args.end);
    let said = UploadMetadata {
        source_name: Some(name.to_string()),
        content_sha256: Some(hash.to_string()),
        uploaded_by: who,
        date_range: DateRange::between(start, end),
        ..UploadMetadata::default()
    };
    let mut pairs: Vec<(String, String)> = said.to_map().into_iter().collect();
    pairs.sort();
    pairs
}

/// Takes the lock on one content's upload state (`<state>/<sha256>.lock`, an OS file lock
/// that ends with the process), waiting while another run or task holds it.
async fn hold(state: &Path, hash: &str, path: &Path) -> Result<std::fs::File> {
    let lock_path = state.join(format!("{hash}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => return Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => eprintln!(
            "{}: another upload of the same content is under way; waiting for it",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
    tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .context("waiting for the upload lock")?
        .with_context(|| format!("cannot lock {}", lock_path.display()))
}

async fn hash_file(path: &Path) -> Result<(String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| path.display().to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((hash, size))
    })
    .await?
}

async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut body = vec![0u8; len as usize];
    file.read_exact(&mut body).await?;
    Ok(body)
}

fn save(path: &Path, state: &Uploading) -> Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, serde_json::to_vec(state)?)?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Tries `call` up to five times, waiting longer each time (with jitter).
async fn retry<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut waits = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(4)
        .with_jitter()
        .build();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if gone(&e) => return Err(e),
            Err(e) => match waits.next() {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(e),
            },
        }
    }
}

/// Every file under `paths`, lazily, in name order within each folder; hidden entries skipped.
fn walk(paths: &[PathBuf]) -> impl Iterator<Item = Result<PathBuf>> {
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    std::iter::from_fn(move || loop {
        let path = stack.pop()?;
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return Some(Err(anyhow!("{}: {e}", path.display()))),
        };
        if meta.is_file() {
            return Some(Ok(path));
        }
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) => return Some(Err(anyhow!("{}: {e}", path.display()))),
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        children.sort();
        stack.extend(children.into_iter().rev());
    })
}
