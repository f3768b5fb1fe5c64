//! The delivery stage as a library: the handler the Lambda binary runs and tests call.

pub mod client;
pub mod deliver;
pub mod handler;
pub mod settings;
pub mod targets;

pub use handler::{handle, Deps};
pub use settings::Settings;
pub use targets::Targets;
