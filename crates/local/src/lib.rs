//! Adapters for a machine without services. Today: [`MemoryStore`], the embedded status store
//! `sluice run` uses when `DATABASE_URL` is not set.

mod memory;

pub use memory::MemoryStore;
