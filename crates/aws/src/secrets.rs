//! Database credentials from AWS Secrets Manager.

use serde::Deserialize;

use crate::{describe, AwsError};

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
            message: describe(&e),
        })?;
    value
        .secret_string()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Secret {
            secret: secret_id.to_string(),
            message: "the secret has no string value".into(),
        })
}

/// The string field `key` of the JSON secret `secret_id`.
pub async fn secret_field(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    key: &str,
) -> Result<String, AwsError> {
    let text = secret_string(client, secret_id).await?;
    let error = |message: String| AwsError::Secret {
        secret: secret_id.to_string(),
        message,
    };
    // A parse error could quote the secret: say only where the JSON is wrong.
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        error(format!(
            "not JSON: {:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    match json.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(error(format!("field `{key}` is not a string"))),
        None => Err(error(format!("has no field `{key}`"))),
    }
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
        .map_err(|e| error(describe(&e)))?;
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
