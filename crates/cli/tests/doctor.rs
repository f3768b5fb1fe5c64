//! `sluice doctor` on a good and on a broken stack, in moto server and PostgreSQL
//! (scripts/test.sh starts both): a missing queue, a queue without a dead-letter queue, a
//! bucket without EventBridge notifications, migrations behind.

use std::process::{Command, Output};

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, EventBridgeConfiguration,
    ExpirationStatus, LifecycleRule, LifecycleRuleFilter, NotificationConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use sluice_aws::Clients;
use sluice_db::{migrate, Db, DbConfig};
use uuid::Uuid;

const CONFIG: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
"#;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// A schema of its own (migrated or not); the URL that reaches it. Dropped at the end.
async fn schema(migrated: bool) -> (String, String) {
    let name = format!("sluice_doctor_{}", Uuid::new_v4().simple());
    let admin = DbConfig::parse(&database_url(), None).unwrap();
    admin
        .connect()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    if migrated {
        migrate(&Db::new(admin.with_schema(&name))).await.unwrap();
    }
    let base = database_url().split('?').next().unwrap().to_string();
    (
        format!("{base}?sslmode=disable&options=-c%20search_path%3D{name}"),
        name,
    )
}

async fn drop_schema(name: &str) {
    let admin = DbConfig::parse(&database_url(), None).unwrap();
    let _ = admin
        .connect()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await;
}

async fn bucket(clients: &Clients, name: &str, eventbridge: bool) {
    let s3 = &clients.s3;
    s3.create_bucket().bucket(name).send().await.unwrap();
    let rule = LifecycleRule::builder()
        .id("abort")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(1)
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    if eventbridge {
        s3.put_bucket_notification_configuration()
            .bucket(name)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

async fn queue(clients: &Clients, name: &str, visibility: u32, dlq: Option<&str>) -> String {
    let sqs = &clients.sqs;
    let mut create = sqs.create_queue().queue_name(name).attributes(
        QueueAttributeName::VisibilityTimeout,
        visibility.to_string(),
    );
    if let Some(dlq) = dlq {
        let arn = sluice_aws::dlq::Queues::new(sqs.clone())
            .queue_arn(dlq)
            .await
            .unwrap();
        create = create.attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#),
        );
    }
    create
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

fn doctor(env: &[(&str, &str)], config: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(["doctor", "--json", "--config"]).arg(config);
    for var in [
        "SLUICE_DROP_BUCKET",
        "SLUICE_QUARANTINE_BUCKET",
        "SLUICE_CLEAN_BUCKET",
        "SLUICE_SANITIZE_QUEUE_URL",
        "SLUICE_TRANSFORM_QUEUE_URL",
        "SLUICE_FORWARD_QUEUE_URL",
        "DATABASE_URL",
        "DATABASE_SECRET_ARN",
        "SLUICE_DB_CA_FILE",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

/// (check, result) pairs of a run.
fn results(output: &Output) -> Vec<(String, String)> {
    let list: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_stack_and_names_what_is_wrong_with_a_broken_one() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "run the tests with scripts/test.sh (moto)"
    );
    let clients = Clients::from_env().await;
    let id = Uuid::new_v4().simple().to_string();
    let config = std::env::temp_dir().join(format!("sluice-doctor-{id}.toml"));
    std::fs::write(&config, CONFIG).unwrap();

    // A good stack. (moto accepts EventBridge notifications on a bucket but does not keep
    // them, so the quarantine bucket's events check is skipped against it: the good stack
    // names a drop and a clean bucket, which need none.)
    let (drop, clean) = (format!("d-{id}"), format!("c-{id}"));
    bucket(&clients, &drop, true).await;
    bucket(&clients, &clean, false).await;
    let dead = queue(&clients, &format!("t-dlq-{id}"), 60, None).await;
    let transform = queue(&clients, &format!("t-{id}"), 5400, Some(&dead)).await;
    let (db_url, good_schema) = schema(true).await;
    let good = doctor(
        &[
            ("SLUICE_DROP_BUCKET", &drop),
            ("SLUICE_CLEAN_BUCKET", &clean),
            ("SLUICE_TRANSFORM_QUEUE_URL", &transform),
            ("DATABASE_URL", &db_url),
        ],
        &config,
    );
    let checks = results(&good);
    assert_eq!(good.status.code(), Some(0), "{checks:?}");
    assert!(checks.iter().all(|(_, r)| r != "fail"), "{checks:?}");
    for name in ["migrations", "database", "credentials"] {
        assert!(
            checks.contains(&(name.into(), "pass".into())),
            "{name}: {checks:?}"
        );
    }
    assert!(checks
        .iter()
        .any(|(c, r)| c.ends_with("dead-letter queue") && r == "pass"));

    // A broken one: no EventBridge on quarantine, a queue that is not there, one without a
    // dead-letter queue and too short a visibility, migrations behind.
    let bare = format!("bare-{id}");
    bucket(&clients, &bare, false).await;
    let lonely = queue(&clients, &format!("f-{id}"), 30, None).await;
    let missing = transform.replace(&format!("t-{id}"), &format!("gone-{id}"));
    let (empty_url, empty_schema) = schema(false).await;
    let broken = doctor(
        &[
            ("SLUICE_QUARANTINE_BUCKET", &bare),
            ("SLUICE_TRANSFORM_QUEUE_URL", &missing),
            ("SLUICE_FORWARD_QUEUE_URL", &lonely),
            ("DATABASE_URL", &empty_url),
        ],
        &config,
    );
    let checks = results(&broken);
    assert_eq!(broken.status.code(), Some(1), "{checks:?}");
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r == "fail")
        .map(|(c, _)| c.as_str())
        .collect();
    // On a stand-in (moto), the quarantine bucket's EventBridge check cannot pass whatever is
    // done, so it is skipped with the reason rather than failed, and the run says where it is.
    assert!(
        checks
            .iter()
            .any(|(c, r)| c.starts_with("quarantine bucket")
                && c.ends_with("events")
                && r == "skip"),
        "{checks:?}"
    );
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(said.contains("not AWS: a local stand-in"), "{said}");
    assert!(
        failed.iter().any(|c| c.starts_with("transform queue")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|c| c.starts_with("forward queue") && c.ends_with("dead-letter queue")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|c| c.starts_with("forward queue") && c.ends_with("visibility")),
        "{failed:?}"
    );
    assert!(failed.contains(&"migrations"), "{failed:?}");
    // The text form says what to do.
    let text = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["doctor", "--config"])
        .arg(&config)
        .env("SLUICE_FORWARD_QUEUE_URL", &lonely)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("FAIL  forward queue") && text.contains("fix: set a RedrivePolicy"),
        "{text}"
    );

    drop_schema(&good_schema).await;
    drop_schema(&empty_schema).await;
    let _ = std::fs::remove_file(&config);
}
