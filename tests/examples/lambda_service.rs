//! The shipped Lambda binaries under the emulated Lambda service, wired to the local stack
//! (`scripts/local-stack.sh lambdas`): an event source mapping per queue (sanitize,
//! transform, forward; the template's batch sizes and timeouts), the listener every 5 s.
//! Everything else comes from the environment `scripts/local-stack.sh up` wrote. moto does not
//! route S3 events to EventBridge, so an upload reaches the sanitizer through the listener's
//! reconciliation (grace 2 s) rather than its event. Logs in `LOGS/<function>.log`; Ctrl-C
//! stops it.
//!
//!     lambda_service BINARIES LOGS

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use sluice_e2e::lambda_emu::{poll, schedule, Counters, Function, Killer, Mapping};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binaries = PathBuf::from(args.next().expect("the folder of the Lambda binaries"));
    let logs = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/local-stack/logs".into()),
    );
    std::fs::create_dir_all(&logs).expect("the log folder");
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} is not set: . target/local-stack/env"))
    };
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_")
                || k.starts_with("SLUICE_")
                || k == "DATABASE_URL"
                || k == "ORDERS_API_TOKEN"
        })
        .collect();
    env.push(("SLUICE_RECONCILE_GRACE_SECONDS".into(), "2".into()));
    env.push(("SLUICE_RECONCILE_DAYS".into(), "1".into()));
    env.push(("RUST_LOG".into(), "info".into()));
    let sqs = sluice_aws::Clients::from_env().await.sqs;
    let function = |name: &str, seconds: u64| {
        Arc::new(Function {
            name: format!("sluice-{name}"),
            binary: binaries.join(format!("sluice-{name}")),
            env: env.clone(),
            timeout: Duration::from_secs(seconds),
            log: Some(logs.join(format!("{name}.log"))),
        })
    };
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let never: Killer = Arc::new(|| None);
    let mut tasks = Vec::new();
    for (name, queue, batch, timeout) in [
        ("sanitizer", "SLUICE_SANITIZE_QUEUE_URL", 1, 900),
        ("transformer", "SLUICE_TRANSFORM_QUEUE_URL", 1, 900),
        ("forwarder", "SLUICE_FORWARD_QUEUE_URL", 10, 120),
    ] {
        let url = var(queue);
        let arn = sluice_aws::dlq::Queues::new(sqs.clone())
            .queue_arn(&url)
            .await
            .expect("the queue exists");
        let mapping = Mapping {
            queue_url: url,
            queue_arn: arn,
            batch_size: batch,
            concurrency: 1,
        };
        tasks.push(tokio::spawn(poll(
            sqs.clone(),
            mapping,
            function(name, timeout),
            counters.clone(),
            never.clone(),
            stop.clone(),
        )));
    }
    let scheduled: serde_json::Value =
        serde_json::from_str(include_str!("../../events/listener-schedule.json")).unwrap();
    tasks.push(tokio::spawn(schedule(
        function("listener", 300),
        counters.clone(),
        scheduled,
        Duration::from_secs(5),
        never,
        stop.clone(),
    )));
    eprintln!(
        "lambdas: sanitizer, transformer, forwarder on their queues, the listener every 5 s \
         (logs in {}); Ctrl-C stops",
        logs.display()
    );
    // Ctrl-C, or `scripts/local-stack.sh down` (SIGTERM): the containers go with it.
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!("lambdas: stopping");
    for task in &tasks {
        task.abort();
    }
    // Each aborted poller drops its container, which kills its process.
    for task in tasks {
        let _ = task.await;
    }
}
