//! Where secret values come from.

use std::future::Future;
use std::pin::Pin;

/// Why a secret could not be read. Never holds the secret's value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("secret {secret}: {message}")]
pub struct SecretError {
    pub secret: String,
    pub message: String,
}

/// A future a [`SecretSource`] returns (boxed: sources are shared as trait objects).
pub type SecretFuture<'a> = Pin<Box<dyn Future<Output = Result<String, SecretError>> + Send + 'a>>;

/// Where secret header values come from (Secrets Manager in AWS).
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The string value of secret `id` (a name or ARN).
    fn secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a>;
}

/// The string field `key` of the JSON secret `id`.
pub async fn secret_field(
    source: &dyn SecretSource,
    id: &str,
    key: &str,
) -> Result<String, SecretError> {
    let text = source.secret_string(id).await?;
    let error = |message: String| SecretError {
        secret: id.to_string(),
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
