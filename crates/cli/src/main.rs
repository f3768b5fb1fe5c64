//! `sluice`: the operators' command and local runs of the pipeline stages. Wiring and words:
//! what it does is the stages' (over the local, AWS, PostgreSQL and HTTP adapters) and the
//! dashboard's; it links no Lambda crate (checked by `tests/architecture.rs`).

#[macro_use]
mod out;

mod dashboard;
mod dataset;
mod dlq;
mod doctor;
mod duration;
mod forward;
mod ids;
mod migrate;
mod presign;
mod replay;
mod run;
mod runtime;
mod sanitize;
mod status;
mod transform;
mod upload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, as each command's --help and the book (docs/src/running-locally.md) document them.
pub mod exit {
    pub const ACCEPTED: u8 = 0;
    pub const OPERATIONAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REJECTED: u8 = 3;

    /// An error that is the user's to fix by asking differently: exits with [`USAGE`].
    #[derive(Debug)]
    pub struct Usage(pub String);

    impl std::fmt::Display for Usage {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Usage {}

    /// An error as the CLI prints it: each cause once, outermost first, joined by ": " (a cause
    /// whose words the message already has, as an I/O error repeated by its context, is left
    /// out).
    pub fn describe(e: &anyhow::Error) -> String {
        sluice_core::errors::chain(e.as_ref())
    }

    /// The exit code of a failed command: [`USAGE`] for a [`Usage`] error, else
    /// [`OPERATIONAL`].
    pub fn of(e: &anyhow::Error) -> u8 {
        match e.downcast_ref::<Usage>() {
            Some(_) => USAGE,
            None => OPERATIONAL,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Quarantine, sanitize, transform and deliver CSV files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run files through the whole chain on this machine (quarantine, sanitize, transform,
    /// deliver) with the same stage code as the Lambdas; no AWS, no services.
    Run(run::Args),
    /// Sanitize one CSV file into a clean RFC 4180 UTF-8 file and a JSON report.
    Sanitize(sanitize::Args),
    /// Map a clean CSV's rows to JSON records (one per line) with a dataset's mapping.
    Transform(transform::Args),
    /// Deliver JSON records (one per line) in batches to the dataset's API, as the forwarder
    /// does, or write the requests to a file.
    Forward(forward::Args),
    /// Apply the status store's database migrations (idempotent).
    Migrate(migrate::Args),
    /// Where files are and why, from the status store: a filtered list, stuck files, or one
    /// file with its history and API calls.
    Status(status::Args),
    /// Dead-letter queues: list and show their messages (never taking them out), and move
    /// them back to the queue they failed on.
    Dlq(dlq::Args),
    /// A time-limited URL: download a clean file or a report, or upload a file into
    /// quarantine (a browser upload).
    Presign(presign::Args),
    /// Checks a deployment's wiring: credentials, buckets, queues and dead-letter queues,
    /// secrets, the database and its migrations; one PASS/FAIL line each with what to do.
    Doctor(doctor::Args),
    /// The read-only dashboard over the status store, on a local port.
    Dashboard(dashboard::Args),
    /// Re-run finished files from a stage (sanitize, transform or forward) as new runs; the
    /// earlier run's history stays.
    Replay(replay::Args),
    /// Upload files or folders into quarantine under unique keys: large files in parts that
    /// resume after an interruption, files already uploaded skipped, with progress.
    Upload(upload::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Sanitize(args) => sanitize::run(args),
        Command::Transform(args) => transform::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Status(args) => status::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Presign(args) => presign::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Upload(args) => upload::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Dashboard(args) => dashboard::run(args),
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::exit::describe;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let e = anyhow::Error::new(io).context("No such file or directory (os error 2)");
        assert_eq!(describe(&e), "No such file or directory (os error 2)");
        let e = anyhow::anyhow!("NotFound")
            .context("reading s3://b/k")
            .context("replay");
        assert_eq!(describe(&e), "replay: reading s3://b/k: NotFound");
    }
}
