//! Sluice's pure logic: sniffing and sanitizing files, mapping rows to JSON records, pipeline
//! (dataset) config, delivery rules, the status model, upload metadata and the messages between
//! stages.
//!
//! Boundary: nothing here talks to AWS, a database or an API, and nothing holds a whole file in
//! memory: the Lambda stages and the `sluice` command drive the same code over their own byte
//! sources. No other Sluice crate is reached from here (checked by `tests/architecture.rs`).

pub mod config;
pub mod delivery;
pub mod drop;
pub mod errors;
pub mod layout;
pub mod message;
pub mod metadata;
pub mod plan;
pub mod sanitize;
pub mod status;
pub mod transform;

pub use config::{ConfigError, Dataset, DropRoute, PipelineConfig};
pub use sanitize::{Policy, Report, Sanitizer, Verdict};
pub use status::{FileStatus, Stage};
