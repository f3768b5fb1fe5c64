//! What `sluice doctor` asks of AWS, as plain facts; the doctor judges them.

use aws_sdk_sqs::types::QueueAttributeName;
use sluice_core::errors::chain;

use crate::Clients;

/// The credentials of this environment: `Ok(true)` temporary ones, `Ok(false)` long-lived,
/// `Err` why there are none.
pub async fn credentials() -> Result<bool, String> {
    use aws_sdk_s3::config::ProvideCredentials;
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let provider = shared
        .credentials_provider()
        .ok_or_else(|| "no credentials provider".to_string())?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| chain(&e))?;
    Ok(credentials.expiry().is_some())
}

/// What a bucket's settings say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFacts {
    /// A lifecycle rule aborts incomplete multipart uploads.
    pub aborts_incomplete_uploads: bool,
    /// Its events go to EventBridge.
    pub eventbridge: bool,
}

/// A bucket's facts; `Err` when it cannot be reached (missing, or not allowed).
pub async fn bucket(clients: &Clients, bucket: &str) -> Result<BucketFacts, String> {
    let s3 = &clients.s3;
    s3.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await;
    let aborts_incomplete_uploads = lifecycle.as_ref().is_ok_and(|l| {
        l.rules()
            .iter()
            .any(|r| r.abort_incomplete_multipart_upload().is_some())
    });
    let notifications = s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await;
    let eventbridge = notifications
        .as_ref()
        .is_ok_and(|n| n.event_bridge_configuration().is_some());
    Ok(BucketFacts {
        aborts_incomplete_uploads,
        eventbridge,
    })
}

/// What a queue's settings say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFacts {
    pub visibility_seconds: u64,
    /// Its redrive policy, if it has one.
    pub dead_letters: Option<DeadLetterFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterFacts {
    /// The dead-letter queue's name, from the policy's ARN.
    pub queue: String,
    pub max_receive_count: Option<String>,
    /// `Err`: the queue the policy names cannot be found, and why.
    pub exists: Result<(), String>,
}

/// A queue's facts; `Err` when it cannot be reached.
pub async fn queue(clients: &Clients, url: &str) -> Result<QueueFacts, String> {
    let sqs = &clients.sqs;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let get = |n: QueueAttributeName| attributes.attributes().and_then(|a| a.get(&n)).cloned();
    let visibility_seconds = get(QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let policy: Option<serde_json::Value> =
        get(QueueAttributeName::RedrivePolicy).and_then(|p| serde_json::from_str(&p).ok());
    let dead_letters = match policy
        .as_ref()
        .and_then(|p| p["deadLetterTargetArn"].as_str())
    {
        Some(arn) => {
            let queue = arn.rsplit(':').next().unwrap_or(arn).to_string();
            let exists = sqs
                .get_queue_url()
                .queue_name(&queue)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| chain(&e));
            Some(DeadLetterFacts {
                queue,
                max_receive_count: policy.as_ref().map(|p| {
                    p["maxReceiveCount"]
                        .to_string()
                        .trim_matches('"')
                        .to_string()
                }),
                exists,
            })
        }
        None => None,
    };
    Ok(QueueFacts {
        visibility_seconds,
        dead_letters,
    })
}

/// Whether the secret can be read (its value is not kept).
pub async fn secret_readable(clients: &Clients, id: &str) -> Result<(), String> {
    clients
        .secrets
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| chain(&e))
}
