//! Delivering records to a dataset's HTTP API: its config, the request body, and the retry
//! rules. The HTTP client itself lives with the forwarder; everything here is pure.

pub mod body;
pub mod reach;
pub mod retry;
pub mod spec;

pub use body::{excerpt, request_body, BatchHeader, EXCERPT_BYTES};
pub use reach::{Reach, Refused};
pub use retry::{classify_status, next_wait, parse_retry_after, AttemptClass};
pub use spec::{BodyShape, Delivery, HeaderSource, RetryPolicy};
