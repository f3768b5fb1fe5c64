//! Pipeline (dataset) configuration: which files belong to a dataset and how they are sanitized.
//!
//! The file is TOML (`pipelines.toml`); each `[datasets.NAME]` table describes one kind of file.
//! A config is checked completely when it is loaded, so a Lambda refuses a bad config at cold
//! start instead of failing on the first file. Every error names the dataset and the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::delivery::spec::{check_delivery, RawDelivery};
use crate::delivery::Delivery;
use crate::drop::{AfterCopy, DropMatch, DropPattern, DropRule};
use crate::sanitize::header::normalize_header;
use crate::sanitize::spreadsheet::SheetChoice;
use crate::sanitize::{
    CellPolicy, Encoding, Limits, MarkupPolicy, NumberFormat, Policy, RaggedRows,
};
use crate::transform::spec::{check_mapping, Mapping, RawMapping};

/// Why a pipeline config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read pipeline config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not have the expected shape.
    #[error("pipeline config {origin} is not valid: {message}")]
    Syntax { origin: String, message: String },
    /// A value parses but makes no sense.
    #[error("dataset `{dataset}`, field `{field}`: {message}")]
    Invalid {
        dataset: String,
        field: String,
        message: String,
    },
    /// A dataset was asked for by name and is not in the config.
    #[error("dataset `{name}` is not in the pipeline config (known: {known})")]
    UnknownDataset { name: String, known: String },
}

/// A loaded and checked pipeline config.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    datasets: BTreeMap<String, Dataset>,
    /// Which config this is, for a file's plan and the logs: where it was read from and its
    /// S3 version, or the SHA-256 of its text ([`Self::version`]).
    version: String,
    /// Each dataset's section as written, as JSON: what a file's plan keeps, so the file is
    /// finished with the config it started with (see [`PipelineConfig::dataset_snapshot`]).
    snapshots: BTreeMap<String, serde_json::Value>,
}

/// One dataset: a kind of file and how to treat it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset's name (its key in the config).
    pub name: String,
    /// Key prefix in the quarantine bucket whose objects belong to this dataset.
    pub prefix: String,
    /// How its files are sanitized.
    pub sanitize: Policy,
    /// How its clean rows become JSON records; `None` until the dataset has one.
    pub mapping: Option<Mapping>,
    /// Where its records go.
    pub delivery: Delivery,
    /// How its files arrive by FTP/SFTP drop, if they do.
    pub drop: Option<DropRule>,
    /// The first 16 hex digits of the SHA-256 of its section as written: two datasets of one
    /// name with the same digest were read from the same section.
    pub digest: String,
}

