//! Mapping one clean row to one JSON record, written straight into a byte buffer.

use std::io::Write as _;

use chrono::format::Parsed;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::fixed_time::Fixed;
use super::spec::{Empty, FieldSpec, Kind, Mapping, Source, TimeFormat};
use super::value::{parse_boolean, parse_integer, write_decimal, write_json_string};

/// Why a row could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Output field name (dotted).
    pub field: String,
    /// The start of the offending cell (at most 40 characters).
    pub value: String,
    pub reason: String,
}

/// The cells of one row, by column: a slice of `&str`, or a row read by the file driver.
pub trait Cells {
    /// The cell in `column`; `None` past the end of the row.
    fn cell(&self, column: usize) -> Option<&str>;
}

impl Cells for [&str] {
    fn cell(&self, column: usize) -> Option<&str> {
        self.get(column).copied()
    }
}

impl<const N: usize> Cells for [&str; N] {
    fn cell(&self, column: usize) -> Option<&str> {
        self.get(column).copied()
    }
}

/// A mapping bound to one file's header: column positions resolved, output shape planned.
#[derive(Debug)]
pub struct RecordMapper<'m> {
    mapping: &'m Mapping,
    /// Column index of each field (`usize::MAX` for constants).
    columns: Vec<usize>,
    plan: Vec<Step>,
    date_field: Option<usize>,
    /// Field index of each part of the record key, in key order (empty without a key).
    key_fields: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Step {
    /// `"key":{` (the first key of an object has no comma before it).
    Open {
        key: Vec<u8>,
        first: bool,
    },
    Close,
    Field {
        index: usize,
        key: Vec<u8>,
        first: bool,
    },
}

