//! `sluice run`: the whole chain on this machine, through the same stage functions as the
//! Lambdas. A folder stands in for the buckets (`<out>/buckets/<bucket>/<key>`, the same key
//! layout), in-process queues for SQS, and the embedded status store for PostgreSQL (or
//! PostgreSQL itself when `DATABASE_URL` is set, so history is kept between runs).

mod requests;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::delivery::spec::check_url;
use sluice_core::delivery::Reach;
use sluice_core::drop::quarantine_key;
use sluice_core::message::{DateRange, FileSanitized};
use sluice_core::metadata::UploadMetadata;
use sluice_core::{Dataset, PipelineConfig, Stage};
use sluice_http::HttpPoster;
use sluice_local::{EventsFile, FolderObjects, MemoryQueue, MemoryStore};
use sluice_stages::delivery::Targets;
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::forward::{forward_batch, Forward};
use sluice_stages::ports::{flush, Lease, Outstanding, RecordState, Sweep};
use sluice_stages::redrive::{redrive_stuck, RedriveCounts, RedriveStage};
use sluice_stages::sanitize::{sanitize_object, ObjectCreated, Sanitize};
use sluice_stages::transform::{transform_file, Transform};
use uuid::Uuid;

use crate::exit::{self, Usage};
use requests::{LocalPoster, RequestFiles};
use summary::{FileLine, Summary};

const QUARANTINE: &str = "quarantine";
const CLEAN: &str = "clean";
/// Record batches waiting for the forwarder at most (a few MB at the default batch size).
const FORWARD_QUEUE_MESSAGES: usize = 16;
/// With --watch: re-drives of a file whose run died before it is failed (as the listener's
/// default).
const MAX_REDRIVES: i32 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, or folders searched recursively.
    #[arg(required_unless_present = "watch")]
    paths: Vec<PathBuf>,
    /// Keep running and take the files dropped into this folder (recursively) once they have
    /// not changed for one interval: the local twin of the FTP drop and its schedule. A file
    /// written again is taken again. Stop with Ctrl-C.
    #[arg(long, conflicts_with = "paths")]
    watch: Option<PathBuf>,
    /// With --watch: seconds between looks at the folder.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// With --watch: a file an earlier run left unfinished (it died, or was stopped) that no
    /// run holds and that has not moved for this many seconds is taken up again, as the
    /// listener's re-drive does in AWS.
    #[arg(long, default_value_t = 900)]
    stale_after: u64,
    /// Pipeline config file.
    #[arg(long, env = "SLUICE_CONFIG", default_value = "pipelines.toml")]
    config: PathBuf,
    /// Dataset of every file. Without it, a file's dataset is the nearest folder above it
    /// named like one (`examples/orders/x.csv` is `orders`; `-` and `_` are the same).
    #[arg(long)]
    dataset: Option<String>,
    /// POST every dataset's records to this URL (https, or http to this machine). Without
    /// it, the requests are written to `<out>/requests/<dataset>.jsonl`.
    #[arg(long)]
    api: Option<String>,
    /// Where the buckets (quarantine, clean files, reports) and request files go.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Keep only records whose date field is on or after this date (YYYY-MM-DD).
    #[arg(long)]
    start: Option<NaiveDate>,
    /// Keep only records whose date field is on or before this date (YYYY-MM-DD).
    #[arg(long)]
    end: Option<NaiveDate>,
    /// Files sanitized at the same time.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// For datasets with a `record_key`: send every record, not only new and changed ones
    /// (a full replay, for an API that lost data).
    #[arg(long)]
    full: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Required with DATABASE_URL and no --api, when requests only go to files: `keep`
    /// records them in PostgreSQL as delivered (you send the request files yourself; API
    /// health never counts them); `skip` makes the run a trial on an embedded store, and
    /// PostgreSQL is not written at all.
    #[arg(long, value_enum)]
    record_state: Option<RecordStateChoice>,
}

/// What the shared status store learns of a run whose requests only go to files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordStateChoice {
    Keep,
    Skip,
}

pub fn run(args: Args) -> u8 {
    let runtime = match crate::runtime::start(crate::runtime::Threads::Many) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    let failed = |e: anyhow::Error| {
        eprintln!("sluice: {}", crate::exit::describe(&e));
        exit::of(&e)
    };
    if args.watch.is_some() {
        let Err(e) = runtime.block_on(watch(&args));
        return failed(e);
    }
    match runtime.block_on(run_all(&args)) {
        Ok(summary) => {
            if args.json {
                outln!("{}", summary.to_json());
            } else {
                out!("{}", summary.table());
            }
            summary.exit_code()
        }
        Err(e) => failed(e),
    }
}

