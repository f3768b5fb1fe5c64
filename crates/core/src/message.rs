//! SQS message bodies between the stages: versioned JSON, `"v": 1`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The message format version, written as `"v": 1` and refused when it is anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            1 => Ok(V1),
            v => Err(serde::de::Error::custom(format!(
                "message version {v} is not supported (this build reads version 1)"
            ))),
        }
    }
}

/// Inclusive range of dates (`YYYY-MM-DD`) a file's records are filtered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub start: Option<String>,
    pub end: Option<String>,
}

impl DateRange {
    /// The range between two dates, either open; `None` when neither is given.
    pub fn between(
        start: Option<chrono::NaiveDate>,
        end: Option<chrono::NaiveDate>,
    ) -> Option<Self> {
        (start.is_some() || end.is_some()).then(|| DateRange {
            start: start.map(|d| d.format("%Y-%m-%d").to_string()),
            end: end.map(|d| d.format("%Y-%m-%d").to_string()),
        })
    }
}

/// "File sanitized": the sanitizer tells the transformer a clean file is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSanitized {
    pub v: V1,
    pub file_id: Uuid,
    pub dataset: String,
    pub clean_bucket: String,
    pub clean_key: String,
    /// Data rows in the clean file.
    pub rows: u64,
    /// Clean column names, in file order.
    pub columns: Vec<String>,
    /// Date-range filter to apply, if the upload asked for one.
    pub date_range: Option<DateRange>,
    /// Set by the listener's re-drive of a file stuck after its transform (`transformed` or
    /// `delivering`): the transformer then re-sends the batches with no 2xx on record instead
    /// of skipping the file as already transformed. Left out of the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
    /// A full replay: for a dataset with a record key, every record is sent, whatever was
    /// delivered before (for an API that lost data). Set from the quarantine object's
    /// `sluice-full: true` metadata. Left out of the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// The most of a sanitize report a "file sanitized" is rebuilt from: reports list at most
/// a few hundred rejects, so a larger object is not a report.
pub const MAX_SANITIZE_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// What a rebuilt "file sanitized" takes from the file's sanitize report: the clean file's
/// columns and row count. The listener's re-drive and `sluice replay` both read it here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CleanFile {
    /// Clean column names, in file order (the report's `headers`).
    #[serde(rename = "headers")]
    pub columns: Vec<String>,
    /// Data rows in the clean file (the report's `rows_out`).
    #[serde(rename = "rows_out")]
    pub rows: u64,
}

impl CleanFile {
    /// Reads the report's JSON; `key` names it in the error.
    pub fn from_report(report: &[u8], key: &str) -> Result<Self, String> {
        serde_json::from_slice(report)
            .map_err(|e| format!("sanitize report {key} cannot be read: {e}"))
    }
}

impl FileSanitized {
    /// "File sanitized" made again for a file the sanitizer finished earlier: by the
    /// listener's re-drive (`resend` set when the file is past its transform) and by
    /// `sluice replay` (a new run of an earlier clean file).
    pub fn rebuilt(
        file_id: Uuid,
        dataset: &str,
        clean_bucket: &str,
        clean: CleanFile,
        options: crate::plan::RunOptions,
        resend: bool,
    ) -> Self {
        Self {
            v: V1,
            file_id,
            dataset: dataset.to_string(),
            clean_bucket: clean_bucket.to_string(),
            clean_key: crate::layout::clean_key(dataset, file_id),
            rows: clean.rows,
            columns: clean.columns,
            date_range: options.date_range,
            resend,
            full: options.full,
        }
    }
}

/// Where a record batch's records are: in the message, or (when they would pass SQS's
/// 256 KiB limit) in an S3 object holding the same JSON array (a claim check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchBody {
    Records(Vec<serde_json::Value>),
    S3 { bucket: String, key: String },
}

/// "Record batch": the transformer gives the forwarder one batch of a file's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub v: V1,
    pub file_id: Uuid,
    pub dataset: String,
    /// `<file id>-<sequence>`: the same batch always gets the same id, so a re-run of the
    /// transformer re-sends batches the forwarder recognizes.
    pub batch_id: String,
    /// 1-based position of this batch in the file.
    pub seq: u32,
    /// How many batches the file has.
    pub total: u32,
    /// Records in this batch.
    pub count: u32,
    #[serde(flatten)]
    pub body: BatchBody,
}

/// A "record batch" as the forwarder reads it: the records stay raw JSON text borrowed from
/// the message, so they are POSTed as they came without being parsed into values and
/// written out again.
#[derive(Debug)]
pub struct RecordBatchRef<'a> {
    pub file_id: Uuid,
    pub dataset: String,
    pub batch_id: String,
    pub seq: u32,
    pub total: u32,
    pub count: u32,
    pub records: RecordsAt<'a>,
}

/// Where a claim-checked batch's records are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct S3Pointer {
    pub bucket: String,
    pub key: String,
}

