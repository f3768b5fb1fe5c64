//! Why a stage could not finish its work this time: the kind (what an operator alarms on)
//! and the cause, kept whole so an adapter's error type stays visible to the Lambda's wiring.

use sluice_core::errors::chain;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The event or message is not one the stage takes.
    BadInput,
    /// The status store.
    Store,
    /// Object storage.
    Objects,
    /// A queue.
    Queue,
    /// The invocation's time ran out before the work was done.
    Deadline,
    /// The work is another worker's now, or not ready yet: the message comes back and is then
    /// done or a no-op. Never a reason to fail the file.
    Waiting,
    /// Anything else.
    Internal,
}

/// A stage's failure: worth a retry unless the kind says otherwise.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
    /// The file the failed work was for, once known (the last-delivery rule fails it).
    pub file: Option<uuid::Uuid>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Fault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            file: None,
            source: None,
        }
    }

    /// The same fault, known to be about file `id`.
    pub fn about(mut self, id: uuid::Uuid) -> Self {
        self.file = Some(id);
        self
    }

    /// A fault of `kind` caused by `error`, with its whole chain as the message.
    pub fn caused(kind: FaultKind, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            kind,
            message: chain(&error),
            file: None,
            source: Some(Box::new(error)),
        }
    }

    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::caused(FaultKind::Store, error)
    }

    pub fn objects(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::caused(FaultKind::Objects, error)
    }

    pub fn queue(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::caused(FaultKind::Queue, error)
    }
}
