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
use sluice_core::delivery::{request_body, BatchHeader, BodyShape};
use sluice_core::message::batch_id;
use sluice_core::Dataset;
use sluice_db::{ApiCall, DbError};
use sluice_forwarder::client::http_client;
use sluice_forwarder::deliver::{deliver, CallLog, Outcome};
use sluice_forwarder::targets::{target, Target};
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

impl CallLog for Attempts {
    async fn record_call(&self, call: &ApiCall<'_>) -> Result<(), DbError> {
        self.0.lock().unwrap().push(AttemptRow {
            batch_id: call.batch_id.to_string(),
            attempt: call.attempt,
            http_status: call.http_status,
            latency_ms: call.latency_ms,
            response_excerpt: call.response_excerpt.map(str::to_string),
            error: call.error.map(str::to_string),
        });
        Ok(())
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return exit::OPERATIONAL;
        }
    };
    let destination = match runtime.block_on(destination(&args, &dataset)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice: {e:#}");
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
            eprintln!("sluice: {e:#}");
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
    let batch_size = dataset.delivery.batch_size;
    let records = count_lines(&args.input)?;
    let total = records.div_ceil(batch_size as u64) as u32;
    let mut report = DeliveryReport {
        file_id,
        dataset: dataset.name.clone(),
        records,
        batches: total,
        ..Default::default()
    };
    let log = Attempts::default();
    let http = http_client()?;
    report.destination = match &destination {
        Destination::File(_, path) => path.display().to_string(),
        Destination::Api(target) => target.endpoint.to_string(),
    };
    let mut batches = Batches::open(&args.input, batch_size)?;
    let mut seq = 0;
    while let Some(records) = batches.next_batch()? {
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

fn count_lines(path: &Path) -> Result<u64> {
    let reader = BufReader::new(open(path)?);
    let mut n = 0;
    for line in reader.split(b'\n') {
        if !line?.iter().all(u8::is_ascii_whitespace) {
            n += 1;
        }
    }
    Ok(n)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Reads records a batch at a time into the JSON array text of the batch: memory is one
/// batch, whatever the file's size. A line that is not a JSON object is named by number.
struct Batches {
    lines: std::io::Split<BufReader<File>>,
    path: PathBuf,
    size: usize,
    line_no: u64,
}

impl Batches {
    fn open(path: &Path, size: usize) -> Result<Self> {
        Ok(Self {
            lines: BufReader::new(open(path)?).split(b'\n'),
            path: path.to_path_buf(),
            size,
            line_no: 0,
        })
    }

    fn next_batch(&mut self) -> Result<Option<Vec<u8>>> {
        let mut array = vec![b'['];
        let mut count = 0;
        while count < self.size {
            let Some(line) = self.lines.next() else {
                break;
            };
            let line = line?;
            self.line_no += 1;
            let text = std::str::from_utf8(&line)
                .ok()
                .map(str::trim)
                .with_context(|| {
                    format!("{} line {}: not UTF-8", self.path.display(), self.line_no)
                })?;
            if text.is_empty() {
                continue;
            }
            let value: &serde_json::value::RawValue = serde_json::from_str(text)
                .with_context(|| format!("{} line {}", self.path.display(), self.line_no))?;
            if !value.get().starts_with('{') {
                bail!(
                    "{} line {}: a record is a JSON object",
                    self.path.display(),
                    self.line_no
                );
            }
            if count > 0 {
                array.push(b',');
            }
            array.extend_from_slice(value.get().as_bytes());
            count += 1;
        }
        array.push(b']');
        Ok((count > 0).then_some(array))
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display())),
        _ => Ok(()),
    }
}
