//! One listener run over a drop of many objects in a local S3 (moto server), with its status
//! in PostgreSQL: seconds per run and, through bench/listener.sh, the run's peak RSS. Run it
//! through bench/listener.sh.
//!
//! usage: listener_bench seed DROP_BUCKET OBJECTS     puts OBJECTS small CSVs under drops/
//!        listener_bench run DROP_BUCKET QUARANTINE SCHEMA
//!            the references: one listing of the drop, and every object copied once with
//!            CopyObject alone (8 in flight, no status store: the server's ceiling); then two
//!            listener runs: the first copies every object, the second finds them all known.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sluice_aws::{Clients, ObjectStore, Queue};
use sluice_core::PipelineConfig;
use sluice_db::{migrate, Db, DbConfig, Lease, Store};
use sluice_listener::{run, Budget, Deps};

type Error = Box<dyn std::error::Error + Send + Sync>;

const CONFIG: &str = r#"
[datasets.trains]
prefix = "incoming/trains/"
drop = { pattern = "drops/{site}/trains/*", settle_seconds = 0 }
"#;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["seed", bucket, n] => seed(bucket, n.parse()?).await,
        ["run", drop, quarantine, schema] => measure(drop, quarantine, schema).await,
        _ => Err("usage: listener_bench seed BUCKET N | run DROP QUARANTINE SCHEMA".into()),
    }
}

async fn seed(bucket: &str, n: usize) -> Result<(), Error> {
    let clients = Clients::from_env().await;
    let body = b"site,train_id,timestamp,station,event\r\nleeds,1A01,2026-11-24 05:00,LDS,dep\r\n";
    stream::iter(0..n)
        .map(|i| {
            let s3 = clients.s3.clone();
            async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(format!("drops/site{:02}/trains/m{i:06}.csv", i % 10))
                    .body(ByteStream::from(body.to_vec()))
                    .send()
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn measure(drop: &str, quarantine: &str, schema: &str) -> Result<(), Error> {
    let clients = Clients::from_env().await;
    let objects = ObjectStore::new(clients.s3.clone());

    let started = Instant::now();
    let listed = all_keys(&objects, drop).await?.len();
    let listing = started.elapsed();

    // The server's own ceiling for the copies: each object copied once, 8 in flight, with no
    // status store and no claims.
    let keys = all_keys(&objects, drop).await?;
    let started = Instant::now();
    stream::iter(&keys)
        .map(|listed| {
            let objects = &objects;
            async move {
                let source = sluice_aws::CopySource {
                    bucket: drop,
                    key: &listed.key,
                    etag: &listed.etag,
                    size: listed.size,
                };
                let to = format!("reference/{}", listed.key);
                objects.copy(source, quarantine, &to, &[]).await.map(|_| ())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let copy_alone = started.elapsed();

    let db = Db::new(DbConfig::parse(&sluice_e2e::database_url(), None)?.with_schema(schema));
    migrate(&db).await?;
    let deps = Deps {
        config: PipelineConfig::parse(CONFIG, "bench")?,
        store: Store::new(db),
        objects,
        drop_bucket: Some(drop.to_string()),
        quarantine_bucket: quarantine.to_string(),
        clean_bucket: quarantine.to_string(),
        sanitize_queue: Queue::new(clients.sqs.clone(), "unused"),
        transform_queue: Queue::new(clients.sqs.clone(), "unused"),
        forward_queue: Queue::new(clients.sqs.clone(), "unused"),
        stale_after: Duration::from_secs(3600),
        max_redrives: 3,
        page_size: 1000,
        copy_concurrency: 8,
        reconcile_days: 0,
        reconcile_grace: Duration::ZERO,
        object_dead_letter_queues: Vec::new(),
    };
    let lease = Lease {
        owner: "listener/bench".into(),
        until: SystemTime::now() + Duration::from_secs(900),
    };
    let started = Instant::now();
    let first = run(&deps, &lease, Budget::unlimited()).await?;
    let copying = started.elapsed();
    let started = Instant::now();
    let second = run(&deps, &lease, Budget::unlimited()).await?;
    let known = started.elapsed();
    if first.sweep.copied as usize != listed || second.sweep.known as usize != listed {
        return Err(format!("expected {listed} copied then known: {first:?} / {second:?}").into());
    }
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("objects            {listed}");
    println!(
        "listing alone      {:>7.2} s  ({:.0} objects/s)",
        listing.as_secs_f64(),
        rate(listed, listing)
    );
    println!(
        "copies alone       {:>7.2} s  ({:.0} objects/s; CopyObject only, 8 in flight)",
        copy_alone.as_secs_f64(),
        rate(listed, copy_alone)
    );
    println!(
        "run 1 (copy all)   {:>7.2} s  ({:.0} objects/s, {:.2}x the time of the copies alone)",
        copying.as_secs_f64(),
        rate(listed, copying),
        copying.as_secs_f64() / copy_alone.as_secs_f64()
    );
    println!(
        "run 2 (all known)  {:>7.2} s  ({:.0} objects/s, {:.1}x the listing)",
        known.as_secs_f64(),
        rate(listed, known),
        known.as_secs_f64() / listing.as_secs_f64()
    );
    Ok(())
}

/// Every object under `drops/`, a listing page at a time.
async fn all_keys(objects: &ObjectStore, drop: &str) -> Result<Vec<sluice_aws::Listed>, Error> {
    let (mut all, mut after) = (Vec::new(), None::<String>);
    loop {
        let page = objects
            .list_page(drop, "drops/", after.as_deref(), 1000)
            .await?;
        after = page.objects.last().map(|o| o.key.clone());
        all.extend(page.objects);
        if !page.more {
            return Ok(all);
        }
    }
}
