//! The mapping part of a dataset's config: which JSON fields a record has and where each one
//! comes from. Checked completely at load time; errors name the dataset and the field.

use std::collections::BTreeSet;

use chrono_tz::Tz;
use serde::Deserialize;

use super::value::{parse_boolean, parse_decimal, parse_integer};
use crate::config::ConfigError;

/// How a dataset's clean rows become JSON records.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub fields: Vec<FieldSpec>,
    /// Output field whose date a date-range filter looks at.
    pub date_field: Option<String>,
    /// Share (0.0–1.0) of rows that may fail mapping before the file fails.
    pub max_error_share: f64,
    /// Separator between integer and fraction in decimal cells.
    pub decimal_separator: char,
    /// What identifies a record across uploads, for delivering only what changed.
    pub delta: Option<Delta>,
}

/// A keyed dataset's delta settings: records whose key and content were delivered before are
/// not sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Output field names (dotted) whose values identify a record, in key order.
    pub record_key: Vec<String>,
    /// Which earlier file a new one is compared with to find missing keys.
    pub scope: DeltaScope,
    pub on_missing: OnMissing,
}

/// The files whose keys are compared to find the ones a new file no longer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaScope {
    /// The previous file with the same original name (the same export, uploaded again).
    Name,
    /// The previous file from the same drop site.
    Site,
    /// The previous file of the dataset, whatever its name.
    Dataset,
}

/// What happens to keys the previous file in scope had and this one has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Counted and listed in the transform report; nothing is sent.
    Report,
    /// Also sent, as `{<key fields>, "deleted": true}` records.
    Send,
}

/// One output field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// Dotted path in the record: `customer.email` nests.
    pub path: Vec<String>,
    pub source: Source,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A clean CSV column, read as `kind`; `empty` says what an empty cell gives.
    Column {
        column: String,
        kind: Kind,
        empty: Empty,
    },
    /// The same JSON value in every record.
    Constant(serde_json::Value),
}

/// The type a cell is read as.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    String,
    Integer,
    Decimal,
    Boolean,
    /// Written `YYYY-MM-DD`.
    Date {
        formats: Vec<TimeFormat>,
    },
    /// Written as RFC 3339 in UTC (`2026-11-23T07:14:00Z`); cells without an offset are read
    /// in `timezone`.
    DateTime {
        formats: Vec<TimeFormat>,
        timezone: Tz,
    },
}

/// A strftime-style format, compiled once at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeFormat {
    pub text: String,
    pub items: Vec<chrono::format::Item<'static>>,
    /// The format reads a UTC offset (`%z`, `%:z`, ...), so no time zone is needed.
    pub has_offset: bool,
    /// The format is one of the fixed layouts read without chrono's general parser.
    pub(crate) fixed: Option<super::fixed_time::FixedLayout>,
}

impl TimeFormat {
    fn compile(text: &str) -> Result<Self, String> {
        use chrono::format::{Fixed, Item};
        let items = chrono::format::StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|_| format!("{text:?} is not a valid strftime format"))?;
        let has_offset = items.iter().any(|item| {
            matches!(
                item,
                Item::Fixed(
                    Fixed::TimezoneOffset
                        | Fixed::TimezoneOffsetColon
                        | Fixed::TimezoneOffsetColonZ
                        | Fixed::TimezoneOffsetZ
                        | Fixed::TimezoneOffsetDoubleColon
                        | Fixed::TimezoneOffsetTripleColon
                        | Fixed::RFC3339
                )
            )
        });
        Ok(Self {
            text: text.to_string(),
            items,
            has_offset,
            fixed: super::fixed_time::FixedLayout::of(text),
        })
    }
}

/// What an empty (or whitespace-only) cell gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Empty {
    Null,
    /// This value, already checked against the field's type.
    Default(serde_json::Value),
    /// The row fails.
    Error,
}

impl Mapping {
    /// The clean column names the mapping reads, each once.
    pub fn columns(&self) -> BTreeSet<&str> {
        self.fields
            .iter()
            .filter_map(|f| match &f.source {
                Source::Column { column, .. } => Some(column.as_str()),
                Source::Constant(_) => None,
            })
            .collect()
    }
}

/// Date formats tried when a field lists none.
pub const DEFAULT_DATE_FORMATS: [&str; 1] = ["%Y-%m-%d"];
/// Datetime formats tried when a field lists none.
pub const DEFAULT_DATETIME_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMapping {
    #[serde(default)]
    date_field: Option<String>,
    #[serde(default)]
    max_error_share: Option<f64>,
    #[serde(default)]
    decimal_separator: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    record_key: Option<Vec<String>>,
    #[serde(default)]
    delta_scope: Option<DeltaScope>,
    #[serde(default)]
    on_missing: Option<OnMissing>,
    fields: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    value: Option<toml::Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    empty: Option<String>,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    formats: Vec<String>,
    #[serde(default)]
    timezone: Option<String>,
}

