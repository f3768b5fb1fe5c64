//! Streaming passes over a clean file. The mapping runs on a blocking thread and hands its
//! output over a small channel, so memory is a few batches (or key chunks) whatever the file
//! size. Three kinds: batches of every record (a dataset without a record key), key chunks
//! (a keyed dataset's first pass, which plans), and the planned batches (its second pass).

use std::io;

use sluice_core::message::FileSanitized;
use sluice_core::transform::batch::{Batch, Batcher};
use sluice_core::transform::delta::{deletion_record, record_hash, PlannedBatches, RecordHash};
use sluice_core::transform::{
    transform_read, transform_read_keyed, DateFilter, Mapping, TransformError, TransformReport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use crate::ports::{Objects, Planned};

/// Records per key chunk: one lookup round trip each.
pub(super) const KEY_CHUNK: usize = 4096;

pub(super) enum PassError {
    /// The file cannot be transformed (a column the mapping needs is missing): final.
    File(String),
    /// Reading or sending failed: worth a retry.
    Retry(String),
}

/// What the mapping thread hands over, and the thread itself.
pub(super) struct Pass<T> {
    pub items: mpsc::Receiver<T>,
    pub worker: Worker,
}

/// The mapping thread of a pass.
pub(super) struct Worker(JoinHandle<Result<TransformReport, TransformError>>);

/// A keyed first pass's output: each record's key, content hash and length, in file order.
#[derive(Debug, Default)]
pub(super) struct KeyChunk {
    pub keys: Vec<String>,
    pub hashes: Vec<RecordHash>,
    pub lens: Vec<usize>,
}

/// A batch and its sequence number (from 1).
pub(super) type Numbered = (u32, Batch);

/// Where a pass reads and how it maps.
pub(super) struct Source<'a> {
    pub message: &'a FileSanitized,
    pub mapping: &'a Mapping,
    pub filter: Option<DateFilter>,
    pub batch_size: usize,
    pub batch_max_bytes: usize,
}

impl Source<'_> {
    /// Every record, in batches numbered 1, 2, ... (a dataset without a record key).
    pub async fn batches<O: Objects>(&self, objects: &O) -> Result<Pass<Numbered>, PassError> {
        let (size, max_bytes) = (self.batch_size, self.batch_max_bytes);
        self.spawn(objects, move |reader, mapping, dataset, filter, tx| {
            let mut batcher = Batcher::new(size, max_bytes);
            let mut seq = 0;
            let report = transform_read(
                reader,
                &mapping,
                Some(dataset),
                filter,
                Batcher::max_record_bytes(max_bytes),
                |record| match batcher.push(record) {
                    Some(batch) => {
                        seq += 1;
                        tx.blocking_send((seq, batch)).map_err(|_| gone())
                    }
                    None => Ok(()),
                },
            )?;
            if let Some(batch) = batcher.finish() {
                tx.blocking_send((seq + 1, batch)).map_err(|_| gone())?;
            }
            Ok(report)
        })
        .await
    }

    /// Each record's key, hash and length, in chunks (a keyed dataset's first pass).
    pub async fn keys<O: Objects>(&self, objects: &O) -> Result<Pass<KeyChunk>, PassError> {
        let max_record = Batcher::max_record_bytes(self.batch_max_bytes);
        self.spawn(objects, move |reader, mapping, dataset, filter, tx| {
            let mut chunk = KeyChunk::default();
            let report = transform_read_keyed(
                reader,
                &mapping,
                Some(dataset),
                filter,
                max_record,
                |record, key| {
                    chunk.keys.push(String::from_utf8_lossy(key).into_owned());
                    chunk.hashes.push(record_hash(record));
                    chunk.lens.push(record.len());
                    if chunk.keys.len() == KEY_CHUNK {
                        tx.blocking_send(std::mem::take(&mut chunk))
                            .map_err(|_| gone())?;
                    }
                    Ok(())
                },
            )?;
            if !chunk.keys.is_empty() {
                tx.blocking_send(chunk).map_err(|_| gone())?;
            }
            Ok(report)
        })
        .await
    }

    /// The records a plan sends, in its batches; `plan` brings the plan's entries in ordinal
    /// order (records are numbered from 1 in file order; "deleted" records come after).
    pub async fn planned<O: Objects>(
        &self,
        objects: &O,
        record_key: Vec<String>,
        plan: mpsc::Receiver<Vec<Planned>>,
    ) -> Result<Pass<Numbered>, PassError> {
        let max_record = Batcher::max_record_bytes(self.batch_max_bytes);
        self.spawn(objects, move |reader, mapping, dataset, filter, tx| {
            let mut plan = PlanCursor::new(plan);
            let mut batches = PlannedBatches::default();
            let mut ordinal = 0u64;
            let report = transform_read(
                reader,
                &mapping,
                Some(dataset),
                filter,
                max_record,
                |record| {
                    ordinal += 1;
                    if let Some(seq) = plan.take(ordinal) {
                        if let Some(batch) = batches.push(seq, record) {
                            tx.blocking_send(batch).map_err(|_| gone())?;
                        }
                    }
                    Ok(())
                },
            )?;
            while let Some(entry) = plan.next() {
                let Some(key) = entry.deleted_key else {
                    continue;
                };
                let record = deletion_record(&record_key, &key).map_err(io::Error::other)?;
                if let Some(batch) = batches.push(entry.seq, &record) {
                    tx.blocking_send(batch).map_err(|_| gone())?;
                }
            }
            if let Some(batch) = batches.finish() {
                tx.blocking_send(batch).map_err(|_| gone())?;
            }
            Ok(report)
        })
        .await
    }

    async fn spawn<O: Objects, T: Send + 'static>(
        &self,
        objects: &O,
        work: impl FnOnce(
                SyncIoBridge<O::Reader>,
                Mapping,
                String,
                Option<DateFilter>,
                mpsc::Sender<T>,
            ) -> Result<TransformReport, TransformError>
            + Send
            + 'static,
    ) -> Result<Pass<T>, PassError> {
        let message = self.message;
        let opened = objects
            .open(&message.clean_bucket, &message.clean_key, None)
            .await
            .map_err(|e| PassError::Retry(e.to_string()))?;
        let Some((body, _)) = opened else {
            let why = format!("the clean file {} is not there", message.clean_key);
            return Err(PassError::Retry(why));
        };
        let reader = SyncIoBridge::new(body);
        let (tx, items) = mpsc::channel::<T>(2);
        let (mapping, dataset, filter) =
            (self.mapping.clone(), message.dataset.clone(), self.filter);
        let worker =
            tokio::task::spawn_blocking(move || work(reader, mapping, dataset, filter, tx));
        Ok(Pass {
            items,
            worker: Worker(worker),
        })
    }
}

