//! The `sluice` commands as an operator runs them: files, exit codes, reports, requests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-cli-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap()
}

fn sanitize(scratch: &Scratch, input: &str, extra: &[&str]) -> Output {
    let out = scratch.path("clean.csv");
    let report = scratch.path("report.json");
    let mut args = vec![
        "sanitize",
        input,
        "--output",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

fn report(scratch: &Scratch) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(scratch.path("report.json")).unwrap()).unwrap()
}

#[test]
fn accepted_messy_file_exits_0_with_clean_output_and_report() {
    let scratch = Scratch::new();
    let errors = scratch.path("errors.csv");
    let run = sanitize(
        &scratch,
        "examples/orders/orders-messy.csv",
        &[
            "--dataset",
            "orders",
            "--config",
            "pipelines.toml",
            "--errors",
            errors.to_str().unwrap(),
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let clean = std::fs::read_to_string(scratch.path("clean.csv")).unwrap();
    assert!(clean.starts_with("order_id,order_date,sku,qty,unit_price_eur,"));
    assert!(!clean.contains("<script"));
    let report = report(&scratch);
    assert_eq!(report["verdict"], "accepted");
    assert_eq!(report["dataset"], "orders");
    assert_eq!(report["rejects"][0]["line"], 11);
    assert!(String::from_utf8_lossy(&run.stderr).contains("accepted"));
    // The ragged row, with its cells, in the errors file.
    let errors = std::fs::read_to_string(errors).unwrap();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(lines[0].starts_with("line,column,reason,order_id,"));
    assert!(lines[1].starts_with("11,,\"expected 8 fields, found 5\","));
}

#[test]
fn rejected_file_exits_3_and_leaves_no_output_even_from_an_earlier_run() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("clean.csv"), "stale").unwrap();
    let run = sanitize(&scratch, "examples/orders/not-a-csv.xlsx", &[]);
    assert_eq!(run.status.code(), Some(3));
    assert!(!scratch.path("clean.csv").exists());
    let report = report(&scratch);
    assert_eq!(report["verdict"], "rejected");
    assert!(report["reason"].as_str().unwrap().contains("zip"));
    let leftovers: Vec<_> = std::fs::read_dir(&scratch.0).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the report remains");
}

#[test]
fn missing_input_is_an_operational_error_exit_1() {
    let scratch = Scratch::new();
    let run = sanitize(&scratch, "examples/no-such-file.csv", &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no-such-file.csv"));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(sluice(&["sanitize"]).status.code(), Some(2));
    assert_eq!(
        sluice(&["sanitize", "x.csv", "--bogus"]).status.code(),
        Some(2)
    );
    let scratch = Scratch::new();
    let unknown = sanitize(
        &scratch,
        "examples/orders/orders-messy.csv",
        &["--dataset", "invoices", "--config", "pipelines.toml"],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("invoices"));
    let no_config = sanitize(
        &scratch,
        "examples/orders/orders-messy.csv",
        &["--dataset", "orders"],
    );
    assert_eq!(no_config.status.code(), Some(2));
}

#[test]
fn invalid_config_exits_1_naming_dataset_and_field() {
    let scratch = Scratch::new();
    let config = scratch.path("bad.toml");
    std::fs::write(&config, "[datasets.orders]\nprefix = \"no-slash\"\n").unwrap();
    let run = sanitize(
        &scratch,
        "examples/orders/orders-messy.csv",
        &["--dataset", "orders", "--config", config.to_str().unwrap()],
    );
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`orders`") && stderr.contains("prefix"),
        "{stderr}"
    );
}

#[test]
fn reads_standard_input() {
    let scratch = Scratch::new();
    let out = scratch.path("clean.csv");
    let report = scratch.path("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sanitize", "-", "-o", out.to_str().unwrap(), "-r"])
        .arg(&report)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"A;B\n1;=2\n")
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(std::fs::read_to_string(out).unwrap(), "a,b\r\n1,'=2\r\n");
}

