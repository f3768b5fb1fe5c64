//! Running a mapping over a whole clean file: rows in, records out, a report of what failed.

use std::io::{self, Read};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::delta::DeltaReport;
use super::record::{Cells, RecordMapper};
use super::spec::Mapping;
use crate::sanitize::lines::Tally;

/// Failed rows listed in the report at most; the count is always complete.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// Keep only records whose date field falls in `[start, end]` (either end open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateFilter {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

impl DateFilter {
    fn keeps(&self, date: Option<NaiveDate>) -> bool {
        // A record without a date cannot be shown to be in the range.
        let Some(date) = date else { return false };
        self.start.is_none_or(|s| date >= s) && self.end.is_none_or(|e| date <= e)
    }
}

/// One row that could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Line of the clean file on which the row starts (its header is line 1).
    pub line: u64,
    pub field: String,
    /// The start of the offending cell (at most 40 characters).
    pub value: String,
    pub reason: String,
}

/// `ok`, or `failed` when the share of failed rows passed the dataset's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformVerdict {
    Ok,
    Failed,
}

/// The transform report, written beside the clean file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformReport {
    pub verdict: TransformVerdict,
    pub reason: Option<String>,
    pub dataset: Option<String>,
    pub filter: Option<DateFilter>,
    /// Data rows read.
    pub rows_in: u64,
    pub records_out: u64,
    /// Rows left out by the date-range filter.
    pub rows_filtered: u64,
    pub rows_failed: u64,
    pub errors: Vec<RowError>,
    pub errors_truncated: bool,
    /// For a dataset with a record key: what was new, changed, unchanged and missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
}

/// Why a file could not be transformed at all.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("reading the clean file: {0}")]
    Read(#[from] io::Error),
    #[error("{0}")]
    File(String),
}

