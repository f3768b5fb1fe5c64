//! What one attempt to deliver a batch came to, as the engine behind the [`Poster`] port
//! reports it.
//!
//! [`Poster`]: crate::ports::Poster

use std::time::Duration;

use sluice_core::delivery::AttemptClass;

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub class: AttemptClass,
    /// The answer's status, if there was an answer.
    pub status: Option<u16>,
    pub latency: Duration,
    /// The start of the answer's body (kept in `api_call`, never logged: an API may echo
    /// record contents back).
    pub excerpt: Option<String>,
    /// Why the attempt did not deliver.
    pub error: Option<String>,
    /// How long the API asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}
