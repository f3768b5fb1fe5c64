//! The delivery stage as a library: the handler the Lambda binary runs and tests call.

pub mod handler;
pub mod settings;

pub use handler::{handle, Deps};
pub use settings::Settings;
pub use sluice_stages::delivery::Targets;
