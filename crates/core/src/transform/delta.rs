//! Delivering only what changed, for a dataset with a record key: each record's key and
//! content hash, the cutting of sent records into batches (by size alone, so the plan made in
//! the first pass gives the batches of the second), the records that say a key is gone, and
//! the report's delta section.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::batch::Batch;
use super::spec::DeltaScope;

/// A record's content hash: SHA-256 of its JSON exactly as delivered.
pub type RecordHash = [u8; 32];

/// Keys listed in a report as missing at most; the count is always complete.
pub const MAX_LISTED_MISSING: usize = 1000;

/// Plan ordinals of "deleted" records start here, after any file's own records.
pub const DELETED_ORDINAL_BASE: u64 = 1 << 40;

pub fn record_hash(json: &[u8]) -> RecordHash {
    Sha256::digest(json).into()
}

/// The record sent for a key the previous file had and this one has not: the key fields at
/// their paths and `"deleted": true`, e.g. `{"orderId":"A-1","line":{"sku":"S"},"deleted":true}`.
pub fn deletion_record(record_key: &[String], key: &str) -> Result<Vec<u8>, String> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(key).map_err(|e| format!("record key {key:?}: {e}"))?;
    if values.len() != record_key.len() {
        return Err(format!(
            "record key {key:?} has {} parts, the dataset's record_key {}",
            values.len(),
            record_key.len()
        ));
    }
    let mut record = serde_json::Map::new();
    for (name, value) in record_key.iter().zip(values) {
        let mut parts: Vec<&str> = name.split('.').collect();
        let leaf = parts.pop().unwrap_or_default();
        let mut at = &mut record;
        for part in parts {
            let slot = at
                .entry(part)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            at = match slot {
                serde_json::Value::Object(map) => map,
                _ => return Err(format!("record key field {name:?} is inside a value")),
            };
        }
        at.insert(leaf.to_string(), value);
    }
    record.insert("deleted".into(), true.into());
    serde_json::to_vec(&record).map_err(|e| e.to_string())
}

/// Which files' keys are compared: the scope's name for one file.
pub fn scope_of(scope: DeltaScope, source_key: &str, site: Option<&str>) -> String {
    match scope {
        DeltaScope::Dataset => "dataset".into(),
        DeltaScope::Site => format!("site:{}", site.unwrap_or("")),
        DeltaScope::Name => format!("name:{}", original_name(source_key)),
    }
}

/// The name a file had when it was uploaded: the last part of its key, without the
/// `<uuid>-` that uploads and the listener put in front.
pub fn original_name(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.split_at_checked(37) {
        Some((prefix, rest)) if prefix.ends_with('-') && Uuid::parse_str(&prefix[..36]).is_ok() => {
            rest
        }
        _ => name,
    }
}

/// Cuts records into batches by their sizes alone, with the same rule as
/// [`Batcher`](super::batch::Batcher): a batch closes when the next record would pass
/// `size` records or `max_bytes` bytes. [`push`](Self::push) says which batch a record is in.
#[derive(Debug, Clone)]
pub struct SizeBatches {
    size: usize,
    max_bytes: usize,
    seq: u32,
    count: usize,
    bytes: usize,
}

impl SizeBatches {
    /// Batches numbered after `seq` (0 for a file's first).
    pub fn new(size: usize, max_bytes: usize, seq: u32) -> Self {
        Self {
            size: size.max(1),
            max_bytes,
            seq,
            count: 0,
            bytes: 1,
        }
    }

    /// The sequence number of the batch a record of `len` bytes goes into.
    pub fn push(&mut self, len: usize) -> u32 {
        let full = self.count == self.size || self.bytes + 1 + len + 1 > self.max_bytes;
        if self.count == 0 || full {
            self.seq += 1;
            self.count = 0;
            self.bytes = 1;
        }
        self.count += 1;
        self.bytes += len + 1;
        self.seq
    }

    /// Batches so far.
    pub fn batches(&self) -> u32 {
        self.seq
    }
}

/// Gathers planned records into the batches the plan numbered: a batch ends where the next
/// record's sequence number differs.
#[derive(Debug, Default)]
pub struct PlannedBatches {
    seq: u32,
    records: Vec<u8>,
    count: usize,
}

impl PlannedBatches {
    /// Adds a record of batch `seq`; returns the batch this closes, with its number.
    pub fn push(&mut self, seq: u32, record: &[u8]) -> Option<(u32, Batch)> {
        let closed = (self.count > 0 && seq != self.seq).then(|| self.take());
        self.seq = seq;
        self.records.push(if self.count == 0 { b'[' } else { b',' });
        self.records.extend_from_slice(record);
        self.count += 1;
        closed
    }

