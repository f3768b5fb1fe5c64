//! The dashboard in a real headless browser (Debian's chromium, driven through chromedriver;
//! scripts/test.sh installs both and sets SLUICE_BROWSER=1): the overview, the file list
//! filtered with its form, one file opened from the list. Screenshots go to
//! `target/dashboard-screenshots/`; the browser's console must stay free of errors.

mod common;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dead_letter_queue, seed, Schema};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use sluice_aws::{Clients, ObjectStore};
use sluice_dashboard::{router, Dlqs, Links, State};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port, ended with the test.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let binary = which(&["chromedriver"])
            .expect("chromedriver is on PATH (scripts/test.sh installs chromium-driver)");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = which(&["chromium", "chromium-browser"]).expect("chromium is on PATH");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// What the page's console said at level SEVERE (errors), through chromedriver's log
/// endpoint.
async fn console_errors(driver: &Driver, client: &Client) -> Vec<Value> {
    let session = client.session_id().await.unwrap().unwrap();
    let logs: Value = reqwest::Client::new()
        .post(format!("{}/session/{session}/se/log", driver.url))
        .json(&json!({ "type": "browser" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    logs["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect()
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits for the navigation a click started: a click can return before the next page is in.
async fn wait_for_url(client: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = client.current_url().await.unwrap();
        if url.as_str().contains(part) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached a URL with {part:?}: at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_where_a_file_is_and_why_in_a_browser() {
    if std::env::var("SLUICE_BROWSER").as_deref() != Ok("1") {
        eprintln!("skipped: set SLUICE_BROWSER=1 with chromium and chromedriver installed (scripts/test.sh does)");
        return;
    }
    let schema = Schema::create().await;
    let seeded = seed(&schema).await;
    // The busy file is a replay of the failed one, from its forward stage.
    schema
        .config
        .connect()
        .await
        .unwrap()
        .execute(
            "UPDATE file_process SET replay_of = $1, replay_from = 'forward' WHERE id = $2",
            &[&seeded.failed, &seeded.busy],
        )
        .await
        .unwrap();
    // A dead-letter queue in moto holding the failed file's last batch, and links signed
    // for a clean bucket.
    let clients = Clients::from_env().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (dead, source) = dead_letter_queue(&clients, &format!("browser-{suffix}")).await;
    clients
        .sqs
        .send_message()
        .queue_url(&dead)
        .message_body(format!(
            r#"{{"v":1,"file_id":"{0}","dataset":"orders","batch_id":"{0}-000002","seq":2,"total":2,"records":[]}}"#,
            seeded.failed
        ))
        .send()
        .await
        .unwrap();
    let state = State::new(
        schema.config.clone(),
        Some(Dlqs {
            queues: clients.queues(),
            urls: vec![dead.clone()],
        }),
        Duration::from_secs(3600),
    )
    .with_links(Some(Links {
        objects: ObjectStore::new(clients.s3.clone()),
        clean_bucket: format!("sluice-clean-{suffix}"),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(state)))
            .await
            .unwrap();
    });
    let driver = Driver::start();
    let client = browser(&driver).await;

    // The overview: five files received, one stuck, named.
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(text(&client, "#received").await, "5");
    assert_eq!(text(&client, "#stuck-count").await, "1");
    assert!(text(&client, "table#stuck")
        .await
        .contains("orders-stuck.csv"));
    // The failures of the window, each with why.
    let failures = text(&client, "table#recent-failures").await;
    assert!(
        failures.contains("orders-pm.csv") && failures.contains("HTTP 422"),
        "{failures}"
    );
    assert!(
        failures.contains("orders.xlsx") && failures.contains("not a CSV file"),
        "{failures}"
    );
    screenshot(&client, "overview").await;

    // The file list, filtered to rejected files with its form.
    client.goto(&format!("{base}/files")).await.unwrap();
    let rows = client
        .find_all(Locator::Css("table#files tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    // The replay is marked as one.
    assert!(text(&client, "table#files")
        .await
        .contains("orders-busy.csv replay from forward"));
    client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("rejected")
        .await
        .unwrap();
    client
        .find(Locator::Css("form#filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(&client, "status=rejected").await;
    let rows = client
        .find_all(Locator::Css("table#files tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    screenshot(&client, "files-rejected").await;

    // Opened from the list: the file says why it was rejected.
    client
        .find(Locator::LinkText("orders.xlsx"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(&client, &format!("/files/{}", seeded.rejected)).await;
    assert_eq!(text(&client, "#status").await, "rejected");
    assert_eq!(
        text(&client, "#error").await,
        "not a CSV file: it looks like an archive"
    );
    screenshot(&client, "file-rejected").await;

    // A failed file: the stage and the reason, the batches and the calls.
    client
        .goto(&format!("{base}/files/{}", seeded.failed))
        .await
        .unwrap();
    assert!(text(&client, "#error")
        .await
        .starts_with("at the forwarder: batch 2/2 not delivered: HTTP 422"));
    assert!(text(&client, "table#batches").await.contains("HTTP 422"));
    assert!(text(&client, "table#timeline").await.contains("failed"));
    // What the API said, under the call it refused (and under no other).
    let calls = text(&client, "table#calls").await;
    assert!(
        calls.contains(r#"the API answered: {"error": "record 2: customer.email is required"}"#),
        "{calls}"
    );
    assert_eq!(calls.matches("the API answered").count(), 1, "{calls}");
    // Its objects, each with a download link; its replay, linked.
    let objects = text(&client, "table#objects").await;
    for label in [
        "original upload",
        "clean CSV",
        "sanitize report",
        "transform report",
    ] {
        assert!(objects.contains(label), "{objects}");
    }
    let downloads = client
        .find_all(Locator::Css("table#objects a"))
        .await
        .unwrap();
    assert_eq!(downloads.len(), 4);
    assert!(text(&client, "table#facts")
        .await
        .contains(&seeded.busy.to_string()));
    screenshot(&client, "file-failed").await;

    // The timeline in words, not JSON.
    let timeline = text(&client, "table#timeline").await;
    assert!(!timeline.contains("{\""), "{timeline}");

    // A stuck file says why, and what the listener will do.
    client
        .goto(&format!("{base}/files/{}", seeded.stuck))
        .await
        .unwrap();
    let progress = text(&client, "#progress").await;
    assert!(
        progress.starts_with("Stuck: the lease of its worker") && progress.contains("re-drives"),
        "{progress}"
    );
    screenshot(&client, "file-stuck").await;

    // API health per endpoint, each with its trend.
    client.goto(&format!("{base}/health")).await.unwrap();
    let health = text(&client, "table#health").await;
    assert!(
        health.contains("https://api.example.com/v1/records")
            && health.contains("https://slow.example.com/ingest"),
        "{health}"
    );
    let bars = client
        .find_all(Locator::Css("table#health td.trend svg rect"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 24, "12 slots for each of the two endpoints");
    screenshot(&client, "health").await;

    // The dead letters: the batch's message, linked to its file.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::Id("dlq-messages"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(&client, "/dlq").await;
    let letters = text(&client, "table.dead-letters").await;
    assert!(letters.contains("record batch"), "{letters}");
    screenshot(&client, "dead-letters").await;
    client
        .find(Locator::Css("table.dead-letters a.file"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(&client, &format!("/files/{}", seeded.failed)).await;

    let errors = console_errors(&driver, &client).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    client.close().await.unwrap();
    server.abort();
    for url in [&dead, &source] {
        let _ = clients.sqs.delete_queue().queue_url(url).send().await;
    }
    schema.drop().await;
}
