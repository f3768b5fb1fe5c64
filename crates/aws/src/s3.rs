//! S3: streaming reads, small writes, tags, presigned links. Multipart writes are in
//! [`crate::multipart`].

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::multipart::Upload;
use crate::ranged::{read_ranges, total_size, Pinned, RANGE_BYTES};
use crate::AwsError;
use sluice_core::errors::chain;

/// Parts are this big (S3 wants at least 5 MiB for all but the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts uploaded at once by default: a file written holds at most 5 x 8 MiB of parts (four
/// on their way, one filling), whatever its size.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;

/// Ranged GETs at once by default: one, i.e. a single streaming GET. Against the local
/// servers measured (bench/s3.sh) ranges in flight gained nothing and against moto cost
/// half the speed; against S3 itself, where one connection is the limit, raise it.
pub const DEFAULT_RANGES_IN_FLIGHT: usize = 1;

/// The most tags S3 keeps on one object.
pub const MAX_TAGS: usize = 10;

/// `existing` with `ours` set (replacing tags of the same keys), within [`MAX_TAGS`]; and the
/// keys of existing tags dropped for room, if any.
pub fn merge_tags(
    existing: Vec<(String, String)>,
    ours: &[(&str, &str)],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept: Vec<(String, String)> = existing
        .into_iter()
        .filter(|(k, _)| !ours.iter().any(|(o, _)| o == k))
        .collect();
    let room = MAX_TAGS.saturating_sub(ours.len());
    let dropped = if kept.len() > room {
        kept.split_off(room).into_iter().map(|(k, _)| k).collect()
    } else {
        Vec::new()
    };
    kept.extend(ours.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    (kept, dropped)
}

pub use sluice_stages::ports::ObjectMeta;

/// What a presigned URL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presign<'a> {
    Get,
    /// An upload of exactly `content_length` bytes of `content_type`: both are signed, so S3
    /// refuses any other.
    Put {
        content_type: &'a str,
        content_length: u64,
    },
}

/// Objects in S3.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) parts_in_flight: usize,
    ranges_in_flight: usize,
}

pub(crate) fn s3_error(
    op: &'static str,
    bucket: &str,
    key: &str,
    e: impl std::error::Error + 'static,
) -> AwsError {
    AwsError::S3 {
        op,
        bucket: bucket.to_string(),
        key: key.to_string(),
        message: chain(&e),
    }
}

impl ObjectStore {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self {
            client,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            ranges_in_flight: DEFAULT_RANGES_IN_FLIGHT,
        }
    }

    /// Writes with up to `n` part uploads at once.
    pub fn with_parts_in_flight(mut self, n: usize) -> Self {
        self.parts_in_flight = n.max(1);
        self
    }

    /// Reads with up to `n` ranged GETs of [`RANGE_BYTES`] at once (1: one streaming GET).
    pub fn with_ranges_in_flight(mut self, n: usize) -> Self {
        self.ranges_in_flight = n.max(1);
        self
    }

    /// Opens an object (a given version of it, if `version` is set) for streaming: the body
    /// is read as it is consumed, never whole; with more than one range in flight, as ranged
    /// GETs of [`RANGE_BYTES`] run ahead of the reader.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<(Box<dyn AsyncRead + Unpin + Send>, ObjectMeta), AwsError> {
        let get = || {
            self.client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
        };
        let not_found = |e: SdkError<GetObjectError, HttpResponse>| match e.as_service_error() {
            Some(s) if s.is_no_such_key() => AwsError::NotFound {
                bucket: bucket.to_string(),
                key: key.to_string(),
            },
            _ => s3_error("GetObject", bucket, key, e),
        };
        if self.ranges_in_flight == 1 {
            return Ok(streamed(get().send().await.map_err(not_found)?));
        }
        let first = match get()
            .range(format!("bytes=0-{}", RANGE_BYTES - 1))
            .send()
            .await
        {
            Ok(first) => first,
            // An empty object has no byte 0 to ask for.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(streamed(get().send().await.map_err(not_found)?));
            }
            Err(e) => return Err(not_found(e)),
        };
        let Some(size) = total_size(&first) else {
            // The server sent the whole object (it ignored the range).
            return Ok(streamed(first));
        };
        let meta = object_meta(&first, size as i64);
        if size <= RANGE_BYTES {
            return Ok((Box::new(first.body.into_async_read()), meta));
        }
        let pinned = Pinned {
            client: self.client.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: version.map(str::to_string),
            etag: first.e_tag().map(str::to_string),
        };
        let reader = read_ranges(pinned, first, size, self.ranges_in_flight);
        Ok((Box::new(reader), meta))
    }

    /// Reads a small object (a claim-checked batch) whole; one larger than `limit` bytes is
    /// refused rather than buffered.
    pub async fn read_small(
        &self,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> Result<Vec<u8>, AwsError> {
        let (body, meta) = self.open(bucket, key, None).await?;
        if meta.size as u64 > limit {
            return Err(AwsError::S3 {
                op: "GetObject",
                bucket: bucket.to_string(),
                key: key.to_string(),
                message: format!(
                    "object of {} bytes is over the {limit}-byte limit",
                    meta.size
                ),
            });
        }
        let mut bytes = Vec::with_capacity(meta.size.max(0) as usize);
        body.take(limit + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| AwsError::S3 {
                op: "GetObject",
                bucket: bucket.to_string(),
                key: key.to_string(),
                message: e.to_string(),
            })?;
        Ok(bytes)
    }

    /// Writes a small object (a report) in one request.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), AwsError> {
        self.put_object(bucket, key, body, Some(content_type), &[])
            .await
    }

    /// Writes a small object whole, with user metadata (`x-amz-meta-*`).
    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        metadata: &[(String, String)],
    ) -> Result<(), AwsError> {
        self.put_object(bucket, key, body, None, metadata).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        metadata: &[(String, String)],
    ) -> Result<(), AwsError> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_string))
            .body(ByteStream::from(body));
        for (k, v) in metadata {
            put = put.metadata(k, v);
        }
        put.send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PutObject", bucket, key, e))
    }

    /// Sets `ours` on the object, keeping the tags it already has (an uploader's, Transfer
    /// Family's). S3 allows 10 tags: when there is no room, ours win and the object's own
    /// tags beyond the limit are dropped, latest first; their keys are returned so the caller
    /// can say so. (S3 has no conditional tagging: a tag set by someone else between the read
    /// and the write here would be lost.)
    pub async fn merge_tags(
        &self,
        bucket: &str,
        key: &str,
        ours: &[(&str, &str)],
    ) -> Result<Vec<String>, AwsError> {
        let existing = self.tags(bucket, key).await?;
        let (merged, dropped) = merge_tags(existing, ours);
        let tag_set = merged
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| s3_error("PutObjectTagging", bucket, key, e))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(|e| s3_error("PutObjectTagging", bucket, key, e))?;
        self.client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| s3_error("PutObjectTagging", bucket, key, e))?;
        if !dropped.is_empty() {
            tracing::warn!(bucket, key, dropped = ?dropped,
                "S3 allows 10 tags per object: the object's own tags above were dropped for Sluice's");
        }
        Ok(dropped)
    }

    /// A URL that downloads (`Get`) or uploads (`Put`) the object for `expires` (at most 7
    /// days; no longer than the signing credentials live), signed here without a call to S3.
    pub async fn presigned(
        &self,
        method: Presign<'_>,
        bucket: &str,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String, AwsError> {
        let op = match method {
            Presign::Get => "presign GetObject",
            Presign::Put { .. } => "presign PutObject",
        };
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| s3_error(op, bucket, key, e))?;
        let request = match method {
            Presign::Get => {
                let get = self.client.get_object().bucket(bucket).key(key);
                get.presigned(config)
                    .await
                    .map_err(|e| s3_error(op, bucket, key, e))?
            }
            Presign::Put {
                content_type,
                content_length,
            } => {
                let length = i64::try_from(content_length).unwrap_or(i64::MAX);
                let put = self
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type(content_type)
                    .content_length(length);
                put.presigned(config)
                    .await
                    .map_err(|e| s3_error(op, bucket, key, e))?
            }
        };
        Ok(request.uri().to_string())
    }

    /// The object's tags.
    pub async fn tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>, AwsError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObjectTagging", bucket, key, e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }
}

