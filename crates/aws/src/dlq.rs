//! Dead-letter queues for operators (`sluice dlq`): look at what is in one without taking
//! anything out of it, and move its messages back to the queue they failed on.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;

use crate::{describe, AwsError};

/// A message seen in a queue, left there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub message_id: String,
    pub body: String,
    pub sent_at: Option<SystemTime>,
    /// Deliveries so far (on the source queue, then here).
    pub receive_count: u32,
}

fn sqs_error(op: &'static str, queue: &str, e: impl std::error::Error + 'static) -> AwsError {
    AwsError::Sqs {
        op,
        queue: queue.to_string(),
        message: describe(&e),
    }
}

/// A queue's URL, from its URL or its name.
pub async fn queue_url(sqs: &Client, queue: &str) -> Result<String, AwsError> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return Ok(queue.to_string());
    }
    let found = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueUrl", queue, e))?;
    found
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Sqs {
            op: "GetQueueUrl",
            queue: queue.to_string(),
            message: "no URL in the answer".into(),
        })
}

/// Messages in the queue, up to `max`, left in it: each is received with a visibility timeout
/// of 0, so it is visible again at once (SQS counts the look as a receive). SQS returns a
/// sample each time; looking stops after three rounds that show nothing new.
pub async fn peek(sqs: &Client, url: &str, max: usize) -> Result<Vec<Peeked>, AwsError> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut quiet_rounds = 0;
    while found.len() < max && quiet_rounds < 3 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", url, e))?;
        let before = found.len();
        for message in received.messages() {
            let Some(id) = message.message_id() else {
                continue;
            };
            if found.len() == max || !seen.insert(id.to_string()) {
                continue;
            }
            let attribute = |name: MessageSystemAttributeName| {
                message.attributes().and_then(|a| a.get(&name)).cloned()
            };
            found.push(Peeked {
                message_id: id.to_string(),
                body: message.body().unwrap_or_default().to_string(),
                sent_at: attribute(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
                receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            });
        }
        quiet_rounds = if found.len() == before {
            quiet_rounds + 1
        } else {
            0
        };
    }
    Ok(found)
}

/// The queues whose redrive policy names this dead-letter queue.
pub async fn source_queues(sqs: &Client, dlq_url: &str) -> Result<Vec<String>, AwsError> {
    let listed = sqs
        .list_dead_letter_source_queues()
        .queue_url(dlq_url)
        .send()
        .await
        .map_err(|e| sqs_error("ListDeadLetterSourceQueues", dlq_url, e))?;
    Ok(listed.queue_urls().to_vec())
}

/// The queue's ARN.
pub async fn queue_arn(sqs: &Client, url: &str) -> Result<String, AwsError> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", url, e))?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| AwsError::Sqs {
            op: "GetQueueAttributes",
            queue: url.to_string(),
            message: "no QueueArn".into(),
        })
}

/// How a redrive went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// SQS moves the messages itself (StartMessageMoveTask); the task's handle.
    Task(String),
    /// Moved here, one by one: this many.
    Count(usize),
}

/// Moves the dead-letter queue's messages to `to`: by SQS's own message-move task where the
/// service offers it, else by receiving, sending and deleting each (sent before deleted, so a
/// crash can only leave a copy in both queues, never lose one), at most `per_second`.
pub async fn redrive(
    sqs: &Client,
    dlq_url: &str,
    to_url: &str,
    per_second: u32,
) -> Result<Moved, AwsError> {
    let (source_arn, destination_arn) = (
        queue_arn(sqs, dlq_url).await?,
        queue_arn(sqs, to_url).await?,
    );
    let task = sqs
        .start_message_move_task()
        .source_arn(&source_arn)
        .destination_arn(&destination_arn)
        .max_number_of_messages_per_second(per_second.clamp(1, 500) as i32)
        .send()
        .await;
    match task {
        Ok(task) => Ok(Moved::Task(
            task.task_handle().unwrap_or_default().to_string(),
        )),
        Err(e) => {
            tracing::info!(queue = dlq_url, error = %describe(&e),
                "StartMessageMoveTask refused: moving the messages one by one");
            move_one_by_one(sqs, dlq_url, to_url, per_second)
                .await
                .map(Moved::Count)
        }
    }
}

async fn move_one_by_one(
    sqs: &Client,
    from: &str,
    to: &str,
    per_second: u32,
) -> Result<usize, AwsError> {
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let mut moved = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", from, e))?;
        if received.messages().is_empty() {
            return Ok(moved);
        }
        for message in received.messages() {
            sqs.send_message()
                .queue_url(to)
                .message_body(message.body().unwrap_or_default())
                .send()
                .await
                .map_err(|e| sqs_error("SendMessage", to, e))?;
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(from)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| sqs_error("DeleteMessage", from, e))?;
            }
            moved += 1;
            tokio::time::sleep(pause).await;
        }
    }
}
