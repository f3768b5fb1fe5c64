//! Turning numbered batches into "record batch" messages (claim checks when too big) and
//! sending them ten at a time, each batch's mark checked against the plan first.

use std::collections::HashSet;

use serde_json::{Map, Value};
use sluice_core::layout;
use sluice_core::message::{batch_id, FileSanitized};
use sluice_core::plan::BatchMark;
use sluice_core::transform::batch::{claim_check_message, inline_message, Batch};

use super::MAX_MESSAGE_BYTES;
use crate::ports::{Objects, Outbox, Plans};

pub(super) struct Sender<'a, O, S, Q> {
    pub objects: &'a O,
    pub store: &'a S,
    pub queue: &'a Q,
    pub message: &'a FileSanitized,
    pub total: u32,
    pub pending: Vec<String>,
    /// Ids of batches not to send again (they have a 2xx on record).
    pub delivered: &'a HashSet<String>,
    /// Batches sent by this pass.
    pub resent: u32,
    /// The ordinal of the next batch's first record.
    pub next_first: u64,
    /// Marks of the batches cut since the last flush.
    pub marks: Map<String, Value>,
    /// Set when a batch came out other than the plan recorded it: nothing more is sent, and
    /// the file fails with this reason.
    pub mismatch: Option<String>,
}

impl<O: Objects, S: Plans, Q: Outbox> Sender<'_, O, S, Q> {
    pub fn new<'a>(
        objects: &'a O,
        store: &'a S,
        queue: &'a Q,
        message: &'a FileSanitized,
        total: u32,
        delivered: &'a HashSet<String>,
    ) -> Sender<'a, O, S, Q> {
        Sender {
            objects,
            store,
            queue,
            message,
            total,
            pending: Vec::new(),
            delivered,
            resent: 0,
            next_first: 0,
            marks: Map::new(),
            mismatch: None,
        }
    }

    pub async fn send(&mut self, seq: u32, batch: Batch) -> Result<(), String> {
        let (id, dataset) = (self.message.file_id, self.message.dataset.as_str());
        let mark = BatchMark::of(self.next_first, batch.count as u64, &batch.records);
        self.next_first += batch.count as u64;
        self.marks.insert(
            seq.to_string(),
            serde_json::to_value(mark).map_err(|e| e.to_string())?,
        );
        if self.delivered.contains(&batch_id(id, seq)) {
            if self.marks.len() >= 10 {
                self.check_marks().await?;
            }
            return Ok(());
        }
        self.resent += 1;
        let mut body = inline_message(id, dataset, seq, self.total, &batch);
        if body.len() > MAX_MESSAGE_BYTES {
            let key = layout::claim_check_key(id, seq);
            let bucket = &self.message.clean_bucket;
            self.objects
                .put(bucket, &key, batch.records, "application/json")
                .await
                .map_err(|e| e.to_string())?;
            body = claim_check_message(id, dataset, seq, self.total, batch.count, bucket, &key);
        }
        self.pending
            .push(String::from_utf8(body).map_err(|e| e.to_string())?);
        if self.pending.len() == 10 {
            self.flush().await?;
        }
        Ok(())
    }

    /// Records the marks cut since the last check (the first cut of a batch fixes its mark)
    /// and compares: a batch that differs from its recorded mark stops the pass.
    async fn check_marks(&mut self) -> Result<(), String> {
        if self.marks.is_empty() {
            return Ok(());
        }
        let marks = Value::Object(std::mem::take(&mut self.marks));
        let recorded = self
            .store
            .mark_batches(self.message.file_id, &marks)
            .await
            .map_err(|e| format!("recording the batches' marks: {e}"))?
            .unwrap_or_default();
        for (seq, mark) in marks.as_object().into_iter().flatten() {
            // The records and their bytes must match; `first` is where the batch began in its
            // first cut, and a resend of a keyed file (whose delivered batches' plan rows are
            // gone) counts from another start.
            let same = |m: &Value| m["records"] == mark["records"] && m["sha256"] == mark["sha256"];
            if !recorded.get(seq).is_some_and(same) {
                let why = format!(
                    "batch {seq} came out other than when it was first cut ({} now, {} planned):                      its id would name other records, so the file is failed rather than sent;                      a replay cuts it afresh",
                    mark,
                    recorded.get(seq).unwrap_or(&Value::Null)
                );
                self.mismatch = Some(why.clone());
                return Err(why);
            }
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), String> {
        self.check_marks().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        self.queue
            .send_all(&self.pending)
            .await
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        Ok(())
    }
}
