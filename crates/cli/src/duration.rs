//! Durations as operators type them: `90s`, `15m`, `24h`, `7d`.

use std::time::{Duration, SystemTime};

use chrono::NaiveDate;

/// `90s`, `15m`, `24h`, `7d`; `None` for anything else.
pub fn parse(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// `24h`, `30m`, `7d`, `90s` back from `now`, or a UTC date.
pub fn since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || format!("--since {text:?}: give a duration (30m, 24h, 7d) or a date (YYYY-MM-DD)");
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
        return Ok(midnight.into());
    }
    let back = parse(text).ok_or_else(bad)?;
    now.checked_sub(back).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "15", "m", "1w", "-1h", "99999999999999999999d"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn since_reads_durations_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        assert_eq!(
            since("24h", now).unwrap(),
            now - Duration::from_secs(86_400)
        );
        assert_eq!(since("30m", now).unwrap(), now - Duration::from_secs(1800));
        assert_eq!(
            since("7d", now).unwrap(),
            now - Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            since("1970-01-02", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)
        );
        for bad in ["", "h", "24", "yesterday", "24w", "2026-13-01"] {
            assert!(since(bad, now).is_err(), "{bad}");
        }
    }
}
