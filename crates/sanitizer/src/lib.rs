//! The quarantine Lambda as a library: the handler the binary runs and the tests call. It reads
//! S3 events (direct, or through the sanitize queue) and hands each object to the sanitize stage
//! (`sluice-stages`) over the AWS and PostgreSQL adapters; the decisions are the stage's.

pub mod event;
pub mod handler;
pub mod settings;

pub use handler::{handle, Deps, Outcome, Response};
pub use settings::Settings;
