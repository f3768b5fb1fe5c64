//! `sluice dlq` against moto server and PostgreSQL (scripts/test.sh starts both): a source
//! queue whose redrive policy names a dead-letter queue holding messages of every kind, some of
//! which would do no good back on their queue.

use std::process::{Command, Output};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use sluice_aws::Clients;
use sluice_core::Stage;
use sluice_db::{migrate, Db, DbConfig, Store};
use sluice_stages::ports::NewFile;
use uuid::Uuid;

fn dlq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dlq")
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// A fresh schema with the migrations applied; its store and the URL the command is given.
async fn schema(name: &str) -> (Store, String) {
    let admin = DbConfig::parse(&database_url(), None).unwrap();
    admin
        .connect()
        .await
        .expect("PostgreSQL is reachable (scripts/test.sh starts it)")
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let db = Db::new(admin.with_schema(name));
    migrate(&db).await.unwrap();
    let url = format!(
        "{}?sslmode=disable&options=-c%20search_path%3D{name}",
        database_url().split('?').next().unwrap()
    );
    (Store::new(db), url)
}

async fn drop_schema(name: &str) {
    DbConfig::parse(&database_url(), None)
        .unwrap()
        .connect()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .unwrap();
}

async fn file(store: &Store, key: &str) -> Uuid {
    store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: "quarantine",
            key,
            etag: "e",
            size: 1,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id
}

fn batch(file: Uuid, seq: u32, records: &str) -> String {
    format!(
        r#"{{"v":1,"file_id":"{file}","dataset":"orders","batch_id":"{file}-{seq:06}","seq":{seq},"total":3,"count":1,{records}}}"#
    )
}

