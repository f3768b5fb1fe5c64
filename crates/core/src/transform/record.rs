//! Mapping one clean row to one JSON record, written straight into a byte buffer.

use std::io::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::spec::{Empty, FieldSpec, Kind, Mapping, Source};
use super::value::{parse_boolean, parse_decimal, parse_integer, write_json_string};

/// Why a row could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Output field name (dotted).
    pub field: String,
    /// The start of the offending cell (at most 40 characters).
    pub value: String,
    pub reason: String,
}

/// A mapping bound to one file's header: column positions resolved, output shape planned.
#[derive(Debug)]
pub struct RecordMapper<'m> {
    mapping: &'m Mapping,
    /// Column index of each field (`usize::MAX` for constants).
    columns: Vec<usize>,
    plan: Vec<Step>,
    date_field: Option<usize>,
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
    /// Binds `mapping` to a header; `Err` names the columns the file lacks.
    pub fn new(mapping: &'m Mapping, header: &[String]) -> Result<Self, String> {
        let mut missing = Vec::new();
        let columns = mapping
            .fields
            .iter()
            .map(|f| match &f.source {
                Source::Column { column, .. } => {
                    header.iter().position(|h| h == column).unwrap_or_else(|| {
                        missing.push(column.as_str());
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
                "the clean file lacks column(s) the mapping reads: {}",
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
        Ok(Self {
            mapping,
            columns,
            plan,
            date_field,
        })
    }

    /// Appends the row's record to `out` and returns the date of the date field, if the
    /// mapping has one and the row gives it. On `Err`, `out` is left as it was.
    pub fn write(&self, row: &[&str], out: &mut Vec<u8>) -> Result<Option<NaiveDate>, FieldError> {
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
                    let cell = row.get(self.columns[*index]).copied().unwrap_or("");
                    match self.value(field, cell, out) {
                        Ok(d) => {
                            if self.date_field == Some(*index) {
                                date = d;
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
        if cell.trim().is_empty() {
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
                let _ = write!(out, "{n}");
            }
            Kind::Decimal => {
                let d = parse_decimal(cell, self.mapping.decimal_separator)
                    .map_err(|e| e.to_string())?;
                out.extend_from_slice(d.as_str().as_bytes());
            }
            Kind::Boolean => {
                let b = parse_boolean(cell).map_err(|e| e.to_string())?;
                out.extend_from_slice(if b { b"true" } else { b"false" });
            }
            Kind::Date { formats } => {
                let date = parse_date(cell.trim(), formats)?;
                out.push(b'"');
                write_date(out, date);
                out.push(b'"');
                return Ok(Some(date));
            }
            Kind::DateTime { formats, timezone } => {
                let (utc, local_date) = parse_datetime(cell.trim(), formats, *timezone)?;
                out.push(b'"');
                write_date(out, utc.date_naive());
                let t = utc.time();
                let _ = write!(out, "T{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
                let millis = t.nanosecond() / 1_000_000;
                if millis > 0 {
                    let _ = write!(out, ".{millis:03}");
                }
                out.extend_from_slice(b"Z\"");
                return Ok(Some(local_date));
            }
        }
        Ok(None)
    }
}

fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    );
}

fn parse_date(cell: &str, formats: &[String]) -> Result<NaiveDate, String> {
    formats
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(cell, f).ok())
        .ok_or_else(|| format!("not a date in the format(s) {}", formats.join(" | ")))
}

/// The instant in UTC, and its date in `tz` (what a date-range filter compares).
fn parse_datetime(
    cell: &str,
    formats: &[String],
    tz: Tz,
) -> Result<(DateTime<Utc>, NaiveDate), String> {
    for format in formats {
        if format.contains("%z") || format.contains("%:z") || format.contains("%#z") {
            if let Ok(dt) = DateTime::<FixedOffset>::parse_from_str(cell, format) {
                let utc = dt.with_timezone(&Utc);
                return Ok((utc, utc.with_timezone(&tz).date_naive()));
            }
            continue;
        }
        let Ok(naive) = NaiveDateTime::parse_from_str(cell, format) else {
            continue;
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
        formats.join(" | ")
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
