//! Every function of template.yaml run by `sam local invoke` in a container, with the sample
//! events from `events/`, against moto server and a TLS-only PostgreSQL; each outcome is
//! asserted (the object written, the message sent, the rows in PostgreSQL), not an exit code.
//!
//! scripts/test.sh sets `SLUICE_SAM_LOCAL=1` once SAM CLI, dockerd and the stand-in base image
//! are ready (scripts/lib/sam_local.sh), with `SLUICE_SAM_HOST_IP` the Docker bridge's gateway:
//! SAM leaves containers on the bridge network, so the test relays moto and PostgreSQL from
//! that address. The database is reached as in AWS: verified TLS, the CA from the files layer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sluice_db::{migrate, Db, DbConfig, Store};
use sluice_e2e::{unique, World};
use tokio::net::{TcpListener, TcpStream};

const IMAGE: &str = "sluice-provided-al2023:local";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Accepts on `ip` and forwards each connection to `target` (on this machine's loopback).
async fn relay(ip: &str, target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

fn loopback_port(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()))
}

/// What the functions are run with: a template copy pointing at the debug bootstraps, a files
/// layer (pipeline config, the database's CA), and the environment of each function.
struct Sam {
    dir: PathBuf,
    env: Value,
}

impl Sam {
    /// Runs `function` on `event`; its response.
    fn invoke(&self, function: &str, event: &Value) -> Value {
        let event_file = self.dir.join(format!("{function}-event.json"));
        std::fs::write(&event_file, serde_json::to_vec(event).unwrap()).unwrap();
        let env_file = self.dir.join("env.json");
        std::fs::write(&env_file, serde_json::to_vec(&self.env).unwrap()).unwrap();
        let output = Command::new("sam")
            .args(["local", "invoke", function, "--template"])
            .arg(self.dir.join("build/template.yaml"))
            .arg("--event")
            .arg(&event_file)
            .arg("--env-vars")
            .arg(&env_file)
            .args(["--invoke-image", IMAGE, "--skip-pull-image"])
            .args(["--parameter-overrides", "Architecture=x86_64"])
            .env("SAM_CLI_TELEMETRY", "0")
            .output()
            .expect("sam is on PATH (scripts/test.sh puts .venv-sam/bin there)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let failed = |why: &str| -> ! { panic!("{function}: {why}\n{stdout}\n{stderr}") };
        if !output.status.success() {
            failed("sam local invoke failed");
        }
        // The response is the last line of standard output: a JSON object, not an error.
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let response: Value = last
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| failed("no JSON response"));
        if !response.is_object() || response.get("errorType").is_some() {
            failed("the function failed");
        }
        response
    }
}

