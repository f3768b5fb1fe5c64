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
        }
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
    fn other_versions_are_refused() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["v"] = 2.into();
        let err = serde_json::from_value::<FileSanitized>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
    }
}
