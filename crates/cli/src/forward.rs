//! `sluice forward`: the forwarder's delivery on a local records file (what `sluice transform`
//! writes), to the dataset's API, another URL, or a JSON-lines file of the requests.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use sluice_core::delivery::spec::check_endpoint;
use sluice_core::delivery::Reach;
use sluice_core::delivery::{request_body, BatchHeader, BodyShape, Delivery};
use sluice_core::message::batch_id;
use sluice_core::transform::batch::{Batch, Batcher};
use sluice_core::Dataset;
use sluice_core::FileStatus;
use sluice_http::HttpPoster;
use sluice_stages::delivery::{deliver, target, Outcome, Target};
use sluice_stages::ports::{ApiCall, CallLog, Storage};
use uuid::Uuid;

use crate::dataset::DatasetArgs;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON records, one per line (what `sluice transform` writes).
    input: PathBuf,
    /// The delivery settings used: batch size, headers, timeout, retries, body.
    #[command(flatten)]
    dataset: DatasetArgs,
    /// POST to this URL instead of the dataset's endpoint (https, or http to localhost).
    #[arg(long, conflicts_with = "output")]
    api: Option<String>,
    /// Write the requests (one JSON line per batch) to this file instead of sending them.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Where the JSON delivery report goes.
    #[arg(long, short)]
    report: Option<PathBuf>,
}

/// What a local delivery did: every attempt, and the batches that did not get through.
#[derive(Debug, Default, Serialize)]
struct DeliveryReport {
    file_id: Uuid,
    dataset: String,
    /// Where the batches went: the endpoint, or the output file.
    destination: String,
    records: u64,
    batches: u32,
    batches_delivered: u32,
    attempts: Vec<AttemptRow>,
    failures: Vec<FailureRow>,
}