/// Where a drop object goes.
#[derive(Debug, Clone)]
pub enum DropRoute<'a> {
    /// Exactly one dataset's pattern takes it.
    Dataset {
        dataset: &'a Dataset,
        site: Option<String>,
    },
    /// No dataset (or more than one) takes it: recorded as rejected with this reason.
    Unmatched(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    datasets: BTreeMap<String, RawDataset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    prefix: String,
    #[serde(default)]
    sanitize: RawSanitize,
    #[serde(default)]
    mapping: Option<RawMapping>,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    drop: Option<RawDrop>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrop {
    pattern: String,
    #[serde(default = "default_settle_seconds")]
    settle_seconds: u64,
    #[serde(default)]
    after_copy: RawAfterCopy,
    #[serde(default)]
    archive_prefix: Option<String>,
}

fn default_settle_seconds() -> u64 {
    60
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawAfterCopy {
    #[default]
    Keep,
    Delete,
    Archive,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSanitize {
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default)]
    required_columns: Vec<String>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    ragged_rows: Option<RaggedRows>,
    #[serde(default)]
    formulas: Option<CellPolicy>,
    #[serde(default)]
    markup: Option<MarkupPolicy>,
    #[serde(default)]
    markup_allowed_columns: Vec<String>,
    #[serde(default)]
    number_format: Option<RawNumberFormat>,
    #[serde(default)]
    header_row: Option<u64>,
    #[serde(default)]
    row_names_column: Option<String>,
    #[serde(default)]
    sheet: Option<SheetChoice>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumberFormat {
    decimal: String,
    #[serde(default)]
    grouping: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_file_bytes: Option<u64>,
    max_columns: Option<usize>,
    max_field_bytes: Option<usize>,
    max_rows: Option<u64>,
    max_record_lines: Option<u64>,
    max_rejected_share: Option<f64>,
    max_compression_ratio: Option<u64>,
    max_spreadsheet_bytes: Option<u64>,
    max_error_rows: Option<u64>,
}

impl PipelineConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks config text; `origin` names it in errors (a path or URI).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        };
        let raw: RawConfig = toml::from_str(text).map_err(syntax)?;
        // The same text again, untyped: each dataset's section as the operator wrote it.
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let snapshots: BTreeMap<String, serde_json::Value> = match table.get("datasets") {
            Some(toml::Value::Table(sections)) => sections
                .iter()
                .filter_map(|(name, section)| {
                    Some((name.clone(), serde_json::to_value(section).ok()?))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut datasets = BTreeMap::new();
        for (name, raw) in raw.datasets {
            let section = snapshots.get(&name).unwrap_or(&serde_json::Value::Null);
            let dataset = check_dataset(&name, raw, section_digest(section))?;
            datasets.insert(name, dataset);
        }
        check_prefixes_disjoint(&datasets)?;
        check_archives_outside_drops(&datasets)?;
        Ok(Self {
            datasets,
            snapshots,
            version: format!("{origin}#sha256={}", short_sha256(text.as_bytes())),
        })
    }

    /// The same config, known by its storage's version (an S3 object's version id, or its
    /// ETag when the bucket keeps no versions) rather than the digest of its text.
    pub fn with_version(mut self, origin: &str, version: &str) -> Self {
        self.version = format!("{origin}#{version}");
        self
    }

    /// Which config this is: `<path or URI>#sha256=<16 hex digits>` (its text's digest), or
    /// `<URI>#versionId=<id>` / `#etag=<etag>` when read from S3.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Dataset `name`'s section of the config, as JSON: kept with a file's plan so that a
    /// config changed while the file is in flight is used only by new files
    /// ([`Self::dataset_from_snapshot`] reads it back, with the same checks).
    pub fn dataset_snapshot(&self, name: &str) -> Option<&serde_json::Value> {
        self.snapshots.get(name)
    }

    /// The dataset a [`Self::dataset_snapshot`] describes, checked as at load.
    pub fn dataset_from_snapshot(
        name: &str,
        snapshot: &serde_json::Value,
    ) -> Result<Dataset, ConfigError> {
        let raw: RawDataset =
            serde_json::from_value(snapshot.clone()).map_err(|e| ConfigError::Syntax {
                origin: format!("the plan of a file of dataset `{name}`"),
                message: e.to_string(),
            })?;
        check_dataset(name, raw, section_digest(snapshot))
    }

    /// The dataset with this name.
    pub fn dataset(&self, name: &str) -> Result<&Dataset, ConfigError> {
        self.datasets
            .get(name)
            .ok_or_else(|| ConfigError::UnknownDataset {
                name: name.to_string(),
                known: self.datasets.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The dataset whose prefix the object key starts with, if any.
    pub fn dataset_for_key(&self, key: &str) -> Option<&Dataset> {
        self.datasets.values().find(|d| key.starts_with(&d.prefix))
    }

    /// All datasets, by name.
    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }

    /// The drop-bucket prefixes the listener lists: each pattern's literal start, without
    /// any that lies inside another (listing the outer one finds it).
    pub fn drop_prefixes(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .datasets
            .values()
            .filter_map(|d| d.drop.as_ref().map(|r| r.pattern.list_prefix()))
            .collect();
        all.sort();
        all.dedup();
        let outer: Vec<String> = all
            .iter()
            .filter(|p| !all.iter().any(|o| o != *p && p.starts_with(o.as_str())))
            .cloned()
            .collect();
        outer
    }

    /// Which dataset a drop object belongs to. A key two patterns take is refused rather
    /// than guessed.
    pub fn route_drop(&self, key: &str) -> DropRoute<'_> {
        let mut hits = self.datasets.values().filter_map(|d| {
            let rule = d.drop.as_ref()?;
            rule.pattern
                .matches(key)
                .map(|DropMatch { site }| (d, site))
        });
        match (hits.next(), hits.next()) {
            (None, _) => DropRoute::Unmatched("the path matches no dataset's drop pattern".into()),
            (Some((dataset, site)), None) => DropRoute::Dataset { dataset, site },
            (Some((a, _)), Some((b, _))) => DropRoute::Unmatched(format!(
                "the path matches the drop patterns of both `{}` and `{}`",
                a.name, b.name
            )),
        }
    }
}

pub(crate) fn invalid(dataset: &str, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        dataset: dataset.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The digest a dataset's section is known by ([`Dataset::digest`]); serde_json writes object
/// keys sorted, so it does not depend on the order the section was written in.
pub fn section_digest(section: &serde_json::Value) -> String {
    short_sha256(section.to_string().as_bytes())
}

fn short_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn check_dataset(name: &str, raw: RawDataset, digest: String) -> Result<Dataset, ConfigError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            name,
            "name",
            "dataset names use lowercase letters, digits, `_` and `-`",
        ));
    }
    if raw.prefix.is_empty() || !raw.prefix.ends_with('/') {
        return Err(invalid(
            name,
            "prefix",
            format!(
                "must be a non-empty key prefix ending in `/`, got {:?}",
                raw.prefix
            ),
        ));
    }
    let sanitize = check_sanitize(name, raw.sanitize)?;
    let mapping = raw.mapping.map(|m| check_mapping(name, m)).transpose()?;
    let delivery = check_delivery(name, raw.delivery)?;
    let drop = raw.drop.map(|d| check_drop(name, d)).transpose()?;
    Ok(Dataset {
        name: name.to_string(),
        prefix: raw.prefix,
        sanitize,
        mapping,
        delivery,
        drop,
        digest,
    })
}

