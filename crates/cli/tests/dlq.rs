//! `sluice dlq` against moto server (scripts/test.sh starts it): a source queue whose
//! redrive policy names a dead-letter queue holding three messages of different kinds.

use std::process::{Command, Output};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use sluice_aws::Clients;
use uuid::Uuid;

fn dlq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dlq")
        .args(args)
        .output()
        .unwrap()
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
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attributes.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_is_listed_shown_and_redriven_without_losing_a_message() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL must point at moto server: run the tests with scripts/test.sh"
    );
    let clients = Clients::from_env().await;
    let suffix = Uuid::new_v4().simple().to_string();
    let dead = queue(&clients, &format!("sluice-forward-dlq-{suffix}")).await;
    let source = queue(&clients, &format!("sluice-forward-{suffix}")).await;
    let dead_arn = sluice_aws::dlq::queue_arn(&clients.sqs, &dead)
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
    let file = Uuid::new_v4();
    let bodies = [
        format!(r#"{{"v":1,"file_id":"{file}","dataset":"orders","batch_id":"{file}-000002","seq":2,"total":3,"count":1,"records":[{{"orderId":"A"}}]}}"#),
        format!(r#"{{"v":1,"file_id":"{file}","dataset":"orders","clean_bucket":"c","clean_key":"clean/orders/{file}.csv","rows":1,"columns":["a"],"date_range":null}}"#),
        r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"q"},"object":{"key":"incoming/orders/x.csv","size":1}}}"#.to_string(),
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
    let mut back = Vec::new();
    while back.len() < 3 {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(&source)
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
    let mut sent = bodies.to_vec();
    sent.sort();
    assert_eq!(back, sent, "the same bodies, none lost");

    // A queue that does not exist is an error that names it.
    let gone = dlq(&["list", "sluice-no-such-queue"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("sluice-no-such-queue"));
    for url in [&dead, &source] {
        clients
            .sqs
            .delete_queue()
            .queue_url(url)
            .send()
            .await
            .unwrap();
    }
}
