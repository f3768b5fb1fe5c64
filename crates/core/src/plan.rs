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

use crate::config::section_digest;
use crate::message::{DateRange, FileSanitized};
use crate::{Dataset, PipelineConfig};

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

/// A file's whole plan: the config it is handled with ([`ConfigPin`], fixed by the first stage
/// that works on it) and its run's options (fixed by the transformer, or by a replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePlan {
    #[serde(flatten)]
    pub pin: ConfigPin,
    #[serde(flatten)]
    pub options: RunOptions,
}

/// Which config a file is handled with: its dataset's section as it was when the first stage
/// began work on the file (the sanitizer, or for a replay from transform the transformer).
/// Every later stage, take-over and re-drive reads the dataset from here, so a file in
/// flight finishes with the config it started with, and a changed config is used by new files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigPin {
    /// The dataset's section of the config (absent when that dataset was not in the config:
    /// the file then fails).
    pub dataset: Option<Value>,
    /// The section's digest ([`crate::Dataset::digest`]): which config a file was cut with,
    /// for operators comparing files.
    pub config: Option<String>,
    /// The config the section was read from ([`PipelineConfig::version`]).
    #[serde(default)]
    pub config_version: Option<String>,
}

impl ConfigPin {
    /// The pin a stage would fix now: `config`'s section for `dataset`.
    pub fn of(config: &PipelineConfig, dataset: &str) -> Self {
        let section = config.dataset_snapshot(dataset);
        Self {
            dataset: section.cloned(),
            config: section.map(section_digest),
            config_version: Some(config.version().to_string()),
        }
    }

    /// The dataset `name` as pinned, checked as at load; an error that says why there is none.
    pub fn dataset(&self, name: &str) -> Result<Dataset, String> {
        let Some(section) = &self.dataset else {
            return Err(format!("dataset `{name}` is not in the config"));
        };
        PipelineConfig::dataset_from_snapshot(name, section)
            .map_err(|e| format!("the config this file was planned with no longer loads: {e}"))
    }
}

impl FilePlan {
    /// The plan a run would fix now: this config's section for the dataset and the
    /// message's options.
    pub fn proposed(config: &PipelineConfig, message: &FileSanitized) -> Self {
        Self {
            pin: ConfigPin::of(config, &message.dataset),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::V1;
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

    const CONFIG: &str = r#"
        [datasets.d]
        prefix = "x/"
        delivery = { batch_size = 5 }
    "#;

    #[test]
    fn a_plan_reads_back_as_written_and_overrides_the_message_options() {
        let config = PipelineConfig::parse(CONFIG, "pipelines.toml").unwrap();
        let mut first = message(false);
        first.date_range = Some(DateRange {
            start: Some("2026-01-01".into()),
            end: None,
        });
        let plan = FilePlan::proposed(&config, &first);
        let back: FilePlan = serde_json::from_value(serde_json::to_value(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
        assert_eq!(
            back.pin.config.as_deref(),
            Some(config.dataset("d").unwrap().digest.as_str())
        );
        assert!(back
            .pin
            .config_version
            .as_deref()
            .unwrap()
            .starts_with("pipelines.toml#sha256="));
        let later = back.apply(&message(true));
        assert_eq!(later.date_range, first.date_range);
        assert!(!later.full);
    }

    #[test]
    fn a_pinned_dataset_reads_back_as_loaded_and_a_changed_section_has_another_digest() {
        let config = PipelineConfig::parse(CONFIG, "pipelines.toml").unwrap();
        let pin = ConfigPin::of(&config, "d");
        let pinned = pin.dataset("d").unwrap();
        assert_eq!(pinned.digest, config.dataset("d").unwrap().digest);
        assert_eq!(pinned.delivery.batch_size, 5);
        let changed = CONFIG.replace("batch_size = 5", "batch_size = 6");
        let changed = PipelineConfig::parse(&changed, "pipelines.toml").unwrap();
        assert_ne!(ConfigPin::of(&changed, "d").config, pin.config);
        assert_ne!(changed.version(), config.version());
        let s3 = changed.with_version("s3://cfg/pipelines.toml", "versionId=3");
        assert_eq!(s3.version(), "s3://cfg/pipelines.toml#versionId=3");
        let missing = ConfigPin::of(&config, "other");
        assert_eq!(missing.dataset, None);
        assert!(missing
            .dataset("other")
            .unwrap_err()
            .contains("not in the config"));
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
        assert_eq!(plan.pin.dataset, None);
    }

    #[test]
    fn run_options_alone_are_a_plan_without_a_dataset() {
        let options = RunOptions {
            date_range: None,
            full: true,
        };
        let plan: FilePlan = serde_json::from_value(serde_json::to_value(&options).unwrap())
            .expect("options are a partial plan");
        assert_eq!(plan.pin.dataset, None);
        assert!(plan.options.full);
    }
}