fn check_drop(ds: &str, raw: RawDrop) -> Result<DropRule, ConfigError> {
    let pattern =
        DropPattern::parse(&raw.pattern).map_err(|e| invalid(ds, "drop.pattern", e.to_string()))?;
    if raw.settle_seconds > 24 * 3600 {
        return Err(invalid(
            ds,
            "drop.settle_seconds",
            format!("{} is more than a day", raw.settle_seconds),
        ));
    }
    let after_copy = match (raw.after_copy, raw.archive_prefix) {
        (RawAfterCopy::Archive, Some(prefix)) if !prefix.is_empty() && prefix.ends_with('/') => {
            AfterCopy::Archive { prefix }
        }
        (RawAfterCopy::Archive, Some(prefix)) => {
            return Err(invalid(
                ds,
                "drop.archive_prefix",
                format!("must be a non-empty key prefix ending in `/`, got {prefix:?}"),
            ))
        }
        (RawAfterCopy::Archive, None) => {
            return Err(invalid(
                ds,
                "drop.archive_prefix",
                "is required when after_copy = \"archive\"",
            ))
        }
        (_, Some(_)) => {
            return Err(invalid(
                ds,
                "drop.archive_prefix",
                "is only used with after_copy = \"archive\"",
            ))
        }
        (RawAfterCopy::Keep, None) => AfterCopy::Keep,
        (RawAfterCopy::Delete, None) => AfterCopy::Delete,
    };
    Ok(DropRule {
        pattern,
        settle: std::time::Duration::from_secs(raw.settle_seconds),
        after_copy,
    })
}

/// An archived drop must not be listed again as a new drop.
fn check_archives_outside_drops(datasets: &BTreeMap<String, Dataset>) -> Result<(), ConfigError> {
    let listed: Vec<String> = datasets
        .values()
        .filter_map(|d| d.drop.as_ref().map(|r| r.pattern.list_prefix()))
        .collect();
    for d in datasets.values() {
        let Some(AfterCopy::Archive { prefix }) = d.drop.as_ref().map(|r| &r.after_copy) else {
            continue;
        };
        if let Some(clash) = listed
            .iter()
            .find(|l| prefix.starts_with(l.as_str()) || l.starts_with(prefix.as_str()))
        {
            return Err(invalid(
                &d.name,
                "drop.archive_prefix",
                format!(
                    "{prefix:?} overlaps the drop area {clash:?}: archived files would be \
                     picked up again"
                ),
            ));
        }
    }
    Ok(())
}

