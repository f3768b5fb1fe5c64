//! Where delivery attempts are recorded.

use std::future::Future;

use sluice_core::FileStatus;
use uuid::Uuid;

use crate::ports::Storage;

/// One delivery attempt, as it is recorded (`api_call` in PostgreSQL, the report locally).
#[derive(Debug, Clone)]
pub struct ApiCall<'a> {
    pub file_id: Uuid,
    pub batch_id: &'a str,
    /// 1 for the batch's first attempt ever, counting on across SQS deliveries.
    pub attempt: i32,
    /// The answer's status; `None` when there was no answer (refused, timed out).
    pub http_status: Option<i32>,
    pub latency_ms: i32,
    /// The start of the answer's body, capped (see `sluice_core::delivery::excerpt`).
    pub response_excerpt: Option<&'a str>,
    /// Why the attempt did not deliver, in words; `None` when it did.
    pub error: Option<&'a str>,
    /// Where it was sent: scheme, host, port and path (`Target::label`).
    pub endpoint: &'a str,
    /// Not sent to an API: written to a requests file by a local run (`sluice run` without
    /// `--api`). Kept for the file's history, never counted in API health.
    pub simulated: bool,
}

/// Where delivery attempts are recorded.
pub trait CallLog: Storage {
    /// Records one attempt. A log that also keeps the files' status may settle the file's
    /// delivery in the same step when the call is a batch's first 2xx, and then says the
    /// file's status after it; `None` leaves settling to the caller.
    fn record_call(
        &self,
        call: &ApiCall<'_>,
    ) -> impl Future<Output = Result<Option<FileStatus>, Self::Error>> + Send;
}
