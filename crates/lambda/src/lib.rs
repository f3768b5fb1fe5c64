//! What every Sluice Lambda binary shares, beside its own wiring: setup at cold start
//! ([`setup`]), JSON logs whose filter keeps record contents out at every level ([`logging`]),
//! the SQS consumer shell ([`consumer`]: deadline, receive count, batch item failures,
//! visibility backoff, the one rule for a message's last delivery) and invocation failures with
//! a stable `errorType` that alarms can match ([`failure`]).
//!
//! Boundary: linked by the Lambda binaries only; the `sluice` binary never links it (checked by
//! `tests/architecture.rs`).

pub mod consumer;
pub mod failure;
pub mod lease;
pub mod logging;
pub mod notify;
pub mod setup;

pub use failure::{Failure, FailureKind};
pub use lease::invocation_lease;
pub use logging::init_tracing;
