//! The one shell every SQS consumer (sanitizer, transformer, forwarder) runs its messages in:
//! each message's work within the invocation's time, the one last-delivery rule
//! ([`message_failed`]), the messages that failed reported alone as batch item failures, and
//! each of those put back with a backoff (`ChangeMessageVisibility`) so its retry comes in
//! seconds or minutes, not after the queue's visibility timeout (which is sized for a
//! container that dies, and is 90 minutes on the sanitize and transform queues).

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures_util::stream::{self, StreamExt};
use sluice_aws::Visibility;
use sluice_core::Stage;
use sluice_db::Store;
use sluice_stages::final_status::{message_failed, Delivery};
use sluice_stages::{Fault, FaultKind};
use uuid::Uuid;

/// What the shell needs of one received message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub message_id: String,
    /// What SQS takes to change the message's visibility.
    pub receipt_handle: Option<String>,
    /// The queue's ARN (`eventSourceARN`).
    pub queue_arn: Option<String>,
    /// How many times SQS has delivered the message, this time included.
    pub receive_count: u32,
    /// The file the message is about, when its body says so.
    pub file: Option<Uuid>,
}

impl Envelope {
    /// The envelope of an SQS event record about `file`.
    pub fn of(message: &SqsMessage, file: Option<Uuid>) -> Self {
        Self {
            message_id: message.message_id.clone().unwrap_or_default(),
            receipt_handle: message.receipt_handle.clone(),
            queue_arn: message.event_source_arn.clone(),
            receive_count: receive_count(message),
            file,
        }
    }
}

/// How many times SQS has delivered this message, this time included.
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// How long a message that failed waits before its next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failed delivery; doubled with each further one.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The sanitizer's and the transformer's: a database blip or an S3 error is retried in
    /// about 10 s, then 20, 40, 80 (at most 15 min).
    pub const STAGE: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(900),
    };
    /// The forwarder's: an API that failed gets 2 min, then 4, 8, 15 (at most 15 min), so
    /// a message on the default five deliveries reaches its dead-letter queue after about
    /// half an hour of failures (each delivery also retries within itself).
    pub const DELIVERY: Backoff = Backoff {
        base: Duration::from_secs(120),
        max: Duration::from_secs(900),
    };
    /// This backoff, with its first wait from `SLUICE_RETRY_BASE_SECONDS` when that is set
    /// (1 to 3600; read once per container): a local stack or a test that wants failures to
    /// come back in seconds, or an operator whose API needs longer.
    pub fn configured(self) -> Backoff {
        static BASE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(|| {
            let text = std::env::var("SLUICE_RETRY_BASE_SECONDS").ok()?;
            match text.trim().parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => Some(Duration::from_secs(n)),
                _ => {
                    tracing::warn!(value = %text,
                        "SLUICE_RETRY_BASE_SECONDS is not a whole number from 1 to 3600: ignored");
                    None
                }
            }
        });
        match base {
            Some(base) => Backoff {
                base,
                max: self.max.max(base),
            },
            None => self,
        }
    }

    /// Work that waits for another worker (a claim held, a status not there yet).
    const WAITING_STEP: Duration = Duration::from_secs(5);
    const WAITING_MAX: Duration = Duration::from_secs(60);
    /// Work stopped by the invocation's deadline: the next container goes on at once.
    const DEADLINE: Duration = Duration::from_secs(1);

    /// The wait before the next delivery of message `message_id`, which failed on delivery
    /// `receive_count` with a fault of `kind`. "Equal jitter": half the step is fixed, the
    /// other half spread by a hash of the message and the count, so copies that failed
    /// together do not come back together.
    pub fn delay(&self, kind: FaultKind, receive_count: u32, message_id: &str) -> Duration {
        let n = receive_count.max(1);
        let step = match kind {
            FaultKind::Waiting => (Self::WAITING_STEP * n).min(Self::WAITING_MAX),
            FaultKind::Deadline => Self::DEADLINE,
            _ => self.base.saturating_mul(1 << (n - 1).min(16)).min(self.max),
        };
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        (message_id, n).hash(&mut hash);
        let spread = (hash.finish() % 1_000) as f64 / 1_000.0;
        step / 2 + (step / 2).mul_f64(spread)
    }
}

/// One consumer's shell: its stage, status store, queue settings and backoff.
pub struct Shell<'a> {
    pub stage: Stage,
    pub store: &'a Store,
    /// The queue's `maxReceiveCount`.
    pub max_receive_count: u32,
    pub backoff: Backoff,
    /// `None`: failed messages come back after the queue's visibility timeout.
    pub visibility: Option<&'a Visibility>,
}