/// Where a [`RecordBatchRef`]'s records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsAt<'a> {
    /// In the message: the JSON array's text.
    Inline(&'a str),
    /// In S3 (a claim check).
    S3(S3Pointer),
}

/// The message as it is on the wire, before `records`/`s3` become one [`RecordsAt`].
#[derive(Deserialize)]
struct WireBatch<'a> {
    /// Only read to refuse other versions.
    #[serde(rename = "v")]
    _version: V1,
    file_id: Uuid,
    dataset: String,
    batch_id: String,
    seq: u32,
    total: u32,
    count: u32,
    #[serde(borrow, default)]
    records: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    s3: Option<S3Pointer>,
}

impl RecordBatchRef<'_> {
    /// Reads a message body; refuses one that has both or neither of `records` and `s3`, or
    /// whose `records` is not an array.
    pub fn parse(body: &str) -> Result<RecordBatchRef<'_>, String> {
        let not_a_batch = |why: String| format!("not a \"record batch\" message: {why}");
        let wire: WireBatch<'_> =
            serde_json::from_str(body).map_err(|e| not_a_batch(e.to_string()))?;
        let records = match (wire.records, wire.s3) {
            (Some(raw), None) if raw.get().starts_with('[') => RecordsAt::Inline(raw.get()),
            (Some(_), None) => return Err(not_a_batch("`records` is not an array".into())),
            (None, Some(pointer)) => RecordsAt::S3(pointer),
            _ => {
                return Err(not_a_batch(
                    "it needs exactly one of `records` and `s3`".into(),
                ))
            }
        };
        Ok(RecordBatchRef {
            file_id: wire.file_id,
            dataset: wire.dataset,
            batch_id: wire.batch_id,
            seq: wire.seq,
            total: wire.total,
            count: wire.count,
            records,
        })
    }
}

/// The stable id of batch `seq` of a file.
pub fn batch_id(file_id: Uuid, seq: u32) -> String {
    format!("{file_id}-{seq:06}")
}

/// What a queue message is, as far as an operator needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    RecordBatch,
    FileSanitized,
    /// An EventBridge "Object Created" event (the sanitize queue).
    ObjectCreated,
    /// An S3 notification (`Records[]`).
    S3Event,
    /// JSON, but not a message Sluice reads.
    Unknown,
    NotJson,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::RecordBatch => "record batch",
            MessageKind::FileSanitized => "file sanitized",
            MessageKind::ObjectCreated => "object created",
            MessageKind::S3Event => "s3 event",
            MessageKind::Unknown => "unknown",
            MessageKind::NotJson => "not JSON",
        }
    }
}

/// A queue message described from its body alone, for the operator tools: its kind, the file
/// it belongs to when it names one, and what in the file (a batch id, a clean or source key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAbout {
    pub kind: MessageKind,
    pub file_id: Option<Uuid>,
    pub dataset: Option<String>,
    pub what: Option<String>,
}

