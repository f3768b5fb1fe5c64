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

/// Counts of cells changed, over the whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellCounts {
    pub formulas_neutralized: u64,
    pub markup_neutralized: u64,
    /// Cells from which NUL or other control characters were removed.
    pub control_chars_removed: u64,
    /// Invalid byte sequences replaced by U+FFFD.
    pub invalid_encoding_replaced: u64,
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
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Data records read (header excluded), blank ones included.
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Blank and whitespace-only rows dropped.
    pub rows_blank: u64,
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
}
