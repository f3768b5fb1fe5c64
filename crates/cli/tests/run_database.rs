//! `sluice run` with PostgreSQL (`DATABASE_URL`): a run that sends nothing (no `--api`) is
//! refused unless told what the shared store should learn, a trial (`--record-state=skip`)
//! writes nothing there, and a kept one (`keep`) marks its calls simulated, out of API health.
//! `--watch` takes up what an earlier run left unfinished: a file whose run died mid-sanitize
//! (its lease lapsed) is re-driven through the chain to `delivered`, while a file a live run
//! holds is left alone.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::{FileStatus, Stage};
use sluice_db::{migrate, Db, DbConfig, Lease, NewFile, Store};
use uuid::Uuid;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// The ETag the folder buckets give a file (its size and modification time).
fn folder_etag(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    let modified = meta
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}-{modified:x}", meta.len())
}

/// A migrated schema of the test's own, its store, the URL that reaches it, and an admin
/// connection (to look, and to drop it).
async fn schema() -> (Store, String, String, tokio_postgres::Client) {
    let schema = format!("sluice_run_{}", Uuid::new_v4().simple());
    let admin = DbConfig::parse(&database_url(), None).unwrap();
    let client = admin.connect().await.expect("PostgreSQL is reachable");
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let db = Db::new(admin.clone().with_schema(&schema));
    migrate(&db).await.unwrap();
    let url = format!(
        "{}?sslmode=disable&options=-c%20search_path%3D{schema}",
        database_url().split('?').next().unwrap()
    );
    (Store::new(db), url, schema, client)
}

fn run_orders(url: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "examples/orders/orders-messy.csv", "--out"])
        .arg(out)
        .args(extra)
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_sends_nothing_never_records_deliveries_as_real() {
    let (_store, url, schema, client) = schema().await;
    let scratch = std::env::temp_dir().join(format!("sluice-trial-{}", Uuid::new_v4()));
    let files = format!("SELECT count(*) FROM {schema}.file_process");

    // Not told: refused, with the fix, and nothing written.
    let refused = run_orders(&url, &scratch.join("a"), &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fix: --record-state=skip"), "{stderr}");
    assert!(!stderr.contains("Error {"), "{stderr}");
    assert_eq!(count(&client, &files).await, 0);

    // A trial: an embedded store, and the database untouched.
    let trial = run_orders(&url, &scratch.join("b"), &["--record-state", "skip"]);
    let stderr = String::from_utf8_lossy(&trial.stderr);
    assert_eq!(trial.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("status store: embedded (a trial"),
        "{stderr}"
    );
    assert_eq!(count(&client, &files).await, 0);

    // Kept: the file and its calls are in PostgreSQL, every call marked simulated, and API
    // health (which reads only real calls) sees none.
    let kept = run_orders(&url, &scratch.join("c"), &["--record-state", "keep"]);
    let stderr = String::from_utf8_lossy(&kept.stderr);
    assert_eq!(kept.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("status store: PostgreSQL at"), "{stderr}");
    assert_eq!(count(&client, &files).await, 1);
    let calls = format!("SELECT count(*) FROM {schema}.api_call");
    let real = format!("SELECT count(*) FROM {schema}.dashboard_api_call WHERE NOT simulated");
    assert!(count(&client, &calls).await > 0);
    assert_eq!(count(&client, &real).await, 0);

    // A bad value lists the good ones.
    let bad = run_orders(&url, &scratch.join("d"), &["--record-state", "maybe"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("keep") && stderr.contains("skip"),
        "{stderr}"
    );

    let _ = std::fs::remove_dir_all(&scratch);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}

/// A quarantine object in the run's folder buckets with its row, claimed into `sanitizing`
/// by a run whose lease ends `seconds` from now.
async fn left_sanitizing(store: &Store, out: &Path, name: &str, seconds: i64) -> Uuid {
    let key = format!("incoming/orders/2026/12/07/{}-{name}", Uuid::new_v4());
    let path = out.join("buckets/quarantine").join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(repo().join("examples/orders/orders-messy.csv"), &path).unwrap();
    let etag = folder_etag(&path);
    let id = store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: "quarantine",
            key: &key,
            etag: &etag,
            size: std::fs::metadata(&path).unwrap().len() as i64,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id;
    let now = SystemTime::now();
    let until = match seconds >= 0 {
        true => now + Duration::from_secs(seconds as u64),
        false => now - Duration::from_secs(seconds.unsigned_abs()),
    };
    let lease = Lease {
        owner: format!("run/{}", Uuid::new_v4()),
        until,
    };
    store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &lease,
        )
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_watch_redrives_what_a_dead_run_left_and_leaves_what_a_live_run_holds() {
    let (store, url, schema, client) = schema().await;

    let scratch = std::env::temp_dir().join(format!("sluice-watch-{}", Uuid::new_v4()));
    let (drops, out) = (scratch.join("drops"), scratch.join("out"));
    std::fs::create_dir_all(&drops).unwrap();
    let dead = left_sanitizing(&store, &out, "dead.csv", -5).await;
    let held = left_sanitizing(&store, &out, "held.csv", 3600).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--watch"])
        .arg(&drops)
        .args([
            "--interval",
            "1",
            "--json",
            "--record-state",
            "keep",
            "--out",
        ])
        .arg(&out)
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .env("DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a re-drive summary within 60 s");
    let _ = child.kill();
    let _ = child.wait();
    let round: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(round["redrive"]["redriven_sanitize"], 1, "{round}");
    let files = round["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{round}");
    assert_eq!(files[0]["file_id"], dead.to_string(), "{round}");
    assert_eq!(files[0]["status"], "delivered", "{round}");

    let row = |id| {
        let store = &store;
        async move { store.file(id).await.unwrap().unwrap() }
    };
    assert_eq!(row(dead).await.status, FileStatus::Delivered);
    assert_eq!(
        row(held).await.status,
        FileStatus::Sanitizing,
        "a live run's file"
    );
    let requests = std::fs::read_to_string(out.join("requests/orders.jsonl")).unwrap();
    assert!(!requests.is_empty());

    let _ = std::fs::remove_dir_all(&scratch);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}
