//! Delivery throughput of the forwarder's handler, in-process: record batches handed over in
//! SQS events as the event source would, POSTed to a local API that answers 200 after ~1 ms,
//! every attempt recorded in PostgreSQL (`DATABASE_URL`). Prints records per second for each
//! batch size and concurrency. Run it through bench/forward.sh.
//!
//! usage: forward_bench [RECORDS] [BATCH_SIZES] [CONCURRENCIES] [MESSAGES_PER_EVENT]
//!        defaults:      100000    100,250,500,1000  1,4,8     10
//! `SLUICE_BENCH_API_MS` sets the API's answer time (default 1 ms; 0 answers at once).
//! `SLUICE_BENCH_API_URL` sends to that API instead (another process, another machine); the
//! file must still end `delivered`.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;
use sluice_aws::{Clients, ObjectStore};
use sluice_core::delivery::Reach;
use sluice_core::transform::batch::{inline_message, Batch};
use sluice_core::{FileStatus, PipelineConfig, Stage};
use sluice_db::{migrate, Db, DbConfig, NewFile, RowCounts, Store, TransformCounts};
use sluice_e2e::api::{MockApi, Reply};
use sluice_forwarder::{handle, Deps, Targets};
use sluice_http::HttpPoster;
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let records: usize = arg(0, "100000").parse()?;
    let list = |s: String| -> Result<Vec<usize>, Error> {
        s.split(',').map(|n| Ok(n.trim().parse()?)).collect()
    };
    let batch_sizes = list(arg(1, "100,250,500,1000"))?;
    let concurrencies = list(arg(2, "1,4,8"))?;
    let per_event: usize = arg(3, "10").parse()?;
    let api_ms: u64 = std::env::var("SLUICE_BENCH_API_MS")
        .unwrap_or_else(|_| "1".into())
        .parse()?;

    let schema = format!("sluice_bench_{}", std::process::id());
    let url = sluice_e2e::database_url();
    DbConfig::parse(&url, None)?
        .connect()
        .await?
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    let db = Db::new(DbConfig::parse(&url, None)?.with_schema(&schema));
    migrate(&db).await?;
    let store = Store::new(db);
    let objects = ObjectStore::new(Clients::from_env().await.s3);

    println!(
        "{:>10} {:>11} {:>9} {:>8} {:>8} {:>10} {:>11} {:>11}",
        "batch_size",
        "concurrency",
        "per_event",
        "records",
        "secs",
        "records/s",
        "batches/s",
        "ms/batch"
    );
    let mut store = Some(store);
    let mut objects = Some(objects);
    for &batch_size in &batch_sizes {
        for &concurrency in &concurrencies {
            let api = MockApi::start().await;
            api.forget_bodies();
            api.answer_by_default(match api_ms {
                0 => Reply::Status(200),
                ms => Reply::Slow(Duration::from_millis(ms), 200),
            });
            let url = std::env::var("SLUICE_BENCH_API_URL").unwrap_or_else(|_| api.url());
            let text = format!(
                "[datasets.orders]\nprefix = \"incoming/orders/\"\n[datasets.orders.delivery]\n\
                 endpoint = \"{}\"\nbatch_size = {batch_size}\n\
                 allow_private_hosts = [\"127.0.0.1\"]\n",
                url
            );
            let config = PipelineConfig::parse(&text, "bench")?;
            let http = HttpPoster::new(Reach::of(&config))?;
            let deps = Deps {
                targets: Targets::resolve(&config, None).await,
                config,
                store: store.take().unwrap(),
                objects: objects.take().unwrap(),
                http,
                concurrency,
                max_receive_count: 5,
                visibility: None,
                clean_bucket: "sluice-bench-clean".into(),
            };
            let total = records.div_ceil(batch_size) as u32;
            let id = transformed_file(&deps.store, batch_size, concurrency, total).await?;
            let mut busy = Duration::ZERO;
            // Events are made as they are handed over, so memory is the handler's, not a
            // pile of prepared messages; only the handler's time is counted.
            let seqs: Vec<u32> = (1..=total).collect();
            for chunk in seqs.chunks(per_event) {
                let mut event = SqsEvent::default();
                event.records = chunk
                    .iter()
                    .map(|&seq| {
                        let first = (seq as usize - 1) * batch_size;
                        let batch = order_batch(first, batch_size.min(records - first));
                        let body = inline_message(id, "orders", seq, total, &batch);
                        let mut m = SqsMessage::default();
                        m.message_id = Some(seq.to_string());
                        m.body = Some(String::from_utf8(body).unwrap());
                        m
                    })
                    .collect();
                let started = Instant::now();
                let response = handle(LambdaEvent::new(event, Context::default()), &deps).await?;
                busy += started.elapsed();
                if !response.batch_item_failures.is_empty() {
                    return Err("a batch was not delivered".into());
                }
            }
            let secs = busy.as_secs_f64();

            // Check the work was done, not only timed.
            let row = deps.store.file(id).await?.ok_or("file row")?;
            let received = match std::env::var("SLUICE_BENCH_API_URL") {
                Ok(_) => total as usize,
                Err(_) => api.received().len(),
            };
            if row.status != FileStatus::Delivered || received != total as usize {
                return Err(format!(
                    "expected {total} batches delivered, API got {}, file {}",
                    received, row.status
                )
                .into());
            }
            println!(
                "{batch_size:>10} {concurrency:>11} {per_event:>9} {records:>8} {secs:>8.2} {:>10.0} {:>11.0} {:>11.2}",
                records as f64 / secs,
                total as f64 / secs,
                secs * 1000.0 / total as f64
            );
            store = Some(deps.store);
            objects = Some(deps.objects);
        }
    }
    DbConfig::parse(&url, None)?
        .connect()
        .await?
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    Ok(())
}

/// Orders `first..first + count` as the transformer writes them (~190 bytes each).
fn order_batch(first: usize, count: usize) -> Batch {
    let records: Vec<serde_json::Value> = (first..first + count)
        .map(|i| {
            json!({
                "orderId": format!("A-{i:07}"),
                "orderedAt": "2026-11-22T09:14:00+01:00",
                "customer": {"email": format!("customer{}@example.com", i % 9973)},
                "line": {"sku": format!("SKU-{}", i % 4099), "quantity": i % 7 + 1,
                         "unitPriceEur": 19.9},
                "coupon": null
            })
        })
        .collect();
    Batch {
        records: serde_json::to_vec(&records).unwrap(),
        count,
    }
}

async fn transformed_file(
    store: &Store,
    batch_size: usize,
    concurrency: usize,
    total: u32,
) -> Result<Uuid, Error> {
    let key = format!("incoming/orders/bench-{batch_size}-{concurrency}.csv");
    let id = store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: "bench",
            key: &key,
            etag: "e",
            size: 1,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await?
        .id;
    store
        .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json!({}))
        .await?;
    store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            None,
            RowCounts::default(),
            None,
            json!({}),
        )
        .await?;
    store
        .advance(id, Stage::Transformer, FileStatus::Transforming, json!({}))
        .await?;
    let counts = TransformCounts {
        records: 0,
        batches: total as i32,
        rows_unmapped: 0,
    };
    store
        .finish_transform(id, FileStatus::Transformed, counts, None, json!({}))
        .await?;
    Ok(id)
}
