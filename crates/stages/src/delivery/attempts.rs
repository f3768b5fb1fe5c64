//! Delivering one batch: attempts with exponential backoff and jitter, honouring
//! `Retry-After`, inside the time this invocation has; every attempt recorded in `api_call`.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use sluice_core::delivery::{next_wait, AttemptClass, BatchHeader};
use sluice_core::FileStatus;

use crate::delivery::targets::Target;
use crate::delivery::Attempt;
use crate::ports::{ApiCall, CallLog, Poster};

/// Below this much time left, an attempt is not started: it could only time out.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(200);

impl Outcome {
    /// The API refused the request's credentials (401 or 403).
    pub fn credentials_refused(&self) -> bool {
        matches!(
            self,
            Outcome::NotDelivered {
                status: Some(401 | 403),
                ..
            }
        )
    }

    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            Outcome::Delivered { attempts, .. } | Outcome::NotDelivered { attempts, .. } => {
                *attempts
            }
        }
    }
}

/// How delivering a batch ended, in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The API answered 2xx. `settled` is the file's status after it when the call log
    /// settled the file's delivery while recording the call (see [`CallLog::record_call`]).
    Delivered {
        attempts: u32,
        status: u16,
        settled: Option<FileStatus>,
    },
    /// Not delivered this time; SQS will deliver the message again.
    NotDelivered {
        attempts: u32,
        /// The last attempt's error, and why no further attempt was made.
        error: String,
        /// The API refused the batch (a 4xx other than 408 and 429).
        permanent: bool,
        /// The last attempt's HTTP status, if the API answered.
        status: Option<u16>,
    },
}

/// Delivers one batch. `first_attempt` numbers the first attempt (the batch's earlier
/// attempts, from earlier deliveries of its message, came before); `stop` is when this
/// invocation must stop trying. Fails only when an attempt cannot be recorded.
pub async fn deliver<L: CallLog>(
    client: &impl Poster,
    log: &L,
    target: &Target,
    batch: &BatchHeader<'_>,
    body: Bytes,
    first_attempt: i32,
    stop: Option<Instant>,
) -> Result<Outcome, L::Error> {
    let policy = target.retry;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(policy.base_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    let mut made = 0u32;
    let mut last_error = String::new();
    loop {
        let Some(timeout) = time_for_attempt(target.timeout, stop) else {
            return Ok(out_of_time(made, &last_error));
        };
        let attempt = client.post(target, batch, body.clone(), timeout).await;
        made += 1;
        let number = first_attempt + made as i32 - 1;
        let settled = record(log, target, batch, number, &attempt).await?;
        last_error = attempt.error.clone().unwrap_or_default();
        match attempt.class {
            AttemptClass::Delivered => {
                return Ok(Outcome::Delivered {
                    attempts: made,
                    status: attempt.status.unwrap_or(200),
                    settled,
                })
            }
            AttemptClass::Permanent => {
                return Ok(Outcome::NotDelivered {
                    attempts: made,
                    error: last_error,
                    permanent: true,
                    status: attempt.status,
                })
            }
            AttemptClass::Transient if made >= policy.max_attempts => {
                return Ok(Outcome::NotDelivered {
                    attempts: made,
                    error: format!("{last_error} (attempt {made} of {})", policy.max_attempts),
                    permanent: false,
                    status: attempt.status,
                })
            }
            AttemptClass::Transient => {
                let step = backoff.next().unwrap_or(policy.max_delay);
                let wait = next_wait(step, attempt.retry_after);
                if stop.is_some_and(|s| Instant::now() + wait + MIN_ATTEMPT_TIME > s) {
                    return Ok(Outcome::NotDelivered {
                        attempts: made,
                        error: format!(
                            "{last_error}; the next attempt (in {} ms) would not fit in this \
                             invocation",
                            wait.as_millis()
                        ),
                        permanent: false,
                        status: attempt.status,
                    });
                }
                tracing::debug!(
                    batch_id = batch.batch_id,
                    wait_ms = wait.as_millis() as u64,
                    "waiting before the next attempt"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The timeout of the next attempt: the target's, cut to the time left; `None` when too
/// little is left.
fn time_for_attempt(timeout: Duration, stop: Option<Instant>) -> Option<Duration> {
    let Some(stop) = stop else {
        return Some(timeout);
    };
    let left = stop.saturating_duration_since(Instant::now());
    (left >= MIN_ATTEMPT_TIME).then(|| timeout.min(left))
}

fn out_of_time(made: u32, last_error: &str) -> Outcome {
    let error = if made == 0 {
        "no time left in this invocation to try".to_string()
    } else {
        format!("{last_error}; no time left in this invocation for another attempt")
    };
    Outcome::NotDelivered {
        attempts: made,
        error,
        permanent: false,
        status: None,
    }
}

async fn record<L: CallLog>(
    log: &L,
    target: &Target,
    batch: &BatchHeader<'_>,
    number: i32,
    attempt: &Attempt,
) -> Result<Option<FileStatus>, L::Error> {
    let latency_ms = attempt.latency.as_millis().min(i32::MAX as u128) as i32;
    // Operators see the outcome in the log; the response excerpt stays in the table, as an
    // API may echo record contents.
    match attempt.class {
        AttemptClass::Delivered => tracing::debug!(
            batch_id = batch.batch_id,
            attempt = number,
            status = attempt.status,
            latency_ms,
            "attempt delivered"
        ),
        _ => tracing::warn!(file_id = %batch.file_id, batch_id = batch.batch_id,
            attempt = number, status = attempt.status, latency_ms,
            error = attempt.error.as_deref().unwrap_or_default(), "attempt failed"),
    }
    log.record_call(&ApiCall {
        file_id: batch.file_id,
        batch_id: batch.batch_id,
        attempt: number,
        http_status: attempt.status.map(i32::from),
        latency_ms,
        response_excerpt: attempt.excerpt.as_deref(),
        error: attempt.error.as_deref(),
        endpoint: &target.label(),
        simulated: target.endpoint.scheme() == "file",
    })
    .await
}
