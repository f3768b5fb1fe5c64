//! The dead-letter queues: their depths on the overview, and on `/dlq` the messages in them,
//! each with the file it belongs to. Looking is a receive (SQS has no other way to read a
//! message), so only a dead-letter queue is looked into, and only when `/dlq` is asked for;
//! every message is left where it is (see `sluice_aws::dlq::peek`).

use std::time::Duration;

use serde::Serialize;
use sluice_aws::dlq::{self, QueueRole};
use sluice_core::message::{about, MessageKind};
use uuid::Uuid;

/// The dead-letter queues to watch (`SLUICE_DLQ_URLS`, comma-separated queue URLs).
pub struct Dlqs {
    pub queues: dlq::Queues,
    pub urls: Vec<String>,
}

/// Messages shown per queue on `/dlq`.
pub const MESSAGES_SHOWN: usize = 50;

/// One queue's depth, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct DlqDepth {
    pub queue: String,
    pub messages: Option<i64>,
    pub error: Option<String>,
}

/// What one queue holds, or why it was not looked into.
#[derive(Debug, Clone, Serialize)]
pub struct DlqMessages {
    pub queue: String,
    pub messages: Vec<DeadLetter>,
    pub error: Option<String>,
}

/// A message in a dead-letter queue, described from its body.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub receive_count: u32,
    pub kind: &'static str,
    pub file_id: Option<Uuid>,
    pub dataset: Option<String>,
    /// The batch id, clean key or source key it names.
    pub what: Option<String>,
    /// An object event names a key, not a file: the file list searched for it.
    pub search: Option<String>,
}

/// The page must not hang on an unreachable endpoint.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

fn name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_string()
}

impl Dlqs {
    /// From `SLUICE_DLQ_URLS`; `None` when it is not set.
    pub fn from_env(queues: dlq::Queues) -> Option<Self> {
        let urls: Vec<String> = std::env::var("SLUICE_DLQ_URLS")
            .ok()?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        (!urls.is_empty()).then_some(Dlqs { queues, urls })
    }

    pub async fn depths(&self) -> Vec<DlqDepth> {
        let depths = self.urls.iter().map(|url| async move {
            let asked = self.queues.depth(url);
            let (messages, error) = match tokio::time::timeout(ANSWER_WITHIN, asked).await {
                Ok(Ok(n)) => (Some(n), None),
                Ok(Err(e)) => (None, Some(e.to_string())),
                Err(_) => (None, Some("no answer within 3 s".into())),
            };
            DlqDepth {
                queue: name(url),
                messages,
                error,
            }
        });
        futures_util::future::join_all(depths).await
    }

    /// The messages of each queue that is a dead-letter queue, up to [`MESSAGES_SHOWN`] each,
    /// left in it. A queue that is not one is not looked into: there each look would count
    /// towards dead-lettering its messages.
    pub async fn messages(&self) -> Vec<DlqMessages> {
        // The queues are looked into at once: the page must answer within the Lambda's timeout
        // (30 s) however slow SQS is, so each look has 12 s and they do not add up.
        let looks = self.urls.iter().map(|url| async move {
            let looked = tokio::time::timeout(4 * ANSWER_WITHIN, self.look(url)).await;
            let (messages, error) = match looked {
                Ok(Ok(messages)) => (messages, None),
                Ok(Err(e)) => (Vec::new(), Some(e)),
                Err(_) => (Vec::new(), Some("no answer within 12 s".into())),
            };
            DlqMessages {
                queue: name(url),
                messages,
                error,
            }
        });
        futures_util::future::join_all(looks).await
    }

    async fn look(&self, url: &str) -> Result<Vec<DeadLetter>, String> {
        match self.queues.queue_role(url).await {
            Ok(QueueRole::DeadLetter { .. }) => {}
            Ok(_) => {
                return Err(
                    "not a dead-letter queue (no queue's redrive policy names it): \
                            not looked into, as each look counts as a receive there"
                        .into(),
                )
            }
            Err(e) => return Err(e.to_string()),
        }
        let peeked = self
            .queues
            .peek(url, MESSAGES_SHOWN)
            .await
            .map_err(|e| e.to_string())?;
        Ok(peeked
            .into_iter()
            .map(|m| {
                let about = about(&m.body);
                let search = match about.kind {
                    MessageKind::ObjectCreated | MessageKind::S3Event => about.what.clone(),
                    _ => None,
                };
                DeadLetter {
                    message_id: m.message_id,
                    sent_at: m.sent_at.map(chrono::DateTime::<chrono::Utc>::from),
                    receive_count: m.receive_count,
                    kind: about.kind.as_str(),
                    file_id: about.file_id,
                    dataset: about.dataset,
                    what: about.what,
                    search,
                }
            })
            .collect())
    }
}

impl DeadLetter {
    pub fn sent(&self) -> String {
        self.sent_at
            .map(|t| crate::pages::when(&t))
            .unwrap_or_else(|| "–".into())
    }
}
