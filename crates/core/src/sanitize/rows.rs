//! From decoded UTF-8 text to clean CSV rows: parse records, check and clean each one, write
//! it out as RFC 4180 (comma, CRLF, quotes only where needed).

use csv_core::ReadRecordResult;

use super::cell::{is_formula_like, strip_controls};
use super::header::{build_header, Header};
use super::lines::LineCounter;
use super::markup;
use super::policy::{CellPolicy, MarkupPolicy, Policy, RaggedRows};
use super::report::{CellCounts, ColumnReport, RowReject, MAX_LISTED_REJECTS};

const TERMINATOR: &[u8] = b"\r\n";
const INITIAL_RECORD_BYTES: usize = 64 * 1024;
/// Whatever the limits say, one record never holds more memory than this.
const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

// Byte classes, OR-ed over a whole record to pick the fast path.
const CTRL: u8 = 1;
const QUOTE: u8 = 2;
const MARK: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = CTRL;
        b += 1;
    }
    t[b'\t' as usize] = 0;
    t[b'\n' as usize] = QUOTE;
    t[b'\r' as usize] = QUOTE;
    t[0x7f] = CTRL;
    // Lead byte of U+0080..U+00BF, which holds the C1 controls.
    t[0xc2] = CTRL;
    t[b',' as usize] = QUOTE;
    t[b'"' as usize] = QUOTE;
    t[b'<' as usize] = MARK;
    t[b'=' as usize] = MARK;
    t[b':' as usize] = MARK;
    t
};

fn classes(bytes: &[u8]) -> u8 {
    let mut acc = 0u8;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        acc |= CLASS[c[0] as usize]
            | CLASS[c[1] as usize]
            | CLASS[c[2] as usize]
            | CLASS[c[3] as usize]
            | CLASS[c[4] as usize]
            | CLASS[c[5] as usize]
            | CLASS[c[6] as usize]
            | CLASS[c[7] as usize];
    }
    for &b in chunks.remainder() {
        acc |= CLASS[b as usize];
    }
    acc
}

/// A problem that ends the whole file.
pub type Fatal = String;

struct Columns {
    header: Header,
    markup_allowed: Vec<bool>,
    reports: Vec<ColumnReport>,
}

/// Row counters and findings, read into the report at the end.
#[derive(Debug, Default)]
pub struct RowStats {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    pub rows_blank: u64,
    pub rejects: Vec<RowReject>,
    pub cells: CellCounts,
}

/// The record loop: owns the CSV parser, the record buffer and the per-file findings.
pub struct Rows {
    policy: Policy,
    csv: csv_core::Reader,
    rec: Vec<u8>,
    rec_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Set when the current record outgrew its buffers; the rest of it is skipped.
    oversize: Option<String>,
    lines: LineCounter,
    record_line: Option<u64>,
    columns: Option<Columns>,
    pub stats: RowStats,
    scratch: String,
    cell: String,
}

impl Rows {
    pub fn new(policy: Policy, delimiter: u8) -> Self {
        let csv = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(b'"')
            .double_quote(true)
            .build();
        Self {
            policy,
            csv,
            rec: vec![0; INITIAL_RECORD_BYTES],
            rec_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            oversize: None,
            lines: LineCounter::default(),
            record_line: None,
            columns: None,
            stats: RowStats::default(),
            scratch: String::new(),
            cell: String::new(),
        }
    }

