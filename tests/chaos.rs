//! The chaos soak's small version (`bench/chaos.sh` runs the big one): 40 files through the
//! stages over PostgreSQL with invocations killed part way, backends terminated, an object
//! store, queues and an API that fail. Everything that must hold, held.

use sluice_e2e::chaos::{soak, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_every_file_ends_final_with_nothing_lost_or_sent_twice() {
    let figures = soak(Settings::small(20261205)).await;
    println!("{figures:#?}");
    assert!(figures.violations.is_empty(), "{:#?}", figures.violations);
    assert_eq!(
        figures.delivered + figures.failed,
        figures.files,
        "{figures:#?}"
    );
    // The faults did happen.
    assert!(
        figures.killed > 0 && figures.backends_terminated > 0,
        "{figures:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_stale_time_fails_nothing() {
    let figures = soak(Settings::backlog(7)).await;
    println!("{figures:#?}");
    assert!(figures.violations.is_empty(), "{:#?}", figures.violations);
    assert_eq!(figures.delivered, figures.files, "{figures:#?}");
    assert_eq!(figures.redrives.given_up, 0);
    // The backlog did outlast the stale time: idle files were found, and left to their
    // queue rather than re-sent into it. Each message ran about once: a sanitize, a transform
    // and four batches per file (23 rows in batches of 7), and no flood of re-sends.
    assert!(figures.redrives.waiting > 0, "{figures:#?}");
    let once = figures.files as u64 * (1 + 1 + 4);
    assert!(figures.invocations <= once + once / 10, "{figures:#?}");
}
