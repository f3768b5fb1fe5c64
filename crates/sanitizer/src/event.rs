//! The S3 notification the sanitizer is invoked with, read leniently.
//!
//! Parsed into our own small types rather than `aws_lambda_events::S3Event`, which insists on
//! fields (`userIdentity`, `requestParameters`) that S3-compatible stand-ins leave out and that
//! Sluice does not use.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// One object that was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded key (S3 sends it URL-encoded with `+` for space).
    pub key: String,
    pub size: i64,
    pub version_id: Option<String>,
}

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
