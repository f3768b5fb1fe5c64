//! The dashboard's reach into AWS, against moto server and PostgreSQL (scripts/test.sh starts
//! both): a file's page links to its objects with presigned GETs that download them, and the
//! dead-letter page lists each message with its file while leaving every message in its queue.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{dead_letter_queue, get, json, sanitized, Schema};
use sluice_aws::{Clients, ObjectStore};
use sluice_core::layout;
use sluice_dashboard::{router, Dlqs, Links, State};
use sluice_db::NewFile;
use uuid::Uuid;

async fn moto() -> Clients {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
    );
    Clients::from_env().await
}

async fn bucket(clients: &Clients, name: &str) {
    clients
        .s3
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap();
}

async fn put(clients: &Clients, bucket: &str, key: &str, body: &str) {
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

/// The `href`s of a page that are presigned, as a browser reads them (HTML-unescaped).
fn signed_links(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.contains("X-Amz-Signature"))
        .map(|href| href.replace("&#38;", "&").replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn a_file_page_links_to_its_objects_and_each_link_downloads_it() {
    let clients = moto().await;
    let id = Uuid::new_v4().simple().to_string();
    let (quarantine, clean) = (format!("sluice-q-{id}"), format!("sluice-c-{id}"));
    bucket(&clients, &quarantine).await;
    bucket(&clients, &clean).await;
    let schema = Schema::create().await;
    let store = schema.store();
    let key = format!("incoming/orders/2026/12/07/{id}-orders export.csv");
    let file = store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: &quarantine,
            key: &key,
            etag: "e",
            size: 24,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id;
    sanitized(&store, file, serde_json::json!({"verdict": "accepted"})).await;
    put(&clients, &quarantine, &key, "order_id\nA-1\n=cmd()\n").await;
    put(
        &clients,
        &clean,
        "clean/orders/x.csv",
        "order_id\nA-1\n'=cmd()\n",
    )
    .await;
    put(
        &clients,
        &clean,
        &layout::sanitize_report_key(file),
        r#"{"verdict":"accepted"}"#,
    )
    .await;

    let state = State::new(schema.config.clone(), None, Duration::from_secs(3600)).with_links(
        Some(Links {
            objects: ObjectStore::new(clients.s3.clone()),
            clean_bucket: clean.clone(),
        }),
    );
    let app = router(Arc::new(state));
    let (status, page) = get(&app, &format!("/files/{file}")).await;
    assert!(status.is_success(), "{page}");
    for label in ["original upload", "clean CSV", "sanitize report"] {
        assert!(page.contains(label), "{label}: {page}");
    }
    assert!(
        !page.contains("transform report"),
        "no transform yet: {page}"
    );
    let links = signed_links(&page);
    assert_eq!(links.len(), 3, "{links:?}");
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    for link in &links {
        let answer = http.get(link).send().await.unwrap();
        assert!(answer.status().is_success(), "{link}: {}", answer.status());
        bodies.push(answer.text().await.unwrap());
    }
    assert_eq!(
        bodies,
        [
            "order_id\nA-1\n=cmd()\n",
            "order_id\nA-1\n'=cmd()\n",
            r#"{"verdict":"accepted"}"#
        ]
    );
    // The JSON of the file does not carry links (they are the page's, signed when shown).
    assert!(json(&app, &format!("/api/files/{file}")).await["source_key"] == key.as_str());

    // An upload the sanitizer rejected gets no link to its original (the bucket policy lets
    // only the sanitizer and the listener read it), and says why.
    let rejected = common::received(&store, "orders.xlsx").await;
    common::claim(
        &store,
        rejected,
        sluice_core::Stage::Sanitizer,
        sluice_core::FileStatus::Received,
        sluice_core::FileStatus::Sanitizing,
    )
    .await;
    store
        .finish_sanitize(
            rejected,
            sluice_core::FileStatus::Rejected,
            None,
            sluice_db::RowCounts::default(),
            Some("not a CSV file"),
            serde_json::json!({"verdict": "rejected"}),
        )
        .await
        .unwrap();
    let (_, page) = get(&app, &format!("/files/{rejected}")).await;
    assert!(page.contains("not downloadable"), "{page}");
    assert!(
        signed_links(&page)
            .iter()
            .all(|l| !l.contains("orders.xlsx")),
        "{page}"
    );

    // Without links configured, no object section at all.
    let (_, page) = get(&schema.app(), &format!("/files/{file}")).await;
    assert!(!page.contains("original upload"), "{page}");
    for b in [&quarantine, &clean] {
        let listed = clients.s3.list_objects_v2().bucket(b).send().await.unwrap();
        for o in listed.contents() {
            let _ = clients
                .s3
                .delete_object()
                .bucket(b)
                .key(o.key().unwrap())
                .send()
                .await;
        }
        let _ = clients.s3.delete_bucket().bucket(b).send().await;
    }
    schema.drop().await;
}

#[tokio::test]
async fn the_dead_letter_page_links_each_message_to_its_file_and_leaves_it_there() {
    let clients = moto().await;
    let id = Uuid::new_v4().simple().to_string();
    let (dead, source) = dead_letter_queue(&clients, &format!("dash-{id}")).await;
    let file = Uuid::new_v4();
    let bodies = [
        format!(
            r#"{{"v":1,"file_id":"{file}","dataset":"orders","batch_id":"{file}-000002","seq":2,"total":2,"records":[]}}"#
        ),
        r#"{"detail-type":"Object Created","detail":{"bucket":{"name":"q"},"object":{"key":"incoming/orders/late.csv"}}}"#.to_string(),
    ];
    for body in &bodies {
        clients
            .sqs
            .send_message()
            .queue_url(&dead)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    clients
        .sqs
        .send_message()
        .queue_url(&source)
        .message_body(&bodies[0])
        .send()
        .await
        .unwrap();

    let schema = Schema::create().await;
    let dlqs = Dlqs {
        queues: clients.queues(),
        urls: vec![dead.clone(), source.clone()],
    };
    let app = router(Arc::new(State::new(
        schema.config.clone(),
        Some(dlqs),
        Duration::from_secs(3600),
    )));
    let (status, page) = get(&app, "/dlq").await;
    assert!(status.is_success(), "{page}");
    assert!(page.contains(&format!(r#"href="/files/{file}""#)), "{page}");
    assert!(page.contains(&format!("{file}-000002")), "{page}");
    assert!(
        page.contains(r#"href="/files?q=incoming%2Forders%2Flate.csv""#),
        "{page}"
    );
    assert!(page.contains("not a dead-letter queue"), "{page}");
    let data = json(&app, "/api/dlq").await;
    let queues = data["queues"].as_array().unwrap();
    assert_eq!(queues[0]["messages"].as_array().unwrap().len(), 2, "{data}");
    assert_eq!(queues[1]["messages"].as_array().unwrap().len(), 0, "{data}");

    // Every message is where it was, and visible: two looks later, still two in the DLQ; the
    // source queue's message was never received.
    assert_eq!(
        sluice_aws::dlq::Queues::new(clients.sqs.clone())
            .depth(&dead)
            .await
            .unwrap(),
        2
    );
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&source)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = received.messages()[0].attributes().unwrap()
        [&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount]
        .clone();
    assert_eq!(
        count, "1",
        "the dashboard never received the source's message"
    );

    // The overview links to the page.
    let (_, overview) = get(&app, "/").await;
    assert!(overview.contains(r#"href="/dlq""#), "{overview}");
    for url in [&dead, &source] {
        let _ = clients.sqs.delete_queue().queue_url(url).send().await;
    }
    schema.drop().await;
}