fn check_sanitize(ds: &str, raw: RawSanitize) -> Result<Policy, ConfigError> {
    let defaults = Policy::default();
    let encoding = match raw.encoding.as_deref() {
        None | Some("auto") => None,
        Some(label) => Some(Encoding::from_label(label).ok_or_else(|| {
            invalid(
                ds,
                "sanitize.encoding",
                format!("unknown encoding {label:?} (use auto or a WHATWG encoding label such as utf-8, windows-1252, utf-16le, big5, macintosh or iso-8859-7)"),
            )
        })?),
    };
    let delimiter = match raw.delimiter.as_deref() {
        None | Some("auto") => None,
        Some(",") => Some(b','),
        Some(";") => Some(b';'),
        Some("\t") | Some("tab") => Some(b'\t'),
        Some("|") => Some(b'|'),
        Some(other) => {
            return Err(invalid(
                ds,
                "sanitize.delimiter",
                format!(
                    "unsupported delimiter {other:?} (use auto, \",\", \";\", \"tab\" or \"|\")"
                ),
            ))
        }
    };
    let required_columns = clean_names(ds, "sanitize.required_columns", &raw.required_columns)?;
    let mut aliases = BTreeMap::new();
    for (from, to) in &raw.aliases {
        let field = format!("sanitize.aliases.{from}");
        let from_clean = normalize_header(from)
            .ok_or_else(|| invalid(ds, &field, "an alias must have letters or digits"))?;
        let to_clean = clean_names(ds, &field, std::slice::from_ref(to))?.remove(0);
        aliases.insert(from_clean, to_clean);
    }
    let markup_allowed_columns = clean_names(
        ds,
        "sanitize.markup_allowed_columns",
        &raw.markup_allowed_columns,
    )?;
    let limits = check_limits(ds, raw.limits, &defaults.limits)?;
    let numbers = match raw.number_format {
        None => defaults.numbers,
        Some(format) => check_number_format(ds, format)?,
    };
    Ok(Policy {
        encoding,
        delimiter,
        required_columns,
        aliases,
        ragged_rows: raw.ragged_rows.unwrap_or(defaults.ragged_rows),
        formulas: raw.formulas.unwrap_or(defaults.formulas),
        markup: raw.markup.unwrap_or(defaults.markup),
        markup_allowed_columns,
        numbers,
        header_row: match raw.header_row {
            Some(0) => return Err(invalid(ds, "sanitize.header_row", "lines count from 1")),
            other => other,
        },
        row_names_column: match raw.row_names_column {
            Some(name) => clean_names(ds, "sanitize.row_names_column", &[name])?.remove(0),
            None => defaults.row_names_column,
        },
        sheet: match raw.sheet {
            Some(SheetChoice::Position(0)) => {
                return Err(invalid(
                    ds,
                    "sanitize.sheet",
                    "a sheet's position counts from 1",
                ))
            }
            Some(SheetChoice::Name(name)) if name.is_empty() => {
                return Err(invalid(ds, "sanitize.sheet", "a sheet name is not empty"))
            }
            other => other,
        },
        limits,
    })
}

fn check_number_format(ds: &str, raw: RawNumberFormat) -> Result<NumberFormat, ConfigError> {
    let one_char = |field: &str, text: &str| -> Result<char, ConfigError> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_ascii_alphanumeric() && !matches!(c, '+' | '-') => Ok(c),
            _ => Err(invalid(
                ds,
                field,
                format!(
                    "must be one character other than a letter, digit, `+` or `-`, got {text:?}"
                ),
            )),
        }
    };
    let decimal = one_char("sanitize.number_format.decimal", &raw.decimal)?;
    let grouping = raw
        .grouping
        .iter()
        .map(|g| one_char("sanitize.number_format.grouping", g))
        .collect::<Result<Vec<_>, _>>()?;
    if grouping.contains(&decimal) {
        return Err(invalid(
            ds,
            "sanitize.number_format.grouping",
            format!("{decimal:?} is the decimal separator and cannot group digits too"),
        ));
    }
    Ok(NumberFormat { decimal, grouping })
}

