//! What a dataset asks of the sanitizer: encoding and dialect overrides, column rules, what to
//! do with ragged rows and hostile cells, and limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Encoding;

/// How one file is sanitized. `Policy::default()` is what a file with no dataset gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Forced input encoding; `None` sniffs it (BOM, UTF-8 validity, else Windows-1252).
    pub encoding: Option<Encoding>,
    /// Forced delimiter; `None` sniffs it among `,` `;` tab `|`.
    pub delimiter: Option<u8>,
    /// Clean column names that must be present after aliasing, or the file is rejected.
    pub required_columns: Vec<String>,
    /// Clean header name -> clean name it should take (e.g. `order_number` -> `order_id`).
    pub aliases: BTreeMap<String, String>,
    /// What to do with a row whose field count differs from the header's.
    pub ragged_rows: RaggedRows,
    /// What to do with formula-like cells (`=`, `+`, `-`, `@`, tab, CR, LF first).
    pub formulas: CellPolicy,
    /// What to do with cells holding HTML/script markup.
    pub markup: MarkupPolicy,
    /// Clean column names whose markup is kept as is (rich-text columns).
    pub markup_allowed_columns: Vec<String>,
    /// How numbers are written, so that `-25,728.00` counts as a number, not a formula.
    pub numbers: NumberFormat,
    /// The line the header is on (from 1); `None`: the first row that has the required
    /// columns, past blank, title and note rows.
    pub header_row: Option<u64>,
    /// The name of the column added for R's row names (a header one field short of its rows).
    pub row_names_column: String,
    /// Which sheet of a workbook is read; `None`: the first visible one.
    pub sheet: Option<super::spreadsheet::SheetChoice>,
    /// Size limits.
    pub limits: Limits,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            encoding: None,
            delimiter: None,
            required_columns: Vec::new(),
            aliases: BTreeMap::new(),
            ragged_rows: RaggedRows::Reject,
            formulas: CellPolicy::Neutralize,
            markup: MarkupPolicy::Neutralize,
            markup_allowed_columns: Vec::new(),
            numbers: NumberFormat::default(),
            header_row: None,
            row_names_column: "row_name".into(),
            sheet: None,
            limits: Limits::default(),
        }
    }
}

/// How a dataset writes numbers. A cell that is a number in this format is never taken for a
/// formula, even when it starts with `-` or `+`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberFormat {
    /// The decimal separator.
    pub decimal: char,
    /// Digit-group separators, any one of which may group the integer part in threes
    /// (one separator per number).
    pub grouping: Vec<char>,
}

impl Default for NumberFormat {
    /// `-25,728.00`, `-1 317` and `1 234.5` (with a space, a no-break space or a narrow
    /// no-break space): the decimal point and the groupings of English-language and SI exports.
    fn default() -> Self {
        Self {
            decimal: '.',
            grouping: vec![',', ' ', '\u{a0}', '\u{202f}'],
        }
    }
}

/// What to do with a row whose field count differs from the header's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaggedRows {
    /// Reject the row (reported with its line).
    Reject,
    /// Pad short rows with empty cells and drop empty trailing extras (Excel's `,,,`);
    /// a row with non-empty extra cells is still rejected.
    Pad,
}

/// What to do with a formula-like cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellPolicy {
    /// Prefix the cell with `'` so spreadsheets show it as text.
    Neutralize,
    /// Reject the whole row.
    RejectRow,
    /// Leave it alone (trusted sources only).
    Keep,
}

/// What to do with a cell holding HTML/script markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkupPolicy {
    /// Escape it so that no live markup survives (see `sanitize::markup`).
    Neutralize,
    /// Reject the whole row.
    RejectRow,
    /// Leave it alone in every column.
    Keep,
}

/// Size limits. A file over `max_file_bytes`, `max_columns`, `max_rows` or
/// `max_record_lines`, or whose rejected-row share passes `max_rejected_share`, is rejected
/// whole; a row with a field over `max_field_bytes` is rejected alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_columns: usize,
    pub max_field_bytes: usize,
    pub max_rows: u64,
    /// Physical lines one record may span; guards against an unbalanced quote eating the file.
    pub max_record_lines: u64,
    /// Share (0.0–1.0) of non-blank data rows that may be rejected before the file is.
    pub max_rejected_share: f64,
    /// How many times a compressed file may expand (decompressed bytes over compressed ones,
    /// checked past the first 8 MiB): more is refused as a compression bomb.
    pub max_compression_ratio: u64,
    /// The largest workbook read (calamine holds a workbook and its sheet in memory).
    pub max_spreadsheet_bytes: u64,
    /// Rejected rows listed in the errors file (the report counts them all).
    pub max_error_rows: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 10 * 1024 * 1024 * 1024,
            max_columns: 1024,
            max_field_bytes: 128 * 1024,
            max_rows: 100_000_000,
            max_record_lines: 200,
            max_rejected_share: 0.10,
            max_compression_ratio: 200,
            max_spreadsheet_bytes: 64 * 1024 * 1024,
            max_error_rows: 100_000,
        }
    }
}
