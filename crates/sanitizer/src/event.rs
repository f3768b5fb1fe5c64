//! The events the sanitizer is invoked with, read leniently: an S3 notification, an EventBridge
//! "Object Created" event (what the template's rule on the quarantine bucket sends), or either
//! of those as the bodies of an SQS event (the sanitize queue).
//!
//! Parsed into our own small types rather than `aws_lambda_events::S3Event`, which insists on
//! fields (`userIdentity`, `requestParameters`) that S3-compatible stand-ins leave out and that
//! Sluice does not use.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

pub use sluice_stages::sanitize::ObjectCreated;

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: Entity,
}

#[derive(Deserialize)]
struct Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
struct Object {
    key: String,
    #[serde(default)]
    size: i64,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// The created objects in an S3 notification. The `s3:TestEvent` S3 sends when a
/// notification is configured, and records other than `ObjectCreated:*`, give nothing.
pub fn objects_created(payload: Value) -> Result<Vec<ObjectCreated>, String> {
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let notification: Notification =
        serde_json::from_value(payload).map_err(|e| format!("not an S3 notification: {e}"))?;
    notification
        .records
        .into_iter()
        .filter(|r| r.event_name.starts_with("ObjectCreated:"))
        .map(|r| {
            Ok(ObjectCreated {
                key: decode_key(&r.s3.object.key)?,
                bucket: r.s3.bucket.name,
                size: r.s3.object.size,
                version_id: r
                    .s3
                    .object
                    .version_id
                    .filter(|v| !v.is_empty() && v != "null"),
            })
        })
        .collect()
}

/// What an invocation brought.
#[derive(Debug)]
pub enum Invocation {
    /// An S3 notification or EventBridge event handed to the function directly: a failure
    /// fails the invocation (Lambda retries the event).
    Direct(Vec<ObjectCreated>),
    /// SQS messages, each failing alone (partial batch failures).
    Queued(Vec<Queued>),
}

/// One SQS message and the objects its body names.
#[derive(Debug)]
pub struct Queued {
    pub message_id: String,
    pub receipt_handle: Option<String>,
    /// The queue's ARN (`eventSourceARN`).
    pub queue_arn: Option<String>,
    pub receive_count: u32,
    /// The objects, or why the body could not be read.
    pub objects: Result<Vec<ObjectCreated>, String>,
}

/// Reads any of the shapes the sanitizer takes (see the module doc).
pub fn invocation(payload: Value) -> Result<Invocation, String> {
    let from_sqs = payload["Records"]
        .as_array()
        .and_then(|r| r.first())
        .is_some_and(|r| r["eventSource"] == "aws:sqs");
    if !from_sqs {
        return objects_in(payload).map(Invocation::Direct);
    }
    let records = payload["Records"].as_array().cloned().unwrap_or_default();
    Ok(Invocation::Queued(
        records
            .into_iter()
            .map(|record| Queued {
                message_id: record["messageId"].as_str().unwrap_or_default().to_string(),
                receipt_handle: record["receiptHandle"].as_str().map(str::to_string),
                queue_arn: record["eventSourceARN"].as_str().map(str::to_string),
                receive_count: record["attributes"]["ApproximateReceiveCount"]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                objects: record["body"]
                    .as_str()
                    .ok_or_else(|| "the message has no body".to_string())
                    .and_then(|body| {
                        serde_json::from_str::<Value>(body)
                            .map_err(|e| format!("the message body is not JSON: {e}"))
                    })
                    .and_then(objects_in),
            })
            .collect(),
    ))
}

/// The created objects in an S3 notification or an EventBridge event.
fn objects_in(payload: Value) -> Result<Vec<ObjectCreated>, String> {
    if payload.get("detail-type").is_some() {
        return eventbridge_object(payload).map(|o| o.into_iter().collect());
    }
    objects_created(payload)
}

/// An EventBridge event from S3: "Object Created" gives its object (keys are not URL-encoded
/// there); any other detail type gives nothing.
fn eventbridge_object(event: Value) -> Result<Option<ObjectCreated>, String> {
    if event["detail-type"] != "Object Created" {
        return Ok(None);
    }
    let detail = &event["detail"];
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("not an S3 \"Object Created\" event: no {what}"))
    };
    Ok(Some(ObjectCreated {
        bucket: text(&detail["bucket"]["name"], "detail.bucket.name")?,
        key: text(&detail["object"]["key"], "detail.object.key")?,
        size: detail["object"]["size"].as_i64().unwrap_or(0),
        version_id: detail["object"]["version-id"]
            .as_str()
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_string),
    }))
}

/// Decodes an S3 event key: `+` is a space, then percent-escapes (so `%2B` is a real `+`).
pub fn decode_key(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("object key {raw:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_plus_as_space_and_percent_escapes() {
        assert_eq!(
            decode_key("incoming/orders/My+Orders+%28caf%C3%A9%29+%2B1.csv").unwrap(),
            "incoming/orders/My Orders (café) +1.csv"
        );
        assert_eq!(decode_key("a%2Fb").unwrap(), "a/b");
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn skips_the_test_event_and_other_event_kinds() {
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "q"});
        assert!(objects_created(test_event).unwrap().is_empty());
        let removed = json!({"Records": [{"eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "q"}, "object": {"key": "k"}}}]});
        assert!(objects_created(removed).unwrap().is_empty());
    }

    #[test]
    fn reads_records_without_the_optional_fields() {
        let sparse = json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "q"}, "object": {"key": "incoming/orders/a+b.csv"}}}]});
        let objects = objects_created(sparse).unwrap();
        assert_eq!(
            objects,
            [ObjectCreated {
                bucket: "q".into(),
                key: "incoming/orders/a b.csv".into(),
                size: 0,
                version_id: None,
            }]
        );
    }

    #[test]
    fn eventbridge_and_sqs_wrapped_events_give_the_same_objects() {
        let expected = ObjectCreated {
            bucket: "sluice-quarantine-example".into(),
            key: "incoming/orders/2026/11/23/Orders export (Nov 23) café.csv".into(),
            size: 1049,
            version_id: None,
        };
        for (file, count) in [
            (
                include_str!("../../../events/sanitizer-eventbridge.json"),
                0,
            ),
            (include_str!("../../../events/sanitizer-sqs-s3.json"), 1),
            (
                include_str!("../../../events/sanitizer-sqs-eventbridge.json"),
                1,
            ),
        ] {
            let event: Value = serde_json::from_str(file).unwrap();
            let objects = match invocation(event).unwrap() {
                Invocation::Direct(objects) => {
                    assert_eq!(count, 0);
                    objects
                }
                Invocation::Queued(messages) => {
                    assert_eq!(messages.len(), count);
                    assert!(!messages[0].message_id.is_empty());
                    messages.into_iter().next().unwrap().objects.unwrap()
                }
            };
            assert_eq!(objects, std::slice::from_ref(&expected));
        }
    }

    #[test]
    fn the_sample_event_parses() {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/sanitizer-s3-put.json")).unwrap();
        let objects = objects_created(event).unwrap();
        assert_eq!(
            objects[0].key,
            "incoming/orders/2026/11/23/Orders export (Nov 23) café.csv"
        );
    }
}