fn invalid(dataset: &str, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        dataset: dataset.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

pub(crate) fn check_mapping(ds: &str, raw: RawMapping) -> Result<Mapping, ConfigError> {
    let timezone = parse_tz(ds, "mapping.timezone", raw.timezone.as_deref())?;
    let decimal_separator = match raw.decimal_separator.as_deref() {
        None | Some(".") => '.',
        Some(",") => ',',
        Some(other) => {
            return Err(invalid(
                ds,
                "mapping.decimal_separator",
                format!("{other:?} is not \".\" or \",\""),
            ))
        }
    };
    let max_error_share = raw.max_error_share.unwrap_or(0.05);
    if !(0.0..=1.0).contains(&max_error_share) {
        return Err(invalid(
            ds,
            "mapping.max_error_share",
            "must be a fraction between 0.0 and 1.0",
        ));
    }
    if raw.fields.is_empty() {
        return Err(invalid(
            ds,
            "mapping.fields",
            "a mapping needs at least one field",
        ));
    }
    let mut fields = Vec::with_capacity(raw.fields.len());
    for field in raw.fields {
        fields.push(check_field(ds, field, timezone, decimal_separator)?);
    }
    check_paths(ds, &fields)?;
    if let Some(date_field) = &raw.date_field {
        let target = fields.iter().find(|f| &f.path.join(".") == date_field);
        let dated = matches!(
            target.map(|f| &f.source),
            Some(Source::Column {
                kind: Kind::Date { .. } | Kind::DateTime { .. },
                ..
            })
        );
        if !dated {
            return Err(invalid(
                ds,
                "mapping.date_field",
                format!("{date_field:?} is not a date or datetime field of this mapping"),
            ));
        }
    }
    let delta = check_delta(ds, raw.record_key, raw.delta_scope, raw.on_missing, &fields)?;
    Ok(Mapping {
        fields,
        date_field: raw.date_field,
        max_error_share,
        decimal_separator,
        delta,
    })
}

/// A record key names required column fields that hold a value (not a nested object), each
/// once; the delta settings mean nothing without one.
fn check_delta(
    ds: &str,
    record_key: Option<Vec<String>>,
    scope: Option<DeltaScope>,
    on_missing: Option<OnMissing>,
    fields: &[FieldSpec],
) -> Result<Option<Delta>, ConfigError> {
    let Some(record_key) = record_key else {
        if scope.is_some() || on_missing.is_some() {
            let which = if scope.is_some() {
                "mapping.delta_scope"
            } else {
                "mapping.on_missing"
            };
            return Err(invalid(
                ds,
                which,
                "only means something with a `record_key`",
            ));
        }
        return Ok(None);
    };
    let at = "mapping.record_key";
    if record_key.is_empty() {
        return Err(invalid(ds, at, "name at least one output field"));
    }
    for (i, name) in record_key.iter().enumerate() {
        if record_key[..i].contains(name) {
            return Err(invalid(ds, at, format!("{name:?} is named twice")));
        }
        let field = fields.iter().find(|f| &f.path.join(".") == name);
        match field.map(|f| &f.source) {
            Some(Source::Column { empty: Empty::Error, .. }) => {}
            Some(Source::Column { .. }) => {
                return Err(invalid(
                    ds,
                    at,
                    format!("{name:?} is not required (`required = true`): a key needs a value in every record"),
                ))
            }
            Some(Source::Constant(_)) => {
                return Err(invalid(
                    ds,
                    at,
                    format!("{name:?} is a constant: it cannot tell records apart"),
                ))
            }
            None if fields.iter().any(|f| f.path.join(".").starts_with(&format!("{name}."))) => {
                return Err(invalid(
                    ds,
                    at,
                    format!("{name:?} is a nested object; name the fields inside it (e.g. \"{name}.id\")"),
                ))
            }
            None => {
                return Err(invalid(
                    ds,
                    at,
                    format!("{name:?} is not an output field of this mapping"),
                ))
            }
        }
    }
    Ok(Some(Delta {
        record_key,
        scope: scope.unwrap_or(DeltaScope::Name),
        on_missing: on_missing.unwrap_or(OnMissing::Report),
    }))
}

fn parse_tz(ds: &str, field: &str, name: Option<&str>) -> Result<Tz, ConfigError> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            invalid(
                ds,
                field,
                format!("{name:?} is not an IANA time zone (e.g. Europe/Paris)"),
            )
        }),
    }
}

