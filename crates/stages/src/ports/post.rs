//! Delivery: one POST of one batch (HTTPS to the API through `sluice-http`; locally, also a
//! file of the requests that would be sent).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use sluice_core::delivery::BatchHeader;

use crate::delivery::{Attempt, Target};

/// Sends one batch once and says what came of it.
pub trait Poster: Send + Sync {
    fn post(
        &self,
        target: &Target,
        batch: &BatchHeader<'_>,
        body: Bytes,
        timeout: Duration,
    ) -> impl Future<Output = Attempt> + Send;
}