fn sqs_event(sample: &str, bodies: &[String]) -> Value {
    let sample: Value =
        serde_json::from_slice(&std::fs::read(repo().join("events").join(sample)).unwrap())
            .unwrap();
    let template = sample["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("m-{i}"));
            record["body"] = json!(body);
            record
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_runs_under_sam_local_invoke() {
    if std::env::var("SLUICE_SAM_LOCAL").as_deref() != Ok("1") {
        eprintln!("skipped: scripts/test.sh runs this once Docker and SAM CLI are ready");
        return;
    }
    let host_ip = std::env::var("SLUICE_SAM_HOST_IP").expect("SLUICE_SAM_HOST_IP");
    let tls_url = std::env::var("SLUICE_TEST_TLS_DATABASE_URL").expect("TLS PostgreSQL");
    let ca_file = PathBuf::from(std::env::var("SLUICE_TEST_DB_CA_FILE").expect("its CA"));
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("moto server");

    // AWS stand-ins: buckets and queues of this test's own.
    let world = World::new().await;
    let forward_queue = world.new_queue("sluice-forward").await;
    let sanitize_queue = world.new_queue("sluice-sanitize").await;
    let drop_bucket = unique("sluice-drop");
    world
        .clients
        .s3
        .create_bucket()
        .bucket(&drop_bucket)
        .send()
        .await
        .unwrap();

    // The database: a schema of this test's own on the TLS-only server.
    let schema = unique("sluice_sam").replace('-', "_");
    let admin = DbConfig::parse(&tls_url, Some(&ca_file)).unwrap();
    admin
        .connect()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let db = Db::new(admin.clone().with_schema(&schema));
    let store = Store::new(db);

    // What the containers reach: relays on the bridge's gateway.
    let moto_relay = relay(&host_ip, loopback_port(&moto)).await;
    let pg_port = url::Url::parse(&tls_url).unwrap().port().unwrap();
    let pg_relay = relay(&host_ip, SocketAddr::from(([127, 0, 0, 1], pg_port))).await;
    let container_db_url = {
        let mut url = url::Url::parse(&tls_url).unwrap();
        url.set_port(Some(pg_relay.port())).unwrap();
        // Spaces as %20: the PostgreSQL URL reader takes `+` literally.
        url.set_query(Some(&format!(
            "hostaddr={host_ip}&sslmode=require&options=-c%20search_path%3D{schema}"
        )));
        url.to_string()
    };

    // The template copy, the layer, the environment.
    let dir = repo().join("target").join(unique("sam-local"));
    let layer = dir.join("layer/sluice");
    std::fs::create_dir_all(&layer).unwrap();
    let config = std::fs::read_to_string(repo().join("pipelines.toml"))
        .unwrap()
        .replace("settle_seconds = 120", "settle_seconds = 0");
    std::fs::write(layer.join("pipelines.toml"), config).unwrap();
    std::fs::copy(&ca_file, layer.join("rds-global-bundle.pem")).unwrap();
    let generated = Command::new("python3")
        .arg(repo().join("scripts/sam_local_template.py"))
        .arg(repo().join("template.yaml"))
        .arg(dir.join("build"))
        .arg(repo().join("target/debug"))
        .arg(dir.join("layer"))
        .arg(format!("AWS_ENDPOINT_URL=http://{moto_relay}"))
        .arg("SLUICE_S3_PATH_STYLE=true")
        .arg("ORDERS_API_TOKEN=local-test-token")
        .status()
        .unwrap();
    assert!(generated.success());
    // SAM gives a declared variable the shell's value (this process has moto's loopback
    // address): every one the containers need is set here, which wins over both.
    let common = json!({
        "AWS_ENDPOINT_URL": format!("http://{moto_relay}"),
        "SLUICE_S3_PATH_STYLE": "true",
        "SLUICE_CONFIG": "/opt/sluice/pipelines.toml",
        "SLUICE_DB_CA_FILE": "/opt/sluice/rds-global-bundle.pem",
        "ORDERS_API_TOKEN": "local-test-token",
        "DATABASE_URL": container_db_url,
        "DATABASE_SECRET_ARN": "",
        // The TLS PostgreSQL here is no RDS: the functions log in with the URL's password,
        // not as their roles with IAM tokens.
        "SLUICE_DB_IAM_USER": "",
        "SLUICE_CLEAN_BUCKET": world.clean,
        "SLUICE_MAX_RECEIVE_COUNT": "5",
        // Notifications wait in the status store (tests/notify.rs publishes them to moto).
        "SLUICE_EVENT_BUS": "",
        "RUST_LOG": "info",
    });
    let with = |extra: Value| {
        let mut env = common.clone();
        env.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        env
    };
    let sam = Sam {
        env: json!({
            "ListenerFunction": with(json!({
                "SLUICE_MIGRATE_ON_START": "true",
                "SLUICE_DROP_BUCKET": drop_bucket,
                "SLUICE_QUARANTINE_BUCKET": world.quarantine,
                "SLUICE_SANITIZE_QUEUE_URL": sanitize_queue,
                "SLUICE_TRANSFORM_QUEUE_URL": world.queue_url,
                "SLUICE_FORWARD_QUEUE_URL": forward_queue,
            })),
            "SanitizerFunction": with(json!({ "SLUICE_TRANSFORM_QUEUE_URL": world.queue_url })),
            "TransformerFunction": with(json!({ "SLUICE_FORWARD_QUEUE_URL": forward_queue })),
            "ForwarderFunction": with(json!({})),
            "DashboardFunction": with(json!({ "SLUICE_DLQ_URLS": "" })),
        }),
        dir,
    };

    // The listener first: it migrates at cold start, then copies a settled drop in.
    let drop_key = "ftp/leeds/train-movements/2026-11-24.csv";
    world
        .clients
        .s3
        .put_object()
        .bucket(&drop_bucket)
        .key(drop_key)
        .body(
            std::fs::read(repo().join("examples/train_movements/train-movements-1252.csv"))
                .unwrap()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let schedule: Value = serde_json::from_slice(
        &std::fs::read(repo().join("events/listener-schedule.json")).unwrap(),
    )
    .unwrap();
    sam.invoke("ListenerFunction", &schedule);
    assert!(
        migrate(&Db::new(admin.clone().with_schema(&schema)))
            .await
            .unwrap()
            .is_empty(),
        "the listener applied every migration"
    );
    let copies = world.keys(&world.quarantine).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0].starts_with("incoming/train_movements/"),
        "{copies:?}"
    );

    // The sanitizer, on the SQS-wrapped EventBridge "Object Created" sample, its bucket and
    // key made this test's.
    let sample =
        std::fs::read_to_string(repo().join("events/sanitizer-sqs-eventbridge.json")).unwrap();
    let key = "incoming/orders/2026/11/23/Orders export (Nov 23) café.csv";
    let body = std::fs::read(repo().join("examples/orders/orders-messy.csv")).unwrap();
    world.put(key, body.clone()).await;
    let event: Value =
        serde_json::from_str(&sample.replace("sluice-quarantine-example", &world.quarantine))
            .unwrap();
    let answer = sam.invoke("SanitizerFunction", &event);
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let sanitized = world.drain_queue().await;
    assert_eq!(sanitized.len(), 1, "one \"file sanitized\" message");
    let id: uuid::Uuid = sanitized[0]["file_id"].as_str().unwrap().parse().unwrap();
    let clean_key = sanitized[0]["clean_key"].as_str().unwrap().to_string();
    assert!(
        world.get(&world.clean, &clean_key).await.is_some(),
        "the clean file"
    );
    assert_eq!(
        store.file(id).await.unwrap().unwrap().status.to_string(),
        "sanitized"
    );

    // The transformer, on that message.
    let event = sqs_event("transformer-sqs.json", &[sanitized[0].to_string()]);
    let answer = sam.invoke("TransformerFunction", &event);
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let batches = world.drain(&forward_queue).await;
    assert_eq!(batches.len(), 1, "11 records in one batch of 500");
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status.to_string(), "transformed");
    assert_eq!((row.records, row.records_new), (Some(11), Some(11)));

    // The forwarder, on that batch: the example API (api.example.com) cannot be reached from
    // here, so the attempt is recorded with its error and the message reported failed.
    let event = sqs_event("forwarder-sqs.json", &[batches[0].to_string()]);
    let answer = sam.invoke("ForwarderFunction", &event);
    assert_eq!(
        answer["batchItemFailures"],
        json!([{ "itemIdentifier": "m-0" }]),
        "{answer}"
    );
    let calls = store.calls(id).await.unwrap();
    assert!(!calls.is_empty(), "every attempt is in api_call");
    assert!(
        calls
            .iter()
            .all(|c| c.http_status.is_none() && c.error.is_some()),
        "{calls:?}"
    );

    // The dashboard, on the Function URL sample: the overview as JSON, read through its role.
    let event: Value = serde_json::from_slice(
        &std::fs::read(repo().join("events/dashboard-function-url.json")).unwrap(),
    )
    .unwrap();
    let answer = sam.invoke("DashboardFunction", &event);
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let overview: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(overview["window"], "24h");
    assert!(overview["received"].as_i64().unwrap() >= 1, "{overview}");
    assert_eq!(overview["dlq"], Value::Null, "{overview}");

    let _ = std::fs::remove_dir_all(&sam.dir);
    world.clean_up().await;
}
