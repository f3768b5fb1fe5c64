//! Delivering record batches to a dataset's API: the target (endpoint and headers, secrets
//! resolved once), and the attempts with backoff inside the time there is. The POST itself is
//! the engine's, behind the [`Poster`](crate::ports::Poster) port (`sluice-http`).

pub mod attempt;
pub mod attempts;
pub mod targets;

pub use attempt::Attempt;
pub use attempts::{deliver, Outcome};
pub use targets::{endpoint_label, target, Header, Target, TargetError, Targets};