/// Column names in config must already be clean names, so that what the operator wrote is
/// exactly what appears in the clean file.
fn clean_names(ds: &str, field: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    names
        .iter()
        .map(|name| match normalize_header(name) {
            Some(clean) if &clean == name => Ok(clean),
            Some(clean) => Err(invalid(
                ds,
                field,
                format!("{name:?} is not a clean column name; write {clean:?}"),
            )),
            None => Err(invalid(
                ds,
                field,
                "a column name must have letters or digits",
            )),
        })
        .collect()
}

fn check_limits(ds: &str, raw: RawLimits, defaults: &Limits) -> Result<Limits, ConfigError> {
    fn positive<T: PartialOrd + Default + Copy>(
        ds: &str,
        field: &str,
        value: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        match value {
            Some(v) if v <= T::default() => Err(invalid(
                ds,
                &format!("sanitize.limits.{field}"),
                "must be greater than 0",
            )),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }
    let share = raw
        .max_rejected_share
        .unwrap_or(defaults.max_rejected_share);
    if !(0.0..=1.0).contains(&share) {
        return Err(invalid(
            ds,
            "sanitize.limits.max_rejected_share",
            "must be a fraction between 0.0 and 1.0",
        ));
    }
    Ok(Limits {
        max_file_bytes: positive(
            ds,
            "max_file_bytes",
            raw.max_file_bytes,
            defaults.max_file_bytes,
        )?,
        max_columns: positive(ds, "max_columns", raw.max_columns, defaults.max_columns)?,
        max_field_bytes: positive(
            ds,
            "max_field_bytes",
            raw.max_field_bytes,
            defaults.max_field_bytes,
        )?,
        max_rows: positive(ds, "max_rows", raw.max_rows, defaults.max_rows)?,
        max_record_lines: positive(
            ds,
            "max_record_lines",
            raw.max_record_lines,
            defaults.max_record_lines,
        )?,
        max_rejected_share: share,
        max_compression_ratio: positive(
            ds,
            "max_compression_ratio",
            raw.max_compression_ratio,
            defaults.max_compression_ratio,
        )?,
        max_spreadsheet_bytes: positive(
            ds,
            "max_spreadsheet_bytes",
            raw.max_spreadsheet_bytes,
            defaults.max_spreadsheet_bytes,
        )?,
        max_error_rows: raw.max_error_rows.unwrap_or(defaults.max_error_rows),
    })
}

fn check_prefixes_disjoint(datasets: &BTreeMap<String, Dataset>) -> Result<(), ConfigError> {
    for a in datasets.values() {
        for b in datasets.values() {
            if a.name != b.name && b.prefix.starts_with(&a.prefix) {
                return Err(invalid(
                    &b.name,
                    "prefix",
                    format!(
                        "{:?} lies inside dataset `{}`'s prefix {:?}: a key must belong to one dataset",
                        b.prefix, a.name, a.prefix
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [datasets.orders]
        prefix = "incoming/orders/"
        [datasets.orders.sanitize]
        required_columns = ["order_id", "sku"]
        aliases = { "Order Number" = "order_id" }
        ragged_rows = "pad"
        markup = "neutralize"
        markup_allowed_columns = ["notes_html"]
        [datasets.orders.sanitize.limits]
        max_rows = 1000

        [datasets.train_movements]
        prefix = "incoming/train_movements/"
    "#;

    #[test]
    fn loads_datasets_with_defaults_for_what_is_not_said() {
        let config = PipelineConfig::parse(GOOD, "test").unwrap();
        let orders = config.dataset("orders").unwrap();
        assert_eq!(orders.sanitize.required_columns, ["order_id", "sku"]);
        assert_eq!(orders.sanitize.aliases["order_number"], "order_id");
        assert_eq!(orders.sanitize.ragged_rows, RaggedRows::Pad);
        assert_eq!(orders.sanitize.limits.max_rows, 1000);
        assert_eq!(
            orders.sanitize.limits.max_columns,
            Limits::default().max_columns
        );
        let trains = config.dataset("train_movements").unwrap();
        assert_eq!(trains.sanitize.ragged_rows, RaggedRows::Reject);
        assert_eq!(trains.sanitize.numbers, NumberFormat::default());
    }

    #[test]
    fn a_dataset_read_back_from_its_snapshot_is_the_dataset_loaded() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines.toml"))
                .expect("the bundled pipelines.toml");
        let config = PipelineConfig::parse(&text, "pipelines.toml").unwrap();
        let mut seen = 0;
        for name in config.datasets.keys() {
            let snapshot = config
                .dataset_snapshot(name)
                .expect("every dataset has one");
            let back = PipelineConfig::dataset_from_snapshot(name, snapshot).unwrap();
            let loaded = config.dataset(name).unwrap();
            assert_eq!(format!("{back:?}"), format!("{loaded:?}"), "{name}");
            seen += 1;
        }
        assert!(seen >= 2, "the bundled config has its datasets");
    }

    #[test]
    fn a_dataset_may_set_its_number_format_and_any_encoding() {
        let text = "[datasets.ledger]\nprefix = \"in/\"\n[datasets.ledger.sanitize]\n\
                    encoding = \"iso-8859-7\"\n\
                    number_format = { decimal = \",\", grouping = [\".\", \" \"] }\n";
        let config = PipelineConfig::parse(text, "t").unwrap();
        let policy = &config.dataset("ledger").unwrap().sanitize;
        assert_eq!(policy.numbers.decimal, ',');
        assert_eq!(policy.numbers.grouping, ['.', ' ']);
        assert_eq!(
            policy.encoding.map(|e| e.label()).as_deref(),
            Some("iso-8859-7")
        );
    }

    #[test]
    fn the_shipped_pipelines_toml_loads() {
        let text = include_str!("../../../pipelines.toml");
        let config = PipelineConfig::parse(text, "pipelines.toml").unwrap();
        let names: Vec<&str> = config.datasets().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["orders", "train_movements"]);
    }

    #[test]
    fn finds_dataset_by_key_prefix() {
        let config = PipelineConfig::parse(GOOD, "test").unwrap();
        let hit = config.dataset_for_key("incoming/orders/2026/11/23/x.csv");
        assert_eq!(hit.map(|d| d.name.as_str()), Some("orders"));
        assert!(config.dataset_for_key("incoming/other/x.csv").is_none());
    }

    #[test]
    fn unknown_dataset_lists_known_ones() {
        let config = PipelineConfig::parse(GOOD, "test").unwrap();
        let err = config.dataset("invoices").unwrap_err().to_string();
        assert!(
            err.contains("invoices") && err.contains("orders, train_movements"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_field_naming_it() {
        let text =
            "[datasets.orders]\nprefix = \"in/\"\n[datasets.orders.sanitize]\nformula = \"keep\"\n";
        let err = PipelineConfig::parse(text, "pipelines.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("formula") && err.contains("pipelines.toml"),
            "{err}"
        );
    }

    #[test]
    fn refuses_bad_values_naming_dataset_and_field() {
        let cases = [
            ("prefix = \"in\"", "prefix"),
            (
                "prefix = \"in/\"\nsanitize.encoding = \"latin-9x\"",
                "sanitize.encoding",
            ),
            (
                "prefix = \"in/\"\nsanitize.delimiter = \"#\"",
                "sanitize.delimiter",
            ),
            (
                "prefix = \"in/\"\nsanitize.required_columns = [\"Order ID\"]",
                "sanitize.required_columns",
            ),
            (
                "prefix = \"in/\"\nsanitize.limits.max_columns = 0",
                "sanitize.limits.max_columns",
            ),
            (
                "prefix = \"in/\"\nsanitize.limits.max_rejected_share = 1.5",
                "sanitize.limits.max_rejected_share",
            ),
            (
                "prefix = \"in/\"\nsanitize.number_format = { decimal = \",\", grouping = [\",\"] }",
                "sanitize.number_format.grouping",
            ),
            (
                "prefix = \"in/\"\nsanitize.number_format = { decimal = \"dot\" }",
                "sanitize.number_format.decimal",
            ),
        ];
        for (body, field) in cases {
            let text = format!("[datasets.orders]\n{body}\n");
            let err = PipelineConfig::parse(&text, "t").unwrap_err().to_string();
            assert!(
                err.contains("`orders`") && err.contains(field),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn refuses_overlapping_prefixes() {
        let text = "[datasets.a]\nprefix = \"in/\"\n[datasets.b]\nprefix = \"in/b/\"\n";
        let err = PipelineConfig::parse(text, "t").unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("prefix"), "{err}");
    }

    #[test]
    fn refuses_bad_enum_value() {
        let text = "[datasets.a]\nprefix = \"in/\"\nsanitize.ragged_rows = \"ignore\"\n";
        let err = PipelineConfig::parse(text, "t").unwrap_err().to_string();
        assert!(
            err.contains("ignore") && err.contains("ragged_rows"),
            "{err}"
        );
    }

    #[test]
    fn routes_drops_by_pattern_with_their_site() {
        let text = "[datasets.tm]\nprefix = \"in/tm/\"\n\
            drop = { pattern = \"ftp/{site}/tm/**\", after_copy = \"archive\", archive_prefix = \"done/\" }\n\
            [datasets.orders]\nprefix = \"in/orders/\"\n\
            drop = { pattern = \"ftp/shop/orders/*\", settle_seconds = 5, after_copy = \"delete\" }\n";
        let config = PipelineConfig::parse(text, "t").unwrap();
        assert_eq!(config.drop_prefixes(), vec!["ftp/".to_string()]);
        match config.route_drop("ftp/leeds/tm/x.csv") {
            DropRoute::Dataset { dataset, site } => {
                assert_eq!(dataset.name, "tm");
                assert_eq!(site.as_deref(), Some("leeds"));
            }
            other => panic!("{other:?}"),
        }
        // `shop` is also a site name for `tm`'s pattern, but `orders` is not `tm`.
        match config.route_drop("ftp/shop/orders/o.csv") {
            DropRoute::Dataset { dataset, site } => {
                assert_eq!(dataset.name, "orders");
                assert_eq!(site, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            config.route_drop("ftp/leeds/misc/x.csv"),
            DropRoute::Unmatched(_)
        ));
        let orders = config.dataset("orders").unwrap().drop.clone().unwrap();
        assert_eq!(orders.settle, std::time::Duration::from_secs(5));
        assert_eq!(orders.after_copy, AfterCopy::Delete);
    }

    #[test]
    fn a_path_two_patterns_take_is_unmatched_with_both_names() {
        let text = "[datasets.a]\nprefix = \"in/a/\"\ndrop = { pattern = \"ftp/{site}/**\" }\n\
            [datasets.b]\nprefix = \"in/b/\"\ndrop = { pattern = \"ftp/x/*\" }\n";
        let config = PipelineConfig::parse(text, "t").unwrap();
        match config.route_drop("ftp/x/f.csv") {
            DropRoute::Unmatched(reason) => {
                assert!(reason.contains("`a`") && reason.contains("`b`"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_bad_drop_settings_naming_the_field() {
        for (drop, field) in [
            ("{ pattern = \"{site}/**\" }", "drop.pattern"),
            (
                "{ pattern = \"ftp/**\", after_copy = \"archive\" }",
                "drop.archive_prefix",
            ),
            (
                "{ pattern = \"ftp/**\", archive_prefix = \"a/\" }",
                "drop.archive_prefix",
            ),
            (
                "{ pattern = \"ftp/**\", after_copy = \"archive\", archive_prefix = \"ftp/old/\" }",
                "drop.archive_prefix",
            ),
            (
                "{ pattern = \"ftp/**\", settle_seconds = 90000 }",
                "drop.settle_seconds",
            ),
        ] {
            let text = format!("[datasets.a]\nprefix = \"in/\"\ndrop = {drop}\n");
            let err = PipelineConfig::parse(&text, "t").unwrap_err().to_string();
            assert!(err.contains(field), "{drop}: {err}");
        }
    }
}
