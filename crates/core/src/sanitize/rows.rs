//! From decoded UTF-8 text to clean CSV rows: parse records, check and clean each one, write
//! it out as RFC 4180 (comma, CRLF, quotes only where needed).

use csv_core::ReadRecordResult;

use super::cell::{is_formula_like, strip_controls};
use super::header::{build_header, Header, HeaderError};
use super::lines::{LineCounter, Tally};
use super::markup;
use super::plain::{is_stripped_control, plain_record, CellChecks, PieceIndex, Shape};
use super::policy::{CellPolicy, Limits, MarkupPolicy, Policy, RaggedRows};
use super::report::{CellCounts, ColumnReport, RowReject, MAX_LISTED_REJECTS};

const TERMINATOR: &[u8] = b"\r\n";
const INITIAL_RECORD_BYTES: usize = 64 * 1024;
/// Whatever the limits say, one record never holds more memory than this.
const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// Whether `bytes` hold a control character to strip (or the lead byte of the C1 controls).
/// Written to vectorize: per-lane accumulators, reduced once at the end.
fn has_control(bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { has_control_avx2(bytes) };
    }
    has_control_portable(bytes)
}

/// [`has_control_portable`] compiled for AVX2: the same loop on 32-byte vectors, where the
/// baseline x86-64 target only has 16-byte SSE2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn has_control_avx2(bytes: &[u8]) -> bool {
    has_control_portable(bytes)
}

#[inline(always)]
fn has_control_portable(bytes: &[u8]) -> bool {
    const LANES: usize = 32;
    let mut acc = [false; LANES];
    let mut chunks = bytes.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &b) in acc.iter_mut().zip(chunk) {
            *a |= is_stripped_control(b);
        }
    }
    chunks.remainder().iter().any(|&b| is_stripped_control(b)) || acc.iter().any(|&a| a)
}

/// Whether a field must be quoted in RFC 4180 output.
fn needs_quotes(field: &[u8]) -> bool {
    field.iter().fold(false, |acc, &b| {
        acc | (b == b',') | (b == b'"') | (b == b'\n') | (b == b'\r')
    })
}

/// Where a record starts: an offset in the text piece being parsed, or, once that piece is
/// done, its line number.
#[derive(Debug, Clone, Copy)]
enum Start {
    At(usize),
    Line(u64),
}

/// A problem that ends the whole file.
pub type Fatal = String;

struct Columns {
    header: Header,
    markup_allowed: Vec<bool>,
    reports: Vec<ColumnReport>,
    /// The header is written with the first data row, which may still add a column for R's
    /// row names ([`Rows::write_header`]).
    written: bool,
    /// Every cell of the header was quoted, as R writes it.
    quoted: bool,
}

/// Rows above the header: how many, and what the first one that could not be a header said.
#[derive(Debug, Default)]
struct Preamble {
    rows: u64,
    /// The first non-blank row's reason for not being the header, and its line.
    first: Option<(u64, String)>,
    /// The most non-empty cells of a skipped row, and its line.
    widest: Option<(u64, usize)>,
}

/// The errors file (`errors.csv`): each rejected row's line, column and reason, then its
/// cells as they were read (decoded; formula-like cells prefixed with `'` and control
/// characters removed, so that opening the file is safe), at most `cap` rows; the last line
/// says so when there were more. Written a row at a time: the driver drains [`Self::take`].
#[derive(Debug)]
pub struct ErrorRows {
    buf: Vec<u8>,
    listed: u64,
    cap: u64,
    header_written: bool,
}

impl ErrorRows {
    fn new(cap: u64) -> Self {
        Self {
            buf: Vec::new(),
            listed: 0,
            cap,
            header_written: false,
        }
    }

    /// Rows listed so far.
    pub fn listed(&self) -> u64 {
        self.listed
    }

