//! The chaos soak of the shipped Lambda binaries under an emulated Lambda service, small
//! (`bench/chaos.sh --lambda` runs it at size with release binaries): 24 files, containers
//! killed mid-invocation, database backends terminated and connections refused, S3 answering
//! 503, an API that fails, hangs and answers late, lost "Object Created" events. Everything
//! that must hold, held.
//!
//! It runs the bootstraps `scripts/test.sh` builds (`target/debug`, or
//! `SLUICE_LAMBDA_BINARIES`); without them it fails and says how to build them.

use std::path::PathBuf;

use sluice_e2e::lambda_soak::{soak, Settings};

fn binaries() -> PathBuf {
    let dir = std::env::var_os("SLUICE_LAMBDA_BINARIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug")
        });
    for name in ["sanitizer", "transformer", "forwarder", "listener"] {
        let binary = dir.join(format!("sluice-{name}"));
        assert!(
            binary.exists(),
            "{} is missing: build the bootstraps first (cargo build -p sluice-sanitizer \
             -p sluice-transformer -p sluice-forwarder -p sluice-listener), as scripts/test.sh does",
            binary.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_under_faults_end_every_file_final_with_nothing_lost_or_sent_twice() {
    let figures = soak(Settings::small(20261207, binaries())).await;
    println!("{figures:#?}");
    assert!(figures.violations.is_empty(), "{:#?}", figures.violations);
    assert_eq!(
        figures.delivered + figures.failed,
        figures.files,
        "{figures:#?}"
    );
    // The faults did happen, and the lost events were found.
    assert!(figures.killed > 0, "{figures:#?}");
    assert!(figures.backends_terminated > 0, "{figures:#?}");
    assert!(
        figures.lost_events > 0 && figures.no_row == 0,
        "{figures:#?}"
    );
}
