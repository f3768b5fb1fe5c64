//! Which failed attempts are worth another try, and how long to wait before it.

use std::time::{Duration, SystemTime};

/// What one attempt to POST a batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptClass {
    /// 2xx: the API has the batch.
    Delivered,
    /// Worth trying again: connection failures, timeouts, 408, 429 and 5xx.
    Transient,
    /// The API refused the batch and will refuse it again: other 4xx, redirects (which are
    /// not followed: a POST must not silently turn into a GET elsewhere), 1xx.
    Permanent,
}

/// Classifies an HTTP status.
pub fn classify_status(status: u16) -> AttemptClass {
    match status {
        200..=299 => AttemptClass::Delivered,
        408 | 429 | 500..=599 => AttemptClass::Transient,
        _ => AttemptClass::Permanent,
    }
}

/// The longest `Retry-After` honoured; a larger one is treated as this (the batch then
/// usually waits for SQS to deliver it again).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3). `now`
/// turns a date into a wait; a date in the past means no wait. `None` when unreadable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// How long to wait before the next attempt: the backoff step, or what the API asked for if
/// that is longer.
pub fn next_wait(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(backoff, |asked| asked.max(backoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_retry_policy_says() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(s), AttemptClass::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s), AttemptClass::Transient, "{s}");
        }
        for s in [100, 301, 302, 307, 400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(classify_status(s), AttemptClass::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00Z
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 99 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_wait_is_the_longer_of_backoff_and_retry_after() {
        let ms = Duration::from_millis;
        assert_eq!(next_wait(ms(200), None), ms(200));
        assert_eq!(next_wait(ms(200), Some(ms(2000))), ms(2000));
        assert_eq!(next_wait(ms(800), Some(ms(0))), ms(800));
    }
}