impl Worker {
    /// Waits for the mapping to end; `send_error` is why the caller stopped taking its output
    /// (the output channel must be dropped by then, or the thread may wait on it forever).
    pub async fn finish(self, send_error: Option<String>) -> Result<TransformReport, PassError> {
        let outcome = self.0.await.map_err(|e| PassError::Retry(e.to_string()))?;
        if let Some(e) = send_error {
            return Err(PassError::Retry(e));
        }
        match outcome {
            Ok(report) => Ok(report),
            Err(TransformError::File(reason)) => Err(PassError::File(reason)),
            Err(TransformError::Read(e)) => {
                Err(PassError::Retry(format!("reading the clean file: {e}")))
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the sender stopped")
}

/// Walks a plan that arrives in pages.
struct PlanCursor {
    pages: mpsc::Receiver<Vec<Planned>>,
    page: std::vec::IntoIter<Planned>,
    head: Option<Planned>,
}

impl PlanCursor {
    fn new(pages: mpsc::Receiver<Vec<Planned>>) -> Self {
        let mut cursor = Self {
            pages,
            page: Vec::new().into_iter(),
            head: None,
        };
        cursor.head = cursor.pull();
        cursor
    }

    fn pull(&mut self) -> Option<Planned> {
        loop {
            if let Some(entry) = self.page.next() {
                return Some(entry);
            }
            self.page = self.pages.blocking_recv()?.into_iter();
        }
    }

    /// The batch of record `ordinal`, if the plan sends it.
    fn take(&mut self, ordinal: u64) -> Option<u32> {
        while self.head.as_ref().is_some_and(|h| h.ordinal < ordinal) {
            self.head = self.pull();
        }
        match &self.head {
            Some(h) if h.ordinal == ordinal => {
                let seq = h.seq;
                self.head = self.pull();
                Some(seq)
            }
            _ => None,
        }
    }

    /// The next entry, whatever its ordinal.
    fn next(&mut self) -> Option<Planned> {
        let head = self.head.take();
        if head.is_some() {
            self.head = self.pull();
        }
        head
    }
}
