//! `sluice upload` against moto server (scripts/test.sh starts it): a folder whose large file
//! is interrupted part way (the process killed), resumed by the next run without sending the
//! parts S3 has again, then skipped entirely by a third run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice_aws::Clients;
use uuid::Uuid;

const PART: usize = 5 * 1024 * 1024;

fn upload_command(dir: &Path, state: &Path, bucket: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "upload",
            "--dataset",
            "orders",
            "--bucket",
            bucket,
            "--state",
        ])
        .arg(state)
        .args([
            "--multipart-threshold",
            "5",
            "--part-size",
            "5",
            "--concurrency",
            "1",
        ])
        .arg(dir)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env_remove("SLUICE_CONFIG");
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Pseudo-random bytes (xorshift), so parts differ.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A bucket of its own in moto, and a folder of files to upload with a state folder beside it.
struct Place {
    clients: Clients,
    bucket: String,
    root: PathBuf,
    dir: PathBuf,
    state: PathBuf,
}

impl Place {
    async fn new() -> Self {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
        );
        let clients = Clients::from_env().await;
        let id = Uuid::new_v4().simple().to_string();
        let bucket = format!("sluice-upload-{id}");
        clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let root = std::env::temp_dir().join(format!("sluice-upload-{id}"));
        let (dir, state) = (root.join("drop"), root.join("state"));
        std::fs::create_dir_all(&dir).unwrap();
        Place {
            clients,
            bucket,
            root,
            dir,
            state,
        }
    }

    /// Every key in the bucket, sorted.
    async fn keys(&self) -> Vec<String> {
        let listed = self
            .clients
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

/// Runs `command` until `enough` holds of the saved upload states, then kills it.
async fn kill_when(
    mut command: Command,
    state: &Path,
    enough: impl Fn(&serde_json::Value) -> bool,
) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the upload never got that far");
        let there = std::fs::read_dir(state)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .any(|v| enough(&v));
        if there {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload finished before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_and_a_finished_one_is_skipped() {
    let Place {
        clients,
        bucket,
        root,
        dir,
        state,
    } = Place::new().await;
    std::fs::create_dir_all(dir.join("more")).unwrap();
    for (i, name) in ["a.csv", "b.csv", "more/c.csv"].iter().enumerate() {
        std::fs::write(dir.join(name), format!("order_id\nA-{i}\n")).unwrap();
    }
    let big = noise(12 * PART + 1234, 7);
    std::fs::write(dir.join("more/z-big.csv"), &big).unwrap();

    // Killed once two parts of the big file got through (its state file says so: moto's
    // ListParts answer is one the SDK cannot read, so the state file is what resumes here).
    kill_when(upload_command(&dir, &state, &bucket), &state, |v| {
        v["parts"].as_array().is_some_and(|p| p.len() >= 2)
    })
    .await;

    // The next run resumes: the parts S3 has are not sent again.
    let resumed = upload_command(&dir, &state, &bucket).output().unwrap();
    let said = text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{said}");
    let already: usize = said
        .lines()
        .find_map(|l| {
            l.split(": ")
                .nth(1)?
                .strip_suffix(" of 13 part(s) were already there")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no resume line: {said}"));
    assert!(already >= 2, "{said}");
    assert!(
        said.contains("1 uploaded") && said.contains("3 skipped"),
        "{said}"
    );

    // Every file is in quarantine under the dataset's prefix, the big one whole.
    let listed = clients
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("incoming/orders/")),
        "{keys:?}"
    );
    let big_key = keys.iter().find(|k| k.ends_with("-z-big.csv")).unwrap();
    let object = clients
        .s3
        .get_object()
        .bucket(&bucket)
        .key(*big_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.metadata().unwrap()["sluice-source-name"],
        "z-big.csv"
    );
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert!(bytes[..] == big[..], "the big file arrived whole");

    // And a third run has nothing to do; with --json, a line per file and a summary last.
    let again = upload_command(&dir, &state, &bucket)
        .arg("--json")
        .output()
        .unwrap();
    let said = text(&again);
    assert_eq!(again.status.code(), Some(0), "{said}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "{said}");
    for file in &lines[..4] {
        assert_eq!(file["result"], "skipped", "{file}");
        assert!(keys.contains(&file["key"].as_str().unwrap()), "{file}");
    }
    let summary = &lines[4];
    assert_eq!(
        (
            &summary["uploaded"],
            &summary["skipped"],
            &summary["failed"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(4),
            &serde_json::json!(0)
        ),
        "{summary}"
    );

    let _ = std::fs::remove_dir_all(&root);
}

/// Marks every saved upload unfinished, as a run killed after sending (a PUT, or a
/// completion) and before saving that it was done would have left it.
fn forget_done(state: &Path, upload_id: Option<&str>) {
    for entry in std::fs::read_dir(state).unwrap() {
        let path = entry.unwrap().path();
        // Each content's state, not its lock.
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let mut saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        saved["done"] = serde_json::json!(false);
        if let Some(id) = upload_id {
            if saved["size"].as_u64().unwrap() > PART as u64 {
                saved["upload_id"] = serde_json::json!(id);
            }
        }
        std::fs::write(&path, serde_json::to_vec(&saved).unwrap()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_after_sending_is_found_not_sent_again_and_verify_checks_it() {
    let place = Place::new().await;
    let (clients, bucket, dir, state) = (&place.clients, &place.bucket, &place.dir, &place.state);
    std::fs::write(dir.join("small.csv"), "order_id\nA-1\n").unwrap();
    std::fs::write(dir.join("big.csv"), noise(2 * PART + 10, 3)).unwrap();
    let first = upload_command(dir, state, bucket).output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let before = place.keys().await;
    assert_eq!(before.len(), 2);

    // Killed after the small file's PUT and during the big one's completion (which went
    // through, then its upload is gone): the rerun finds both in S3 and sends nothing.
    forget_done(state, Some("an-upload-that-completed"));
    let rerun = upload_command(dir, state, bucket)
        .arg("--json")
        .output()
        .unwrap();
    let said = text(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{said}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&rerun.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for file in &lines[..2] {
        assert_eq!(file["result"], "found", "{file}");
        assert_eq!(file["bytes"], 0, "{file}");
    }
    assert_eq!(lines[2]["uploaded"], 0, "{said}");
    assert_eq!(lines[2]["bytes"], 0, "nothing was sent: {said}");
    assert_eq!(place.keys().await, before, "no file under a second key");

    // --verify: both there; one deleted, it says so and exits 1.
    let verify = || {
        upload_command(dir, state, bucket)
            .arg("--verify")
            .output()
            .unwrap()
    };
    let ok = verify();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("2 verified, 0 not"), "{}", text(&ok));
    let small = before.iter().find(|k| k.ends_with("-small.csv")).unwrap();
    clients
        .s3
        .delete_object()
        .bucket(bucket)
        .key(small)
        .send()
        .await
        .unwrap();
    let missing = verify();
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("MISSING from S3: "),
        "{}",
        text(&missing)
    );
    let _ = std::fs::remove_dir_all(&place.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_multipart_upload_expired_is_sent_again_under_its_key() {
    let place = Place::new().await;
    let (clients, bucket, dir, state) = (&place.clients, &place.bucket, &place.dir, &place.state);
    let big = noise(3 * PART + 99, 11);
    std::fs::write(dir.join("big.csv"), &big).unwrap();
    kill_when(upload_command(dir, state, bucket), state, |v| {
        v["parts"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    // A lifecycle rule aborts the unfinished upload before the operator runs it again.
    let saved: serde_json::Value = std::fs::read_dir(state)
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .find_map(|b| serde_json::from_slice(&b).ok())
        .unwrap();
    let (key, upload_id) = (
        saved["key"].as_str().unwrap(),
        saved["upload_id"].as_str().unwrap(),
    );
    clients
        .s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();

    let rerun = upload_command(dir, state, bucket).output().unwrap();
    let said = text(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{said}");
    assert!(said.contains("is gone from S3"), "{said}");
    assert!(said.contains("1 uploaded"), "{said}");
    assert_eq!(place.keys().await, vec![key.to_string()], "the same key");
    let object = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert!(bytes[..] == big[..], "the file arrived whole");
    let _ = std::fs::remove_dir_all(&place.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_the_same_upload_at_once_send_each_content_once() {
    let place = Place::new().await;
    let (bucket, dir, state) = (&place.bucket, &place.dir, &place.state);
    for i in 0..12 {
        std::fs::write(
            dir.join(format!("f{i:02}.csv")),
            format!("order_id\nA-{i}\n"),
        )
        .unwrap();
    }
    // A copy of one file under another name is the same content.
    std::fs::write(dir.join("f00-copy.csv"), "order_id\nA-0\n").unwrap();
    std::fs::write(dir.join("z-big.csv"), noise(2 * PART + 7, 5)).unwrap();
    // Two runs of the same command at once (an overlapping cron job), both started before
    // either can finish.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            upload_command(dir, state, bucket)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    let keys = place.keys().await;
    assert_eq!(keys.len(), 13, "each content once: {keys:?}");
    let _ = std::fs::remove_dir_all(&place.root);
}