#[derive(Debug, Serialize)]
struct AttemptRow {
    batch_id: String,
    attempt: i32,
    http_status: Option<i32>,
    latency_ms: i32,
    response_excerpt: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct FailureRow {
    batch_id: String,
    seq: u32,
    error: String,
}

/// The attempts of a local run, for the report (the Lambda writes them to `api_call`).
#[derive(Default)]
struct Attempts(Mutex<Vec<AttemptRow>>);

impl Storage for Attempts {
    type Error = std::convert::Infallible;
}

impl CallLog for Attempts {
    async fn record_call(&self, call: &ApiCall<'_>) -> Result<Option<FileStatus>, Self::Error> {
        self.0.lock().unwrap().push(AttemptRow {
            batch_id: call.batch_id.to_string(),
            attempt: call.attempt,
            http_status: call.http_status,
            latency_ms: call.latency_ms,
            response_excerpt: call.response_excerpt.map(str::to_string),
            error: call.error.map(str::to_string),
        });
        Ok(None)
    }
}

enum Destination {
    Api(Box<Target>),
    /// The requests file, open for writing, and its path.
    File(BufWriter<File>, PathBuf),
}

pub fn run(args: Args) -> u8 {
    let dataset = match args.dataset.load() {
        Ok(dataset) => dataset,
        Err(code) => return code,
    };
    let runtime = match crate::runtime::start(crate::runtime::Threads::One) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            return exit::OPERATIONAL;
        }
    };
    let destination = match runtime.block_on(destination(&args, &dataset)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            // An output file that cannot be made is the machine's problem; a bad endpoint or
            // a header without its value is the caller's.
            return match args.output {
                Some(_) => exit::OPERATIONAL,
                None => exit::USAGE,
            };
        }
    };
    match runtime.block_on(forward_file(&args, &dataset, destination)) {
        Ok(report) => {
            eprintln!(
                "{}: {} records in {} batch(es), {} {} {}",
                args.input.display(),
                report.records,
                report.batches,
                report.batches_delivered,
                if args.output.is_some() {
                    "written to"
                } else {
                    "delivered to"
                },
                report.destination
            );
            for failure in &report.failures {
                eprintln!("  batch {} not delivered: {}", failure.seq, failure.error);
            }
            if report.failures.is_empty() {
                exit::ACCEPTED
            } else {
                exit::OPERATIONAL
            }
        }
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

async fn destination(args: &Args, dataset: &Dataset) -> Result<Destination> {
    if let Some(path) = &args.output {
        create_parent(path)?;
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        return Ok(Destination::File(BufWriter::new(file), path.clone()));
    }
    let endpoint = match (&args.api, &dataset.delivery.endpoint) {
        (Some(url), _) => check_endpoint(&dataset.name, url).context("--api")?,
        (None, Some(endpoint)) => endpoint.clone(),
        (None, None) => bail!(
            "dataset `{}` has no delivery.endpoint: give --api URL or --output FILE",
            dataset.name
        ),
    };
    // A local run reads no AWS secrets: headers from Secrets Manager are refused here.
    let target = target(dataset, endpoint, None).await?;
    Ok(Destination::Api(Box::new(target)))
}

async fn forward_file(
    args: &Args,
    dataset: &Dataset,
    mut destination: Destination,
) -> Result<DeliveryReport> {
    let file_id = local_file_id(&args.input)?;
    let (total, records) = Batches::count(&args.input, &dataset.delivery)?;
    let mut report = DeliveryReport {
        file_id,
        dataset: dataset.name.clone(),
        records,
        batches: total,
        ..Default::default()
    };
    let log = Attempts::default();
    // The dataset's own hosts; and an `--api` the operator named on the command line may be
    // on this machine or the LAN.
    let mut reach = Reach::new(
        dataset
            .delivery
            .allow_private_hosts
            .iter()
            .map(String::as_str),
    );
    if let (Some(_), Destination::Api(target)) = (&args.api, &destination) {
        reach = reach.allowing(target.endpoint.host_str().unwrap_or_default());
    }
    let http = HttpPoster::new(reach)?;
    report.destination = match &destination {
        Destination::File(_, path) => path.display().to_string(),
        Destination::Api(target) => target.endpoint.to_string(),
    };
    let mut batches = Batches::open(&args.input, &dataset.delivery)?;
    let mut seq = 0;
    while let Some(Batch { records, .. }) = batches.next_batch()? {
        seq += 1;
        let id = batch_id(file_id, seq);
        let header = BatchHeader {
            file_id,
            dataset: &dataset.name,
            batch_id: &id,
            seq,
            total,
        };
        match &mut destination {
            Destination::File(out, _) => {
                out.write_all(&request_body(BodyShape::Envelope, &header, &records))?;
                out.write_all(b"\n")?;
                report.batches_delivered += 1;
            }
            Destination::Api(target) => {
                let body = Bytes::from(request_body(target.body, &header, &records));
                match deliver(&http, &log, target, &header, body, 1, None).await? {
                    Outcome::Delivered { .. } => report.batches_delivered += 1,
                    Outcome::NotDelivered { error, .. } => report.failures.push(FailureRow {
                        batch_id: id.clone(),
                        seq,
                        error,
                    }),
                }
            }
        }
    }
    if let Destination::File(out, _) = &mut destination {
        out.flush()?;
    }
    report.attempts = log
        .0
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = &args.report {
        create_parent(path)?;
        let mut text = serde_json::to_vec_pretty(&report)?;
        text.push(b'\n');
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// The same records file (path, size, modification time) keeps its batch ids, so an API that
/// honours `Idempotency-Key` takes a second local run of it as a repeat.
fn local_file_id(path: &Path) -> Result<Uuid> {
    let meta = fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(sluice_db::file_id(
        "local",
        &absolute.display().to_string(),
        &format!("{}-{modified}", meta.len()),
    ))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Reads records a batch at a time, cut as the transformer cuts them (by count and bytes):
/// memory is one batch, whatever the file's size. A line that is not a JSON object, or a
/// record too large for any batch, is named by number.
struct Batches {
    lines: std::io::Split<BufReader<File>>,
    path: PathBuf,
    line_no: u64,
    batcher: Option<Batcher>,
    max_record_bytes: usize,
}

impl Batches {
    fn open(path: &Path, delivery: &Delivery) -> Result<Self> {
        Ok(Self {
            lines: BufReader::new(open(path)?).split(b'\n'),
            path: path.to_path_buf(),
            line_no: 0,
            batcher: Some(Batcher::new(delivery.batch_size, delivery.batch_max_bytes)),
            max_record_bytes: Batcher::max_record_bytes(delivery.batch_max_bytes),
        })
    }

    /// Batches and records in the file, without keeping any.
    fn count(path: &Path, delivery: &Delivery) -> Result<(u32, u64)> {
        let mut batches = Self::open(path, delivery)?;
        let (mut total, mut records) = (0, 0);
        while let Some(batch) = batches.next_batch()? {
            total += 1;
            records += batch.count as u64;
        }
        Ok((total, records))
    }

    fn next_batch(&mut self) -> Result<Option<Batch>> {
        let Some(batcher) = self.batcher.as_mut() else {
            return Ok(None);
        };
        while let Some(line) = self.lines.next() {
            let line = line?;
            self.line_no += 1;
            let at = || format!("{} line {}", self.path.display(), self.line_no);
            let text = std::str::from_utf8(&line)
                .ok()
                .map(str::trim)
                .with_context(|| format!("{}: not UTF-8", at()))?;
            if text.is_empty() {
                continue;
            }
            let value: &serde_json::value::RawValue =
                serde_json::from_str(text).with_context(at)?;
            if !value.get().starts_with('{') {
                bail!("{}: a record is a JSON object", at());
            }
            if value.get().len() > self.max_record_bytes {
                bail!(
                    "{}: the record is {} bytes, more than a batch may hold \
                     (delivery.batch_max_bytes)",
                    at(),
                    value.get().len()
                );
            }
            if let Some(batch) = batcher.push(value.get().as_bytes()) {
                return Ok(Some(batch));
            }
        }
        Ok(self.batcher.take().and_then(Batcher::finish))
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display())),
        _ => Ok(()),
    }
}
