//! The end of a run: one line per file (final status, rows, records, batches, where its
//! reports are, why it did not get through), as a table or JSON, and the exit code.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;
use sluice_core::FileStatus;
use sluice_stages::ports::Registry;
use uuid::Uuid;

use crate::exit;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: Vec<FileLine>,
    /// Where records went: the API, or the requests folder.
    pub destination: String,
}

#[derive(Debug, Serialize)]
pub struct FileLine {
    pub path: String,
    pub file_id: Option<Uuid>,
    pub dataset: Option<String>,
    /// The file's final status, or `unrouted` (no dataset) / `gone`.
    pub status: String,
    pub rows_in: Option<i64>,
    pub rows_out: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub records: Option<i64>,
    pub batches: Option<i32>,
    pub batches_delivered: Option<i32>,
    /// For a dataset with a record key: records new and changed (sent), unchanged (not
    /// sent), and keys missing against the previous file of the same scope.
    pub records_new: Option<i64>,
    pub records_changed: Option<i64>,
    pub records_unchanged: Option<i64>,
    pub records_missing: Option<i64>,
    pub reports: Option<String>,
    pub reason: Option<String>,
}

impl FileLine {
    fn empty(path: &Path, status: &str) -> Self {
        Self {
            path: path.display().to_string(),
            file_id: None,
            dataset: None,
            status: status.to_string(),
            rows_in: None,
            rows_out: None,
            rows_rejected: None,
            records: None,
            batches: None,
            batches_delivered: None,
            records_new: None,
            records_changed: None,
            records_unchanged: None,
            records_missing: None,
            reports: None,
            reason: None,
        }
    }

    pub fn unrouted(path: &Path) -> Self {
        Self {
            reason: Some("no dataset: name one with --dataset, or put the file in a folder named like a dataset".into()),
            ..Self::empty(path, "unrouted")
        }
    }

    pub fn skipped(path: &Path, result: &str) -> Self {
        Self::empty(path, result)
    }

    pub fn failed(path: &Path, reason: &str) -> Self {
        Self {
            reason: Some(reason.to_string()),
            ..Self::empty(path, "failed")
        }
    }

    /// The line of file `id`, from the status store.
    pub async fn of<S: Registry>(path: &Path, id: Uuid, store: &S, out: &Path) -> Self {
        let Ok(Some(row)) = store.file(id).await else {
            return Self::failed(path, "the file is not in the status store");
        };
        Self {
            path: path.display().to_string(),
            file_id: Some(id),
            dataset: row.dataset,
            status: row.status.to_string(),
            rows_in: row.rows_in,
            rows_out: row.rows_out,
            rows_rejected: row.rows_rejected,
            records: row.records,
            batches: row.batches_sent,
            batches_delivered: row.batches_delivered,
            records_new: row.records_new,
            records_changed: row.records_changed,
            records_unchanged: row.records_unchanged,
            records_missing: row.records_missing,
            reports: Some(super::reports_dir(out, id).display().to_string()),
            reason: row.error,
        }
    }
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn table(&self) -> String {
        let cell = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<10} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "file", "dataset", "status", "rows_in", "rows_out", "rejected", "records", "batches"
        );
        for f in &self.files {
            let batches = match (f.batches_delivered, f.batches) {
                (Some(d), Some(b)) => format!("{d}/{b}"),
                (None, Some(b)) => format!("0/{b}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<40} {:<16} {:<10} {:>8} {:>8} {:>8} {:>8} {:>9}",
                f.path,
                f.dataset.as_deref().unwrap_or("-"),
                f.status,
                cell(f.rows_in),
                cell(f.rows_out),
                cell(f.rows_rejected),
                cell(f.records),
                batches
            );
            if let Some(reason) = &f.reason {
                let _ = writeln!(out, "    why: {reason}");
            }
            if let (Some(new), Some(changed), Some(unchanged)) =
                (f.records_new, f.records_changed, f.records_unchanged)
            {
                let missing = f.records_missing.map_or(String::new(), |m| {
                    format!(", {m} missing since the last upload")
                });
                let _ = writeln!(
                    out,
                    "    records: {new} new, {changed} changed, {unchanged} unchanged (not sent){missing}"
                );
            }
            if let Some(reports) = &f.reports {
                let _ = writeln!(out, "    reports: {reports}");
            }
        }
        let _ = writeln!(out, "records went to: {}", self.destination);
        out
    }

    /// 0 when every file was delivered; 3 when the others were all rejected (a refusal the
    /// sanitizer reported, as with a spreadsheet posing as a CSV); 1 when any file failed,
    /// stopped short, or had no dataset.
    pub fn exit_code(&self) -> u8 {
        let delivered = FileStatus::Delivered.to_string();
        let rejected = FileStatus::Rejected.to_string();
        if self.files.iter().all(|f| f.status == delivered) {
            exit::ACCEPTED
        } else if self
            .files
            .iter()
            .all(|f| f.status == delivered || f.status == rejected)
        {
            exit::REJECTED
        } else {
            exit::OPERATIONAL
        }
    }
}
