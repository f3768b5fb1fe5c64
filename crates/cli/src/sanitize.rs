//! `sluice sanitize`: the quarantine stage's sanitizer on a local file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sluice_core::sanitize::drive::sanitize_pipelined_with_errors;
use sluice_core::{ConfigError, PipelineConfig, Policy, Report, Verdict};

use crate::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to sanitize (`-` for standard input).
    input: PathBuf,
    /// Where the clean CSV goes; written only if the file is accepted.
    #[arg(long, short)]
    output: PathBuf,
    /// Where the JSON report goes (written in every case).
    #[arg(long, short)]
    report: PathBuf,
    /// Where the errors file goes: every rejected row with its line, column, reason and
    /// cells, as CSV (written in every case: empty when no row was rejected).
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Dataset whose sanitizing policy applies (needs --config).
    #[arg(long, requires = "config")]
    dataset: Option<String>,
    /// Pipeline config file (pipelines.toml).
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> u8 {
    let policy = match load_policy(&args) {
        Ok(policy) => policy,
        Err(PolicyError::Usage(message)) => {
            eprintln!("sluice: {message}");
            return exit::USAGE;
        }
        Err(PolicyError::Config(e)) => {
            eprintln!("sluice: {e}");
            return exit::OPERATIONAL;
        }
    };
    match sanitize_file(&args, policy) {
        Ok(report) => {
            summarize(&args, &report);
            match report.verdict {
                Verdict::Accepted => exit::ACCEPTED,
                Verdict::Rejected => exit::REJECTED,
            }
        }
        Err(e) => {
            eprintln!("sluice: {}", crate::exit::describe(&e));
            exit::OPERATIONAL
        }
    }
}

enum PolicyError {
    Usage(String),
    Config(ConfigError),
}

fn load_policy(args: &Args) -> Result<Policy, PolicyError> {
    let Some(name) = &args.dataset else {
        return Ok(Policy::default());
    };
    let path = args
        .config
        .as_ref()
        .ok_or_else(|| PolicyError::Usage("--dataset needs --config".into()))?;
    let config = PipelineConfig::load(path).map_err(PolicyError::Config)?;
    match config.dataset(name) {
        Ok(dataset) => Ok(dataset.sanitize.clone()),
        Err(e @ ConfigError::UnknownDataset { .. }) => Err(PolicyError::Usage(e.to_string())),
        Err(e) => Err(PolicyError::Config(e)),
    }
}

/// Streams input to a temporary file beside the output, renamed into place only when the
/// file is accepted: a rejected file leaves no output behind.
fn sanitize_file(args: &Args, policy: Policy) -> Result<Report> {
    let input = open_input(&args.input)?;
    if is_special(&args.output) {
        return sanitize_to_special(args, input, policy);
    }
    let partial = partial_path(&args.output);
    create_parent(&args.output)?;
    let file =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let errors = errors_file(args)?;
    let outcome = sanitize_pipelined_with_errors(input, file, errors, policy, args.dataset.clone())
        .with_context(|| format!("sanitizing {}", args.input.display()));
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    match report.verdict {
        Verdict::Accepted => fs::rename(&partial, &args.output)
            .with_context(|| format!("cannot move output to {}", args.output.display()))?,
        Verdict::Rejected => {
            fs::remove_file(&partial).ok();
            // A clean file from an earlier run of the same input must not survive either.
            match fs::remove_file(&args.output) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).context(format!("cannot remove {}", args.output.display()))
                }
                _ => {}
            }
        }
    }
    write_report(&args.report, &report)?;
    Ok(report)
}

/// A device or pipe (`/dev/null`, `/dev/stdout`) is written as it is: renaming a file onto it
/// would replace it, and removing it on a rejection would delete it.
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

fn sanitize_to_special(args: &Args, input: Box<dyn Read + Send>, policy: Policy) -> Result<Report> {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&args.output)
        .with_context(|| format!("cannot open {}", args.output.display()))?;
    let errors = errors_file(args)?;
    let report = sanitize_pipelined_with_errors(input, file, errors, policy, args.dataset.clone())
        .with_context(|| format!("sanitizing {}", args.input.display()))?;
    write_report(&args.report, &report)?;
    Ok(report)
}

/// Where `--errors` asks the errors file to go; nowhere without it.
fn errors_file(args: &Args) -> Result<Box<dyn Write>> {
    let Some(path) = &args.errors else {
        return Ok(Box::new(io::sink()));
    };
    create_parent(path)?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(BufWriter::new(file)))
}

fn open_input(path: &Path) -> Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin()));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(file))
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    output.with_file_name(name)
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display())),
        _ => Ok(()),
    }
}

fn write_report(path: &Path, report: &Report) -> Result<()> {
    if is_special(path) {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        serde_json::to_writer_pretty(&mut file, report)?;
        return file
            .write_all(b"\n")
            .context(format!("cannot write {}", path.display()));
    }
    create_parent(path)?;
    let partial = partial_path(path);
    let mut file = BufWriter::new(
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    serde_json::to_writer_pretty(&mut file, report)?;
    file.write_all(b"\n")?;
    file.flush()?;
    drop(file);
    fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

fn summarize(args: &Args, report: &Report) {
    let input = args.input.display();
    match report.verdict {
        Verdict::Accepted => eprintln!(
            "{input}: accepted ({}, {:?} delimited): {} rows in, {} out, {} rejected, {} blank; \
             {} formula and {} markup cells neutralized; report: {}",
            report.encoding.as_deref().unwrap_or("?"),
            report.delimiter.as_deref().unwrap_or("?"),
            report.rows_in,
            report.rows_out,
            report.rows_rejected,
            report.rows_blank,
            report.cells.formulas_neutralized,
            report.cells.markup_neutralized,
            args.report.display(),
        ),
        Verdict::Rejected => eprintln!(
            "{input}: rejected: {}; report: {}",
            report.reason.as_deref().unwrap_or("no reason given"),
            args.report.display(),
        ),
    }
}
