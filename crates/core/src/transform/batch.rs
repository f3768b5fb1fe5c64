//! Cutting a stream of JSON records into batches, and writing a batch's "record batch"
//! message: serde_json writes its fields, and the records, already JSON, are appended as they
//! are (parsing them back would only cost time).

use uuid::Uuid;

use crate::message::batch_id;

/// Collects records into JSON arrays of at most `size` records and `max_bytes` bytes.
#[derive(Debug)]
pub struct Batcher {
    size: usize,
    max_bytes: usize,
    records: Vec<u8>,
    count: usize,
}

/// A full batch: a JSON array of `count` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub records: Vec<u8>,
    pub count: usize,
}

impl Batcher {
    pub fn new(size: usize, max_bytes: usize) -> Self {
        Self {
            size: size.max(1),
            max_bytes,
            records: Vec::new(),
            count: 0,
        }
    }

    /// The largest record that fits in a batch of `max_bytes` (with its `[` and `]`).
    pub fn max_record_bytes(max_bytes: usize) -> usize {
        max_bytes.saturating_sub(2)
    }

    /// Adds one record; returns the batch it closes, if it closes one (a batch is closed when
    /// the next record would not fit). A record larger than
    /// [`max_record_bytes`](Self::max_record_bytes) still goes, alone: callers refuse such
    /// records before.
    pub fn push(&mut self, record: &[u8]) -> Option<Batch> {
        let full =
            self.count == self.size || self.records.len() + 1 + record.len() + 1 > self.max_bytes;
        let closed = (self.count > 0 && full).then(|| self.take());
        self.records.push(if self.count == 0 { b'[' } else { b',' });
        self.records.extend_from_slice(record);
        self.count += 1;
        closed
    }

    /// The last batch, if any records are left.
    pub fn finish(mut self) -> Option<Batch> {
        (self.count > 0).then(|| self.take())
    }

    fn take(&mut self) -> Batch {
        self.records.push(b']');
        let batch = Batch {
            records: std::mem::take(&mut self.records),
            count: self.count,
        };
        self.count = 0;
        batch
    }
}

/// The "record batch" message (see [`crate::message::RecordBatch`]) with the records inline.
pub fn inline_message(
    file_id: Uuid,
    dataset: &str,
    seq: u32,
    total: u32,
    batch: &Batch,
) -> Vec<u8> {
    let mut out = envelope(file_id, dataset, seq, total, batch.count);
    out.extend_from_slice(b",\"records\":");
    out.extend_from_slice(&batch.records);
    out.push(b'}');
    out
}

/// The same message pointing at the batch's records in S3 instead (a claim check).
pub fn claim_check_message(
    file_id: Uuid,
    dataset: &str,
    seq: u32,
    total: u32,
    count: usize,
    bucket: &str,
    key: &str,
) -> Vec<u8> {
    let mut out = envelope(file_id, dataset, seq, total, count);
    out.extend_from_slice(b",\"s3\":");
    let _ = serde_json::to_writer(
        &mut out,
        &serde_json::json!({ "bucket": bucket, "key": key }),
    );
    out.push(b'}');
    out
}

/// The message's fields before the records, as an open JSON object (no closing `}`), written
/// by serde_json; the records are appended as they are, never parsed back.
fn envelope(file_id: Uuid, dataset: &str, seq: u32, total: u32, count: usize) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        v: u32,
        file_id: Uuid,
        dataset: &'a str,
        batch_id: String,
        seq: u32,
        total: u32,
        count: usize,
    }
    let mut out = serde_json::to_vec(&Envelope {
        v: 1,
        file_id,
        dataset,
        batch_id: batch_id(file_id, seq),
        seq,
        total,
        count,
    })
    .unwrap_or_default();
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{BatchBody, RecordBatch};

    #[test]
    fn cuts_records_into_full_batches_and_a_last_partial_one() {
        let mut batcher = Batcher::new(2, 1 << 20);
        let mut batches = Vec::new();
        for r in [&b"{\"a\":1}"[..], b"{\"a\":2}", b"{\"a\":3}"] {
            batches.extend(batcher.push(r));
        }
        batches.extend(batcher.finish());
        assert_eq!(batches[0].records, b"[{\"a\":1},{\"a\":2}]");
        assert_eq!(batches[1].records, b"[{\"a\":3}]");
        assert_eq!(batches[1].count, 1);
    }

    #[test]
    fn batches_are_cut_by_bytes_too() {
        // Records of 10 bytes, at most 25 bytes a batch: `[r,r]` is 23, a third would be 34.
        let mut batcher = Batcher::new(100, 25);
        let mut batches = Vec::new();
        for _ in 0..5 {
            batches.extend(batcher.push(b"{\"a\":1234}"));
        }
        batches.extend(batcher.finish());
        let counts: Vec<usize> = batches.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 2, 1]);
        assert!(batches.iter().all(|b| b.records.len() <= 25));
        assert_eq!(Batcher::max_record_bytes(25), 23);
    }

    #[test]
    fn hand_written_messages_parse_as_record_batches() {
        let id = Uuid::from_u128(9);
        let batch = Batch {
            records: b"[{\"orderId\":\"A\"}]".to_vec(),
            count: 1,
        };
        let inline: RecordBatch =
            serde_json::from_slice(&inline_message(id, "orders", 2, 5, &batch)).unwrap();
        assert_eq!(inline.batch_id, batch_id(id, 2));
        assert_eq!((inline.seq, inline.total, inline.count), (2, 5, 1));
        assert_eq!(
            inline.body,
            BatchBody::Records(vec![serde_json::json!({"orderId": "A"})])
        );
        let pointer: RecordBatch = serde_json::from_slice(&claim_check_message(
            id,
            "orders",
            2,
            5,
            1,
            "clean",
            "batches/x/000002.json",
        ))
        .unwrap();
        assert_eq!(
            pointer.body,
            BatchBody::S3 {
                bucket: "clean".into(),
                key: "batches/x/000002.json".into()
            }
        );
    }
}
