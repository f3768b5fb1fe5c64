//! The async runtime every command runs on, built in one place.

use anyhow::{Context, Result};
use tokio::runtime::{Builder, Runtime};

/// How many threads a command's work needs.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    /// Commands that wait on the network one call at a time, or run their concurrency as
    /// tasks.
    One,
    /// Commands that also hash, read or serve while they wait (`run`, `upload`, `dashboard`):
    /// a worker per core, at least two.
    Many,
}

/// Starts the runtime (time and I/O drivers on).
pub fn start(threads: Threads) -> Result<Runtime> {
    let mut builder = match threads {
        Threads::One => Builder::new_current_thread(),
        Threads::Many => {
            let mut builder = Builder::new_multi_thread();
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            builder.worker_threads(cores.max(2));
            builder
        }
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}
