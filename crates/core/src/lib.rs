//! Sluice's pure logic: sniffing and sanitizing files, mapping rows to JSON records, pipeline
//! (dataset) config, delivery rules, the status model and the messages between stages.
//!
//! Nothing here talks to AWS or a database, and nothing holds a whole file in memory: the
//! Lambda stages and the `sluice` command drive the same code over their own byte sources.

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