/// Describes a message body (never fails: a body that is not a message says so in its kind).
pub fn about(body: &str) -> MessageAbout {
    let described = |kind, file_id: Option<Uuid>, dataset: Option<String>, what| MessageAbout {
        kind,
        file_id,
        dataset,
        what,
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return described(MessageKind::NotJson, None, None, None);
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let id = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse().ok());
    if v.get("batch_id").is_some() {
        return described(
            MessageKind::RecordBatch,
            id(&v["file_id"]),
            text(&v["dataset"]),
            text(&v["batch_id"]),
        );
    }
    if v.get("clean_key").is_some() {
        return described(
            MessageKind::FileSanitized,
            id(&v["file_id"]),
            text(&v["dataset"]),
            text(&v["clean_key"]),
        );
    }
    if v["detail-type"] == "Object Created" {
        let key = text(&v["detail"]["object"]["key"]);
        return described(MessageKind::ObjectCreated, None, None, key);
    }
    if let Some(record) = v["Records"].get(0) {
        let key = text(&record["s3"]["object"]["key"]);
        return described(MessageKind::S3Event, None, None, key);
    }
    described(MessageKind::Unknown, None, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileSanitized {
        FileSanitized {
            v: V1,
            file_id: Uuid::from_u128(7),
            dataset: "orders".into(),
            clean_bucket: "clean".into(),
            clean_key: "clean/orders/00000000-0000-0000-0000-000000000007.csv".into(),
            rows: 11,
            columns: vec!["order_id".into(), "sku".into()],
            date_range: Some(DateRange {
                start: Some("2026-11-01".into()),
                end: None,
            }),
            resend: false,
            full: false,
        }
    }

    #[test]
    fn a_resend_is_marked_and_an_ordinary_message_does_not_carry_the_flag() {
        let plain = serde_json::to_value(sample()).unwrap();
        assert!(plain.get("resend").is_none());
        let resend = FileSanitized {
            resend: true,
            ..sample()
        };
        let json = serde_json::to_value(&resend).unwrap();
        assert_eq!(json["resend"], true);
        assert_eq!(
            serde_json::from_value::<FileSanitized>(json).unwrap(),
            resend
        );
    }

    #[test]
    fn file_sanitized_round_trips_with_version_1() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["file_id"], "00000000-0000-0000-0000-000000000007");
        let back: FileSanitized = serde_json::from_value(json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn record_batches_round_trip_inline_and_as_claim_checks() {
        let inline = RecordBatch {
            v: V1,
            file_id: Uuid::from_u128(7),
            dataset: "orders".into(),
            batch_id: batch_id(Uuid::from_u128(7), 3),
            seq: 3,
            total: 4,
            count: 1,
            body: BatchBody::Records(vec![serde_json::json!({"orderId": "A-1"})]),
        };
        let json = serde_json::to_value(&inline).unwrap();
        assert_eq!(
            json["batch_id"],
            "00000000-0000-0000-0000-000000000007-000003"
        );
        assert_eq!(json["records"][0]["orderId"], "A-1");
        assert_eq!(serde_json::from_value::<RecordBatch>(json).unwrap(), inline);
        let pointer = RecordBatch {
            body: BatchBody::S3 {
                bucket: "clean".into(),
                key: "batches/x/000003.json".into(),
            },
            ..inline
        };
        let json = serde_json::to_value(&pointer).unwrap();
        assert_eq!(json["s3"]["key"], "batches/x/000003.json");
        assert_eq!(
            serde_json::from_value::<RecordBatch>(json).unwrap(),
            pointer
        );
    }

    #[test]
    fn the_forwarder_reads_records_as_the_raw_text_the_transformer_wrote() {
        let inline = crate::transform::batch::inline_message(
            Uuid::from_u128(7),
            "orders",
            2,
            3,
            &crate::transform::batch::Batch {
                records: br#"[{"orderId":"A-1","total":19.90},{"orderId":"A-2","total":1.5}]"#
                    .to_vec(),
                count: 2,
            },
        );
        let body = std::str::from_utf8(&inline).unwrap();
        let batch = RecordBatchRef::parse(body).unwrap();
        assert_eq!(batch.batch_id, batch_id(Uuid::from_u128(7), 2));
        assert_eq!((batch.seq, batch.total, batch.count), (2, 3, 2));
        assert_eq!(
            batch.records,
            RecordsAt::Inline(r#"[{"orderId":"A-1","total":19.90},{"orderId":"A-2","total":1.5}]"#),
            "decimals keep their digits"
        );
        let pointer = crate::transform::batch::claim_check_message(
            Uuid::from_u128(7),
            "orders",
            3,
            3,
            500,
            "clean",
            "batches/x/000003.json",
        );
        let batch = RecordBatchRef::parse(std::str::from_utf8(&pointer).unwrap()).unwrap();
        assert_eq!(
            batch.records,
            RecordsAt::S3(S3Pointer {
                bucket: "clean".into(),
                key: "batches/x/000003.json".into()
            })
        );
    }

    #[test]
    fn record_batches_without_exactly_one_body_are_refused() {
        let head = r#""v":1,"file_id":"00000000-0000-0000-0000-000000000007","dataset":"orders","batch_id":"x","seq":1,"total":1,"count":1"#;
        for (extra, says) in [
            ("", "exactly one"),
            (
                r#","records":[],"s3":{"bucket":"b","key":"k"}"#,
                "exactly one",
            ),
            (r#","records":{"a":1}"#, "not an array"),
        ] {
            let e = RecordBatchRef::parse(&format!("{{{head}{extra}}}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = RecordBatchRef::parse(r#"{"v":2}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn other_versions_are_refused() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["v"] = 2.into();
        let err = serde_json::from_value::<FileSanitized>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn a_message_is_described_from_its_body() {
        let id = Uuid::new_v4();
        let batch =
            format!(r#"{{"v":1,"file_id":"{id}","dataset":"orders","batch_id":"{id}-000001"}}"#);
        let about = about(&batch);
        assert_eq!(about.kind, MessageKind::RecordBatch);
        assert_eq!(about.file_id, Some(id));
        assert_eq!(about.what, Some(format!("{id}-000001")));
        let event =
            r#"{"detail-type":"Object Created","detail":{"object":{"key":"incoming/a.csv"}}}"#;
        assert_eq!(super::about(event).kind, MessageKind::ObjectCreated);
        assert_eq!(super::about(event).what.as_deref(), Some("incoming/a.csv"));
        assert_eq!(super::about("{oops").kind, MessageKind::NotJson);
        assert_eq!(super::about("{}").kind, MessageKind::Unknown);
        let not_an_id = r#"{"batch_id":"x","file_id":"nope"}"#;
        assert_eq!(super::about(not_an_id).file_id, None);
    }
}