    /// Moves what has been written since the last call onto `out`.
    pub fn take(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.buf);
    }

    fn row(
        &mut self,
        header: Option<&[String]>,
        line: u64,
        column: Option<&str>,
        reason: &str,
        fields: Option<&Fields>,
    ) {
        if self.listed >= self.cap {
            return;
        }
        if !self.header_written {
            self.header_written = true;
            let mut names = vec!["line", "column", "reason"];
            names.extend(header.unwrap_or_default().iter().map(String::as_str));
            self.write_record(names.iter().map(|n| n.as_bytes()));
        }
        self.listed += 1;
        let line = line.to_string();
        let head = [
            line.as_bytes(),
            column.unwrap_or("").as_bytes(),
            reason.as_bytes(),
        ];
        let cells = fields
            .into_iter()
            .flat_map(|f| (0..f.len()).map(|i| f.get(i)));
        self.write_record(head.into_iter().chain(cells));
    }

    /// The last line, when rows were left out: how many were rejected in all.
    fn close(&mut self, rejected: u64) {
        if rejected > self.listed && self.header_written {
            let note = format!(
                "the first {} of {rejected} rejected rows are listed \
                 (sanitize.limits.max_error_rows); the report counts them all",
                self.listed
            );
            self.write_record(["".as_bytes(), b"", note.as_bytes()].into_iter());
        }
    }

    fn write_record<'a>(&mut self, cells: impl Iterator<Item = &'a [u8]>) {
        let mut first = true;
        for cell in cells {
            if !first {
                self.buf.push(b',');
            }
            first = false;
            let text = String::from_utf8_lossy(cell);
            let safe: String = text
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
                .collect();
            let formula = safe.starts_with(['=', '+', '-', '@', '\t', '\r', '\n'])
                && safe.parse::<f64>().is_err();
            let needs_quotes = formula || safe.contains([',', '"', '\r', '\n']);
            if needs_quotes {
                self.buf.push(b'"');
            }
            if formula {
                self.buf.push(b'\'');
            }
            for b in safe.bytes() {
                if b == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(b);
            }
            if needs_quotes {
                self.buf.push(b'"');
            }
        }
        self.buf.extend_from_slice(TERMINATOR);
    }
}

/// Rows looked at for the header when the file's first row lacks the required columns.
pub const MAX_PREAMBLE_ROWS: u64 = 20;

/// Row counters and findings, read into the report at the end.
#[derive(Debug, Default)]
pub struct RowStats {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    pub rows_blank: u64,
    /// Rows above the header (title, note and blank rows), skipped.
    pub rows_preamble: u64,
    /// The name given to R's row names, when the header was one field short.
    pub row_names_column: Option<String>,
    pub rejects: Vec<RowReject>,
    pub cells: CellCounts,
}

/// The record loop: owns the CSV parser, the record buffer and the per-file findings.
pub struct Rows {
    policy: Policy,
    delimiter: u8,
    csv: csv_core::Reader,
    rec: Vec<u8>,
    rec_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Set when the current record outgrew its buffers; the rest of it is skipped.
    oversize: Option<String>,
    lines: LineCounter,
    /// Offset in the current text piece up to which `lines` has counted.
    counted: usize,
    /// Where the current record's first byte is, once seen.
    start: Option<Start>,
    /// The raw bytes of the open record that came in earlier pieces, so that a clean record
    /// is copied through whether or not it sits inside one piece: the output never depends on
    /// how the input was read. Only kept for comma-separated input (no other is copied).
    carry: Vec<u8>,
    /// Where the piece being parsed has the bytes [`plain_record`] looks for.
    index: PieceIndex,
    /// Whether records csv-core would copy through unchanged are looked for without it
    /// (off only in tests, which compare both ways).
    plain: bool,
    /// Records copied that way, for tests.
    plain_rows: u64,
    columns: Option<Columns>,
    preamble: Preamble,
    /// The rejected rows with their cells, for the errors file.
    pub errors: ErrorRows,
    pub stats: RowStats,
    scratch: String,
    cell: String,
}