impl<'m> RecordMapper<'m> {
    /// Binds `mapping` to a header; `Err` names the columns of required fields the file lacks.
    /// An optional field whose column is not in the file reads as an empty cell in every row
    /// (an export without its optional columns is still an export).
    pub fn new(mapping: &'m Mapping, header: &[String]) -> Result<Self, String> {
        let mut missing = Vec::new();
        let columns = mapping
            .fields
            .iter()
            .map(|f| match &f.source {
                Source::Column { column, empty, .. } => {
                    header.iter().position(|h| h == column).unwrap_or_else(|| {
                        // A required field (an empty cell fails the row) needs its column.
                        if *empty == Empty::Error {
                            missing.push(column.as_str());
                        }
                        usize::MAX
                    })
                }
                Source::Constant(_) => usize::MAX,
            })
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            return Err(format!(
                "the clean file lacks column(s) that required fields read: {}",
                missing.join(", ")
            ));
        }
        let date_field = mapping.date_field.as_ref().and_then(|name| {
            mapping
                .fields
                .iter()
                .position(|f| &f.path.join(".") == name)
        });
        let indices: Vec<usize> = (0..mapping.fields.len()).collect();
        let mut plan = Vec::new();
        plan_object(&mapping.fields, &indices, 0, &mut plan);
        // The config check made sure every key part is a field.
        let key_fields = mapping
            .delta
            .iter()
            .flat_map(|d| &d.record_key)
            .filter_map(|name| {
                mapping
                    .fields
                    .iter()
                    .position(|f| &f.path.join(".") == name)
            })
            .collect();
        Ok(Self {
            mapping,
            columns,
            plan,
            date_field,
            key_fields,
        })
    }

    /// Whether the mapping has a record key ([`write_keyed`](Self::write_keyed) fills it).
    pub fn is_keyed(&self) -> bool {
        !self.key_fields.is_empty()
    }

    /// [`write`](Self::write), and the record's key into `key` (cleared first): a JSON array
    /// of the key fields' values exactly as the record has them, e.g. `["A-1","SKU-9"]`.
    /// `spans` is scratch space the caller keeps between rows.
    pub fn write_keyed(
        &self,
        row: &(impl Cells + ?Sized),
        out: &mut Vec<u8>,
        spans: &mut Vec<(usize, usize)>,
        key: &mut Vec<u8>,
    ) -> Result<Option<NaiveDate>, FieldError> {
        spans.clear();
        spans.resize(self.mapping.fields.len(), (0, 0));
        let date = self.write_with(row, out, Some(spans))?;
        key.clear();
        key.push(b'[');
        for (i, &field) in self.key_fields.iter().enumerate() {
            if i > 0 {
                key.push(b',');
            }
            let (start, end) = spans[field];
            key.extend_from_slice(&out[start..end]);
        }
        key.push(b']');
        Ok(date)
    }

    /// Appends the row's record to `out` and returns the date of the date field, if the
    /// mapping has one and the row gives it. On `Err`, `out` is left as it was.
    pub fn write(
        &self,
        row: &(impl Cells + ?Sized),
        out: &mut Vec<u8>,
    ) -> Result<Option<NaiveDate>, FieldError> {
        self.write_with(row, out, None)
    }

    /// Writes the record; with `spans`, notes where each field's value lies in `out`.
    fn write_with(
        &self,
        row: &(impl Cells + ?Sized),
        out: &mut Vec<u8>,
        mut spans: Option<&mut Vec<(usize, usize)>>,
    ) -> Result<Option<NaiveDate>, FieldError> {
        let start = out.len();
        let mut date = None;
        out.push(b'{');
        for step in &self.plan {
            match step {
                Step::Open { key, first } => {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    out.push(b'{');
                }
                Step::Close => out.push(b'}'),
                Step::Field { index, key, first } => {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    let field = &self.mapping.fields[*index];
                    let cell = row.cell(self.columns[*index]).unwrap_or("");
                    let value_start = out.len();
                    match self.value(field, cell, out) {
                        Ok(d) => {
                            if self.date_field == Some(*index) {
                                date = d;
                            }
                            if let Some(spans) = spans.as_deref_mut() {
                                spans[*index] = (value_start, out.len());
                            }
                        }
                        Err(reason) => {
                            out.truncate(start);
                            return Err(FieldError {
                                field: field.path.join("."),
                                value: cell.chars().take(40).collect(),
                                reason,
                            });
                        }
                    }
                }
            }
        }
        out.push(b'}');
        Ok(date)
    }

    /// Writes one field's value; returns its date for date and datetime fields.
    fn value(
        &self,
        field: &FieldSpec,
        cell: &str,
        out: &mut Vec<u8>,
    ) -> Result<Option<NaiveDate>, String> {
        let (kind, empty) = match &field.source {
            Source::Constant(value) => {
                serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())?;
                return Ok(None);
            }
            Source::Column { kind, empty, .. } => (kind, empty),
        };
        let cell = trim(cell);
        if cell.is_empty() {
            return match empty {
                Empty::Null => {
                    out.extend_from_slice(b"null");
                    Ok(None)
                }
                Empty::Default(value) => {
                    serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())?;
                    Ok(None)
                }
                Empty::Error => Err("required value is empty".into()),
            };
        }
        match kind {
            Kind::String => write_json_string(out, cell),
            Kind::Integer => {
                let n = parse_integer(cell).map_err(|e| e.to_string())?;
                write_integer(out, n);
            }
            Kind::Decimal => {
                write_decimal(out, cell, self.mapping.decimal_separator)
                    .map_err(|e| e.to_string())?;
            }
            Kind::Boolean => {
                let b = parse_boolean(cell).map_err(|e| e.to_string())?;
                out.extend_from_slice(if b { b"true" } else { b"false" });
            }
            Kind::Date { formats } => {
                let date = parse_date(cell, formats)?;
                out.push(b'"');
                write_date(out, date);
                out.push(b'"');
                return Ok(Some(date));
            }
            Kind::DateTime { formats, timezone } => {
                let (utc, local_date) = parse_datetime(cell, formats, *timezone)?;
                out.push(b'"');
                write_date(out, utc.date_naive());
                let t = utc.time();
                out.push(b'T');
                write_digits(out, t.hour(), 2);
                out.push(b':');
                write_digits(out, t.minute(), 2);
                out.push(b':');
                write_digits(out, t.second(), 2);
                let millis = t.nanosecond() / 1_000_000;
                if millis > 0 {
                    out.push(b'.');
                    write_digits(out, millis.min(999), 3);
                }
                out.extend_from_slice(b"Z\"");
                return Ok(Some(local_date));
            }
        }
        Ok(None)
    }
}

