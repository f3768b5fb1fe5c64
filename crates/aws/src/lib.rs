//! Sluice's adapter over AWS: every call to S3, SQS, Secrets Manager and EventBridge in the
//! workspace, for the stages (through their ports) and for `sluice` (uploads, presigning, the
//! doctor's probes, dead-letter queues).
//!
//! Boundary: implements the stages' ports over the AWS SDK; knows no other adapter (no
//! PostgreSQL, no HTTP to APIs). Clients honour the standard AWS environment (region,
//! credentials, `AWS_ENDPOINT_URL`) and `SLUICE_S3_PATH_STYLE=true` for path-style S3
//! addressing, so the same binary runs against AWS and against a local stand-in such as moto
//! server.

mod clients;
pub mod copy;
pub mod dlq;
pub mod events;
pub mod multipart;
pub mod probe;
mod ranged;
pub mod rds;
pub mod s3;
pub mod secrets;
pub mod sqs;

pub use clients::{credentials_left, Clients};
pub use copy::{CopySource, Head, ListPage, Listed};
pub use events::EventBus;
pub use multipart::Upload;
pub use s3::{ObjectMeta, ObjectStore, Presign};
pub use sqs::{Queue, Visibility};

/// Why an S3 or SQS call failed. Messages name the bucket/key or queue; never object contents.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The object is not there (deleted since the event, or never written).
    #[error("S3 object s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    /// A multipart upload S3 no longer has (aborted by a lifecycle rule, or completed).
    #[error("the multipart upload of s3://{bucket}/{key} is gone from S3 (NoSuchUpload)")]
    UploadGone { bucket: String, key: String },
    #[error("S3 {op} s3://{bucket}/{key}: {message}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("SQS {op} {queue}: {message}")]
    Sqs {
        op: &'static str,
        queue: String,
        message: String,
    },
    #[error("secret {secret}: {message}")]
    Secret { secret: String, message: String },
    #[error("message of {size} bytes is over SQS's limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
}
