//! The re-upload case of a dataset with a record key, in-process against PostgreSQL
//! (`DATABASE_URL`): the transform stage on a clean orders file (1) without a record key, the
//! reference, (2) with one and an empty record state (every record new), and (3) with one
//! again once the first's batches are recorded delivered (every record unchanged). Prints
//! rows/s, seconds and peak RSS of each, and the ratio of (3) to (1). Batch messages go to a
//! queue that only counts them. Run it through bench/delta.sh.
//!
//! usage: delta_bench CLEAN_CSV [CONFIG]     (CONFIG default pipelines.toml; dataset orders)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sluice_core::message::{FileSanitized, V1};
use sluice_core::{layout, FileStatus, PipelineConfig, Stage};
use sluice_db::{migrate, Db, DbConfig, Lease, NewFile, RowCounts, Store};
use sluice_local::FolderObjects;
use sluice_stages::ports::{DeliveredRecords, Outbox};
use sluice_stages::transform::{transform_file, Transform};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A queue that counts what it is sent and keeps nothing.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Outbox for Counting {
    type Error = std::convert::Infallible;

    async fn send_all(&self, bodies: &[String]) -> Result<(), Self::Error> {
        self.0.fetch_add(bodies.len(), Ordering::Relaxed);
        Ok(())
    }

    /// It keeps nothing, so nothing waits in it.
    async fn backlog(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clean = args
        .first()
        .ok_or("usage: delta_bench CLEAN_CSV [CONFIG]")?;
    let config_path = args.get(1).map_or("pipelines.toml", String::as_str);
    let text = std::fs::read_to_string(config_path)?;
    let keyed = PipelineConfig::parse(&text, config_path)?;
    let delta = keyed
        .dataset("orders")?
        .mapping
        .as_ref()
        .and_then(|m| m.delta.as_ref());
    if delta.is_none() {
        return Err("the orders mapping in the config has no record_key".into());
    }
    let unkeyed_text: String = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !["record_key", "delta_scope", "on_missing"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let unkeyed = PipelineConfig::parse(&unkeyed_text, config_path)?;

    let schema = format!("sluice_delta_bench_{}", std::process::id());
    let url = sluice_e2e::database_url();
    let admin = DbConfig::parse(&url, None)?.connect().await?;
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    let db = Db::new(DbConfig::parse(&url, None)?.with_schema(&schema));
    migrate(&db).await?;
    let store = Store::new(db);
    let dir = std::env::temp_dir().join(format!("sluice-delta-bench-{}", std::process::id()));
    let objects = FolderObjects::new(&dir);

    let outcome = async {
        println!(
            "{:<34} {:>9} {:>10} {:>8} {:>8} {:>12}",
            "transform", "rows", "rows/s", "seconds", "batches", "peak_RSS_MB"
        );
        let reference = phase(&store, &objects, &unkeyed, clean, "without record_key").await?;
        let first = phase(&store, &objects, &keyed, clean, "record_key, state empty").await?;
        // What the forwarder does on each batch's 2xx.
        let started = Instant::now();
        for seq in 1..=first.batches {
            store.record_delivered(first.id, seq as u32).await?;
        }
        println!(
            "  (record state written for {} batches in {:.2} s)",
            first.batches,
            started.elapsed().as_secs_f64()
        );
        let again = phase(&store, &objects, &keyed, clean, "record_key, all unchanged").await?;
        let row = store.file(again.id).await?.ok_or("no file row")?;
        println!(
            "re-upload: {:.2} of the unkeyed transform's rows/s (target at least 0.5); \
             new {:?}, changed {:?}, unchanged {:?}",
            again.rows_per_s / reference.rows_per_s,
            row.records_new,
            row.records_changed,
            row.records_unchanged
        );
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await?;
    outcome
}

struct Measured {
    id: Uuid,
    batches: usize,
    rows_per_s: f64,
}

/// One transform of the clean file, as a new file of its own.
async fn phase(
    store: &Store,
    objects: &FolderObjects,
    config: &PipelineConfig,
    clean: &str,
    name: &str,
) -> Result<Measured, Error> {
    let key = format!("incoming/orders/2026/11/24/{}-orders.csv", Uuid::new_v4());
    let id = sanitized(store, &key).await?;
    let clean_key = layout::clean_key("orders", id);
    let path = objects.path("clean", &clean_key)?;
    std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
    std::fs::copy(clean, &path)?;
    let message = FileSanitized {
        v: V1,
        file_id: id,
        dataset: "orders".into(),
        clean_bucket: "clean".into(),
        clean_key,
        rows: 0,
        columns: Vec::new(),
        date_range: None,
        resend: false,
        full: false,
    };
    let queue = Counting::default();
    let stage = Transform {
        config,
        store,
        objects,
        queue: &queue,
        clean_bucket: "clean",
    };
    let lease = Lease {
        owner: "bench".into(),
        until: SystemTime::now() + Duration::from_secs(3600),
    };
    reset_peak_rss();
    let started = Instant::now();
    transform_file(&stage, &message, &lease)
        .await
        .map_err(|f| f.message)?;
    let secs = started.elapsed().as_secs_f64();
    let row = store.file(id).await?.ok_or("no file row")?;
    if !matches!(row.status, FileStatus::Transformed | FileStatus::Delivered) {
        return Err(format!("{name}: the file ended {}", row.status).into());
    }
    let rows = row.records.unwrap_or_default();
    let batches = queue.0.load(Ordering::Relaxed);
    println!(
        "{:<34} {:>9} {:>10.0} {:>8.2} {:>8} {:>12.1}",
        name,
        rows,
        rows as f64 / secs,
        secs,
        batches,
        peak_rss_kb() as f64 / 1024.0
    );
    let _ = std::fs::remove_file(&path);
    Ok(Measured {
        id,
        batches,
        rows_per_s: rows as f64 / secs,
    })
}

/// A file registered and marked sanitized, as the sanitizer leaves it.
async fn sanitized(store: &Store, key: &str) -> Result<Uuid, Error> {
    let id = store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: "quarantine",
            key,
            etag: "bench",
            size: 0,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await?
        .id;
    let lease = Lease {
        owner: "sanitizer".into(),
        until: SystemTime::now() + Duration::from_secs(60),
    };
    store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease,
        )
        .await?;
    store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            Some(&layout::clean_key("orders", id)),
            RowCounts::default(),
            None,
            serde_json::json!({}),
        )
        .await?;
    Ok(id)
}

/// Peak RSS since the last reset (Linux: VmHWM, reset by writing 5 to clear_refs).
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
