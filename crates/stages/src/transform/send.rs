//! Turning numbered batches into "record batch" messages (claim checks when too big) and
//! sending them ten at a time.

use std::collections::HashSet;

use sluice_core::layout;
use sluice_core::message::{batch_id, FileSanitized};
use sluice_core::transform::batch::{claim_check_message, inline_message, Batch};

use super::MAX_MESSAGE_BYTES;
use crate::ports::{Objects, Outbox};

pub(super) struct Sender<'a, O, Q> {
    pub objects: &'a O,
    pub queue: &'a Q,
    pub message: &'a FileSanitized,
    pub total: u32,
    pub pending: Vec<String>,
    /// Ids of batches not to send again (they have a 2xx on record).
    pub delivered: &'a HashSet<String>,
    /// Batches sent by this pass.
    pub resent: u32,
}

impl<O: Objects, Q: Outbox> Sender<'_, O, Q> {
    pub async fn send(&mut self, seq: u32, batch: Batch) -> Result<(), String> {
        let (id, dataset) = (self.message.file_id, self.message.dataset.as_str());
        if self.delivered.contains(&batch_id(id, seq)) {
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

    pub async fn flush(&mut self) -> Result<(), String> {
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
