//! What a quarantine object's metadata (`x-amz-meta-…`) says about its file, read and written
//! here alone: `sluice upload`, a local run, a replay and the listener's drop copies write it;
//! the sanitizer, the listener's reconciliation and the re-drive read it.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::message::DateRange;

/// The FTP/SFTP site of a dropped file.
pub const SITE: &str = "sluice-site";
/// The drop object a file was copied from (`s3://…`).
pub const SOURCE: &str = "sluice-source";
/// The earlier run a quarantine object replays (`sluice replay --from sanitize`).
pub const REPLAY_OF: &str = "sluice-replay-of";
/// Who uploaded the file, named in its final-status notification.
pub const UPLOADED_BY: &str = "sluice-uploaded-by";
/// When the file was first put anywhere (RFC 3339), for a copy written later than that.
pub const UPLOADED_AT: &str = "sluice-uploaded-at";
/// The file's name on the uploader's machine.
pub const SOURCE_NAME: &str = "sluice-source-name";
/// The SHA-256 of the content (hex), by which `sluice upload` recognises its object.
pub const CONTENT_SHA256: &str = "sluice-sha256";
/// The first and last date (`YYYY-MM-DD`) of the records to keep.
pub const DATE_START: &str = "sluice-date-start";
pub const DATE_END: &str = "sluice-date-end";
/// `true`: a full replay of a keyed dataset (every record sent, changed or not).
pub const FULL: &str = "sluice-full";

/// The metadata Sluice reads and writes on a quarantine object. Keys it does not know are left
/// alone by [`UploadMetadata::write_into`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadMetadata {
    pub site: Option<String>,
    pub source: Option<String>,
    pub replay_of: Option<String>,
    pub uploaded_by: Option<String>,
    /// RFC 3339, as written.
    pub uploaded_at: Option<String>,
    pub source_name: Option<String>,
    pub content_sha256: Option<String>,
    /// Only well-formed dates (`YYYY-MM-DD`) are read; anything else is ignored.
    pub date_range: Option<DateRange>,
    pub full: bool,
}

impl UploadMetadata {
    pub fn read(metadata: &HashMap<String, String>) -> Self {
        let text = |key: &str| metadata.get(key).filter(|v| !v.is_empty()).cloned();
        let date = |key: &str| text(key).filter(|v| is_date(v));
        let (start, end) = (date(DATE_START), date(DATE_END));
        UploadMetadata {
            site: text(SITE),
            source: text(SOURCE),
            replay_of: text(REPLAY_OF),
            uploaded_by: text(UPLOADED_BY),
            uploaded_at: text(UPLOADED_AT),
            source_name: text(SOURCE_NAME),
            content_sha256: text(CONTENT_SHA256),
            date_range: (start.is_some() || end.is_some()).then_some(DateRange { start, end }),
            full: metadata
                .get(FULL)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// Sets each of its keys in `metadata` (a key it has no value for is removed), leaving
    /// other keys as they are.
    pub fn write_into(&self, metadata: &mut HashMap<String, String>) {
        let range = self.date_range.as_ref();
        let values = [
            (SITE, self.site.clone()),
            (SOURCE, self.source.clone()),
            (REPLAY_OF, self.replay_of.clone()),
            (UPLOADED_BY, self.uploaded_by.clone()),
            (UPLOADED_AT, self.uploaded_at.clone()),
            (SOURCE_NAME, self.source_name.clone()),
            (CONTENT_SHA256, self.content_sha256.clone()),
            (DATE_START, range.and_then(|r| r.start.clone())),
            (DATE_END, range.and_then(|r| r.end.clone())),
            (FULL, self.full.then(|| "true".to_string())),
        ];
        for (key, value) in values {
            match value {
                Some(value) => metadata.insert(key.to_string(), value),
                None => metadata.remove(key),
            };
        }
    }

    /// Its keys and values, for a new object.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        self.write_into(&mut metadata);
        metadata
    }

    /// When the file was uploaded: its `sluice-uploaded-at`, else the object's own write
    /// time. What orders the files of a delta scope.
    pub fn uploaded_at(&self, last_modified: Option<SystemTime>) -> Option<SystemTime> {
        self.uploaded_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(SystemTime::from)
            .or(last_modified)
    }
}

fn is_date(v: &str) -> bool {
    v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_other_keys_are_left_alone() {
        let written = UploadMetadata {
            uploaded_by: Some("ops@example.com".into()),
            source_name: Some("orders export.csv".into()),
            content_sha256: Some("ab".repeat(32)),
            date_range: Some(DateRange {
                start: Some("2026-11-01".into()),
                end: None,
            }),
            full: true,
            ..UploadMetadata::default()
        };
        let mut map = HashMap::from([("content-origin".to_string(), "browser".to_string())]);
        written.write_into(&mut map);
        assert_eq!(map[DATE_START], "2026-11-01");
        assert_eq!(map[FULL], "true");
        assert_eq!(map["content-origin"], "browser");
        assert_eq!(UploadMetadata::read(&map), written);
        // A replay without a range or full flag clears them.
        let mut replay = UploadMetadata::read(&map);
        replay.date_range = None;
        replay.full = false;
        replay.write_into(&mut map);
        assert!(!map.contains_key(DATE_START) && !map.contains_key(FULL));
    }

    #[test]
    fn malformed_dates_and_flags_are_ignored() {
        let map = HashMap::from([
            (DATE_START.to_string(), "1 Nov 2026".to_string()),
            (FULL.to_string(), "yes".to_string()),
        ]);
        let read = UploadMetadata::read(&map);
        assert_eq!((read.date_range, read.full), (None, false));
    }

    #[test]
    fn the_upload_time_is_the_metadata_s_else_the_object_s() {
        let written = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let map = HashMap::from([(UPLOADED_AT.to_string(), "2026-12-07T10:00:00Z".to_string())]);
        let at = UploadMetadata::read(&map)
            .uploaded_at(Some(written))
            .unwrap();
        assert_eq!(
            chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339(),
            "2026-12-07T10:00:00+00:00"
        );
        assert_eq!(
            UploadMetadata::default().uploaded_at(Some(written)),
            Some(written)
        );
    }
}