#[test]
fn writes_into_a_pipe_without_replacing_it() {
    use std::os::unix::fs::FileTypeExt;
    let scratch = Scratch::new();
    let (input, pipe) = (scratch.path("in.csv"), scratch.path("pipe"));
    std::fs::write(&input, "A;B\n1;2\n").unwrap();
    assert!(Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap()
        .success());
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || std::fs::read_to_string(pipe).unwrap())
    };
    let report = scratch.path("report.json");
    let done = sluice(&[
        "sanitize",
        input.to_str().unwrap(),
        "-o",
        pipe.to_str().unwrap(),
        "-r",
        report.to_str().unwrap(),
    ]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    assert_eq!(reader.join().unwrap(), "a,b\r\n1,2\r\n");
    // Still a pipe: a temporary file renamed onto it would have replaced it (as it would
    // replace /dev/null for a user running as root).
    assert!(std::fs::metadata(&pipe).unwrap().file_type().is_fifo());
}

#[test]
fn migrate_reports_a_database_it_cannot_reach_with_exit_1_and_no_password() {
    let run = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["migrate"])
        .env(
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable",
        )
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("database"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn transform_writes_json_lines_and_a_report_and_filters_by_date() {
    let scratch = Scratch::new();
    let clean = scratch.path("orders.clean.csv");
    std::fs::write(
        &clean,
        "order_id,order_date,sku,qty,unit_price_eur,coupon,customer_e_mail,notes\r\n\
         A-1,2026-11-22 10:00,S,1,1.00,,a@example.com,\r\n\
         A-2,2026-11-23 10:00,S,2,2.50,,b@example.com,\r\n\
         A-3,2026-11-23 11:00,S,lots,2.50,,c@example.com,\r\n",
    )
    .unwrap();
    let records = scratch.path("records.jsonl");
    let report = scratch.path("transform.json");
    let run = sluice(&[
        "transform",
        clean.to_str().unwrap(),
        "--dataset",
        "orders",
        "--config",
        "pipelines.toml",
        "--output",
        records.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--start",
        "2026-11-23",
    ]);
    // One failed row of two in range is over the orders dataset's 5% limit.
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&records).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["orderId"], "A-2");
    assert!(
        text.contains(r#""unitPrice":2.50"#),
        "decimals keep their digits: {text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["verdict"], "failed");
    assert_eq!(report["rows_filtered"], 1);
    assert_eq!(report["errors"][0]["line"], 4);
    assert_eq!(report["errors"][0]["field"], "line.quantity");
    assert_eq!(report["errors"][0]["value"], "lots");
}

#[test]
fn transform_refuses_a_bad_date_as_a_usage_error() {
    let run = sluice(&[
        "transform",
        "x.csv",
        "--dataset",
        "orders",
        "--config",
        "pipelines.toml",
        "-o",
        "y",
        "--start",
        "23/11/2026",
    ]);
    assert_eq!(run.status.code(), Some(2));
}

/// A one-request-at-a-time HTTP API on loopback: answers each request with `status` and
/// sends back what it received (header block and body) on the channel.
fn tiny_api(status: u16, requests: usize) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = tx.send((head, String::from_utf8(body).unwrap()));
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            stream.write_all(answer.as_bytes()).unwrap();
        }
    });
    (url, rx)
}