/// A whole-object answer as a stream of its body.
fn streamed(whole: GetObjectOutput) -> (Box<dyn AsyncRead + Unpin + Send>, ObjectMeta) {
    let meta = object_meta(&whole, whole.content_length().unwrap_or_default());
    (Box::new(whole.body.into_async_read()), meta)
}

fn object_meta(object: &GetObjectOutput, size: i64) -> ObjectMeta {
    ObjectMeta {
        size,
        etag: object
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string(),
        version_id: object.version_id().map(str::to_string),
        metadata: object.metadata().cloned().unwrap_or_default(),
        last_modified: object
            .last_modified()
            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
    }
}

/// S3 as the stages' object storage.
impl sluice_stages::ports::Objects for ObjectStore {
    type Error = AwsError;
    type Reader = Box<dyn AsyncRead + Unpin + Send>;
    type Upload = Upload;

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<(Self::Reader, ObjectMeta)>, AwsError> {
        match ObjectStore::open(self, bucket, key, version).await {
            Ok((body, meta)) => Ok(Some((Box::new(body), meta))),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>, AwsError> {
        match ObjectStore::metadata(self, bucket, key).await {
            Ok(metadata) => Ok(Some(metadata)),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn upload(&self, bucket: &str, key: &str, content_type: &str) -> Upload {
        ObjectStore::upload(self, bucket, key, content_type)
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl std::future::Future<Output = Result<(), AwsError>> + Send {
        ObjectStore::put(self, bucket, key, body, content_type)
    }

    fn merge_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(&str, &str)],
    ) -> impl std::future::Future<Output = Result<Vec<String>, AwsError>> + Send {
        ObjectStore::merge_tags(self, bucket, key, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
    }

    #[test]
    fn our_tags_join_the_objects_own_and_replace_our_earlier_ones() {
        let mut existing = tags(2);
        existing.push(("sluice-verdict".into(), "unrouted".into()));
        let (merged, dropped) = merge_tags(existing, &[("sluice-verdict", "accepted")]);
        assert_eq!(
            merged,
            [
                ("k0".to_string(), "v0".to_string()),
                ("k1".into(), "v1".into()),
                ("sluice-verdict".into(), "accepted".into())
            ]
        );
        assert!(dropped.is_empty());
    }

    #[test]
    fn at_the_limit_ours_win_and_the_dropped_keys_are_named() {
        let (merged, dropped) = merge_tags(tags(10), &[("a", "1"), ("b", "2")]);
        assert_eq!(merged.len(), MAX_TAGS);
        assert_eq!(dropped, ["k8", "k9"]);
        assert_eq!(
            merged[8..],
            [("a".to_string(), "1".to_string()), ("b".into(), "2".into())]
        );
    }
}
