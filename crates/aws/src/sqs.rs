//! SQS: sending messages in batches that respect SQS's limits.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::{describe, AwsError};

/// At most this many messages go in one SendMessageBatch.
pub const MAX_BATCH_MESSAGES: usize = 10;
/// A message, and a whole batch, may be at most this many bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One SQS queue.
#[derive(Debug, Clone)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends every body, packed into as few batches as the limits allow (10 messages, 256 KiB
    /// per batch). A body over 256 KiB is refused before anything is sent: use a claim check.
    pub async fn send_all(&self, bodies: &[String]) -> Result<(), AwsError> {
        if let Some(big) = bodies.iter().find(|b| b.len() > MAX_BATCH_BYTES) {
            return Err(AwsError::MessageTooLarge {
                size: big.len(),
                limit: MAX_BATCH_BYTES,
            });
        }
        for batch in pack(bodies) {
            self.send_batch(batch).await?;
        }
        Ok(())
    }

    async fn send_batch(&self, batch: &[String]) -> Result<(), AwsError> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("SendMessageBatch", &e))?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.error("SendMessageBatch", &e))?;
        if let Some(failed) = out.failed().first() {
            return Err(AwsError::Sqs {
                op: "SendMessageBatch",
                queue: self.url.clone(),
                message: format!(
                    "{} of {} messages failed, first: {} {}",
                    out.failed().len(),
                    batch.len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    fn error(&self, op: &'static str, e: &(dyn std::error::Error + 'static)) -> AwsError {
        AwsError::Sqs {
            op,
            queue: self.url.clone(),
            message: describe(e),
        }
    }
}

/// Cuts `bodies` into consecutive batches of at most 10 messages and 256 KiB.
fn pack(bodies: &[String]) -> Vec<&[String]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        let full = i - start == MAX_BATCH_MESSAGES || bytes + body.len() > MAX_BATCH_BYTES;
        if full {
            batches.push(&bodies[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        batches.push(&bodies[start..]);
    }
    batches
}

/// SQS as the stages' outbox.
impl sluice_stages::ports::Outbox for Queue {
    type Error = AwsError;

    fn send_all(
        &self,
        bodies: &[String],
    ) -> impl std::future::Future<Output = Result<(), AwsError>> + Send {
        Queue::send_all(self, bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_at_most_ten_messages_per_batch() {
        let bodies: Vec<String> = (0..23).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = pack(&bodies).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 3]);
    }

    #[test]
    fn packs_at_most_256_kib_per_batch() {
        let bodies = vec!["x".repeat(100 * 1024); 5];
        let sizes: Vec<usize> = pack(&bodies).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(pack(&[]).is_empty());
    }
}