async fn run_all(args: &Args) -> Result<Summary> {
    let config = load_config(args)?;
    let files = input_files(&args.paths)?;
    if files.is_empty() {
        bail!("no files found under the given paths");
    }
    match database_store(args).await? {
        Some(store) => Chain::new(args, &config, &store).await?.run(&files).await,
        None => {
            let store = embedded_store(args)?;
            Chain::new(args, &config, &store).await?.run(&files).await
        }
    }
}

/// The embedded store, with the record state of earlier runs into the same `--out`.
fn embedded_store(args: &Args) -> Result<MemoryStore> {
    let path = args.out.join(RECORD_STATE_FILE);
    MemoryStore::with_records_file(&path)
        .with_context(|| format!("reading the record state {}", path.display()))
}

/// Where final-status events go, under `--out` (appended run after run).
pub const EVENTS_FILE: &str = "events.jsonl";

/// Where the embedded store keeps what was delivered per record key, under `--out`.
pub const RECORD_STATE_FILE: &str = "record-state.json";

/// What a run's store must be told to keep for the next run: PostgreSQL keeps everything by
/// itself; the embedded store saves its record state to a file.
trait Keep {
    fn keep(&self) -> Result<()>;
}

impl Keep for MemoryStore {
    fn keep(&self) -> Result<()> {
        self.save_records()
            .context("saving the record state for the next run")
    }
}

impl Keep for sluice_db::Store {
    fn keep(&self) -> Result<()> {
        Ok(())
    }
}

fn load_config(args: &Args) -> Result<PipelineConfig> {
    let config = PipelineConfig::load(&args.config)?;
    if let Some(name) = &args.dataset {
        config.dataset(name)?;
    }
    Ok(config)
}

/// PostgreSQL (migrated) when `DATABASE_URL` is set, unless the run sends nothing and was
/// told not to write it (`--record-state=skip`); says on standard error which store it uses.
async fn database_store(args: &Args) -> Result<Option<sluice_db::Store>> {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!(
                "sluice: status store: embedded (in memory; record state in {})",
                args.out.join(RECORD_STATE_FILE).display()
            );
            return Ok(None);
        }
    };
    let shown = sluice_db::redact_url(&url);
    if args.api.is_none() {
        match args.record_state {
            None => {
                return Err(Usage(format!(
                    "DATABASE_URL is set ({shown}) but there is no --api: the requests only go                      to files, and PostgreSQL would record them as delivered, so the same                      records uploaded later through the Lambdas would not be sent.\n                     fix: --record-state=skip for a trial (an embedded store; PostgreSQL is                      not written), or --record-state=keep if you will send the request files                      yourself (API health does not count them)"
                ))
                .into())
            }
            Some(RecordStateChoice::Skip) => {
                eprintln!(
                    "sluice: status store: embedded (a trial: PostgreSQL at {shown} is not                      written; record state in {})",
                    args.out.join(RECORD_STATE_FILE).display()
                );
                return Ok(None);
            }
            Some(RecordStateChoice::Keep) => {}
        }
    }
    eprintln!("sluice: status store: PostgreSQL at {shown}");
    let db = sluice_db::Db::new(sluice_db::DbConfig::parse(&url, None)?);
    sluice_db::migrate(&db).await?;
    Ok(Some(sluice_db::Store::new(db)))
}

/// `--watch`: looks at the folder every interval and runs the files that have settled; a
/// summary per round. Returns only on an error.
async fn watch(args: &Args) -> Result<std::convert::Infallible> {
    let config = load_config(args)?;
    match database_store(args).await? {
        Some(store) => watch_with(args, &config, &store).await,
        None => watch_with(args, &config, &embedded_store(args)?).await,
    }
}