fn records_file(scratch: &Scratch, lines: usize) -> PathBuf {
    let path = scratch.path("records.jsonl");
    let text: String = (1..=lines)
        .map(|i| format!("{{\"orderId\":\"A-{i}\",\"total\":19.90}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `sluice forward RECORDS --dataset orders --config pipelines.toml EXTRA...`, with the
/// orders dataset's token variable set to `token` (unset for `None`).
fn forward(records: &Path, extra: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["forward", records.to_str().unwrap()])
        .args(["--dataset", "orders", "--config", "pipelines.toml"])
        .args(extra)
        .current_dir(repo());
    match token {
        Some(t) => command.env("ORDERS_API_TOKEN", t),
        None => command.env_remove("ORDERS_API_TOKEN"),
    };
    command.output().unwrap()
}

#[test]
fn forward_posts_batches_with_idempotency_keys_and_reports_every_attempt() {
    let scratch = Scratch::new();
    // 1200 records in batches of 500 (the orders dataset's size): 3 requests.
    let records = records_file(&scratch, 1200);
    let report = scratch.path("delivery.json");
    let (url, received) = tiny_api(200, 3);
    let report_arg = report.to_str().unwrap();
    let run = forward(
        &records,
        &["--api", &url, "--report", report_arg],
        Some("t0ken"),
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let requests: Vec<(String, String)> = received.iter().take(3).collect();
    let mut count = 0;
    for (i, (head, body)) in requests.iter().enumerate() {
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /ingest"), "{head}");
        assert!(head.contains("authorization: bearer t0ken"), "{head}");
        assert!(
            head.contains(&format!("x-sluice-batch: {}/3", i + 1)),
            "{head}"
        );
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("idempotency-key: "))
            .unwrap();
        assert!(key.trim().ends_with(&format!("-{:06}", i + 1)), "{key}");
        let array: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
        count += array.len();
        assert!(body.contains("19.90"));
    }
    assert_eq!(count, 1200);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["batches"], 3);
    assert_eq!(report["batches_delivered"], 3);
    assert_eq!(report["attempts"].as_array().unwrap().len(), 3);
    assert!(
        !String::from_utf8_lossy(&run.stderr).contains("t0ken"),
        "the token is never printed"
    );
}

#[test]
fn forward_reports_a_refused_batch_and_exits_1() {
    let scratch = Scratch::new();
    let records = records_file(&scratch, 2);
    let report = scratch.path("delivery.json");
    let (url, _received) = tiny_api(400, 1);
    let report_arg = report.to_str().unwrap();
    let run = forward(
        &records,
        &["--api", &url, "--report", report_arg],
        Some("t"),
    );
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("batch 1 not delivered: HTTP 400"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["batches_delivered"], 0);
    assert_eq!(
        report["attempts"].as_array().unwrap().len(),
        1,
        "a 400 is not retried"
    );
    assert_eq!(report["failures"][0]["seq"], 1);
}

#[test]
fn forward_names_a_bad_record_line_and_a_missing_token() {
    let scratch = Scratch::new();
    let records = scratch.path("records.jsonl");
    std::fs::write(&records, "{\"a\":1}\n\n[1,2]\n").unwrap();
    let output = scratch.path("requests.jsonl");
    let run = forward(&records, &["--output", output.to_str().unwrap()], None);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("records.jsonl line 3: a record is a JSON object"),
        "{stderr}"
    );

    // The orders dataset's Authorization header comes from ORDERS_API_TOKEN.
    let run = forward(&records, &["--api", "http://127.0.0.1:9/x"], None);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("header `authorization`: environment variable ORDERS_API_TOKEN is not set"),
        "{stderr}"
    );
    let run = forward(&records, &["--api", "http://api.example.com/x"], Some("t"));
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("use https"));
}

/// A stand-in API on loopback: answers every POST 200 and keeps the bodies.
struct Api {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Api {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(n) = lower.strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    kept.lock().unwrap().push(body);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
        Self { url, bodies }
    }

    /// Every record the API received, by its id field.
    fn ids(&self, field: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| serde_json::from_slice::<Vec<serde_json::Value>>(b).unwrap())
            .map(|r| r[field].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }
}

fn run_json(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .args(args)
        .arg("--json")
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), summary)
}

