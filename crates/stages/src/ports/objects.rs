//! Object storage (S3 in AWS, a folder locally) and the queues between stages (SQS, or
//! in-process queues locally).

use std::collections::HashMap;
use std::future::Future;

use sluice_core::sanitize::drive::ByteSink;
use tokio::io::AsyncRead;

/// What the store says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: i64,
    /// The ETag without its quotes.
    pub etag: String,
    pub version_id: Option<String>,
    /// User metadata (`x-amz-meta-*`), names without the prefix.
    pub metadata: HashMap<String, String>,
    /// When the object was written (S3's `LastModified`, a file's modification time).
    pub last_modified: Option<std::time::SystemTime>,
}

/// An object being written: it appears under its key only when [`ObjectUpload::finish`]
/// succeeds; [`ObjectUpload::abort`] leaves nothing behind.
pub trait ObjectUpload: ByteSink + Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes the object appear; returns its size.
    fn finish(self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Drops what was written.
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// Buckets of objects.
pub trait Objects: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;
    type Reader: AsyncRead + Unpin + Send + 'static;
    type Upload: ObjectUpload<Error = Self::Error>;

    /// Opens an object (a given version, if set) for streaming; `None` when it does not exist.
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Option<(Self::Reader, ObjectMeta)>, Self::Error>> + Send;

    /// An object's user metadata, without reading the object; `None` when it does not exist.
    fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<HashMap<String, String>>, Self::Error>> + Send;

    /// Starts writing an object.
    fn upload(&self, bucket: &str, key: &str, content_type: &str) -> Self::Upload;

    /// Writes a small object (a report) at once.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Sets `tags` on the object, keeping the others it has; returns the keys of its own tags
    /// dropped for room, if any.
    fn merge_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;
}

/// A queue a stage sends messages to.
pub trait Outbox: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends every body (in as few requests as the queue allows).
    fn send_all(&self, bodies: &[String]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Messages waiting in the queue or being worked on (SQS's approximate counts): the
    /// sweep does not re-send an idle file's input while its stage has a backlog, since the
    /// input is most likely in it.
    fn backlog(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}