impl Rows {
    pub fn new(policy: Policy, delimiter: u8) -> Self {
        let max_error_rows = policy.limits.max_error_rows;
        let csv = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(b'"')
            .double_quote(true)
            .build();
        Self {
            policy,
            delimiter,
            csv,
            rec: vec![0; INITIAL_RECORD_BYTES],
            rec_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            oversize: None,
            lines: LineCounter::default(),
            counted: 0,
            start: None,
            carry: Vec::new(),
            index: PieceIndex::default(),
            plain: true,
            plain_rows: 0,
            columns: None,
            preamble: Preamble::default(),
            errors: ErrorRows::new(max_error_rows),
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
    pub fn push(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), Fatal> {
        let mut pos = 0;
        let mut plain = PlainRun::default();
        while pos < text.len() {
            if let Some(shape) = self.plain_shape(&plain) {
                if !plain.indexed {
                    self.index.build(text);
                    plain.indexed = true;
                }
                pos = self.copy_plain_records(text, pos, shape, &mut plain, out);
                if pos == text.len() {
                    break;
                }
            }
            let (res, nin, nout, nend) = self.csv.read_record(
                &text[pos..],
                &mut self.rec[self.rec_len..],
                &mut self.ends[self.ends_len..],
            );
            if self.start.is_none() {
                // Leading line breaks end earlier lines (or are blank lines csv-core skips).
                let consumed = &text[pos..pos + nin];
                if let Some(k) = consumed.iter().position(|&b| b != b'\r' && b != b'\n') {
                    self.start = Some(Start::At(pos + k));
                }
            }
            pos += nin;
            self.rec_len += nout;
            self.ends_len += nend;
            self.step(res, text, pos, out)?;
        }
        // The piece is done: keep an open record's bytes, pin its start to a line, then
        // count the rest.
        self.carry_open_record(text);
        if let Some(Start::At(_)) = self.start {
            self.start = Some(Start::Line(self.record_line(text)));
        }
        if plain.indexed && self.counted == 0 {
            self.lines.count_tallied(text, self.index.tally());
        } else {
            self.lines.count(&text[self.counted..]);
        }
        self.counted = 0;
        Ok(())
    }

    /// What a record must be for [`plain_record`], when it may be looked for at all: between
    /// records of comma-separated data, while it keeps finding them.
    fn plain_shape(&self, run: &PlainRun) -> Option<Shape> {
        let between_records = self.start.is_none()
            && self.rec_len == 0
            && self.ends_len == 0
            && self.oversize.is_none();
        if !(self.plain && between_records && self.delimiter == b',' && run.worth_it()) {
            return None;
        }
        let columns = self
            .columns
            .as_ref()
            .filter(|c| c.written)?
            .header
            .clean
            .len();
        Some(Shape {
            columns,
            cells: self.cell_checks(),
            max_bytes: self.rec.len(),
        })
    }

    fn cell_checks(&self) -> CellChecks {
        CellChecks {
            formulas: self.policy.formulas != CellPolicy::Keep,
            max_field: self.policy.limits.max_field_bytes,
        }
    }

    /// Copies records that need no change from `pos` on, as [`Self::data_record`] would
    /// (see [`plain_record`]); returns where the first other record starts.
    fn copy_plain_records(
        &mut self,
        text: &[u8],
        mut pos: usize,
        shape: Shape,
        run: &mut PlainRun,
        out: &mut Vec<u8>,
    ) -> usize {
        // The row limit is left to the csv-core path, which reports it.
        while self.stats.rows_in < self.policy.limits.max_rows {
            let Some(record) = plain_record(text, &self.index, pos, shape) else {
                break;
            };
            out.extend_from_slice(&text[record.raw]);
            out.extend_from_slice(TERMINATOR);
            self.stats.rows_in += 1;
            self.stats.rows_out += 1;
            run.found += 1;
            self.plain_rows += 1;
            pos = record.next;
        }
        run.missed += u32::from(pos < text.len());
        pos
    }

    /// Keeps the bytes of a record still open at the end of `text` in `carry` (see there).
    fn carry_open_record(&mut self, text: &[u8]) {
        if self.delimiter != b',' || self.oversize.is_some() {
            self.carry.clear();
            return;
        }
        match self.start {
            Some(Start::At(p)) => self.carry.extend_from_slice(&text[p..]),
            Some(Start::Line(_)) => self.carry.extend_from_slice(text),
            None => {}
        }
    }

    /// Ends the input: flushes a final record without terminator, refuses an unclosed quote.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
        if self.start.is_some() {
            self.end_last_record(out)?;
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
            self.step(res, &[], 0, out)?;
        }
        if self.columns.is_none() {
            return Err(match self.preamble.first.take() {
                Some((line, reason)) => format!("line {line}: {reason}"),
                None => "no header row: the file has no data, only blank lines".into(),
            });
        }
        self.write_header(None, out);
        self.errors.close(self.stats.rows_rejected);
        Ok(())
    }

    /// Ends the record left open at the end of input with a newline, which outside quotes
    /// does just what the end of input does. Inside a quoted field the newline becomes
    /// content instead: the quote was never closed. (csv-core has no way to ask for its state
    /// and its `Clone` does not copy it.)
    fn end_last_record(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
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
            let line = self.record_line(&[]);
            return Err(format!(
                "line {line}: a quoted field opened in this record is never closed \
                 (unterminated quote; the rest of the file would be swallowed)"
            ));
        }
        self.rec_len += nout;
        self.ends_len += nend;
        self.step(res, &[], 0, out)
    }

