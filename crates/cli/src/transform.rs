//! `sluice transform`: the transformer's mapping on a local clean file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use sluice_core::transform::batch::Batcher;
use sluice_core::transform::{
    transform_read, DateFilter, TransformError, TransformReport, TransformVerdict,
};

use crate::dataset::DatasetArgs;
use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A clean CSV (what `sluice sanitize` writes).
    input: PathBuf,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Where the records go, one JSON object per line.
    #[arg(long, short)]
    output: PathBuf,
    /// Where the JSON transform report goes.
    #[arg(long, short)]
    report: Option<PathBuf>,
    /// Keep only records whose date field is on or after this date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    start: Option<NaiveDate>,
    /// Keep only records whose date field is on or before this date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    end: Option<NaiveDate>,
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("{text:?} is not YYYY-MM-DD"))
}

pub fn run(args: Args) -> u8 {
    let dataset = match args.dataset.load() {
        Ok(dataset) => dataset,
        Err(code) => return code,
    };
    let Some(mapping) = dataset.mapping else {
        eprintln!(
            "sluice: dataset `{}` has no [mapping] in {}",
            dataset.name,
            args.dataset.config.display()
        );
        return exit::USAGE;
    };
    let filter = (args.start.is_some() || args.end.is_some()).then_some(DateFilter {
        start: args.start,
        end: args.end,
    });
    let max_record_bytes = Batcher::max_record_bytes(dataset.delivery.batch_max_bytes);
    match transform_file(&args, &mapping, filter, max_record_bytes) {
        Ok(report) => {
            eprintln!(
                "{}: {} rows in, {} records out, {} filtered, {} failed{}",
                args.input.display(),
                report.rows_in,
                report.records_out,
                report.rows_filtered,
                report.rows_failed,
                report
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            match report.verdict {
                TransformVerdict::Ok => exit::ACCEPTED,
                TransformVerdict::Failed => exit::REJECTED,
            }
        }
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

fn transform_file(
    args: &Args,
    mapping: &sluice_core::transform::Mapping,
    filter: Option<DateFilter>,
    max_record_bytes: usize,
) -> Result<TransformReport> {
    let input =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    create_parent(&args.output)?;
    let mut out = BufWriter::new(
        File::create(&args.output)
            .with_context(|| format!("cannot create {}", args.output.display()))?,
    );
    let report = transform_read(
        input,
        mapping,
        Some(args.dataset.dataset.clone()),
        filter,
        max_record_bytes,
        |record| {
            out.write_all(record)?;
            out.write_all(b"\n")
        },
    )
    .map_err(|e| match e {
        TransformError::Read(io) => {
            anyhow::Error::new(io).context(format!("reading {}", args.input.display()))
        }
        TransformError::File(why) => anyhow::anyhow!("{}: {why}", args.input.display()),
    })?;
    out.flush()?;
    if let Some(path) = &args.report {
        create_parent(path)?;
        let mut text = serde_json::to_vec_pretty(&report)?;
        text.push(b'\n');
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display())),
        _ => Ok(()),
    }
}