fn statuses(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["path"].as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_string(), f["status"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn run_takes_the_examples_through_the_whole_chain_into_request_files() {
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let (code, summary) = run_json(&["examples/", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(
        statuses(&summary),
        [
            ("not-a-csv.xlsx".into(), "rejected".into()),
            ("orders-afternoon.csv".into(), "delivered".into()),
            ("orders-evening.csv.gz".into(), "delivered".into()),
            ("orders-messy.csv".into(), "delivered".into()),
            ("orders-warehouse.xlsx".into(), "delivered".into()),
            ("train-movements-1252.csv".into(), "delivered".into()),
        ]
    );
    assert_eq!(
        code,
        Some(3),
        "delivered, and one file rejected as expected"
    );
    let evening = &summary["files"][2];
    assert_eq!(
        (evening["rows_in"].as_i64(), evening["records"].as_i64()),
        (Some(3), Some(3)),
        "a gzip export is read through"
    );
    let workbook = &summary["files"][4];
    assert_eq!(
        (workbook["rows_in"].as_i64(), workbook["records"].as_i64()),
        (Some(3), Some(3)),
        "a workbook's sheet is read"
    );
    let orders = &summary["files"][3];
    assert_eq!(
        (orders["rows_in"].as_i64(), orders["records"].as_i64()),
        (Some(13), Some(11))
    );
    assert!(summary["files"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a CSV"));
    // One request line per batch (one batch per orders file here), keyed by its batch id.
    let requests = std::fs::read_to_string(out.join("requests/orders.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = requests
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let id = orders["file_id"].as_str().unwrap();
    let messy = lines
        .iter()
        .find(|l| l["idempotency_key"] == format!("{id}-000001"))
        .expect("the messy file's batch");
    assert_eq!(messy["body"].as_array().unwrap().len(), 11);
    // The clean file and the reports are where the summary says.
    let reports = Path::new(orders["reports"].as_str().unwrap());
    assert!(reports.join("sanitize.json").exists() && reports.join("transform.json").exists());
    // Every final status is an event, as EventBridge would carry it, once.
    let events: Vec<serde_json::Value> = std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 6);
    let messy = events
        .iter()
        .find(|e| e["detail"]["file_id"] == id)
        .expect("the messy file's event");
    assert_eq!(messy["detail-type"], "Sluice File Status Changed");
    assert_eq!(messy["source"], "sluice");
    assert_eq!(messy["id"], format!("{id}/delivered"));
    assert_eq!(messy["detail"]["counts"]["records"], 11);
    let rejected = events
        .iter()
        .find(|e| e["detail"]["status"] == "rejected")
        .expect("the rejected file's event");
    assert!(rejected["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("not a CSV"));
}

#[test]
fn run_twice_on_the_same_folder_sends_nothing_the_second_time() {
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let out = out.to_str().unwrap();
    run_json(&["examples/orders", "--out", out], &[]);
    let requests = || {
        std::fs::read_to_string(Path::new(out).join("requests/orders.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(requests(), 4);
    assert!(Path::new(out).join("record-state.json").exists());
    let (code, summary) = run_json(&["examples/orders", "--out", out], &[]);
    assert_eq!(code, Some(3), "{summary}");
    assert_eq!(requests(), 4, "no new request the second time");
    let messy = &summary["files"][3];
    assert_eq!(messy["status"], "delivered");
    assert_eq!(
        (
            messy["records_new"].as_i64(),
            messy["records_changed"].as_i64(),
            messy["records_unchanged"].as_i64()
        ),
        (Some(0), Some(0), Some(11))
    );
    assert_eq!(messy["batches"].as_i64(), Some(0));
    // --full sends everything again.
    run_json(&["examples/orders", "--out", out, "--full"], &[]);
    assert_eq!(requests(), 8);
}

#[test]
fn run_posts_each_record_once_to_the_api_and_says_why_a_file_was_not_delivered() {
    let api = Api::start();
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let (code, summary) = run_json(
        &[
            "examples/",
            "--out",
            out.to_str().unwrap(),
            "--api",
            &api.url,
        ],
        &[("ORDERS_API_TOKEN", "t0ken")],
    );
    assert_eq!(code, Some(1), "{summary}");
    let files = statuses(&summary);
    assert_eq!(
        files[1],
        ("orders-afternoon.csv".into(), "delivered".into())
    );
    assert_eq!(
        files[2],
        ("orders-evening.csv.gz".into(), "delivered".into())
    );
    assert_eq!(files[3], ("orders-messy.csv".into(), "delivered".into()));
    assert_eq!(
        files[4],
        ("orders-warehouse.xlsx".into(), "delivered".into())
    );
    // Train movements take their API key from Secrets Manager, which a local run cannot read.
    assert_eq!(files[5].1, "failed");
    assert!(summary["files"][5]["reason"]
        .as_str()
        .unwrap()
        .contains("Secrets Manager"));
    // Each file's records once: 11 from the morning export, 4 from the afternoon's, 3 from
    // the evening's, 3 from the warehouse's workbook. The
    // afternoon export repeats two morning orders, which go again: it is another export (its
    // own name, so its own delta scope), new to the record state.
    let ids = api.ids("orderId");
    assert_eq!(ids.len(), 21, "{ids:?}");
    let twice: Vec<&String> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert_eq!(twice, ["A-1001", "A-1002"]);
}

#[test]
fn run_routes_by_dataset_flag_and_refuses_a_file_with_no_dataset() {
    let scratch = Scratch::new();
    let loose = scratch.path("loose.csv");
    std::fs::copy(repo().join("examples/orders/orders-messy.csv"), &loose).unwrap();
    let out = scratch.path("out");
    let (code, summary) = run_json(
        &[loose.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(1));
    assert_eq!(summary["files"][0]["status"], "unrouted");
    let (code, summary) = run_json(
        &[
            loose.to_str().unwrap(),
            "--dataset",
            "orders",
            "--out",
            out.to_str().unwrap(),
            "--start",
            "2026-11-24",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{summary}");
    let file = &summary["files"][0];
    assert_eq!(file["status"], "delivered");
    assert!(
        file["records"].as_i64().unwrap() < 11,
        "the date range filtered records: {file}"
    );
}

#[test]
fn run_watch_takes_each_dropped_file_once_it_settles_and_again_when_rewritten() {
    use std::io::BufRead;
    use std::time::Duration;

    let scratch = Scratch::new();
    let drop_dir = scratch.path("drop");
    std::fs::create_dir_all(drop_dir.join("orders")).unwrap();
    let out = scratch.path("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "run",
            "--watch",
            drop_dir.to_str().unwrap(),
            "--interval",
            "1",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .env_remove("DATABASE_URL")
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
    let next = || {
        let line = rx.recv_timeout(Duration::from_secs(30));
        serde_json::from_str::<serde_json::Value>(&line.expect("a summary within 30 s")).unwrap()
    };
    let dropped = drop_dir.join("orders/morning.csv");
    std::fs::copy(repo().join("examples/orders/orders-messy.csv"), &dropped).unwrap();
    let first = next();
    // A second file later, and the first written again with a new day's orders.
    let mut rewritten = std::fs::read(&dropped).unwrap();
    rewritten.extend_from_slice(b"A-2001,2026-11-24 09:00,SKU-RED-M,1,19.90,,,\r\n");
    std::fs::write(&dropped, rewritten).unwrap();
    let second = next();
    let _ = child.kill();
    let _ = child.wait();
    let only = |summary: &serde_json::Value| {
        let files = summary["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{summary}");
        files[0].clone()
    };
    let (first, second) = (only(&first), only(&second));
    assert_eq!(first["status"], "delivered", "{first}");
    assert_eq!(second["status"], "delivered", "{second}");
    assert_ne!(
        first["file_id"], second["file_id"],
        "written again: a new file"
    );
    assert_eq!(
        second["records"].as_i64().unwrap(),
        first["records"].as_i64().unwrap() + 1
    );
}

#[test]
fn errors_say_each_cause_once_with_no_debug_output_and_usage_is_exit_2() {
    let missing = sluice(&[
        "sanitize",
        "/nonexistent.csv",
        "-o",
        "/tmp/x",
        "-r",
        "/tmp/y",
    ]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
    assert!(
        !said.contains("Error {") && !said.contains("Os {"),
        "{said}"
    );

    let scratch = Scratch::new();
    let out = scratch.path("out");
    let api = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "run",
            "examples/orders/orders-messy.csv",
            "--api",
            "http://10.0.0.1/x",
            "--out",
        ])
        .arg(&out)
        .current_dir(repo())
        .env_remove("SLUICE_CONFIG")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&api.stderr);
    assert_eq!(api.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--api http://10.0.0.1/x: plain http is only allowed to localhost"),
        "{said}"
    );
    assert!(!said.contains("dataset `--api`"), "{said}");

    let unknown = sluice(&["upload", "README.md", "--dataset", "nope", "--bucket", "b"]);
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{said}");
    assert!(said.contains("dataset `nope`"), "{said}");
}

/// The front page's command list (README.md, "The commands") names real subcommands and flags:
/// each `sluice X` line's flags appear in `sluice X --help`.
#[test]
fn the_readme_command_list_matches_the_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split("## The commands")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("a code block under \"The commands\"");
    let mut checked = 0;
    for line in block.lines().filter(|l| l.starts_with("sluice ")) {
        // "sluice a | b | c   what" names several subcommands; else the first word is the one.
        let synopsis = line.split("  ").next().unwrap();
        let words: Vec<&str> = synopsis.split_whitespace().skip(1).collect();
        let subcommands: Vec<&str> = match words.get(1) {
            Some(&"|") => words.iter().copied().filter(|w| *w != "|").collect(),
            _ => vec![words[0]],
        };
        for sub in subcommands {
            takes_the_flags_of(&[sub, "--help"], synopsis, "README");
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} subcommands checked");
}

/// `sluice <help_args>` (a command's `--help`) answers and names every `--flag` of
/// `synopsis`, as written on `page`.
fn takes_the_flags_of(help_args: &[&str], synopsis: &str, page: &str) {
    let help = sluice(help_args);
    assert!(
        help.status.success(),
        "{page}: sluice {help_args:?}: {synopsis}"
    );
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in synopsis
        .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        .filter(|w| w.starts_with("--"))
    {
        assert!(
            text.contains(flag),
            "{page}: sluice {help_args:?} has no {flag}: {synopsis}"
        );
    }
}

/// Every command synopsis in the book (a code block line starting `sluice `, with its indented
/// continuation lines) names a command that exists, and only flags it takes.
#[test]
fn every_command_synopsis_in_the_book_matches_the_commands() {
    let mut pages: Vec<_> = std::fs::read_dir(repo().join("docs/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    let mut synopses: Vec<(String, String)> = Vec::new();
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(page).unwrap();
        for block in text.split("```").skip(1).step_by(2) {
            let mut continued = false;
            for line in block.lines() {
                // Comments explain; the synopsis is what precedes them.
                let line = line.split(" #").next().unwrap();
                if line.starts_with("sluice ") {
                    synopses.push((name.clone(), line.to_string()));
                    continued = true;
                } else if continued && line.starts_with(' ') && !line.trim().is_empty() {
                    synopses.last_mut().unwrap().1.push_str(line);
                } else {
                    continued = false;
                }
            }
        }
    }
    let mut checked = 0;
    for (page, synopsis) in &synopses {
        let words: Vec<&str> = synopsis.split_whitespace().skip(1).collect();
        // `sluice dlq list QUEUE`: a subcommand's own subcommand is a lowercase word after it.
        let nested = words
            .get(1)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .map(|w| vec![words[0], w, "--help"])
            .filter(|args| sluice(args).status.success());
        let args = nested.unwrap_or_else(|| vec![words[0], "--help"]);
        takes_the_flags_of(&args, synopsis, page);
        checked += 1;
    }
    assert!(checked >= 15, "{checked} synopses checked: {synopses:#?}");
}

/// A reader that stops reading (`sluice ... | head -1`) ends the output, not the command: the
/// exit code is the one the command gives with its output read to the end.
#[test]
fn a_closed_pipe_on_standard_output_does_not_change_the_outcome() {
    let scratch = Scratch::new();
    let run = |out: &str, read: bool| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "examples", "--out"])
            .arg(scratch.path(out))
            .current_dir(repo())
            .env_remove("SLUICE_CONFIG")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut said = String::new();
        if read {
            std::io::Read::read_to_string(&mut { stdout }, &mut said).unwrap();
        } else {
            // Closed before the command writes a byte.
            drop(stdout);
        }
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            said,
        )
    };
    let (read_code, _, said) = run("read", true);
    assert!(!said.is_empty());
    let (closed_code, stderr, _) = run("closed", false);
    assert_eq!(closed_code, read_code, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
