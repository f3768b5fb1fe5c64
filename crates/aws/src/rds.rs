//! RDS IAM authentication: the password a function logs in to PostgreSQL with is a token
//! signed with its own role's credentials (SigV4 for `rds-db:connect`), valid 15 minutes and
//! checked only when a connection opens. No database password is stored or read.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

use crate::AwsError;

/// How long a token opens connections.
pub const TOKEN_LIFE: Duration = Duration::from_secs(900);

/// The token that logs `user` in to the database at `host:port` in `region`, signed with
/// `credentials` at `now`.
pub fn auth_token(
    credentials: Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    now: SystemTime,
) -> Result<String, AwsError> {
    let failed = |e: &dyn std::fmt::Display| AwsError::Secret {
        secret: format!("RDS auth token for {user}@{host}"),
        message: e.to_string(),
    };
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFE);
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let user = percent_encoding::utf8_percent_encode(user, QUERY_VALUE);
    let url = format!("https://{host}:{port}/?Action=connect&DBUser={user}");
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let mut token = format!("{host}:{port}/?Action=connect&DBUser={user}");
    // The signature last, as the SDKs write it (the server reads the parameters in any order).
    let mut params: Vec<_> = instructions.params().iter().collect();
    params.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in params {
        let value = percent_encoding::utf8_percent_encode(value, QUERY_VALUE);
        token.push_str(&format!("&{name}={value}"));
    }
    Ok(token)
}

/// What a query value escapes: everything but SigV4's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A token for `user` at `host:port`, signed now with the process's own credentials.
pub async fn auth_token_now(
    provider: &dyn ProvideCredentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
) -> Result<String, AwsError> {
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| AwsError::Secret {
            secret: format!("RDS auth token for {user}@{host}"),
            message: format!("no AWS credentials: {e}"),
        })?;
    auth_token(credentials, region, host, port, user, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_noon() -> SystemTime {
        // 2026-12-07T12:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_644_800)
    }

    /// The tokens botocore's `generate_db_auth_token` makes for the same credentials, host,
    /// user and time (computed with boto3 1.x, its clock fixed at 2026-12-07T12:00:00Z).
    #[test]
    fn a_token_is_the_one_the_aws_sdks_make() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let token = auth_token(
            credentials,
            "us-east-1",
            "sluice.abc123.us-east-1.rds.amazonaws.com",
            5432,
            "sluice_sanitizer",
            at_noon(),
        )
        .unwrap();
        assert_eq!(
            token,
            "sluice.abc123.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=sluice_sanitizer\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=6c66c8b8c4eb9539e98581abadffcd64e2417d1b8d91f9075e9de0c631943361"
        );
    }

    #[test]
    fn a_session_token_travels_in_the_token() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("FwoGZXIvYXdzE+/session=token".into()),
            None,
            "test",
        );
        let token = auth_token(
            credentials,
            "eu-west-1",
            "db.example.internal",
            5433,
            "sluice_forwarder",
            at_noon(),
        )
        .unwrap();
        assert_eq!(
            token,
            "db.example.internal:5433/?Action=connect&DBUser=sluice_forwarder\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Feu-west-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Security-Token=FwoGZXIvYXdzE%2B%2Fsession%3Dtoken\
             &X-Amz-Signature=b9cd4c1eda565ac399d1e7c4d19b077d3238539d4e26ee29a1acd0701972d08e"
        );
    }
}