    /// The line on which the current record starts. Counts lines up to it in `text`, the
    /// piece being parsed; cheap because records come in order and this is asked rarely.
    fn record_line(&mut self, text: &[u8]) -> u64 {
        match self.start {
            Some(Start::Line(line)) => line,
            Some(Start::At(p)) => {
                self.lines.count(&text[self.counted..p]);
                self.counted = p;
                self.lines.next_line()
            }
            None => self.lines.next_line(),
        }
    }

    /// Acts on one parser result; `end` is where parsing stopped in `text`.
    fn step(
        &mut self,
        res: ReadRecordResult,
        text: &[u8],
        end: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        match res {
            ReadRecordResult::InputEmpty | ReadRecordResult::End => Ok(()),
            ReadRecordResult::OutputFull => self.grow_record(text),
            ReadRecordResult::OutputEndsFull => self.grow_ends(text),
            ReadRecordResult::Record => {
                let result = self.record(text, end, out);
                self.start = None;
                result
            }
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

    fn grow_record(&mut self, text: &[u8]) -> Result<(), Fatal> {
        let cap = self.record_cap();
        if self.rec.len() < cap {
            let len = (self.rec.len() * 2).min(cap);
            self.rec.resize(len, 0);
            return Ok(());
        }
        if self.columns.is_none() {
            let line = self.record_line(text);
            return Err(format!(
                "line {line}: header row is longer than {cap} bytes"
            ));
        }
        self.check_oversize_is_one_line(text, self.rec_len, cap)?;
        self.oversize
            .get_or_insert_with(|| format!("row is longer than {cap} bytes"));
        self.rec_len = 0;
        Ok(())
    }

    /// A record past the byte cap is dropped as one rejected row only when it is one long
    /// line. A line break inside it means a quoted field is open: had the quote been stray,
    /// every row up to the next quote would be swallowed unseen, so the file is rejected,
    /// naming the line where the record (and so the quote) started.
    /// `len` is how much of `self.rec` holds the record's latest bytes.
    fn check_oversize_is_one_line(
        &mut self,
        text: &[u8],
        len: usize,
        cap: usize,
    ) -> Result<(), Fatal> {
        if memchr::memchr2(b'\n', b'\r', &self.rec[..len]).is_none() {
            return Ok(());
        }
        Err(format!(
            "line {}: a quoted field opened in this record runs over several lines and past \
             {cap} bytes, the record limit; a quote is probably not closed where it should be \
             (the rows after it would be lost)",
            self.record_line(text)
        ))
    }

    fn grow_ends(&mut self, text: &[u8]) -> Result<(), Fatal> {
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
                "line {}: header has more than {limit} columns, the limit",
                self.record_line(text)
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

    fn record(&mut self, text: &[u8], end: usize, out: &mut Vec<u8>) -> Result<(), Fatal> {
        // The record's own bytes, when they are already comma-separated.
        let mut carry = std::mem::take(&mut self.carry);
        let raw = match self.start {
            _ if self.delimiter != b',' || self.oversize.is_some() => None,
            Some(Start::At(p)) => Some(trim_line_break(&text[p..end])),
            Some(Start::Line(_)) => {
                carry.extend_from_slice(&text[..end]);
                Some(trim_line_break(&carry))
            }
            None => None,
        };
        let oversize = self.oversize.take();
        if oversize.is_some() {
            self.check_oversize_is_one_line(text, self.rec_len, self.record_cap())?;
        }
        let (rec, ends) = (
            std::mem::take(&mut self.rec),
            std::mem::take(&mut self.ends),
        );
        let fields = Fields {
            bytes: &rec[..self.rec_len],
            ends: &ends[..self.ends_len],
        };
        self.rec_len = 0;
        self.ends_len = 0;
        let result = match oversize {
            Some(reason) => {
                self.stats.rows_in += 1;
                let line = self.record_line(text);
                self.reject(line, 0, None, reason, None);
                Ok(())
            }
            None if self.columns.is_none() => self.header_or_preamble(text, raw, &fields),
            None => self.data_record(text, raw, &fields, out),
        };
        self.rec = rec;
        self.ends = ends;
        carry.clear();
        self.carry = carry;
        result
    }

    /// A record before the header: the header, or a row above it. Blank rows and rows before
    /// the dataset's `header_row` are skipped; so are up to [`MAX_PREAMBLE_ROWS`] rows that
    /// lack the required columns (titles, notes, a count), when a later row has them and every
    /// skipped row is narrower than it.
    fn header_or_preamble(
        &mut self,
        text: &[u8],
        raw: Option<&[u8]>,
        fields: &Fields,
    ) -> Result<(), Fatal> {
        let line = self.record_line(text);
        let skip = match self.policy.header_row {
            Some(at) => line < at,
            None => fields.is_blank(),
        };
        if skip {
            self.skip_preamble(line, fields, None);
            return Ok(());
        }
        let original: Vec<String> = (0..fields.len())
            .map(|i| String::from_utf8_lossy(fields.get(i)).into_owned())
            .collect();
        let p = &self.policy;
        let header = build_header(
            original,
            &p.aliases,
            &p.required_columns,
            p.limits.max_columns,
        );
        let header = match header {
            Ok(header) => header,
            Err(e @ HeaderError::MissingRequired { .. })
                if self.policy.header_row.is_none() && self.preamble.rows < MAX_PREAMBLE_ROWS =>
            {
                self.skip_preamble(line, fields, Some(e.to_string()));
                return Ok(());
            }
            Err(e) => {
                return Err(match self.preamble.first.take() {
                    Some((first, reason)) => format!("line {first}: {reason}"),
                    None => format!("line {line}: {e}"),
                })
            }
        };
        let width = (0..fields.len())
            .filter(|&i| !fields.is_blank_at(i))
            .count();
        let found = self.policy.header_row.is_none();
        if let Some((wide, cells)) = self.preamble.widest.filter(|&(_, n)| found && n >= width) {
            return Err(format!(
                "line {wide}: a row above the header (line {line}) has {cells} cells, as many \
                 as the header: it is not a title or note; if the header is on line {line}, \
                 say so with sanitize.header_row = {line}"
            ));
        }
        // R's write.table quotes every cell of its header by default; a header written so is
        // the one whose rows may carry row names in front.
        let quoted = raw.is_some_and(|raw| every_cell_quoted(raw, fields.len()));
        self.header_record(header, quoted)
    }

    fn skip_preamble(&mut self, line: u64, fields: &Fields, reason: Option<String>) {
        self.preamble.rows += 1;
        self.stats.rows_preamble += 1;
        if let Some(reason) = reason {
            self.preamble.first.get_or_insert((line, reason));
        }
        let cells = (0..fields.len())
            .filter(|&i| !fields.is_blank_at(i))
            .count();
        if self.preamble.widest.is_none_or(|(_, n)| cells > n) && cells > 0 {
            self.preamble.widest = Some((line, cells));
        }
    }

    fn header_record(&mut self, header: Header, quoted: bool) -> Result<(), Fatal> {
        let p = &self.policy;
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
        self.columns = Some(Columns {
            header,
            markup_allowed,
            reports,
            written: false,
            quoted,
        });
        Ok(())
    }

    /// Writes the header before the first data row (`fields` of them), once. A first row one
    /// field longer than a header whose every cell was quoted is R's `write.table` with row
    /// names: their column is added in front, named by `row_names_column`. (A first row one
    /// field longer than an unquoted header is a ragged row, as it always was.)
    fn write_header(&mut self, fields: Option<usize>, out: &mut Vec<u8>) {
        let name = self.policy.row_names_column.clone();
        let Some(columns) = self.columns.as_mut().filter(|c| !c.written) else {
            return;
        };
        columns.written = true;
        let r_style = columns.quoted && fields == Some(columns.header.clean.len() + 1);
        if r_style && !columns.header.clean.contains(&name) {
            columns.header.original.insert(0, String::new());
            columns.header.clean.insert(0, name.clone());
            columns.markup_allowed.insert(0, false);
            columns.reports.insert(
                0,
                ColumnReport {
                    name: name.clone(),
                    ..ColumnReport::default()
                },
            );
            self.stats.row_names_column = Some(name);
        }
        out.extend_from_slice(columns.header.clean.join(",").as_bytes());
        out.extend_from_slice(TERMINATOR);
    }

    fn data_record(
        &mut self,
        text: &[u8],
        raw: Option<&[u8]>,
        fields: &Fields,
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        self.stats.rows_in += 1;
        let Limits {
            max_rows,
            max_record_lines,
            ..
        } = self.policy.limits;
        if self.stats.rows_in > max_rows {
            return Err(format!("more than {max_rows} data rows, the limit"));
        }
        if fields.is_blank() {
            self.stats.rows_blank += 1;
            return Ok(());
        }
        self.write_header(Some(fields.len()), out);
        let quotes_or_breaks = memchr::memchr3(b'"', b'\n', b'\r', fields.bytes).is_some();
        // Line breaks inside the record (in quoted fields): a rejected record reports its span.
        let breaks = if quotes_or_breaks {
            Tally::of(fields.bytes).breaks()
        } else {
            0
        };
        if quotes_or_breaks {
            let lines = 1 + breaks;
            if lines > max_record_lines {
                return Err(format!(
                    "line {}: one record runs over {lines} lines, more than the limit of {}; \
                     a quote is probably not closed where it should be",
                    self.record_line(text),
                    max_record_lines
                ));
            }
        }
        let ncols = self.columns.as_ref().map_or(0, |c| c.header.clean.len());
        let used = match self.fit_to_header(fields, ncols) {
            Ok(used) => used,
            Err(reason) => {
                let line = self.record_line(text);
                self.reject(line, breaks, None, reason, Some(fields));
                return Ok(());
            }
        };
        let ctrl = has_control(fields.bytes);
        let tags =
            self.policy.markup != MarkupPolicy::Keep && markup::may_hold_markup(fields.bytes);
        let dirty = ctrl || tags;
        let checks = self.cell_checks();
        // A record that needs no change and is already RFC 4180 is copied as it came.
        if let Some(raw) = raw {
            let has_quote = quotes_or_breaks && memchr::memchr(b'"', fields.bytes).is_some();
            if !dirty
                && !has_quote
                && fields.len() == ncols
                && is_clean_rfc4180(raw, fields, checks)
            {
                out.extend_from_slice(raw);
                out.extend_from_slice(TERMINATOR);
                self.stats.rows_out += 1;
                return Ok(());
            }
        }
        let row_start = out.len();
        for col in 0..ncols {
            let cell = if col < used { fields.get(col) } else { &[] };
            let written = if dirty || checks.needs_work(cell) {
                self.cell(col, cell, ncols, out)
            } else {
                write_field(out, cell, ncols);
                Ok(())
            };
            if let Err((column, reason)) = written {
                out.truncate(row_start);
                let line = self.record_line(text);
                self.reject(line, breaks, Some(column), reason, Some(fields));
                return Ok(());
            }
            out.push(b',');
        }
        out.pop();
        out.extend_from_slice(TERMINATOR);
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
        let check_markup = !columns.markup_allowed[col];
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
        if check_markup && markup::has_markup(value.as_bytes()) {
            if self.policy.markup == MarkupPolicy::RejectRow {
                return Err((name.clone(), "cell holds HTML/script markup".into()));
            }
            self.scratch.clear();
            markup::neutralize(value, &mut self.scratch);
            report.markup_neutralized += 1;
            cells.markup_neutralized += 1;
            value = &self.scratch;
        }
        if self.policy.formulas != CellPolicy::Keep && is_formula_like(value, &self.policy.numbers)
        {
            if self.policy.formulas == CellPolicy::RejectRow {
                return Err((name.clone(), "cell starts like a formula".into()));
            }
            self.cell.push('\'');
            report.formulas_neutralized += 1;
            cells.formulas_neutralized += 1;
        }
        self.cell.push_str(value);
        write_field(out, self.cell.as_bytes(), ncols);
        Ok(())
    }

    /// Records a rejected row starting on `line` and holding `breaks` line breaks.
    fn reject(
        &mut self,
        line: u64,
        breaks: u64,
        column: Option<String>,
        reason: String,
        fields: Option<&Fields>,
    ) {
        self.stats.rows_rejected += 1;
        let header = self.columns.as_ref().map(|c| c.header.clean.as_slice());
        self.errors
            .row(header, line, column.as_deref(), &reason, fields);
        if self.stats.rejects.len() < MAX_LISTED_REJECTS {
            self.stats.rejects.push(RowReject {
                line,
                end_line: line + breaks,
                column,
                reason,
            });
        }
    }
}

/// Whether `raw`, the bytes a record was parsed from, is already what the clean output would
/// hold: comma-separated, every field either bare or wholly quoted, no field too long or
/// formula-like or a script URL. The caller has checked that the parsed cells hold no `"`, so a field that
/// opens with a quote is exactly its content plus the two quotes, and must end with one;
/// anything after a closing quote (`"ab"c`, which csv-core accepts) fails that test.
fn is_clean_rfc4180(raw: &[u8], fields: &Fields, checks: CellChecks) -> bool {
    let (mut r, mut start) = (0, 0);
    let last = fields.ends.len().wrapping_sub(1);
    for (i, &end) in fields.ends.iter().enumerate() {
        let cell = &fields.bytes[start..end];
        start = end;
        if checks.needs_work(cell) {
            return false;
        }
        if raw.get(r) == Some(&b'"') {
            let close = r + cell.len() + 1;
            if raw.get(close) != Some(&b'"') {
                return false;
            }
            r = close + 1;
        } else {
            r += cell.len();
        }
        // Each cell is followed by a comma, the last one by the end of the record.
        match raw.get(r) {
            Some(b',') => r += 1,
            None if i == last && r == raw.len() => return true,
            _ => return false,
        }
    }
    false
}

/// Whether `raw` (a comma-separated record) is `n` cells, each in quotes.
fn every_cell_quoted(raw: &[u8], n: usize) -> bool {
    raw.len() >= 2
        && raw.starts_with(b"\"")
        && raw.ends_with(b"\"")
        && memchr::memmem::find_iter(raw, b"\",\"").count() + 1 == n
}

fn trim_line_break(mut raw: &[u8]) -> &[u8] {
    while let Some((b'\r' | b'\n', rest)) = raw.split_last() {
        raw = rest;
    }
    raw
}

/// Whether the clean output quotes `field`: when it holds a comma, quote or line break, and,
/// in a one-column file, when it is empty, so the row does not read back as a blank line.
fn must_quote(field: &[u8], ncols: usize) -> bool {
    needs_quotes(field) || (ncols == 1 && field.is_empty())
}

/// Writes one field as RFC 4180, quoted when [`must_quote`] says so.
fn write_field(out: &mut Vec<u8>, field: &[u8], ncols: usize) {
    if !must_quote(field, ncols) {
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

/// How [`plain_record`] fares in the piece being parsed. In a piece where most records need
/// csv-core anyway (a file full of formulas, say), looking first is wasted, so it stops.
#[derive(Debug, Default)]
struct PlainRun {
    indexed: bool,
    found: u32,
    missed: u32,
}

impl PlainRun {
    fn worth_it(&self) -> bool {
        self.missed < 32 || self.missed <= self.found
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;

    thread_local! {
        static PLAIN_ROWS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Everything `Rows` gives for `text` pushed in `piece`-byte pieces: output, outcome,
    /// counts, rejects and column reports.
    fn run(text: &[u8], policy: &Policy, piece: usize, plain: bool) -> (Vec<u8>, String) {
        let mut rows = Rows::new(policy.clone(), b',');
        rows.plain = plain;
        let mut out = Vec::new();
        let outcome = text
            .chunks(piece.max(1))
            .try_for_each(|p| rows.push(p, &mut out))
            .and_then(|()| rows.finish(&mut out));
        PLAIN_ROWS.with(|n| n.set(n.get() + rows.plain_rows));
        let seen = format!(
            "{outcome:?} {:?} {:?} {}",
            rows.stats,
            rows.column_reports(),
            rows.line_endings()
        );
        (out, seen)
    }

    /// Mostly well-formed rows of three fields, with every kind of thing that sends a record
    /// to csv-core mixed in.
    fn rowish() -> impl Strategy<Value = Vec<u8>> {
        let field = prop_oneof![
            30 => "[a-z0-9 .@]{0,8}".prop_map(String::into_bytes),
            15 => "[a-z0-9 ,:]{0,8}".prop_map(|s| format!("\"{s}\"").into_bytes()),
            1 => Just(b"\"a\"\"b\"".to_vec()),
            1 => Just(b"\"a\r\nb\"".to_vec()),
            1 => Just(b"\"a\"b".to_vec()),
            1 => Just(b"a\"b".to_vec()),
            1 => Just(b"=1+2".to_vec()),
            1 => Just(b"-3".to_vec()),
            1 => Just(b"12:30".to_vec()),
            1 => Just(b"javascript:x".to_vec()),
            1 => Just(b"\"javascript\"".to_vec()),
            1 => Just(b"\":x\"".to_vec()),
            1 => Just(b"<b>".to_vec()),
            1 => Just(b"x&#58;".to_vec()),
            1 => Just(b"on load=1".to_vec()),
            1 => Just(b"a\x07b".to_vec()),
            1 => Just("\u{a0}".as_bytes().to_vec()),
            1 => Just(b"\t".to_vec()),
            1 => Just(b"0123456789abcdefghij".to_vec()),
        ];
        let ending = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n\n".to_vec()),
        ];
        let width = prop_oneof![4 => Just(3usize), 1 => 1usize..5];
        let fields = width.prop_flat_map(move |n| proptest::collection::vec(field.clone(), n));
        let row = (fields, ending).prop_map(|(fields, end)| [fields.join(&b','), end].concat());
        proptest::collection::vec(row, 0..40)
            .prop_map(|rows| [b"a,b,c\r\n".to_vec(), rows.concat()].concat())
    }

    fn policy(variant: u8) -> Policy {
        let mut policy = Policy::default();
        match variant {
            1 => policy.formulas = CellPolicy::Keep,
            2 => policy.markup = MarkupPolicy::Keep,
            3 => policy.ragged_rows = RaggedRows::Pad,
            4 => policy.limits.max_field_bytes = 12,
            5 => policy.limits.max_rows = 7,
            _ => {}
        }
        policy
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn records_found_without_csv_core_come_out_as_csv_core_would_give_them(
            text in rowish(),
            piece in prop_oneof![1usize..16, 16usize..400, Just(usize::MAX)],
            variant in 0u8..6,
        ) {
            let policy = policy(variant);
            prop_assert_eq!(run(&text, &policy, piece, true), run(&text, &policy, piece, false));
        }
    }

    #[test]
    fn the_generated_rows_do_take_the_plain_path() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        PLAIN_ROWS.with(|n| n.set(0));
        for _ in 0..200 {
            let text = rowish().new_tree(&mut runner).unwrap().current();
            run(&text, &Policy::default(), usize::MAX, true);
        }
        let plain = PLAIN_ROWS.with(std::cell::Cell::get);
        assert!(plain > 500, "only {plain} rows copied without csv-core");
    }

    #[test]
    fn the_plain_path_takes_most_rows_of_a_regular_file() {
        let text = b"a,b,c\r\n1,\"x, y\",z\r\n2,q,\"r\"\r\n3,\"s\"\"\",t\r\n".repeat(50);
        let mut rows = Rows::new(Policy::default(), b',');
        let mut out = Vec::new();
        rows.push(&text, &mut out).unwrap();
        rows.finish(&mut out).unwrap();
        // The header of every block after the first is a data row too: 50 + 3 * 50 - 1 rows,
        // all but the 50 with a doubled quote, and the first (it writes the header, which R's
        // row names may widen), copied without csv-core.
        assert_eq!(rows.stats.rows_out, 199);
        assert_eq!(rows.plain_rows, 148);
        assert_eq!(run(&text, &Policy::default(), 1000, false).0, out);
    }
}
