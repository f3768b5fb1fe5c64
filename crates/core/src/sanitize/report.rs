//! The sanitize report: what was found in a file and what was done to it.

use serde::{Deserialize, Serialize};

/// Rejected rows listed in the report at most; the count is always complete.
pub const MAX_LISTED_REJECTS: usize = 1000;

/// Whether the file goes on down the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A clean file was written (some rows may have been rejected).
    Accepted,
    /// No clean file; the original stays in quarantine.
    Rejected,
}

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowReject {
    /// Physical line on which the record starts (1-based; the header is line 1).
    pub line: u64,
    /// Physical line on which it ends: later than `line` when quoted fields hold line breaks,
    /// so every line of the input is accounted for.
    pub end_line: u64,
    /// Clean name of the column at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<String>,
    pub reason: String,
}

/// Per-column counts of cells changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnReport {
    pub original: String,
    pub name: String,
    pub formulas_neutralized: u64,
    pub markup_neutralized: u64,
    pub control_chars_removed: u64,
}

/// Counts of cells changed, over the whole file (a count missing from older JSON reads as 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CellCounts {
    pub formulas_neutralized: u64,
    pub markup_neutralized: u64,
    /// Cells from which NUL or other control characters were removed.
    pub control_chars_removed: u64,
    /// Invalid byte sequences replaced by U+FFFD.
    pub invalid_encoding_replaced: u64,
}

/// What the sanitize stage records with its outcome (the `file_event` detail): the report's
/// figures and its first rejected rows, never cell contents. The stage writes it; the dashboard
/// reads it back with this type (fields it lacks, in older events, read as empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizeSummary {
    pub verdict: Verdict,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub rows_in: u64,
    #[serde(default)]
    pub rows_out: u64,
    #[serde(default)]
    pub rows_rejected: u64,
    #[serde(default)]
    pub rows_blank: u64,
    #[serde(default)]
    pub cells: CellCounts,
    #[serde(default)]
    pub sha256_in: Option<String>,
    #[serde(default)]
    pub sha256_out: Option<String>,
    /// The first [`SanitizeSummary::REJECTS`] rejected rows (the report has them all).
    #[serde(default)]
    pub first_rejects: Vec<RowReject>,
}

impl SanitizeSummary {
    /// Rejected rows named in a summary.
    pub const REJECTS: usize = 10;

    pub fn of(report: &Report) -> Self {
        SanitizeSummary {
            verdict: report.verdict,
            reason: report.reason.clone(),
            encoding: report.encoding.clone(),
            delimiter: report.delimiter.clone(),
            bytes_in: report.bytes_in,
            bytes_out: report.bytes_out,
            rows_in: report.rows_in,
            rows_out: report.rows_out,
            rows_rejected: report.rows_rejected,
            rows_blank: report.rows_blank,
            cells: report.cells.clone(),
            sha256_in: report.sha256_in.clone(),
            sha256_out: report.sha256_out.clone(),
            first_rejects: report.rejects.iter().take(Self::REJECTS).cloned().collect(),
        }
    }
}

impl CellCounts {
    /// Each count with its name in words, in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 4] {
        [
            ("formulas neutralized", self.formulas_neutralized),
            ("markup neutralized", self.markup_neutralized),
            ("control chars removed", self.control_chars_removed),
            ("invalid encoding replaced", self.invalid_encoding_replaced),
        ]
    }
}

/// The JSON report written beside every sanitized file, accepted or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub verdict: Verdict,
    /// Why the file was rejected; `null` when accepted.
    pub reason: Option<String>,
    /// Dataset whose policy was applied, if any.
    pub dataset: Option<String>,
    /// Input encoding as finally decoded (`utf-8`, `utf-16le`, `utf-16be`, `windows-1252`).
    pub encoding: Option<String>,
    pub bom: bool,
    /// Input offset where provisional UTF-8 gave way to Windows-1252, if it did.
    pub encoding_fallback_at_byte: Option<u64>,
    /// Input delimiter: `,` `;` `\t` or `|`.
    pub delimiter: Option<String>,
    /// Input line endings: `lf`, `crlf`, `cr`, `mixed` or `none`.
    pub line_endings: Option<String>,
    /// Bytes of text read (decompressed, for a compressed file).
    pub bytes_in: u64,
    /// The file was compressed (`gzip`, `bzip2`, `zstd`): it was read through, and this many
    /// compressed bytes were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<super::compressed::Compression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_compressed: Option<u64>,
    pub bytes_out: u64,
    /// Data records read (header excluded), blank ones included.
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Blank and whitespace-only rows dropped.
    pub rows_blank: u64,
    /// Rows above the header skipped: blank, title and note rows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_preamble: u64,
    /// Rejected rows listed in the errors file (`errors.csv`), with their cells.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error_rows: u64,
    /// The column added for R's row names (a header one field short of its rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_names_column: Option<String>,
    pub headers_original: Vec<String>,
    pub headers: Vec<String>,
    pub columns: Vec<ColumnReport>,
    /// Rejected rows, first [`MAX_LISTED_REJECTS`] of them.
    pub rejects: Vec<RowReject>,
    pub rejects_truncated: bool,
    pub cells: CellCounts,
    /// SHA-256 of the input, hex; `null` when the input was not read to its end.
    pub sha256_in: Option<String>,
    /// SHA-256 of the clean output, hex; `null` when the file was rejected.
    pub sha256_out: Option<String>,
    /// The file was a workbook: its format, the sheet read, the others, its error cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spreadsheet: Option<super::spreadsheet::SpreadsheetReport>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_back_and_older_partial_ones_read_too() {
        let summary = SanitizeSummary {
            verdict: Verdict::Accepted,
            reason: None,
            encoding: Some("utf-8".into()),
            delimiter: Some(",".into()),
            bytes_in: 120,
            bytes_out: 118,
            rows_in: 3,
            rows_out: 2,
            rows_rejected: 1,
            rows_blank: 0,
            cells: CellCounts {
                formulas_neutralized: 1,
                ..CellCounts::default()
            },
            sha256_in: None,
            sha256_out: None,
            first_rejects: vec![RowReject {
                line: 3,
                end_line: 3,
                column: None,
                reason: "ragged row".into(),
            }],
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            serde_json::from_value::<SanitizeSummary>(json).unwrap(),
            summary
        );
        let older = serde_json::json!({
            "verdict": "rejected", "cells": {"formulas_neutralized": 2},
            "first_rejects": [{"line": 7, "end_line": 7, "column": null, "reason": "x"}]
        });
        let read: SanitizeSummary = serde_json::from_value(older).unwrap();
        assert_eq!(read.verdict, Verdict::Rejected);
        assert_eq!(read.cells.named()[0], ("formulas neutralized", 2));
        assert_eq!(read.first_rejects[0].line, 7);
    }
}