fn json_of(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn queue(clients: &Clients, name: &str) -> String {
    clients
        .sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

async fn count(clients: &Clients, url: &str) -> usize {
    sluice_aws::dlq::Queues::new(clients.sqs.clone())
        .depth(url)
        .await
        .unwrap() as usize
}

async fn dead_letter_queue(clients: &Clients, suffix: &str) -> (String, String) {
    let dead = queue(clients, &format!("sluice-forward-dlq-{suffix}")).await;
    let source = queue(clients, &format!("sluice-forward-{suffix}")).await;
    let dead_arn = sluice_aws::dlq::Queues::new(clients.sqs.clone())
        .queue_arn(&dead)
        .await
        .unwrap();
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(&source)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .unwrap();
    (dead, source)
}

async fn send(clients: &Clients, url: &str, bodies: &[String]) {
    for body in bodies {
        clients
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
}

async fn receive_all(clients: &Clients, url: &str, n: usize) -> Vec<String> {
    let mut back = Vec::new();
    while back.len() < n {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        back.extend(
            received
                .messages()
                .iter()
                .map(|m| m.body().unwrap().to_string()),
        );
    }
    back.sort();
    back
}

async fn delete_queues(clients: &Clients, urls: &[&String]) {
    for url in urls {
        clients
            .sqs
            .delete_queue()
            .queue_url(*url)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_is_listed_shown_and_redriven_without_losing_a_message() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
    );
    let clients = Clients::from_env().await;
    let suffix = Uuid::new_v4().simple().to_string();
    let (dead, source) = dead_letter_queue(&clients, &suffix).await;
    let file = Uuid::new_v4();
    let bodies = [
        format!(r#"{{"v":1,"file_id":"{file}","dataset":"orders","batch_id":"{file}-000002","seq":2,"total":3,"count":1,"records":[{{"orderId":"A"}}]}}"#),
        format!(r#"{{"v":1,"file_id":"{file}","dataset":"orders","clean_bucket":"c","clean_key":"clean/orders/{file}.csv","rows":1,"columns":["a"],"date_range":null}}"#),
        r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"q"},"object":{"key":"incoming/orders/x.csv","size":1}}}"#.to_string(),
    ];
    send(&clients, &dead, &bodies).await;

    // Listing leaves every message where it is, however often it is done.
    let name = format!("sluice-forward-dlq-{suffix}");
    for _ in 0..2 {
        let listed = json_of(&dlq(&["list", &name, "--json"]));
        let mut kinds: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["file sanitized", "object created", "record batch"]);
        let batch = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["kind"] == "record batch")
            .unwrap();
        assert_eq!(batch["file_id"], file.to_string());
        assert_eq!(batch["what"], format!("{file}-000002"));
        assert_eq!(count(&clients, &dead).await, 3);
    }
    let table = String::from_utf8(dlq(&["list", &dead]).stdout).unwrap();
    assert!(table.contains("3 message(s), left in the queue"), "{table}");

    // One message in full.
    let listed = json_of(&dlq(&["list", &dead, "--json"]));
    let id = listed[0]["message_id"].as_str().unwrap();
    let shown = json_of(&dlq(&["show", &dead, id, "--json"]));
    assert_eq!(shown["message_id"], id);
    assert!(shown["body"].is_object());
    let missing = dlq(&["show", &dead, "no-such-message"]);
    assert_eq!(missing.status.code(), Some(1));

    // Back to the queue whose redrive policy names this one (found, not given).
    let moved = dlq(&["redrive", &dead, "--rate", "50"]);
    assert_eq!(moved.status.code(), Some(0), "{moved:?}");
    assert_eq!(count(&clients, &dead).await, 0);
    assert_eq!(count(&clients, &source).await, 3);
    let back = receive_all(&clients, &source, 3).await;
    let mut sent = bodies.to_vec();
    sent.sort();
    assert_eq!(back, sent, "the same bodies, none lost");

    // A queue that does not exist is an error that names it.
    let gone = dlq(&["list", "sluice-no-such-queue"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("sluice-no-such-queue"));
    delete_queues(&clients, &[&dead, &source]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_leaves_behind_what_would_do_no_good_and_says_what_to_run() {
    let clients = Clients::from_env().await;
    let suffix = Uuid::new_v4().simple().to_string();
    let (dead, source) = dead_letter_queue(&clients, &suffix).await;
    let name = format!("sluice_dlq_{suffix}");
    let (store, url) = schema(&name).await;
    let bucket = format!("sluice-dlq-claims-{suffix}");
    clients
        .s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    clients
        .s3
        .put_object()
        .bucket(&bucket)
        .key("batches/kept.json")
        .body(br#"[{"orderId":"A"}]"#.to_vec().into())
        .send()
        .await
        .unwrap();
    let live = file(&store, "incoming/orders/live.csv").await;
    let failed = file(&store, "incoming/orders/failed.csv").await;
    store
        .fail(failed, Stage::Forwarder, "HTTP 422")
        .await
        .unwrap();
    let unknown = Uuid::new_v4();
    let claim = |key: &str| format!(r#""s3":{{"bucket":"{bucket}","key":"{key}"}}"#);
    let moved = vec![
        batch(live, 1, r#""records":[{"orderId":"A"}]"#),
        batch(live, 2, &claim("batches/kept.json")),
        format!(r#"{{"v":1,"file_id":"{live}","dataset":"orders","clean_bucket":"c","clean_key":"clean/orders/{live}.csv","rows":1,"columns":["a"],"date_range":null}}"#),
        r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"q"},"object":{"key":"incoming/orders/x.csv","size":1}}}"#.to_string(),
    ];
    let kept = vec![
        batch(live, 3, &claim("batches/expired.json")),
        batch(failed, 1, r#""records":[{"orderId":"B"}]"#),
        format!(
            r#"{{"v":1,"file_id":"{failed}","dataset":"orders","clean_bucket":"c","clean_key":"clean/orders/{failed}.csv","rows":1,"columns":["a"],"date_range":null}}"#
        ),
        batch(unknown, 1, r#""records":[]"#),
        "this is not JSON".to_string(),
    ];
    send(&clients, &dead, &moved).await;
    send(&clients, &dead, &kept).await;

    let run = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dlq", "redrive", &dead, "--rate", "50"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).to_string();
    assert_eq!(run.status.code(), Some(1), "messages were left: {run:?}");
    assert!(
        said.contains("moved 4 message(s)") && said.contains("5 left in the dead-letter queue"),
        "{said}"
    );
    for expected in [
        format!("claim check s3://{bucket}/batches/expired.json is gone"),
        format!("file {failed} is failed: its batches are not posted; `sluice replay {failed} --from forward`"),
        format!("file {failed} is failed: it is not transformed again; `sluice replay {failed} --from transform`"),
        format!("file {unknown} is not in the status store"),
        "not a message Sluice reads".to_string(),
    ] {
        assert!(said.contains(&expected), "{expected} in {said}");
    }

    // What moved is on the source queue; what was kept is back in sight at once.
    let mut expected = moved.clone();
    expected.sort();
    assert_eq!(receive_all(&clients, &source, 4).await, expected);
    let listed = json_of(&dlq(&["list", &dead, "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");

    // Without the database only what S3 and the bodies show is looked at.
    let again = dlq(&["redrive", &dead, "--rate", "50"]);
    let said = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(
        said.contains("moved 3 message(s)")
            && said.contains("2 left")
            && said.contains("statuses were not looked at"),
        "{said}"
    );

    delete_queues(&clients, &[&dead, &source]).await;
    for key in ["batches/kept.json"] {
        clients
            .s3
            .delete_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    clients
        .s3
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    drop_schema(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_receives_each_message_once_and_a_live_queue_is_refused_unless_forced() {
    let clients = Clients::from_env().await;
    let suffix = Uuid::new_v4().simple().to_string();
    let (dead, source) = dead_letter_queue(&clients, &suffix).await;
    let plain = queue(&clients, &format!("sluice-plain-{suffix}")).await;
    let bodies: Vec<String> = (0..15).map(|i| format!("{{\"n\":{i}}}")).collect();
    send(&clients, &dead, &bodies).await;
    send(&clients, &source, &bodies[..3]).await;

    // One look, one receive per message (SQS has no other way to read one), all found.
    let listed = json_of(&dlq(&["list", &dead, "--json"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 15);
    assert!(
        listed.iter().all(|m| m["receive_count"] == 1),
        "{listed:#?}"
    );
    let again = json_of(&dlq(&["list", &dead, "--json"]));
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["receive_count"] == 2),
        "each look one receive: {again:#}"
    );

    // A queue with a dead-letter queue of its own: refused, nothing received.
    let refused = dlq(&["list", &source]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a dead-letter queue"), "{stderr}");
    assert!(stderr.contains("after 5 receives"), "{stderr}");
    assert!(stderr.contains("fix:"), "{stderr}");
    let refused = dlq(&["show", &plain, "x"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no queue's redrive policy names it"),
        "{stderr}"
    );
    // Forced, it looks.
    let forced = json_of(&dlq(&["list", &source, "--json", "--force"]));
    let forced = forced.as_array().unwrap();
    assert_eq!(forced.len(), 3);
    assert!(
        forced.iter().all(|m| m["receive_count"] == 1),
        "the refusals received nothing: {forced:#?}"
    );
    delete_queues(&clients, &[&dead, &source, &plain]).await;
}