impl Shell<'_> {
    /// Runs `work(i)` for each of `messages` (up to `concurrency` at once, none past
    /// `hard_stop`), and answers with the ones that failed. Each failure goes through the
    /// last-delivery rule and is put back with its backoff.
    pub async fn run<F, Fut>(
        &self,
        messages: &[Envelope],
        concurrency: usize,
        hard_stop: Option<Instant>,
        work: F,
    ) -> SqsBatchResponse
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<(), Fault>>,
    {
        let work = &work;
        let results: Vec<(usize, Result<(), Fault>)> = stream::iter(0..messages.len())
            .map(|i| async move {
                let outcome = match hard_stop {
                    Some(at) if at <= Instant::now() => Err(stopped()),
                    Some(at) => tokio::time::timeout_at(at.into(), work(i))
                        .await
                        .unwrap_or_else(|_| Err(stopped())),
                    None => work(i).await,
                };
                (i, outcome)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        let mut delays: BTreeMap<&str, Vec<(String, i32)>> = BTreeMap::new();
        for (i, outcome) in results {
            let Err(fault) = outcome else { continue };
            let message = &messages[i];
            let delay = self.failed(message, &fault).await;
            if let (Some(queue), Some(receipt)) = (&message.queue_arn, &message.receipt_handle) {
                let seconds = delay.as_secs().min(i32::MAX as u64) as i32;
                delays
                    .entry(queue)
                    .or_default()
                    .push((receipt.clone(), seconds));
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone();
            response.batch_item_failures.push(failure);
        }
        if let Some(visibility) = self.visibility {
            for (queue, messages) in delays {
                if let Err(e) = visibility.delay(queue, &messages).await {
                    // They come back after the queue's visibility timeout instead.
                    tracing::warn!(queue, error = %e, "could not set the retry backoff");
                }
            }
        }
        response
    }

    /// Logs a failed message, applies the last-delivery rule, and returns its backoff.
    async fn failed(&self, message: &Envelope, fault: &Fault) -> Duration {
        let delivery = Delivery {
            receive_count: message.receive_count,
            max_receive_count: self.max_receive_count,
        };
        let delay = self
            .backoff
            .delay(fault.kind, message.receive_count, &message.message_id);
        let file = fault.file.or(message.file);
        let failed = message_failed(self.store, self.stage, file, delivery, fault).await;
        match fault.kind {
            FaultKind::Waiting => tracing::info!(message_id = %message.message_id,
                file_id = ?file, receive_count = message.receive_count, reason = %fault.message,
                retry_in_s = delay.as_secs(), "message waits for another worker; it comes back"),
            _ => tracing::error!(message_id = %message.message_id, file_id = ?file,
                receive_count = message.receive_count, max_receive_count = self.max_receive_count,
                error = %fault.message, file_failed = failed, retry_in_s = delay.as_secs(),
                "message failed; SQS will deliver it again or dead-letter it"),
        }
        delay
    }
}

fn stopped() -> Fault {
    Fault::new(
        FaultKind::Deadline,
        "stopped before the Lambda timeout; the message will be delivered again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_wait_longer_each_delivery_within_the_cap_and_copies_spread_out() {
        let b = Backoff::STAGE;
        for n in 1..=8u32 {
            let step = (b.base * (1 << (n - 1))).min(b.max);
            let d = b.delay(FaultKind::Store, n, "m-1");
            assert!(
                d >= step / 2 && d <= step,
                "delivery {n}: {d:?} of {step:?}"
            );
        }
        assert!(b.delay(FaultKind::Store, 40, "m") <= b.max);
        let waiting = b.delay(FaultKind::Waiting, 3, "m");
        assert!(waiting <= Duration::from_secs(15), "{waiting:?}");
        assert!(b.delay(FaultKind::Deadline, 4, "m") <= Duration::from_secs(1));
        let spread: std::collections::HashSet<_> = (0..20)
            .map(|i| b.delay(FaultKind::Internal, 3, &format!("m-{i}")))
            .collect();
        assert!(spread.len() > 10, "copies come back at different times");
        // The worst case of five deliveries, documented in the book (docs/src/status-and-messages.md): at most 150 s of
        // waiting on the stage queues, and at most 2,040 s (34 min) on the forward queue.
        let total = |b: Backoff| -> u64 {
            (1..5)
                .map(|n| (b.base * (1 << (n - 1))).min(b.max).as_secs())
                .sum()
        };
        assert_eq!(total(Backoff::STAGE), 150);
        assert_eq!(total(Backoff::DELIVERY), 120 + 240 + 480 + 900);
    }

    #[test]
    fn an_envelope_carries_what_the_visibility_change_needs() {
        let mut m = SqsMessage::default();
        m.message_id = Some("m1".into());
        m.receipt_handle = Some("r1".into());
        m.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:q".into());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "4".into());
        let e = Envelope::of(&m, None);
        assert_eq!(
            (
                e.message_id.as_str(),
                e.receipt_handle.as_deref(),
                e.receive_count
            ),
            ("m1", Some("r1"), 4)
        );
        assert_eq!(receive_count(&SqsMessage::default()), 1);
    }
}
