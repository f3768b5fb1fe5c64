//! Adapters for a machine without services: a folder standing in for the buckets
//! ([`FolderObjects`]), in-process queues ([`MemoryQueue`]) and the embedded status store
//! ([`MemoryStore`]) that `sluice run` uses when `DATABASE_URL` is not set.
//!
//! Boundary: implements the same ports as the AWS and PostgreSQL adapters (one contract suite
//! runs against both stores); knows no other adapter.

mod events;
mod folder;
mod memory;
mod queue;
mod records;

pub use events::EventsFile;
pub use folder::{FolderError, FolderObjects, FolderUpload};
pub use memory::{MemoryStore, Never};
pub use queue::{Closed, MemoryQueue};
