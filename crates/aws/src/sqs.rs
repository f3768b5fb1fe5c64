//! SQS: sending messages in batches that respect SQS's limits, and putting received messages
//! back for a retry after a backoff ([`Visibility`]).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, SendMessageBatchRequestEntry};

use crate::AwsError;
use sluice_core::errors::chain;

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

    /// The SQS client it sends with.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
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
            message: chain(e),
        }
    }
}

/// Sets when received messages come back: a consumer that gives a message back for a retry
/// sets its visibility to a backoff, instead of waiting out the queue's visibility timeout
/// (which is sized for the crash case). Messages are named by the queue's ARN (what an SQS
/// event carries); each queue's URL is looked up once per container.
#[derive(Debug)]
pub struct Visibility {
    client: aws_sdk_sqs::Client,
    urls: Mutex<HashMap<String, String>>,
}

/// The longest visibility SQS allows: 12 hours.
pub const MAX_VISIBILITY_SECONDS: i32 = 12 * 60 * 60;

impl Visibility {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self {
            client,
            urls: Mutex::default(),
        }
    }

    /// Makes each message (`receipt handle`, `seconds`) of queue `queue_arn` visible again
    /// after its seconds (clamped to 0..=12 h), ten per request.
    pub async fn delay(&self, queue_arn: &str, messages: &[(String, i32)]) -> Result<(), AwsError> {
        if messages.is_empty() {
            return Ok(());
        }
        let url = self.url(queue_arn).await?;
        let error = |e: &(dyn std::error::Error + 'static)| AwsError::Sqs {
            op: "ChangeMessageVisibilityBatch",
            queue: url.clone(),
            message: chain(e),
        };
        for chunk in messages.chunks(MAX_BATCH_MESSAGES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (receipt, seconds))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout((*seconds).clamp(0, MAX_VISIBILITY_SECONDS))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(&e))?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error(&e))?;
            if let Some(failed) = out.failed().first() {
                return Err(AwsError::Sqs {
                    op: "ChangeMessageVisibilityBatch",
                    queue: url.clone(),
                    message: format!(
                        "{} of {} messages failed, first: {} {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    async fn url(&self, queue_arn: &str) -> Result<String, AwsError> {
        if let Some(url) = self
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue_arn)
        {
            return Ok(url.clone());
        }
        let bad = |message: String| AwsError::Sqs {
            op: "GetQueueUrl",
            queue: queue_arn.to_string(),
            message,
        };
        let (account, name) = queue_of_arn(queue_arn)
            .ok_or_else(|| bad("not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)".into()))?;
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| bad(chain(&e)))?;
        let url = out
            .queue_url()
            .ok_or_else(|| bad("no queue URL in the answer".into()))?
            .to_string();
        self.urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue_arn.to_string(), url.clone());
        Ok(url)
    }
}

/// The account and name in `arn:aws:sqs:REGION:ACCOUNT:NAME`.
fn queue_of_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!account.is_empty() && !name.is_empty()).then_some((account, name))
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

    async fn backlog(&self) -> Result<u64, AwsError> {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let names = [
            Name::ApproximateNumberOfMessages,
            Name::ApproximateNumberOfMessagesNotVisible,
            Name::ApproximateNumberOfMessagesDelayed,
        ];
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::Sqs {
                op: "GetQueueAttributes",
                queue: self.url.clone(),
                message: sluice_core::errors::chain(&e),
            })?;
        let attributes = out.attributes();
        Ok(names
            .iter()
            .filter_map(|n| attributes.and_then(|a| a.get(n)))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_arn_names_its_account_and_queue() {
        assert_eq!(
            queue_of_arn("arn:aws:sqs:eu-west-1:123456789012:sluice-ForwardQueue-1A"),
            Some(("123456789012", "sluice-ForwardQueue-1A"))
        );
        assert_eq!(queue_of_arn("arn:aws:sns:eu-west-1:1:topic"), None);
        assert_eq!(queue_of_arn("arn:aws:sqs:eu-west-1::q"), None);
        assert_eq!(queue_of_arn("not an arn"), None);
    }

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
