//! The quarantine stage as a library: the handler the Lambda binary runs and tests call.

pub mod event;
pub mod handler;
pub mod settings;

pub use handler::{handle, Deps, Outcome, Response};
pub use settings::Settings;
