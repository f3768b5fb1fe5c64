//! The lease an invocation claims its work with: owned by the invocation (function and
//! request id), lapsing at Lambda's deadline, so a worker that died is found by its expired
//! lease.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::Context;
use sluice_db::Lease;

/// Without a deadline (tests, a direct call), a lease lapses after this long.
const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);

/// The lease of this invocation of `stage`.
pub fn invocation_lease(stage: &str, context: &Context) -> Lease {
    let request = match context.request_id.as_str() {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    let until = match context.deadline {
        0 => SystemTime::now() + DEFAULT_LEASE,
        ms => UNIX_EPOCH + Duration::from_millis(ms),
    };
    Lease {
        owner: format!("{stage}/{request}"),
        until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_lapses_at_the_deadline_and_names_the_invocation() {
        let mut context = Context::default();
        context.request_id = "req-1".into();
        context.deadline = 1_800_000_000_000;
        let lease = invocation_lease("transformer", &context);
        assert_eq!(lease.owner, "transformer/req-1");
        assert_eq!(lease.until, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let anonymous = invocation_lease("forwarder", &Context::default());
        assert!(anonymous.owner.starts_with("forwarder/"));
        assert!(anonymous.until > SystemTime::now());
    }
}
