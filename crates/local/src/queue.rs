//! An in-process queue standing in for SQS between two stages of one run. Bounded: a sender
//! waits while it is full, so a consumer running beside the producer keeps memory flat
//! whatever the file size.

use std::sync::Mutex;

use sluice_stages::ports::Outbox;
use tokio::sync::mpsc;

/// Why a message could not be queued: the queue was closed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the queue is closed")]
pub struct Closed;

#[derive(Debug)]
pub struct MemoryQueue {
    tx: Mutex<Option<mpsc::Sender<String>>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// A queue that holds at most `capacity` messages before senders wait.
    pub fn bounded(capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx: Mutex::new(Some(tx)),
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// A queue with room for a million messages (its memory is used only as they come).
    pub fn new() -> Self {
        Self::bounded(1 << 20)
    }

    /// No more messages will come: `recv` ends once the queue is empty.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The next message, waiting for one; `None` once closed and empty.
    pub async fn recv(&self) -> Option<String> {
        self.rx.lock().await.recv().await
    }

    /// Every message waiting now, oldest first; the queue is left empty.
    pub fn take_all(&self) -> Vec<String> {
        let Ok(mut rx) = self.rx.try_lock() else {
            return Vec::new();
        };
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    pub fn len(&self) -> usize {
        self.rx.try_lock().map(|rx| rx.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Outbox for MemoryQueue {
    type Error = Closed;

    async fn send_all(&self, bodies: &[String]) -> Result<(), Closed> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Closed)?;
        for body in bodies {
            tx.send(body.clone()).await.map_err(|_| Closed)?;
        }
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, Closed> {
        Ok(self.len() as u64)
    }
}
