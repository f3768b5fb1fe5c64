//! A file's plan: what its batches are cut with, fixed the first time its transform starts.
//!
//! A batch id is `<file id>-<seq>`; it names the same records on every run only if every run
//! cuts the clean file (which never changes) with the same mapping, batch sizes, date range and
//! full flag. The plan keeps those on the file's row: take-overs, re-drives and resends use it,
//! and a config changed while the file is in flight is used only by new files. A replay
//! records its options on its new row when it makes it ([`RunOptions`]), so that a re-drive
//! cannot lose them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::message::{DateRange, FileSanitized};

/// The options of one run of a file: the upload's (or a replay's) date range and full flag.
/// Stored as the first part of a plan; merged key by key, the first value written wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    pub date_range: Option<DateRange>,
    #[serde(default)]
    pub full: bool,
}

impl RunOptions {
    pub fn of(message: &FileSanitized) -> Self {
        Self {
            date_range: message.date_range.clone(),
            full: message.full,
        }
    }
}

/// A file's whole plan as the transformer fixes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePlan {
    /// The dataset's section of the config, as it was when the file's transform began
    /// (absent when that dataset was not in the config: the file then fails).
    pub dataset: Option<Value>,
    /// The first 16 hex digits of the SHA-256 of `dataset`: which config a file was cut with,
    /// for operators comparing files.
    pub config: Option<String>,
    #[serde(flatten)]
    pub options: RunOptions,
}

impl FilePlan {
    /// The plan a run would fix now: this config's section for the dataset and the
    /// message's options.
    pub fn proposed(dataset: Option<&Value>, message: &FileSanitized) -> Self {
        Self {
            dataset: dataset.cloned(),
            config: dataset.map(config_hash),
            options: RunOptions::of(message),
        }
    }

    /// The message a run works from under this plan: the recorded options in place of the
    /// message's own.
    pub fn apply(&self, message: &FileSanitized) -> FileSanitized {
        FileSanitized {
            date_range: self.options.date_range.clone(),
            full: self.options.full,
            ..message.clone()
        }
    }
}

/// What a batch was the first time it was cut: its records' place in the file's record
/// sequence (kept for operators), its record count and a hash of its body. A later cut of the
/// same batch id (a take-over, a re-drive, a resend) must give the same count and hash, or the
/// id would name other records: the file then fails rather than send them (a transformer of
/// another version cutting differently, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMark {
    /// The ordinal (from 0) of the batch's first record among the file's records sent.
    pub first: u64,
    pub records: u64,
    /// The first 16 hex digits of the SHA-256 of the batch's JSON array.
    pub sha256: String,
}

impl BatchMark {
    pub fn of(first: u64, records: u64, body: &[u8]) -> Self {
        let digest = Sha256::digest(body);
        Self {
            first,
            records,
            sha256: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// A stable short hash of a dataset section (serde_json writes object keys sorted).
fn config_hash(section: &Value) -> String {
    let digest = Sha256::digest(section.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::V1;
    use serde_json::json;
    use uuid::Uuid;

    fn message(full: bool) -> FileSanitized {
        FileSanitized {
            v: V1,
            file_id: Uuid::nil(),
            dataset: "d".into(),
            clean_bucket: "b".into(),
            clean_key: "k".into(),
            rows: 1,
            columns: vec![],
            date_range: None,
            resend: false,
            full,
        }
    }

    #[test]
    fn a_plan_reads_back_as_written_and_overrides_the_message_options() {
        let section = json!({ "prefix": "x/", "delivery": { "batch_size": 5 } });
        let mut first = message(false);
        first.date_range = Some(DateRange {
            start: Some("2026-01-01".into()),
            end: None,
        });
        let plan = FilePlan::proposed(Some(&section), &first);
        let back: FilePlan = serde_json::from_value(serde_json::to_value(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.config.as_deref().map(str::len), Some(16));
        let later = back.apply(&message(true));
        assert_eq!(later.date_range, first.date_range);
        assert!(!later.full);
    }

    #[test]
    fn a_batch_mark_names_its_place_and_its_bytes() {
        let a = BatchMark::of(0, 2, b"[{\"a\":1},{\"a\":2}]");
        assert_eq!(a, BatchMark::of(0, 2, b"[{\"a\":1},{\"a\":2}]"));
        assert_ne!(a, BatchMark::of(0, 2, b"[{\"a\":1},{\"a\":3}]"));
        assert_ne!(a, BatchMark::of(1, 2, b"[{\"a\":1},{\"a\":2}]"));
        assert_eq!(a.sha256.len(), 16);
        // A plan with marks still reads as a plan.
        let plan: FilePlan = serde_json::from_value(serde_json::json!({
            "dataset": null, "config": null, "date_range": null, "full": false,
            "batches": { "1": a }
        }))
        .unwrap();
        assert_eq!(plan.dataset, None);
    }

    #[test]
    fn run_options_alone_are_a_plan_without_a_dataset() {
        let options = RunOptions {
            date_range: None,
            full: true,
        };
        let plan: FilePlan = serde_json::from_value(serde_json::to_value(&options).unwrap())
            .expect("options are a partial plan");
        assert_eq!(plan.dataset, None);
        assert!(plan.options.full);
    }
}