async fn watch_with<S: RecordState + Keep + Outstanding + Sweep>(
    args: &Args,
    config: &PipelineConfig,
    store: &S,
) -> Result<std::convert::Infallible> {
    let dir = args.watch.clone().unwrap_or_default();
    let chain = Chain::new(args, config, store).await?;
    let mut drops = Drops::default();
    eprintln!(
        "sluice: watching {} every {} s",
        dir.display(),
        args.interval
    );
    loop {
        let ready = drops.settled(&input_files(std::slice::from_ref(&dir))?);
        if !ready.is_empty() {
            let summary = chain.run(&ready).await?;
            if args.json {
                outln!("{}", serde_json::to_string(&summary)?);
            } else {
                out!("{}", summary.table());
            }
        }
        // Files an earlier run left unfinished (with PostgreSQL, whose rows outlive a run).
        if let Some((counts, summary)) = chain.redrive().await? {
            if args.json {
                let line = serde_json::json!({ "redrive": counts, "files": summary.files });
                outln!("{line}");
            } else {
                outln!(
                    "re-driven: {} to sanitize, {} to transform, {} re-sent, {} given up",
                    counts.redriven_sanitize,
                    counts.redriven_transform,
                    counts.resent_idle,
                    counts.given_up
                );
                out!("{}", summary.table());
            }
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}

/// The bucket and key of an "Object Created" event (what a re-drive sends the sanitizer).
fn object_of(body: &str) -> Option<ObjectCreated> {
    let event: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(ObjectCreated {
        bucket: event["detail"]["bucket"]["name"].as_str()?.to_string(),
        key: event["detail"]["object"]["key"].as_str()?.to_string(),
        size: 0,
        version_id: None,
    })
}

/// What a watched folder held: a file is taken once it looks the same (size and
/// modification time) on two looks in a row, and again when it changes.
#[derive(Default)]
struct Drops {
    last_look: HashMap<PathBuf, (u64, SystemTime)>,
    taken: HashMap<PathBuf, (u64, SystemTime)>,
}

impl Drops {
    fn settled(&mut self, files: &[PathBuf]) -> Vec<PathBuf> {
        let mut now = HashMap::new();
        let mut ready = Vec::new();
        for file in files {
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            let seen = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let unchanged = self.last_look.get(file) == Some(&seen);
            if unchanged && self.taken.get(file) != Some(&seen) {
                self.taken.insert(file.clone(), seen);
                ready.push(file.clone());
            }
            now.insert(file.clone(), seen);
        }
        self.last_look = now;
        ready
    }
}

/// Every file under `paths`, in name order; hidden files and folders are left out.
fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
        if meta.is_file() {
            files.push(path);
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
            .with_context(|| format!("{}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        stack.extend(entries.into_iter().rev());
    }
    Ok(files)
}

/// One run's adapters and the stages over them.
struct Chain<'a, S> {
    args: &'a Args,
    config: &'a PipelineConfig,
    store: &'a S,
    objects: FolderObjects,
    targets: Targets,
    poster: LocalPoster,
    destination: String,
}

impl<'a, S: RecordState + Keep + Outstanding + Sweep> Chain<'a, S> {
    /// The listener's re-drive over this run's store: files that no run holds and that have
    /// not moved for `--stale-after` (or whose run's lease lapsed) get their stage's input
    /// again, and go through the chain here. `None` when there were none.
    async fn redrive(&self) -> Result<Option<(RedriveCounts, Summary)>> {
        let sanitize_queue = MemoryQueue::new();
        let transform_queue = MemoryQueue::new();
        let forward_queue = MemoryQueue::bounded(FORWARD_QUEUE_MESSAGES);
        let stage = RedriveStage {
            store: self.store,
            objects: &self.objects,
            sanitize_queue: &sanitize_queue,
            transform_queue: &transform_queue,
            forward_queue: &forward_queue,
            clean_bucket: CLEAN,
            stale_after: Duration::from_secs(self.args.stale_after),
            max_redrives: MAX_REDRIVES,
        };
        let mut counts = RedriveCounts::default();
        redrive_stuck(&stage, || false, &mut counts)
            .await
            .map_err(|fault| anyhow::anyhow!("re-driving unfinished files: {}", fault.message))?;
        let lease = self.lease();
        let sanitize = Sanitize {
            config: self.config,
            store: self.store,
            objects: &self.objects,
            queue: &transform_queue,
            clean_bucket: CLEAN,
        };
        let mut ids = Vec::new();
        for body in sanitize_queue.take_all() {
            let Some(object) = object_of(&body) else {
                continue;
            };
            match sanitize_object(&sanitize, &object, None, &lease).await {
                Ok(outcome) => ids.extend(outcome.file_id),
                Err(fault) => {
                    message_failed(self.store, Stage::Sanitizer, None, Delivery::ONLY, &fault)
                        .await;
                }
            }
        }
        let sanitized = transform_queue.take_all();
        ids.extend(
            sanitized
                .iter()
                .filter_map(|b| serde_json::from_str::<FileSanitized>(b).ok())
                .map(|m| m.file_id),
        );
        if ids.is_empty() && counts == RedriveCounts::default() {
            return Ok(None);
        }
        let progress = ProgressBar::hidden();
        let transforming = async {
            self.transform_all(sanitized, &forward_queue, &lease).await;
            forward_queue.close();
        };
        tokio::join!(
            transforming,
            self.forward_all(&forward_queue, &progress, &lease)
        );
        self.store.keep()?;
        self.notify().await?;
        ids.sort();
        ids.dedup();
        let mut lines = Vec::new();
        for id in ids {
            let name = PathBuf::from(format!("(re-driven) {id}"));
            lines.push(FileLine::of(&name, id, self.store, &self.args.out).await);
        }
        let summary = Summary {
            files: lines,
            destination: self.destination.clone(),
        };
        Ok(Some((counts, summary)))
    }
}

impl<'a, S: RecordState + Keep + Outstanding> Chain<'a, S> {
    async fn new(args: &'a Args, config: &'a PipelineConfig, store: &'a S) -> Result<Self> {
        let (targets, poster, destination) = match &args.api {
            Some(api) => {
                let url = check_url(api).map_err(|why| Usage(format!("--api {api}: {why}")))?;
                // A local run reads no AWS secrets: a header from Secrets Manager fails its
                // dataset's batches, with the reason.
                let targets = Targets::resolve_to(config, None, Some(&url)).await;
                (
                    targets,
                    // The operator named this API on the command line: it may be on this
                    // machine or the LAN.
                    LocalPoster::Http(HttpPoster::new(
                        Reach::of(config).allowing(url.host_str().unwrap_or_default()),
                    )?),
                    url.to_string(),
                )
            }
            None => {
                let dir = args.out.join("requests");
                let here = url::Url::parse("file:///requests").expect("a valid URL");
                let targets = Targets::headless(&here);
                let shown = dir.display().to_string();
                (targets, LocalPoster::Files(RequestFiles::new(dir)), shown)
            }
        };
        Ok(Self {
            args,
            config,
            store,
            objects: FolderObjects::new(args.out.join("buckets")),
            targets,
            poster,
            destination,
        })
    }

    /// A round's lease: its own owner, and long enough for any file (a local run has no
    /// deadline; a run that dies leaves its files to `--watch`'s re-drive once it lapses).
    fn lease(&self) -> Lease {
        Lease {
            owner: format!("run/{}", Uuid::new_v4()),
            until: SystemTime::now() + Duration::from_secs(24 * 3600),
        }
    }

    async fn run(&self, files: &[PathBuf]) -> Result<Summary> {
        let lease = &self.lease();
        // This run's queues: one "file sanitized" message per file, and the record batches.
        let transform_queue = MemoryQueue::new();
        let forward_queue = MemoryQueue::bounded(FORWARD_QUEUE_MESSAGES);
        let mut lines = Vec::new();
        let mut created = Vec::new();
        for file in files {
            match self.route(file) {
                Some(dataset) => created.push((file, self.quarantine(file, dataset).await?)),
                None => lines.push(FileLine::unrouted(file)),
            }
        }
        let sanitize = Sanitize {
            config: self.config,
            store: self.store,
            objects: &self.objects,
            queue: &transform_queue,
            clean_bucket: CLEAN,
        };
        let progress = progress_bar(created.len());
        let outcomes: Vec<_> = stream::iter(&created)
            .map(|(file, object)| async {
                let outcome = sanitize_object(&sanitize, object, None, lease).await;
                // Each event has its only delivery here: a failure fails its file.
                if let Err(fault) = &outcome {
                    message_failed(self.store, Stage::Sanitizer, None, Delivery::ONLY, fault).await;
                }
                progress.inc(1);
                (*file, outcome)
            })
            .buffered(self.args.concurrency.max(1))
            .collect()
            .await;
        // The forwarder takes batches as the transformer makes them: the forward queue is
        // bounded, so memory stays flat whatever the file size.
        let transforming = async {
            self.transform_all(transform_queue.take_all(), &forward_queue, lease)
                .await;
            forward_queue.close();
        };
        tokio::join!(
            transforming,
            self.forward_all(&forward_queue, &progress, lease)
        );
        progress.finish_and_clear();
        self.store.keep()?;
        self.notify().await?;
        for (file, outcome) in outcomes {
            let line = match outcome {
                Ok(outcome) => match outcome.file_id {
                    Some(id) => FileLine::of(file, id, self.store, &self.args.out).await,
                    None => FileLine::skipped(file, outcome.result),
                },
                Err(fault) => FileLine::failed(file, &fault.message),
            };
            lines.push(line);
        }
        Ok(Summary {
            files: lines,
            destination: self.destination.clone(),
        })
    }

    /// The dataset of `file`: `--dataset`, or the nearest folder above it with a dataset's
    /// name.
    fn route(&self, file: &Path) -> Option<&'a Dataset> {
        if let Some(name) = &self.args.dataset {
            return self.config.dataset(name).ok();
        }
        let by_name: HashMap<String, &Dataset> = self
            .config
            .datasets()
            .map(|d| (d.name.replace('-', "_"), d))
            .collect();
        file.ancestors().skip(1).find_map(|dir| {
            let name = dir.file_name()?.to_string_lossy().replace('-', "_");
            by_name.get(&name).copied()
        })
    }

    /// Copies `file` into the quarantine folder as an upload would land, with the date range
    /// in its metadata.
    async fn quarantine(&self, file: &Path, dataset: &Dataset) -> Result<ObjectCreated> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let now = chrono::DateTime::<chrono::Utc>::from(SystemTime::now());
        let key = quarantine_key(&dataset.prefix, now, Uuid::new_v4(), &name);
        let (start, end) = (self.args.start, self.args.end);
        let metadata = UploadMetadata {
            date_range: DateRange::between(start, end),
            full: self.args.full,
            // A local file was "uploaded" when it was last written: that orders a delta scope.
            uploaded_at: std::fs::metadata(file)
                .and_then(|m| m.modified())
                .ok()
                .map(|written| chrono::DateTime::<chrono::Utc>::from(written).to_rfc3339()),
            ..UploadMetadata::default()
        }
        .to_map();
        self.objects
            .put_file(QUARANTINE, &key, file, metadata)
            .await?;
        Ok(ObjectCreated {
            bucket: QUARANTINE.into(),
            key,
            size: std::fs::metadata(file).map(|m| m.len() as i64).unwrap_or(0),
            version_id: None,
        })
    }

    /// Every final status as the event EventBridge would carry, for whoever watches.
    async fn notify(&self) -> Result<()> {
        let events = EventsFile::new(&self.args.out.join(EVENTS_FILE));
        let notified = flush(self.store, &events, 100, usize::MAX).await;
        if notified.failed > 0 {
            bail!(
                "{} notification(s) could not be written to {}",
                notified.failed,
                events.path().display()
            );
        }
        Ok(())
    }

    /// Every "file sanitized" message through the transform stage. Each message is on its
    /// only delivery: a failure fails its file (there is no queue to bring it back).
    async fn transform_all(&self, messages: Vec<String>, to: &MemoryQueue, lease: &Lease) {
        let stage = Transform {
            config: self.config,
            store: self.store,
            objects: &self.objects,
            queue: to,
            clean_bucket: CLEAN,
        };
        for body in messages {
            let Ok(message) = serde_json::from_str::<FileSanitized>(&body) else {
                continue;
            };
            if let Err(fault) = transform_file(&stage, &message, lease).await {
                let id = Some(message.file_id);
                message_failed(self.store, Stage::Transformer, id, Delivery::ONLY, &fault).await;
            }
        }
    }

    /// Every record batch through the forward stage, on its last delivery (a batch not
    /// delivered after its attempts fails its file).
    async fn forward_all(&self, from: &MemoryQueue, progress: &ProgressBar, lease: &Lease) {
        let stage = Forward {
            config: self.config,
            targets: &self.targets,
            store: self.store,
            objects: &self.objects,
            poster: &self.poster,
            clean_bucket: CLEAN,
        };
        let sent = std::sync::atomic::AtomicU64::new(0);
        let batches = stream::unfold(from, |queue| async move {
            queue.recv().await.map(|body| (body, queue))
        });
        batches
            .for_each_concurrent(4, |body| {
                let (stage, sent) = (&stage, &sent);
                async move {
                    // A batch not delivered after its attempts fails its file; the summary
                    // shows it.
                    if let Err(fault) = forward_batch(stage, &body, None, lease).await {
                        let store = self.store;
                        message_failed(store, Stage::Forwarder, None, Delivery::ONLY, &fault).await;
                    }
                    let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress.set_message(format!("{n} batch(es) delivered"));
                }
            })
            .await;
    }
}

/// Files sanitized and batches delivered so far, on standard error when it is a terminal.
fn progress_bar(files: usize) -> ProgressBar {
    let bar = ProgressBar::new(files as u64);
    let style = ProgressStyle::with_template(
        "{spinner} {pos}/{len} file(s) sanitized, {msg} [{elapsed_precise}]",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message("0 batch(es) delivered");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Shared so the summary can name where reports are.
pub(crate) fn reports_dir(out: &Path, id: Uuid) -> PathBuf {
    out.join("buckets")
        .join(CLEAN)
        .join("reports")
        .join(id.to_string())
}