    /// The clean header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.columns.as_ref().map(|c| &c.header)
    }

    /// Per-column counts, in column order.
    pub fn column_reports(&self) -> Vec<ColumnReport> {
        self.columns
            .as_ref()
            .map(|c| c.reports.clone())
            .unwrap_or_default()
    }

    /// `lf`, `crlf`, `cr`, `mixed` or `none`.
    pub fn line_endings(&self) -> &'static str {
        self.lines.style()
    }

    /// Parses the next piece of decoded text, appending clean rows to `out`.
    pub fn push(&mut self, mut text: &[u8], out: &mut Vec<u8>) -> Result<(), Fatal> {
        while !text.is_empty() {
            let (res, nin, nout, nend) = self.csv.read_record(
                text,
                &mut self.rec[self.rec_len..],
                &mut self.ends[self.ends_len..],
            );
            self.consumed(&text[..nin])?;
            text = &text[nin..];
            self.rec_len += nout;
            self.ends_len += nend;
            self.step(res, out)?;
        }
        Ok(())
    }

    /// Ends the input: flushes a final record without terminator, refuses an unclosed quote.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
        if let Some(line) = self.record_line {
            self.end_last_record(line, out)?;
        }
        loop {
            let (res, _, nout, nend) = self.csv.read_record(
                &[],
                &mut self.rec[self.rec_len..],
                &mut self.ends[self.ends_len..],
            );
            self.rec_len += nout;
            self.ends_len += nend;
            if res == ReadRecordResult::End {
                break;
            }
            self.step(res, out)?;
        }
        if self.columns.is_none() {
            return Err("no header row: the file has no data, only blank lines".into());
        }
        Ok(())
    }

    /// Ends the record left open at the end of input with a newline, which outside quotes
    /// does just what the end of input does. Inside a quoted field the newline becomes
    /// content instead: the quote was never closed. (csv-core has no way to ask for its state
    /// and its `Clone` does not copy it.)
    fn end_last_record(&mut self, line: u64, out: &mut Vec<u8>) -> Result<(), Fatal> {
        if self.rec_len == self.rec.len() {
            self.rec.push(0);
        }
        if self.ends_len == self.ends.len() {
            self.ends.push(0);
        }
        let (res, _, nout, nend) = self.csv.read_record(
            b"\n",
            &mut self.rec[self.rec_len..],
            &mut self.ends[self.ends_len..],
        );
        if res != ReadRecordResult::Record {
            return Err(format!(
                "line {line}: a quoted field opened in this record is never closed \
                 (unterminated quote; the rest of the file would be swallowed)"
            ));
        }
        self.rec_len += nout;
        self.ends_len += nend;
        self.step(res, out)
    }

    fn consumed(&mut self, bytes: &[u8]) -> Result<(), Fatal> {
        self.lines.count_record(bytes, &mut self.record_line);
        let Some(line) = self.record_line else {
            return Ok(());
        };
        let spanned = self.lines.terminators() - (line - 1);
        if spanned > self.policy.limits.max_record_lines {
            return Err(format!(
                "line {line}: one record runs over more than {} lines; a quote is probably \
                 never closed",
                self.policy.limits.max_record_lines
            ));
        }
        Ok(())
    }

    fn step(&mut self, res: ReadRecordResult, out: &mut Vec<u8>) -> Result<(), Fatal> {
        match res {
            ReadRecordResult::InputEmpty | ReadRecordResult::End => Ok(()),
            ReadRecordResult::OutputFull => self.grow_record(),
            ReadRecordResult::OutputEndsFull => self.grow_ends(),
            ReadRecordResult::Record => self.record(out),
        }
    }

    fn record_cap(&self) -> usize {
        let limits = &self.policy.limits;
        let fields = self.columns.as_ref().map_or(64, |c| c.header.clean.len());
        limits.max_field_bytes.saturating_mul(fields).clamp(
            limits.max_field_bytes.min(MAX_RECORD_BYTES),
            MAX_RECORD_BYTES,
        )
    }

    fn grow_record(&mut self) -> Result<(), Fatal> {
        let cap = self.record_cap();
        if self.rec.len() < cap {
            let len = (self.rec.len() * 2).min(cap);
            self.rec.resize(len, 0);
            return Ok(());
        }
        if self.columns.is_none() {
            let line = self.record_line.unwrap_or(1);
            return Err(format!(
                "line {line}: header row is longer than {cap} bytes"
            ));
        }
        self.oversize
            .get_or_insert_with(|| format!("row is longer than {cap} bytes"));
        self.rec_len = 0;
        Ok(())
    }

    fn grow_ends(&mut self) -> Result<(), Fatal> {
        let limit = self.policy.limits.max_columns;
        let cap = match &self.columns {
            None => limit + 1,
            Some(c) => (c.header.clean.len() * 2).max(c.header.clean.len() + 16),
        };
        if self.ends.len() < cap {
            let len = (self.ends.len() * 2).min(cap);
            self.ends.resize(len, 0);
            return Ok(());
        }
        match &self.columns {
            None => Err(format!(
                "line 1: header has more than {limit} columns, the limit"
            )),
            Some(c) => {
                let n = c.header.clean.len();
                self.oversize
                    .get_or_insert_with(|| format!("expected {n} fields, found more than {cap}"));
                self.ends_len = 0;
                Ok(())
            }
        }
    }

    fn record(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
        let line = self
            .record_line
            .take()
            .unwrap_or_else(|| self.lines.next_line());
        let oversize = self.oversize.take();
        let (rec, ends) = (
            std::mem::take(&mut self.rec),
            std::mem::take(&mut self.ends),
        );
        let (rec_len, ends_len) = (self.rec_len, self.ends_len);
        self.rec_len = 0;
        self.ends_len = 0;
        let result = match oversize {
            Some(reason) if self.columns.is_some() => {
                self.stats.rows_in += 1;
                self.reject(line, None, reason);
                Ok(())
            }
            _ => {
                let fields = Fields {
                    bytes: &rec[..rec_len],
                    ends: &ends[..ends_len],
                };
                if self.columns.is_none() {
                    self.header_record(line, &fields, out)
                } else {
                    self.data_record(line, &fields, out)
                }
            }
        };
        self.rec = rec;
        self.ends = ends;
        result
    }

    fn header_record(
        &mut self,
        line: u64,
        fields: &Fields,
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        let original: Vec<String> = (0..fields.len())
            .map(|i| String::from_utf8_lossy(fields.get(i)).into_owned())
            .collect();
        let p = &self.policy;
        let header = build_header(
            original,
            &p.aliases,
            &p.required_columns,
            p.limits.max_columns,
        )
        .map_err(|e| format!("line {line}: {e}"))?;
        let markup_allowed = header
            .clean
            .iter()
            .map(|name| p.markup == MarkupPolicy::Keep || p.markup_allowed_columns.contains(name))
            .collect();
        let reports = header
            .original
            .iter()
            .zip(&header.clean)
            .map(|(original, name)| ColumnReport {
                original: original.clone(),
                name: name.clone(),
                ..ColumnReport::default()
            })
            .collect();
        for (i, name) in header.clean.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(TERMINATOR);
        self.columns = Some(Columns {
            header,
            markup_allowed,
            reports,
        });
        Ok(())
    }

    fn data_record(&mut self, line: u64, fields: &Fields, out: &mut Vec<u8>) -> Result<(), Fatal> {
        self.stats.rows_in += 1;
        if self.stats.rows_in > self.policy.limits.max_rows {
            return Err(format!(
                "more than {} data rows, the limit",
                self.policy.limits.max_rows
            ));
        }
        if fields.is_blank() {
            self.stats.rows_blank += 1;
            return Ok(());
        }
        let ncols = self.columns.as_ref().map_or(0, |c| c.header.clean.len());
        let used = match self.fit_to_header(fields, ncols) {
            Ok(used) => used,
            Err(reason) => {
                self.reject(line, None, reason);
                return Ok(());
            }
        };
        let row_start = out.len();
        let class = classes(fields.bytes);
        for col in 0..ncols {
            let cell = if col < used { fields.get(col) } else { &[] };
            if let Err((column, reason)) = self.cell(col, cell, class, ncols, out) {
                out.truncate(row_start);
                self.reject(line, Some(column), reason);
                return Ok(());
            }
            out.push(if col + 1 < ncols { b',' } else { b'\r' });
        }
        out.push(b'\n');
        self.stats.rows_out += 1;
        Ok(())
    }

    /// How many of the record's fields to use (short rows are padded with empty cells).
    fn fit_to_header(&self, fields: &Fields, ncols: usize) -> Result<usize, String> {
        let found = fields.len();
        if found == ncols {
            return Ok(found);
        }
        let pad = self.policy.ragged_rows == RaggedRows::Pad;
        if pad && (found < ncols || (ncols..found).all(|i| fields.is_blank_at(i))) {
            return Ok(found.min(ncols));
        }
        let hint = if memchr::memchr2(b'\n', b'\r', fields.bytes).is_some() {
            " (the record spans several lines: check for an unbalanced quote)"
        } else {
            ""
        };
        Err(format!("expected {ncols} fields, found {found}{hint}"))
    }

    /// Cleans and writes one cell; `Err` rejects the row, naming the column.
    fn cell(
        &mut self,
        col: usize,
        raw: &[u8],
        class: u8,
        ncols: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), (String, String)> {
        let columns = self
            .columns
            .as_mut()
            .expect("header is read before data rows");
        let name = &columns.header.clean[col];
        let limit = self.policy.limits.max_field_bytes;
        if raw.len() > limit {
            return Err((
                name.clone(),
                format!("field is {} bytes, over the limit of {limit}", raw.len()),
            ));
        }
        let check_markup =
            class & MARK != 0 && !columns.markup_allowed[col] && markup::may_hold_markup(raw);
        let check_formula = self.policy.formulas != CellPolicy::Keep && is_formula_like_start(raw);
        if class & CTRL == 0 && !check_markup && !check_formula {
            write_field(out, raw, class & QUOTE != 0, ncols);
            return Ok(());
        }
        // Slow path: the cell may change. Fields of decoded text split at ASCII bytes are
        // valid UTF-8; the lossy conversion is only a guard.
        let text = String::from_utf8_lossy(raw);
        let report = &mut columns.reports[col];
        let cells = &mut self.stats.cells;
        let stripped = strip_controls(&text);
        if stripped.len() != text.len() {
            report.control_chars_removed += 1;
            cells.control_chars_removed += 1;
        }
        let mut value: &str = &stripped;
        self.cell.clear();
        if check_markup && markup::has_markup(value) {
            if self.policy.markup == MarkupPolicy::RejectRow {
                return Err((name.clone(), "cell holds HTML/script markup".into()));
            }
            self.scratch.clear();
            markup::neutralize(value, &mut self.scratch);
            report.markup_neutralized += 1;
            cells.markup_neutralized += 1;
            value = &self.scratch;
        }
        if self.policy.formulas != CellPolicy::Keep && is_formula_like(value.as_bytes()) {
            if self.policy.formulas == CellPolicy::RejectRow {
                return Err((name.clone(), "cell starts like a formula".into()));
            }
            self.cell.push('\'');
            report.formulas_neutralized += 1;
            cells.formulas_neutralized += 1;
        }
        self.cell.push_str(value);
        write_field(out, self.cell.as_bytes(), true, ncols);
        Ok(())
    }

    fn reject(&mut self, line: u64, column: Option<String>, reason: String) {
        self.stats.rows_rejected += 1;
        if self.stats.rejects.len() < MAX_LISTED_REJECTS {
            self.stats.rejects.push(RowReject {
                line,
                column,
                reason,
            });
        }
    }
}

/// Cheap first look: a cell that does not start with a trigger byte is never a formula.
fn is_formula_like_start(raw: &[u8]) -> bool {
    matches!(
        raw.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\n')
    ) || raw
        .first()
        .is_some_and(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
}

/// Writes one field, quoted when it holds a comma, quote or line break. In a one-column
/// file an empty field is written as `""` so the row does not read back as a blank line.
fn write_field(out: &mut Vec<u8>, field: &[u8], may_need_quotes: bool, ncols: usize) {
    let quote = (may_need_quotes && field.iter().any(|&b| CLASS[b as usize] & QUOTE != 0))
        || (ncols == 1 && field.is_empty());
    if !quote {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut rest = field;
    while let Some(i) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// The fields of one parsed record: contiguous bytes and end offsets.
struct Fields<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl Fields<'_> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn is_blank_at(&self, i: usize) -> bool {
        self.get(i).iter().all(u8::is_ascii_whitespace)
    }

    /// Every field empty or whitespace (Excel's `,,,,` rows included).
    fn is_blank(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}