/// Maps every row of the clean CSV `input`, handing each kept record's JSON to `emit`. Row
/// errors never stop the file; they are counted and listed, and the verdict is `failed` when
/// their share passes the mapping's `max_error_share`. A record whose JSON is longer than
/// `max_record_bytes` (it would not fit in a batch) is such a row error.
pub fn transform_read(
    input: impl Read,
    mapping: &Mapping,
    dataset: Option<String>,
    filter: Option<DateFilter>,
    max_record_bytes: usize,
    mut emit: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<TransformReport, TransformError> {
    let emit = |record: &[u8], _: Option<&[u8]>| emit(record);
    map_rows(
        input,
        mapping,
        dataset,
        filter,
        max_record_bytes,
        false,
        emit,
    )
}

/// [`transform_read`] for a mapping with a record key: `emit` also gets each record's key
/// (see [`RecordMapper::write_keyed`]).
pub fn transform_read_keyed(
    input: impl Read,
    mapping: &Mapping,
    dataset: Option<String>,
    filter: Option<DateFilter>,
    max_record_bytes: usize,
    mut emit: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> Result<TransformReport, TransformError> {
    if mapping.delta.is_none() {
        return Err(TransformError::File(
            "the dataset's mapping has no record_key".into(),
        ));
    }
    let emit = |record: &[u8], key: Option<&[u8]>| emit(record, key.unwrap_or_default());
    map_rows(
        input,
        mapping,
        dataset,
        filter,
        max_record_bytes,
        true,
        emit,
    )
}

fn map_rows(
    input: impl Read,
    mapping: &Mapping,
    dataset: Option<String>,
    filter: Option<DateFilter>,
    max_record_bytes: usize,
    keyed: bool,
    mut emit: impl FnMut(&[u8], Option<&[u8]>) -> io::Result<()>,
) -> Result<TransformReport, TransformError> {
    if filter.is_some() && mapping.date_field.is_none() {
        return Err(TransformError::File(
            "a date-range filter was asked for, but the dataset's mapping has no date_field".into(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() {
        return Err(TransformError::File("the clean file has no header".into()));
    }
    let mapper = RecordMapper::new(mapping, &header).map_err(TransformError::File)?;
    let mut report = TransformReport {
        verdict: TransformVerdict::Ok,
        reason: None,
        dataset,
        filter,
        rows_in: 0,
        records_out: 0,
        rows_filtered: 0,
        rows_failed: 0,
        errors: Vec::new(),
        errors_truncated: false,
        delta: None,
    };
    let mut row = csv::ByteRecord::new();
    let mut out = Vec::with_capacity(1024);
    let (mut spans, mut key) = (Vec::new(), Vec::with_capacity(64));
    // Counted here rather than taken from csv's positions, which lag a line behind after CRLF.
    let mut next_line = 2;
    while reader.read_byte_record(&mut row).map_err(csv_error)? {
        report.rows_in += 1;
        let line = next_line;
        next_line += 1 + line_breaks(row.as_slice());
        let Some(cells) = TextRow::of(&row) else {
            fail(
                &mut report,
                line,
                String::new(),
                String::new(),
                "row is not UTF-8".into(),
            );
            continue;
        };
        out.clear();
        let written = match keyed {
            true => mapper.write_keyed(&cells, &mut out, &mut spans, &mut key),
            false => mapper.write(&cells, &mut out),
        };
        match written {
            Ok(date) if filter.is_some_and(|f| !f.keeps(date)) => report.rows_filtered += 1,
            Ok(_) if out.len() > max_record_bytes => fail(
                &mut report,
                line,
                String::new(),
                String::new(),
                format!(
                    "the record is {} bytes of JSON, more than a batch may hold \
                     (delivery.batch_max_bytes)",
                    out.len()
                ),
            ),
            Ok(_) => {
                emit(&out, keyed.then_some(&key[..]))?;
                report.records_out += 1;
            }
            Err(e) => fail(&mut report, line, e.field, e.value, e.reason),
        }
    }
    let considered = report.rows_in - report.rows_filtered;
    if considered > 0 && report.rows_failed as f64 > mapping.max_error_share * considered as f64 {
        report.verdict = TransformVerdict::Failed;
        report.reason = Some(format!(
            "{} of {} rows could not be mapped ({:.1}%), over the limit of {:.1}%",
            report.rows_failed,
            considered,
            100.0 * report.rows_failed as f64 / considered as f64,
            100.0 * mapping.max_error_share
        ));
    }
    Ok(report)
}

/// A row whose bytes were checked as UTF-8 once, its cells sliced out of them: no
/// allocation and one validation per row rather than per cell.
struct TextRow<'a> {
    text: &'a str,
    record: &'a csv::ByteRecord,
}

impl<'a> TextRow<'a> {
    /// `None` when a cell is not UTF-8.
    fn of(record: &'a csv::ByteRecord) -> Option<Self> {
        let text = std::str::from_utf8(record.as_slice()).ok()?;
        // Each cell must be UTF-8 on its own: a character split across two cells is not.
        let whole_cells = (0..record.len()).all(|i| {
            record
                .range(i)
                .is_some_and(|r| text.is_char_boundary(r.start))
        });
        whole_cells.then_some(Self { text, record })
    }
}

impl Cells for TextRow<'_> {
    fn cell(&self, column: usize) -> Option<&str> {
        self.text.get(self.record.range(column)?)
    }
}

fn line_breaks(cells: &[u8]) -> u64 {
    if memchr::memchr2(b'\n', b'\r', cells).is_none() {
        return 0;
    }
    Tally::of(cells).breaks()
}

fn fail(report: &mut TransformReport, line: u64, field: String, value: String, reason: String) {
    report.rows_failed += 1;
    if report.errors.len() < MAX_LISTED_ERRORS {
        report.errors.push(RowError {
            line,
            field,
            value,
            reason,
        });
    } else {
        report.errors_truncated = true;
    }
}

fn csv_error(e: csv::Error) -> TransformError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => TransformError::Read(io),
        other => TransformError::File(format!("the clean file is not valid CSV: {other:?}")),
    }
}