/// `cell` without surrounding whitespace; the common cell, with none, costs two byte checks.
fn trim(cell: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    let bytes = cell.as_bytes();
    if plain(bytes.first()) && plain(bytes.last()) {
        return cell;
    }
    cell.trim()
}

fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    let year = date.year();
    if (0..=9999).contains(&year) {
        write_digits(out, year as u32, 4);
    } else {
        let _ = write!(out, "{year:04}");
    }
    out.push(b'-');
    write_digits(out, date.month(), 2);
    out.push(b'-');
    write_digits(out, date.day(), 2);
}

/// Writes `n` zero-padded to `width` digits (`n` has at most that many).
fn write_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn write_integer(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut value = n.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn formats_text(formats: &[TimeFormat]) -> String {
    formats
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn parse_date(cell: &str, formats: &[TimeFormat]) -> Result<NaiveDate, String> {
    formats
        .iter()
        .find_map(|f| {
            match f.fixed.map(|layout| layout.read(cell)) {
                Some(Fixed::Read(value)) => return Some(value.date()),
                Some(Fixed::NotThisFormat) => return None,
                Some(Fixed::Unsure) | None => {}
            }
            let mut parsed = Parsed::new();
            chrono::format::parse(&mut parsed, cell, f.items.iter()).ok()?;
            parsed.to_naive_date().ok()
        })
        .ok_or_else(|| format!("not a date in the format(s) {}", formats_text(formats)))
}

/// The instant in UTC, and its date in `tz` (what a date-range filter compares).
fn parse_datetime(
    cell: &str,
    formats: &[TimeFormat],
    tz: Tz,
) -> Result<(DateTime<Utc>, NaiveDate), String> {
    for format in formats {
        let naive = match format.fixed.map(|layout| layout.read(cell)) {
            Some(Fixed::Read(naive)) => naive,
            Some(Fixed::NotThisFormat) => continue,
            Some(Fixed::Unsure) | None => {
                let mut parsed = Parsed::new();
                if chrono::format::parse(&mut parsed, cell, format.items.iter()).is_err() {
                    continue;
                }
                if format.has_offset {
                    if let Ok(dt) = parsed.to_datetime() {
                        let utc = dt.with_timezone(&Utc);
                        return Ok((utc, utc.with_timezone(&tz).date_naive()));
                    }
                    continue;
                }
                let (Ok(date), Ok(time)) = (parsed.to_naive_date(), parsed.to_naive_time()) else {
                    continue;
                };
                date.and_time(time)
            }
        };
        return match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(local) => Ok((local.with_timezone(&Utc), naive.date())),
            chrono::LocalResult::Ambiguous(..) => Err(format!(
                "{naive} happens twice in {tz} (clocks went back): add an offset to the value"
            )),
            chrono::LocalResult::None => Err(format!(
                "{naive} does not exist in {tz} (clocks went forward)"
            )),
        };
    }
    Err(format!(
        "not a datetime in the format(s) {}",
        formats_text(formats)
    ))
}

/// Lays out the object holding `indices` (fields whose paths share the first `depth` parts),
/// children in the order their first field appears in the config.
fn plan_object(fields: &[FieldSpec], indices: &[usize], depth: usize, plan: &mut Vec<Step>) {
    let mut seen: Vec<&str> = Vec::new();
    for &i in indices {
        let name = fields[i].path[depth].as_str();
        if seen.contains(&name) {
            continue;
        }
        let first = seen.is_empty();
        seen.push(name);
        let mut key = Vec::new();
        write_json_string(&mut key, name);
        key.push(b':');
        if fields[i].path.len() == depth + 1 {
            plan.push(Step::Field {
                index: i,
                key,
                first,
            });
        } else {
            let children: Vec<usize> = indices
                .iter()
                .copied()
                .filter(|&j| fields[j].path.len() > depth + 1 && fields[j].path[depth] == name)
                .collect();
            plan.push(Step::Open { key, first });
            plan_object(fields, &children, depth + 1, plan);
            plan.push(Step::Close);
        }
    }
}
