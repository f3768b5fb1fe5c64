//! Dead-letter queue depths for the overview, when AWS is reachable.

use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

/// The dead-letter queues to watch (`SLUICE_DLQ_URLS`, comma-separated queue URLs).
pub struct Dlqs {
    pub sqs: aws_sdk_sqs::Client,
    pub urls: Vec<String>,
}

/// One queue's depth, or why it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct DlqDepth {
    pub queue: String,
    pub messages: Option<i64>,
    pub error: Option<String>,
}

impl Dlqs {
    /// From `SLUICE_DLQ_URLS`; `None` when it is not set.
    pub fn from_env(sqs: aws_sdk_sqs::Client) -> Option<Self> {
        let urls: Vec<String> = std::env::var("SLUICE_DLQ_URLS")
            .ok()?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        (!urls.is_empty()).then_some(Dlqs { sqs, urls })
    }

    pub async fn depths(&self) -> Vec<DlqDepth> {
        let mut out = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let queue = url.rsplit('/').next().unwrap_or(url).to_string();
            let asked = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send();
            // The page must not hang on an unreachable endpoint.
            let answer = tokio::time::timeout(std::time::Duration::from_secs(3), asked).await;
            let depth = match answer {
                Ok(Ok(out)) => DlqDepth {
                    queue,
                    messages: out
                        .attributes()
                        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                        .and_then(|n| n.parse().ok()),
                    error: None,
                },
                Ok(Err(e)) => DlqDepth {
                    queue,
                    messages: None,
                    error: Some(sluice_aws::describe(&e)),
                },
                Err(_) => DlqDepth {
                    queue,
                    messages: None,
                    error: Some("no answer within 3 s".into()),
                },
            };
            out.push(depth);
        }
        out
    }
}
