//! The chaos soak at any size (bench/chaos.sh): `chaos [FILES] [SEED]`; prints its figures as
//! JSON-ish text and exits 1 if anything that must hold did not.

use std::time::Duration;

use sluice_e2e::chaos::{soak, Settings};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let files = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let settings = Settings {
        files,
        workers: 4,
        limit: Duration::from_secs(60 + files as u64),
        ..Settings::small(seed)
    };
    eprintln!("chaos soak: {settings:?}");
    let figures = soak(settings).await;
    println!("{figures:#?}");
    if !figures.violations.is_empty() {
        std::process::exit(1);
    }
}
