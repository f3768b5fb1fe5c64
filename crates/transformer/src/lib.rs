//! The transform Lambda as a library: the handler the binary runs and the tests call. It wires
//! the queue consumer shell (`sluice-lambda`) to the transform stage (`sluice-stages`) over the
//! AWS and PostgreSQL adapters; the decisions are the stage's.

pub mod handler;
pub mod settings;

pub use handler::{handle, Deps};
pub use settings::Settings;
