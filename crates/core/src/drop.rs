//! FTP/SFTP drop areas: which dataset (and site) a drop object belongs to, how long it must sit
//! still before it is taken, and what happens to it once it is copied into quarantine.
//!
//! A drop pattern is a key pattern of `/`-separated segments: literal text, `{site}` (one
//! segment, the sending site), `*` (any one segment) and, last only, `**` (everything below,
//! at least the file name). `ftp/{site}/train-movements/**` takes
//! `ftp/leeds/train-movements/2026/11/24/moves.csv` for site `leeds`.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use uuid::Uuid;

/// Why a drop pattern was refused (the config names the dataset and field around it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Site,
    One,
    Rest,
}

/// A checked drop pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropPattern {
    text: String,
    segments: Vec<Segment>,
}

/// What a key matched: the site, when the pattern names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropMatch {
    pub site: Option<String>,
}

impl DropPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let err = |m: String| Err(PatternError(m));
        if text.starts_with('/') || text.ends_with('/') || text.contains("//") {
            return err(format!(
                "{text:?}: segments are separated by single `/`, with none at either end"
            ));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = text.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "{site}" if segments.contains(&Segment::Site) => {
                    return err(format!("{text:?}: `{{site}}` may appear once"))
                }
                "{site}" => Segment::Site,
                "*" => Segment::One,
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return err(format!("{text:?}: `**` may only be the last segment")),
                literal if literal.contains(['*', '{', '}']) => {
                    return err(format!(
                        "{text:?}: segment {literal:?} mixes text and a wildcard; a segment is \
                         literal text, `{{site}}`, `*` or `**`"
                    ))
                }
                literal => Segment::Literal(literal.to_string()),
            };
            segments.push(segment);
        }
        if !matches!(segments.first(), Some(Segment::Literal(_))) {
            return err(format!(
                "{text:?}: must start with a literal folder (e.g. `ftp/`), so the listener \
                 lists only the drop area and not the whole bucket"
            ));
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The literal folders before the first wildcard, ending in `/` (or the whole key when
    /// the pattern has no wildcard): what the listener lists.
    pub fn list_prefix(&self) -> String {
        let mut prefix = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(text) => {
                    prefix.push_str(text);
                    if i + 1 < self.segments.len() {
                        prefix.push('/');
                    }
                }
                _ => break,
            }
        }
        prefix
    }

    /// Whether `key` is a drop of this pattern, and for which site. A site segment must be a
    /// plain name (letters, digits, `.`, `_`, `-`; at most 64), since it travels in object
    /// metadata and the status tables.
    pub fn matches(&self, key: &str) -> Option<DropMatch> {
        let mut parts = key.split('/');
        let mut site = None;
        for segment in &self.segments {
            match segment {
                Segment::Rest => {
                    let rest: Vec<&str> = parts.by_ref().collect();
                    let named_file = rest.last().is_some_and(|last| !last.is_empty());
                    return named_file.then_some(DropMatch { site });
                }
                Segment::Literal(text) => {
                    if parts.next()? != text {
                        return None;
                    }
                }
                Segment::One => {
                    if parts.next()?.is_empty() {
                        return None;
                    }
                }
                Segment::Site => {
                    let part = parts.next()?;
                    if !is_site_name(part) {
                        return None;
                    }
                    site = Some(part.to_string());
                }
            }
        }
        parts.next().is_none().then_some(DropMatch { site })
    }
}

fn is_site_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What becomes of a drop object once its copy is in quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterCopy {
    /// Left where it is (the listener remembers it by bucket, key and ETag).
    Keep,
    /// Deleted from the drop bucket.
    Delete,
    /// Moved to `<prefix><original key>` in the drop bucket.
    Archive { prefix: String },
}

/// How one dataset's files arrive by FTP/SFTP drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    pub pattern: DropPattern,
    /// How long an object must be unchanged before it is taken: a file still being written
    /// by the FTP server waits for the next run.
    pub settle: Duration,
    pub after_copy: AfterCopy,
}

/// The quarantine key of a drop copied in for a dataset whose quarantine prefix is
/// `prefix`: `<prefix><yyyy>/<mm>/<dd>/<uuid>-<file name>`, the same layout as uploads.
pub fn quarantine_key(prefix: &str, at: DateTime<Utc>, uuid: Uuid, drop_key: &str) -> String {
    let name = drop_key.rsplit('/').next().unwrap_or(drop_key);
    format!(
        "{prefix}{:04}/{:02}/{:02}/{uuid}-{name}",
        at.year(),
        at.month(),
        at.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(p: &DropPattern, key: &str) -> Option<Option<String>> {
        p.matches(key).map(|m| m.site)
    }

    #[test]
    fn matches_sites_and_everything_below() {
        let p = DropPattern::parse("ftp/{site}/train-movements/**").unwrap();
        assert_eq!(p.list_prefix(), "ftp/");
        assert_eq!(
            site(&p, "ftp/leeds/train-movements/a.csv"),
            Some(Some("leeds".into()))
        );
        assert_eq!(
            site(&p, "ftp/york-2/train-movements/2026/11/b.csv"),
            Some(Some("york-2".into()))
        );
        assert_eq!(site(&p, "ftp/leeds/train-movements/"), None);
        assert_eq!(site(&p, "ftp/leeds/train-movements"), None);
        assert_eq!(site(&p, "ftp/leeds/orders/a.csv"), None);
        assert_eq!(site(&p, "ftp//train-movements/a.csv"), None);
        assert_eq!(site(&p, "ftp/le eds/train-movements/a.csv"), None);
        assert_eq!(site(&p, "sftp/leeds/train-movements/a.csv"), None);
    }

    #[test]
    fn one_segment_wildcards_and_literal_ends() {
        let p = DropPattern::parse("drops/orders/*").unwrap();
        assert_eq!(p.list_prefix(), "drops/orders/");
        assert_eq!(site(&p, "drops/orders/a.csv"), Some(None));
        assert_eq!(site(&p, "drops/orders/x/a.csv"), None);
        let exact = DropPattern::parse("drops/daily.csv").unwrap();
        assert_eq!(exact.list_prefix(), "drops/daily.csv");
        assert_eq!(site(&exact, "drops/daily.csv"), Some(None));
    }

    #[test]
    fn refuses_patterns_it_cannot_list_or_read() {
        for bad in [
            "{site}/orders/**",
            "**",
            "ftp/**/orders",
            "ftp/{site}/{site}/**",
            "ftp/si*/**",
            "/ftp/**",
            "ftp//x/**",
            "ftp/",
        ] {
            assert!(DropPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quarantine_key_keeps_the_file_name_under_the_date() {
        let at = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::nil();
        assert_eq!(
            quarantine_key("incoming/tm/", at, id, "ftp/leeds/tm/x/moves.csv"),
            format!("incoming/tm/2026/03/04/{id}-moves.csv")
        );
    }
}
