//! An in-process queue standing in for SQS between two stages of one run.

use std::collections::VecDeque;
use std::sync::Mutex;

use sluice_stages::ports::Outbox;

/// The in-process queue never refuses a message.
pub use crate::memory::Never;

#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<String>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every message waiting, oldest first; the queue is left empty.
    pub fn take_all(&self) -> Vec<String> {
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Outbox for MemoryQueue {
    type Error = Never;

    async fn send_all(&self, bodies: &[String]) -> Result<(), Never> {
        let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        messages.extend(bodies.iter().cloned());
        Ok(())
    }
}
