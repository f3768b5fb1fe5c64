//! Dead-letter queues for operators (`sluice dlq`): look at what is in one without taking
//! anything out of it, and move its messages back to the queue they failed on.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;

use crate::AwsError;
use sluice_core::errors::chain;

/// A message seen in a queue, left there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub message_id: String,
    pub body: String,
    pub sent_at: Option<SystemTime>,
    /// Deliveries so far (on the source queue, then here).
    pub receive_count: u32,
}

fn missing(url: &str, name: QueueAttributeName) -> AwsError {
    AwsError::Sqs {
        op: "GetQueueAttributes",
        queue: url.to_string(),
        message: format!("no {} in the answer", name.as_str()),
    }
}

fn sqs_error(op: &'static str, queue: &str, e: impl std::error::Error + 'static) -> AwsError {
    AwsError::Sqs {
        op,
        queue: queue.to_string(),
        message: chain(&e),
    }
}

/// How long a look hides what it has seen, so one look receives each message once; it is
/// shown again at the end of the look.
const LOOK_VISIBILITY_SECONDS: i32 = 30;

/// What a queue is, for tools that should only look at dead-letter queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRole {
    /// Some queue's redrive policy names it.
    DeadLetter { sources: Vec<String> },
    /// It has a redrive policy of its own: its messages go to its dead-letter queue after
    /// `max_receives` receives, and every look counts as one.
    Source { max_receives: Option<u32> },
    /// Neither.
    Plain,
}

/// What to do with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Back to the queue it failed on.
    Move,
    /// Left in the dead-letter queue, for this reason.
    Keep(String),
    /// Deleted without being sent anywhere: what it asked for is recorded elsewhere (the
    /// listener's sweep of an object event whose file already has its row).
    Remove,
}

/// A message a redrive left in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub message_id: String,
    pub reason: String,
}

/// How a redrive went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    pub moved: usize,
    pub removed: usize,
    pub kept: Vec<Kept>,
}

/// How long a message being looked at stays hidden: the kept ones stay out of the way for the
/// rest of the run and are shown again at its end.
const REDRIVE_VISIBILITY_SECONDS: i32 = 900;

/// SQS queues as the operator tools see them: find one, tell a dead-letter queue from a
/// source queue, look into one, read its depth, move its messages back.
#[derive(Debug, Clone)]
pub struct Queues {
    sqs: Client,
}

impl Queues {
    pub fn new(sqs: Client) -> Self {
        Self { sqs }
    }

