//! Building the SDK clients once per process from the environment.

use aws_config::BehaviorVersion;

/// The S3, SQS, Secrets Manager and EventBridge clients of one process.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The shared config: region and credentials (an RDS auth token is signed with them).
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// Loads the shared AWS config (region, credentials, `AWS_ENDPOINT_URL`) and builds the
    /// clients; S3 uses path-style addressing when `SLUICE_S3_PATH_STYLE` is `true` or `1`.
    pub async fn from_env() -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let path_style = matches!(
            std::env::var("SLUICE_S3_PATH_STYLE").as_deref(),
            Ok("true" | "1")
        );
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Self {
            sdk: shared.clone(),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            events: aws_sdk_eventbridge::Client::new(&shared),
        }
    }

    /// A token that logs `user` in to the RDS database at `host:port` for 15 minutes
    /// ([`crate::rds`]), signed with this process's credentials.
    pub async fn rds_auth_token(
        &self,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<String, crate::AwsError> {
        let failed = |message: String| crate::AwsError::Secret {
            secret: format!("RDS auth token for {user}@{host}"),
            message,
        };
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| failed("no AWS credentials are configured".into()))?;
        let region = self
            .sdk
            .region()
            .ok_or_else(|| failed("no AWS region is configured".into()))?;
        crate::rds::auth_token_now(provider.as_ref(), region.as_ref(), host, port, user).await
    }

    /// The queues as the operator tools see them.
    pub fn queues(&self) -> crate::dlq::Queues {
        crate::dlq::Queues::new(self.sqs.clone())
    }
}

/// How long the credentials of this environment still work, when they expire at all
/// (temporary credentials: an assumed role, SSO); `None` for long-lived keys or none.
pub async fn credentials_left() -> Option<std::time::Duration> {
    use aws_sdk_s3::config::ProvideCredentials;
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let credentials = shared
        .credentials_provider()?
        .provide_credentials()
        .await
        .ok()?;
    let end = credentials.expiry()?;
    Some(
        end.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}