fn check_field(
    ds: &str,
    raw: RawField,
    default_tz: Tz,
    separator: char,
) -> Result<FieldSpec, ConfigError> {
    let at = |what: &str| format!("mapping.fields.{}{what}", raw.name);
    let path: Vec<String> = raw.name.split('.').map(str::to_string).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            ds,
            &at(""),
            "field names are non-empty, dot-separated parts",
        ));
    }
    let source = match (raw.column, raw.value) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                ds,
                &at(""),
                "give either `column` or `value`, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                ds,
                &at(""),
                "give a `column` or a constant `value`",
            ))
        }
        (None, Some(value)) => Source::Constant(toml_to_json(value)),
        (Some(column), None) => {
            if crate::sanitize::header::normalize_header(&column).as_deref()
                != Some(column.as_str())
            {
                return Err(invalid(
                    ds,
                    &at(".column"),
                    format!(
                        "{column:?} is not a clean column name (snake_case, as in the clean file)"
                    ),
                ));
            }
            let timezone = match raw.timezone.as_deref() {
                Some(_) => parse_tz(ds, &at(".timezone"), raw.timezone.as_deref())?,
                None => default_tz,
            };
            let formats = |defaults: &[&str]| -> Result<Vec<TimeFormat>, ConfigError> {
                or_default(raw.formats.clone(), defaults)
                    .iter()
                    .map(|f| {
                        TimeFormat::compile(f).map_err(|why| invalid(ds, &at(".formats"), why))
                    })
                    .collect()
            };
            let kind = match raw.kind.as_deref().unwrap_or("string") {
                "string" => Kind::String,
                "integer" => Kind::Integer,
                "decimal" => Kind::Decimal,
                "boolean" => Kind::Boolean,
                "date" => Kind::Date {
                    formats: formats(&DEFAULT_DATE_FORMATS)?,
                },
                "datetime" => Kind::DateTime {
                    formats: formats(&DEFAULT_DATETIME_FORMATS)?,
                    timezone,
                },
                other => {
                    return Err(invalid(
                        ds,
                        &at(".type"),
                        format!(
                            "unknown type {other:?} (string, integer, decimal, boolean, date, datetime)"
                        ),
                    ))
                }
            };
            let empty =
                match (raw.required, raw.empty.as_deref(), raw.default) {
                    (true, None | Some("error"), None) => Empty::Error,
                    (true, ..) => {
                        return Err(invalid(
                            ds,
                            &at(".required"),
                            "a required field cannot also have an empty policy or default",
                        ))
                    }
                    (false, None | Some("null"), None) => Empty::Null,
                    (false, Some("error"), None) => Empty::Error,
                    (false, None | Some("default"), Some(default)) => Empty::Default(
                        check_default(ds, &at(".default"), &kind, default, separator)?,
                    ),
                    (false, Some("default"), None) => {
                        return Err(invalid(
                            ds,
                            &at(".default"),
                            "empty = \"default\" needs a `default`",
                        ))
                    }
                    (false, Some(other), _) => {
                        return Err(invalid(
                            ds,
                            &at(".empty"),
                            format!("unknown policy {other:?} (null, default, error)"),
                        ))
                    }
                };
            Source::Column {
                column,
                kind,
                empty,
            }
        }
    };
    Ok(FieldSpec { path, source })
}

fn or_default(formats: Vec<String>, defaults: &[&str]) -> Vec<String> {
    if formats.is_empty() {
        defaults.iter().map(|f| f.to_string()).collect()
    } else {
        formats
    }
}

/// A default must be what the field's type would produce.
fn check_default(
    ds: &str,
    field: &str,
    kind: &Kind,
    default: toml::Value,
    separator: char,
) -> Result<serde_json::Value, ConfigError> {
    let wrong = |why: String| invalid(ds, field, why);
    Ok(match (kind, default) {
        (Kind::String, toml::Value::String(s)) => s.into(),
        (Kind::Integer, toml::Value::Integer(i)) => i.into(),
        (Kind::Integer, toml::Value::String(s)) => {
            parse_integer(&s).map_err(|e| wrong(e.to_string()))?.into()
        }
        (Kind::Decimal, toml::Value::String(s)) => {
            let d = parse_decimal(&s, separator).map_err(|e| wrong(e.to_string()))?;
            serde_json::from_str(d.as_str()).map_err(|e| wrong(e.to_string()))?
        }
        (Kind::Decimal, toml::Value::Integer(i)) => i.into(),
        (Kind::Boolean, toml::Value::Boolean(b)) => b.into(),
        (Kind::Boolean, toml::Value::String(s)) => {
            parse_boolean(&s).map_err(|e| wrong(e.to_string()))?.into()
        }
        (Kind::Date { .. } | Kind::DateTime { .. }, toml::Value::String(s)) => s.into(),
        (kind, value) => {
            return Err(wrong(format!(
                "default {value:?} does not fit the field's type {}",
                kind_name(kind)
            )))
        }
    })
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Integer => "integer",
        Kind::Decimal => "decimal (write it as a string: \"19.90\")",
        Kind::Boolean => "boolean",
        Kind::Date { .. } => "date",
        Kind::DateTime { .. } => "datetime",
    }
}

/// No two fields at one path, and no field both a value and an object (`a` and `a.b`).
fn check_paths(ds: &str, fields: &[FieldSpec]) -> Result<(), ConfigError> {
    for (i, a) in fields.iter().enumerate() {
        for b in &fields[i + 1..] {
            let (short, long) = if a.path.len() <= b.path.len() {
                (a, b)
            } else {
                (b, a)
            };
            if long.path.starts_with(&short.path) {
                return Err(invalid(
                    ds,
                    &format!("mapping.fields.{}", long.path.join(".")),
                    format!("clashes with field {:?}", short.path.join(".")),
                ));
            }
        }
    }
    Ok(())
}

fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(table) => table
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}