    /// The last batch, if any.
    pub fn finish(mut self) -> Option<(u32, Batch)> {
        (self.count > 0).then(|| self.take())
    }

    fn take(&mut self) -> (u32, Batch) {
        self.records.push(b']');
        let batch = Batch {
            records: std::mem::take(&mut self.records),
            count: self.count,
        };
        self.count = 0;
        (self.seq, batch)
    }
}

/// The transform report's account of a keyed file against what was delivered before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaReport {
    /// The file's scope (`name:<original name>`, `site:<site>` or `dataset`).
    pub scope: String,
    /// The previous file in the scope, compared with for missing keys.
    pub previous_file: Option<Uuid>,
    /// Records sent regardless of what was delivered before (a full replay).
    pub full: bool,
    /// Keys never delivered before: sent.
    pub new: u64,
    /// Keys delivered before with other content: sent.
    pub changed: u64,
    /// Keys delivered before with this content: not sent (sent on a full replay).
    pub unchanged: u64,
    /// Records with a key and content another record is already carrying to the API (a
    /// repeat in this file, or a file being delivered at the same moment): not sent.
    pub repeated: u64,
    /// Keys a newer upload of the scope delivered with other content: this file's record is
    /// stale, and not sent (files are compared in upload order, not processing order).
    #[serde(default)]
    pub superseded: u64,
    /// A newer upload of the scope, when there is one: only the newest file of a scope looks
    /// for missing keys, so `missing` is then `None`.
    #[serde(default)]
    pub newer_file: Option<Uuid>,
    /// Keys the previous file in scope had (and the API was sent) that this file has not.
    /// `None` when not looked for (a date-range filter keeps only part of the file).
    pub missing: Option<u64>,
    /// The first missing keys, sorted.
    pub missing_keys: Vec<serde_json::Value>,
    pub missing_truncated: bool,
    /// Whether "deleted" records were sent for the missing keys (`on_missing = "send"`).
    pub missing_sent: bool,
    /// Batches this file sends.
    pub batches: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::batch::Batcher;

    #[test]
    fn size_batches_cut_where_the_batcher_cuts() {
        let lens = [10usize, 30, 5, 40, 1, 1, 1, 60, 7, 7];
        for (size, max) in [(3, 1000), (100, 50), (2, 25), (1, 100)] {
            let mut batcher = Batcher::new(size, max);
            let mut expected = Vec::new();
            let mut seq = 1;
            for &len in &lens {
                if batcher.push(&vec![b'1'; len]).is_some() {
                    seq += 1;
                }
                expected.push(seq);
            }
            let mut planner = SizeBatches::new(size, max, 0);
            let got: Vec<u32> = lens.iter().map(|&l| planner.push(l)).collect();
            assert_eq!(got, expected, "size {size}, max {max}");
        }
    }

    #[test]
    fn planned_batches_follow_the_plan_numbers() {
        let mut batches = PlannedBatches::default();
        let mut out = Vec::new();
        for (seq, r) in [(1, "1"), (1, "2"), (3, "3"), (4, "4")] {
            out.extend(batches.push(seq, r.as_bytes()));
        }
        out.extend(batches.finish());
        let got: Vec<(u32, &[u8])> = out.iter().map(|(s, b)| (*s, &b.records[..])).collect();
        assert_eq!(
            got,
            [(1, &b"[1,2]"[..]), (3, &b"[3]"[..]), (4, &b"[4]"[..])]
        );
    }

    #[test]
    fn a_deletion_record_puts_the_key_back_at_its_paths() {
        let key = ["orderId".to_string(), "line.sku".to_string()];
        let record = deletion_record(&key, r#"["A-1","S\"9"]"#).unwrap();
        assert_eq!(
            String::from_utf8(record).unwrap(),
            r#"{"deleted":true,"line":{"sku":"S\"9"},"orderId":"A-1"}"#
        );
        assert!(deletion_record(&key, r#"["A-1"]"#).is_err());
        assert!(deletion_record(&key, "not json").is_err());
    }

    #[test]
    fn the_original_name_drops_the_upload_prefix() {
        let key = "incoming/orders/2026/11/24/0f8fad5b-d9cb-469f-a165-70867728950e-orders.csv";
        assert_eq!(original_name(key), "orders.csv");
        assert_eq!(
            original_name("incoming/orders/orders-morning.csv"),
            "orders-morning.csv"
        );
        assert_eq!(scope_of(DeltaScope::Name, key, None), "name:orders.csv");
        assert_eq!(scope_of(DeltaScope::Site, key, Some("leeds")), "site:leeds");
        assert_eq!(scope_of(DeltaScope::Dataset, key, None), "dataset");
    }
}
