//! Why an invocation failed, as Lambda reports it: `errorType` is one of a few stable names
//! (`Sluice.S3`, `Sluice.DatabaseUnavailable`, ...) instead of a Rust type name, and
//! `errorMessage` says what failed with which object, never a record.

use lambda_runtime::Diagnostic;
use sluice_aws::AwsError;
use sluice_core::errors::chain;
use sluice_db::DbError;
use sluice_stages::{Fault, FaultKind};

/// The kind of failure: what an operator alarms on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The event is not one this function takes.
    BadEvent,
    /// The function's settings are wrong (fix the configuration, not a retry).
    Config,
    /// PostgreSQL could not be reached or refused the work.
    DatabaseUnavailable,
    /// An S3 call failed.
    S3,
    /// An SQS call failed.
    Sqs,
    /// A secret could not be read.
    SecretsManager,
    /// The invocation stopped short of Lambda's deadline; the event is retried.
    Deadline,
    /// Anything else.
    Internal,
}

impl FailureKind {
    /// The `errorType` Lambda reports.
    pub fn error_type(self) -> &'static str {
        match self {
            FailureKind::BadEvent => "Sluice.BadEvent",
            FailureKind::Config => "Sluice.Config",
            FailureKind::DatabaseUnavailable => "Sluice.DatabaseUnavailable",
            FailureKind::S3 => "Sluice.S3",
            FailureKind::Sqs => "Sluice.SQS",
            FailureKind::SecretsManager => "Sluice.SecretsManager",
            FailureKind::Deadline => "Sluice.Deadline",
            FailureKind::Internal => "Sluice.Internal",
        }
    }

    /// The kind of an error, by its type.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        if let Some(failure) = error.downcast_ref::<Failure>() {
            return failure.kind;
        }
        if let Some(fault) = error.downcast_ref::<Fault>() {
            // The adapter's own error, when there is one, says more (a database
            // configuration error is not an outage).
            if let Some(source) = &fault.source {
                let kind = Self::of(source.as_ref());
                if kind != FailureKind::Internal {
                    return kind;
                }
            }
            return match fault.kind {
                FaultKind::BadInput => FailureKind::BadEvent,
                FaultKind::Store => FailureKind::DatabaseUnavailable,
                FaultKind::Objects => FailureKind::S3,
                FaultKind::Queue => FailureKind::Sqs,
                FaultKind::Deadline => FailureKind::Deadline,
                FaultKind::Waiting | FaultKind::Internal => FailureKind::Internal,
            };
        }
        if let Some(aws) = error.downcast_ref::<AwsError>() {
            return match aws {
                AwsError::NotFound { .. } | AwsError::S3 { .. } | AwsError::UploadGone { .. } => {
                    FailureKind::S3
                }
                AwsError::Sqs { .. } | AwsError::MessageTooLarge { .. } => FailureKind::Sqs,
                AwsError::Secret { .. } => FailureKind::SecretsManager,
            };
        }
        if let Some(db) = error.downcast_ref::<DbError>() {
            return match db {
                DbError::Config(_) => FailureKind::Config,
                _ => FailureKind::DatabaseUnavailable,
            };
        }
        FailureKind::Internal
    }
}

/// A failed invocation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A failure of the kind `error`'s type says, with its whole chain as the message.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(FailureKind::of(error), chain(error))
    }
}

impl From<AwsError> for Failure {
    fn from(error: AwsError) -> Self {
        Self::from_error(&error)
    }
}

impl From<DbError> for Failure {
    fn from(error: DbError) -> Self {
        Self::from_error(&error)
    }
}

impl From<Fault> for Failure {
    fn from(fault: Fault) -> Self {
        Self::new(FailureKind::of(&fault), fault.message)
    }
}

impl From<lambda_runtime::Error> for Failure {
    fn from(error: lambda_runtime::Error) -> Self {
        Self::from_error(&*error)
    }
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        Diagnostic {
            error_type: failure.kind.error_type().to_string(),
            error_message: failure.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_the_type_operators_alarm_on() {
        let s3 = AwsError::S3 {
            op: "GetObject",
            bucket: "b".into(),
            key: "k".into(),
            message: "slow down".into(),
        };
        let diagnostic = Diagnostic::from(Failure::from(s3));
        assert_eq!(diagnostic.error_type, "Sluice.S3");
        assert!(diagnostic.error_message.contains("s3://b/k"));

        let db = DbError::Config("bad url".into());
        assert_eq!(Failure::from(db).kind, FailureKind::Config);

        let boxed: lambda_runtime::Error = Box::new(AwsError::Sqs {
            op: "SendMessageBatch",
            queue: "q".into(),
            message: "throttled".into(),
        });
        assert_eq!(
            Diagnostic::from(Failure::from(boxed)).error_type,
            "Sluice.SQS"
        );

        let other: lambda_runtime::Error = "something odd".into();
        assert_eq!(Failure::from(other).kind, FailureKind::Internal);
        let deadline = Failure::new(FailureKind::Deadline, "stopped");
        assert_eq!(Diagnostic::from(deadline).error_type, "Sluice.Deadline");
    }
}
