//! What every Sluice Lambda binary shares, beside its own wiring: JSON logs whose filter keeps
//! record contents out at every level ([`logging`]), and invocation failures with a stable
//! `errorType` that alarms and metric filters can match ([`failure`]).

pub mod consumer;
pub mod failure;
pub mod lease;
pub mod logging;
pub mod notify;
pub mod setup;

pub use failure::{Failure, FailureKind};
pub use lease::invocation_lease;
pub use logging::init_tracing;
