//! The chaos soak of the Lambda binaries at any size (`bench/chaos.sh --lambda`):
//! `lambda_soak BINARIES [FILES] [SEED] [LOGS]`; prints its figures and exits 1 if anything
//! that must hold did not.

use std::path::PathBuf;
use std::time::Duration;

use sluice_e2e::lambda_soak::{soak, Settings};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binaries = PathBuf::from(args.next().expect("the folder of the Lambda binaries"));
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let logs = args.next().map(PathBuf::from);
    let settings = Settings {
        files,
        concurrency: 4,
        forward_concurrency: 1,
        // A slow API behind one forwarder: the backlog outlasts the stale time.
        api_delay: Duration::from_millis(30),
        limit: Duration::from_secs(600 + files as u64 * 2),
        logs,
        ..Settings::small(seed, binaries)
    };
    eprintln!("lambda soak: {settings:?}");
    let figures = soak(settings).await;
    println!("{figures:#?}");
    if !figures.violations.is_empty() {
        std::process::exit(1);
    }
}
