//! Delivering record batches to a dataset's API: the target (endpoint and headers, secrets
//! resolved once), one POST, and the attempts with backoff inside the time there is.

pub mod attempts;
pub mod client;
pub mod targets;

pub use attempts::{deliver, Outcome};
pub use client::http_client;
pub use targets::{target, Target, TargetError, Targets};
