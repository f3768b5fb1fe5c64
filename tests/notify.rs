//! Final-status notifications end to end: files reach `delivered`, `rejected` and `failed` in
//! PostgreSQL, the outstanding notifications are published to an EventBridge bus in moto
//! server, and a rule on the bus delivers them to an SQS queue, where they are read back.
//! Two publishers at once send each event once.

use std::collections::HashMap;

use aws_sdk_eventbridge::types::Target;
use serde_json::{json, Value};
use sluice_aws::EventBus;
use sluice_core::{FileStatus, Stage};
use sluice_db::{NewFile, RowCounts, Store};
use sluice_e2e::{unique, World};
use sluice_stages::ports::{flush, Notifier};
use uuid::Uuid;

async fn received(w: &World, store: &Store, name: &str, who: Option<&str>) -> Uuid {
    store
        .register(&NewFile {
            dataset: "orders",
            site: None,
            bucket: &w.quarantine,
            key: &format!("incoming/orders/2026/11/24/{}-{name}", Uuid::new_v4()),
            etag: "e",
            size: 10,
            replay_of: None,
            uploaded_by: who,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id
}

/// A bus whose every Sluice event lands on a new queue; returns (bus, queue url).
async fn bus_to_queue(w: &World) -> (String, String) {
    let events = &w.clients.events;
    let bus = unique("sluice-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue = w.new_queue("sluice-notices").await;
    let arn = sluice_aws::dlq::Queues::new(w.clients.sqs.clone())
        .queue_arn(&queue)
        .await
        .unwrap();
    events
        .put_rule()
        .name("file-status")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["sluice"],"detail-type":["Sluice File Status Changed"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("file-status")
        .event_bus_name(&bus)
        .targets(Target::builder().id("queue").arn(arn).build().unwrap())
        .send()
        .await
        .unwrap();
    (bus, queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_final_status_is_published_once_with_who_and_why() {
    let w = World::new().await;
    let store = w.store().await;
    let (bus, queue) = bus_to_queue(&w).await;

    let rejected = received(&w, &store, "orders.xlsx", Some("ana@example.com")).await;
    store
        .advance(
            rejected,
            Stage::Sanitizer,
            FileStatus::Sanitizing,
            json!({}),
        )
        .await
        .unwrap();
    store
        .finish_sanitize(
            rejected,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            Some("not a CSV file"),
            json!({}),
        )
        .await
        .unwrap();
    let failed = received(&w, &store, "orders-pm.csv", None).await;
    store
        .fail(failed, Stage::Transformer, "too many unmappable rows")
        .await
        .unwrap();
    // A late duplicate failure changes nothing and announces nothing more.
    store
        .fail(failed, Stage::Forwarder, "late duplicate")
        .await
        .unwrap();
    let unfinished = received(&w, &store, "orders-am.csv", None).await;

    // Two publishers at the same moment (two Lambdas finishing together).
    let (a, b) = (
        EventBus::new(w.clients.events.clone(), &bus),
        EventBus::new(w.clients.events.clone(), &bus),
    );
    let (one, two) = tokio::join!(flush(&store, &a, 10, 50), flush(&store, &b, 10, 50));
    assert_eq!(one.published + two.published, 2, "{one:?} {two:?}");
    assert_eq!(one.failed + two.failed, 0);
    // Nothing is left to publish.
    assert_eq!(flush(&store, &a, 10, 50).await.published, 0);

    let events = w.drain(&queue).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let by_file: HashMap<String, &Value> = events
        .iter()
        .map(|e| (e["detail"]["file_id"].as_str().unwrap().to_string(), e))
        .collect();
    let r = by_file[&rejected.to_string()];
    assert_eq!(r["source"], "sluice");
    assert_eq!(r["detail-type"], "Sluice File Status Changed");
    assert_eq!(r["detail"]["event_id"], format!("{rejected}/rejected"));
    assert_eq!(r["detail"]["status"], "rejected");
    assert_eq!(r["detail"]["dataset"], "orders");
    assert_eq!(r["detail"]["name"], "orders.xlsx");
    assert_eq!(r["detail"]["reason"], "not a CSV file");
    assert_eq!(r["detail"]["uploaded_by"], "ana@example.com");
    let f = by_file[&failed.to_string()];
    assert_eq!(f["detail"]["status"], "failed");
    assert_eq!(f["detail"]["failed_stage"], "transformer");
    assert_eq!(f["detail"]["reason"], "too many unmappable rows");
    assert!(!by_file.contains_key(&unfinished.to_string()));

    let _ = w.clients.sqs.delete_queue().queue_url(&queue).send().await;
    w.clean_up().await;
}

/// A notifier that cannot publish (EventBridge down, a bus refusing the events).
struct Down;

impl Notifier for Down {
    async fn publish(&self, notices: &[sluice_stages::ports::FileNotice]) -> Vec<(String, String)> {
        notices
            .iter()
            .map(|n| (n.event_id.clone(), "EventBridge unreachable".to_string()))
            .collect()
    }
}

/// A notification that could not be published stays outstanding, with the reason, and goes
/// out with the next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_cannot_be_published_waits_and_goes_later() {
    let w = World::new().await;
    let store = w.store().await;
    let id = received(&w, &store, "a.csv", None).await;
    store.fail(id, Stage::Sanitizer, "broken").await.unwrap();

    let down = flush(&store, &Down, 10, 50).await;
    assert_eq!((down.published, down.failed), (0, 1));
    let client = w.db_config().connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT published_at IS NULL, error, attempts FROM notification WHERE file_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("EventBridge unreachable")
    );
    assert_eq!(row.get::<_, i32>(2), 1);

    let (bus, queue) = bus_to_queue(&w).await;
    let good = EventBus::new(w.clients.events.clone(), &bus);
    assert_eq!(flush(&store, &good, 10, 50).await.published, 1);
    let events = w.drain(&queue).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["event_id"], format!("{id}/failed"));
    assert!(store
        .take_notices(10, std::time::Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    let _ = w.clients.sqs.delete_queue().queue_url(&queue).send().await;
    w.clean_up().await;
}
