//! Database credentials from AWS Secrets Manager.

use serde::Deserialize;

use crate::AwsError;
use sluice_core::errors::chain;

/// A database secret as RDS writes it: `username` and `password` for an RDS-managed master
/// secret; rotation-style secrets also carry `host`, `port` and `dbname`.
#[derive(Clone, Deserialize)]
pub struct DbSecret {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub dbname: Option<String>,
}

impl std::fmt::Debug for DbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// The string value of the secret `secret_id` (name or ARN). Never logged or put in errors.
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<String, AwsError> {
    let value = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| AwsError::Secret {
            secret: secret_id.to_string(),
            message: chain(&e),
        })?;
    value
        .secret_string()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Secret {
            secret: secret_id.to_string(),
            message: "the secret has no string value".into(),
        })
}

/// Reads and parses the database secret `secret_id` (name or ARN).
pub async fn database_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<DbSecret, AwsError> {
    let error = |message: String| AwsError::Secret {
        secret: secret_id.to_string(),
        message,
    };
    let value = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| error(chain(&e)))?;
    let text = value
        .secret_string()
        .ok_or_else(|| error("the secret has no string value".into()))?;
    // The parse error could quote the secret: say only what is wrong with its shape.
    serde_json::from_str(text).map_err(|e| {
        error(format!(
            "not the RDS secret shape (JSON with username and password): {:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Secrets Manager as the source of secret header values.
#[derive(Debug, Clone)]
pub struct SecretsManager(pub aws_sdk_secretsmanager::Client);

impl sluice_stages::ports::SecretSource for SecretsManager {
    fn secret_string<'a>(&'a self, id: &'a str) -> sluice_stages::ports::SecretFuture<'a> {
        Box::pin(async move {
            secret_string(&self.0, id)
                .await
                .map_err(|e| sluice_stages::ports::SecretError {
                    secret: id.to_string(),
                    message: match e {
                        AwsError::Secret { message, .. } => message,
                        other => other.to_string(),
                    },
                })
        })
    }
}