    /// A queue's URL, from its URL or its name.
    pub async fn queue_url(&self, queue: &str) -> Result<String, AwsError> {
        let sqs = &self.sqs;
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

    /// Messages in the queue, up to `max`, left in it. Each is received once (SQS counts a look as
    /// a receive: there is no other way to read a message) and hidden for the rest of the look, so
    /// the next rounds find the others; at the end every one is made visible again at once. SQS
    /// returns a sample each time; looking stops after three rounds that show nothing new.
    pub async fn peek(&self, url: &str, max: usize) -> Result<Vec<Peeked>, AwsError> {
        let sqs = &self.sqs;
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let mut handles = Vec::new();
        let mut quiet_rounds = 0;
        let looked = async {
            while found.len() < max && quiet_rounds < 3 {
                let received = sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .visibility_timeout(LOOK_VISIBILITY_SECONDS)
                    .wait_time_seconds(0)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send()
                    .await
                    .map_err(|e| sqs_error("ReceiveMessage", url, e))?;
                let before = found.len();
                for message in received.messages() {
                    handles.extend(message.receipt_handle().map(str::to_string));
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
                        receive_count: attribute(
                            MessageSystemAttributeName::ApproximateReceiveCount,
                        )
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
            Ok::<(), AwsError>(())
        }
        .await;
        self.show_again(url, handles).await;
        looked.map(|()| found)
    }

    /// Whether `url` is a dead-letter queue, a queue with one, or neither.
    pub async fn queue_role(&self, url: &str) -> Result<QueueRole, AwsError> {
        let sources = self.source_queues(url).await?;
        if !sources.is_empty() {
            return Ok(QueueRole::DeadLetter { sources });
        }
        let policy = self
            .attribute(url, QueueAttributeName::RedrivePolicy)
            .await?
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok());
        Ok(match policy {
            Some(policy) => QueueRole::Source {
                max_receives: policy["maxReceiveCount"]
                    .as_u64()
                    .or_else(|| policy["maxReceiveCount"].as_str()?.parse().ok())
                    .map(|n| n as u32),
            },
            None => QueueRole::Plain,
        })
    }

    /// The queues whose redrive policy names this dead-letter queue.
    pub async fn source_queues(&self, dlq_url: &str) -> Result<Vec<String>, AwsError> {
        let sqs = &self.sqs;
        let listed = sqs
            .list_dead_letter_source_queues()
            .queue_url(dlq_url)
            .send()
            .await
            .map_err(|e| sqs_error("ListDeadLetterSourceQueues", dlq_url, e))?;
        Ok(listed.queue_urls().to_vec())
    }

    /// The messages a queue holds that are visible now (SQS's approximate count).
    pub async fn depth(&self, url: &str) -> Result<i64, AwsError> {
        let count = QueueAttributeName::ApproximateNumberOfMessages;
        let n = self.attribute(url, count.clone()).await?;
        n.as_deref()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| missing(url, count))
    }

    /// The queue's ARN.
    pub async fn queue_arn(&self, url: &str) -> Result<String, AwsError> {
        let arn = QueueAttributeName::QueueArn;
        let found = self.attribute(url, arn.clone()).await?;
        found.ok_or_else(|| missing(url, arn))
    }

    /// One attribute of the queue, if it has it.
    async fn attribute(
        &self,
        url: &str,
        name: QueueAttributeName,
    ) -> Result<Option<String>, AwsError> {
        let answer = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", url, e))?;
        Ok(answer.attributes().and_then(|a| a.get(&name)).cloned())
    }

    /// Moves the dead-letter queue's messages back to `to`, each one only if `decide` says so,
    /// at most `per_second`. Each is sent before it is deleted, so a crash can only leave a copy
    /// in both queues, never lose one; a message kept is left in the queue, visible again once the
    /// run ends. (SQS's own message-move task cannot look at what it moves, so it is not used.)
    pub async fn redrive<F, Fut>(
        &self,
        dlq_url: &str,
        to_url: &str,
        per_second: u32,
        mut decide: F,
    ) -> Result<Redriven, AwsError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Decision>,
    {
        let sqs = &self.sqs;
        let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
        let mut done = Redriven::default();
        let mut seen = HashSet::new();
        let mut kept_handles = Vec::new();
        let result = async {
            loop {
                // A long poll of a second asks every SQS server, so an empty answer means empty.
                let received = sqs
                    .receive_message()
                    .queue_url(dlq_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(REDRIVE_VISIBILITY_SECONDS)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .map_err(|e| sqs_error("ReceiveMessage", dlq_url, e))?;
                let fresh: Vec<_> = received
                    .messages()
                    .iter()
                    .filter(|m| m.message_id().is_some_and(|id| seen.insert(id.to_string())))
                    .collect();
                if fresh.is_empty() {
                    return Ok::<(), AwsError>(());
                }
                for message in fresh {
                    let id = message.message_id().unwrap_or_default().to_string();
                    let body = message.body().unwrap_or_default();
                    match decide(body.to_string()).await {
                        Decision::Keep(reason) => {
                            done.kept.push(Kept {
                                message_id: id,
                                reason,
                            });
                            kept_handles.extend(message.receipt_handle().map(str::to_string));
                            continue;
                        }
                        Decision::Move => {
                            sqs.send_message()
                                .queue_url(to_url)
                                .message_body(body)
                                .send()
                                .await
                                .map_err(|e| sqs_error("SendMessage", to_url, e))?;
                            done.moved += 1;
                        }
                        Decision::Remove => done.removed += 1,
                    }
                    if let Some(handle) = message.receipt_handle() {
                        sqs.delete_message()
                            .queue_url(dlq_url)
                            .receipt_handle(handle)
                            .send()
                            .await
                            .map_err(|e| sqs_error("DeleteMessage", dlq_url, e))?;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
        .await;
        // Whatever happened, the kept messages are shown again at once.
        self.show_again(dlq_url, kept_handles).await;
        result.map(|()| done)
    }

    /// Makes the messages received under `handles` visible again at once; one that cannot be
    /// stays hidden until its visibility timeout ends, which is said.
    async fn show_again(&self, url: &str, handles: Vec<String>) {
        for handle in handles {
            let shown = self
                .sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = shown {
                tracing::warn!(queue = url, error = %chain(&e),
                    "a message looked at stays hidden until its visibility timeout ends");
            }
        }
    }
}
