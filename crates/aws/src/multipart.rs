//! S3 multipart uploads, written once: each step is a call of its own (start, send a part,
//! list the parts, complete, abort). `sluice upload` uses the steps directly, keeping the
//! upload id and the parts' ETags between runs so that it resumes after a crash; [`Upload`],
//! the stages' streaming writer, runs the same steps within one invocation, several parts at
//! once, and completes only at the end, so no partial object ever appears under a key.

use std::io;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sluice_core::errors::chain;
use sluice_core::sanitize::drive::ByteSink;
use tokio::task::JoinSet;

use crate::s3::{s3_error, PART_BYTES};
use crate::{AwsError, ObjectStore};

/// An SDK error of a multipart call: `NoSuchUpload` as [`AwsError::UploadGone`].
fn multipart_error<E, R>(op: &'static str, bucket: &str, key: &str, e: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some("NoSuchUpload") => AwsError::UploadGone {
            bucket: bucket.to_string(),
            key: key.to_string(),
        },
        _ => s3_error(op, bucket, key, e),
    }
}

impl ObjectStore {
    /// Starts a multipart upload whose object will have `content_type` and carry `metadata`;
    /// its upload id.
    pub async fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        metadata: &[(String, String)],
    ) -> Result<String, AwsError> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_string));
        for (k, v) in metadata {
            create = create.metadata(k, v);
        }
        let created = create
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", bucket, key, e))?;
        created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| AwsError::S3 {
                op: "CreateMultipartUpload",
                bucket: bucket.to_string(),
                key: key.to_string(),
                message: "no upload id in the answer".into(),
            })
    }

    /// Sends part `number`; its ETag.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
    ) -> Result<String, AwsError> {
        let sent = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| multipart_error("UploadPart", bucket, key, e))?;
        Ok(sent.e_tag().unwrap_or_default().to_string())
    }

    /// The parts S3 has for the upload: (number, ETag), every page of them.
    pub async fn listed_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(i32, String)>, AwsError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let listed = self
                .client
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| multipart_error("ListParts", bucket, key, e))?;
            for part in listed.parts() {
                if let (Some(n), Some(etag)) = (part.part_number(), part.e_tag()) {
                    parts.push((n, etag.to_string()));
                }
            }
            match listed.next_part_number_marker() {
                Some(next) if listed.is_truncated() == Some(true) => {
                    marker = Some(next.to_string())
                }
                _ => return Ok(parts),
            }
        }
    }

    /// Completes the upload from its parts (number, ETag), in order: the object appears.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), AwsError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| multipart_error("CompleteMultipartUpload", bucket, key, e))
    }

    /// Aborts the upload: its parts are dropped and nothing appears under the key.
    pub async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), AwsError> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| multipart_error("AbortMultipartUpload", bucket, key, e))
    }

    /// Starts writing an object that appears under `key` only when [`Upload::finish`]
    /// succeeds; [`Upload::abort`] leaves nothing behind.
    pub fn upload(&self, bucket: &str, key: &str, content_type: &str) -> Upload {
        Upload {
            store: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: content_type.to_string(),
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            sending: JoinSet::new(),
            bytes: 0,
        }
    }
}

/// An object being written in parts. Small objects (under one part) are written with one
/// PutObject at the end; larger ones with a multipart upload completed at the end, with up
/// to the store's `parts_in_flight` parts being sent while the next one fills.
pub struct Upload {
    store: ObjectStore,
    bucket: String,
    key: String,
    content_type: String,
    buf: Vec<u8>,
    upload_id: Option<String>,
    /// Parts sent (number, ETag), in the order they finished.
    parts: Vec<(i32, String)>,
    /// Parts being sent; dropping the set (and so the upload) cancels them.
    sending: JoinSet<Result<(i32, String), AwsError>>,
    bytes: u64,
}

impl Upload {
    /// Appends bytes, sending a part whenever a full one is buffered.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), AwsError> {
        self.bytes += bytes.len() as u64;
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = PART_BYTES - self.buf.len();
            let take = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == PART_BYTES {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Makes the object appear under its key; returns its size.
    pub async fn finish(mut self) -> Result<u64, AwsError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buf);
            self.store
                .put(&self.bucket, &self.key, body, &self.content_type)
                .await?;
            return Ok(self.bytes);
        };
        let last = if self.buf.is_empty() {
            Ok(())
        } else {
            self.send_part().await
        };
        if let Err(e) = last.and(self.wait_for_parts(0).await) {
            self.abort().await;
            return Err(e);
        }
        // S3 wants the parts listed in order.
        self.parts.sort_by_key(|(number, _)| *number);
        let completed = self
            .store
            .complete_upload(&self.bucket, &self.key, &upload_id, &self.parts)
            .await;
        if let Err(e) = completed {
            self.abort().await;
            return Err(e);
        }
        Ok(self.bytes)
    }

    /// Drops what was written; nothing appears under the key.
    pub async fn abort(mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        let Some(upload_id) = &self.upload_id else {
            return;
        };
        if let Err(e) = self
            .store
            .abort_upload(&self.bucket, &self.key, upload_id)
            .await
        {
            // The bucket's lifecycle rule for incomplete uploads cleans up what is left.
            tracing::warn!(bucket = %self.bucket, key = %self.key, error = %chain(&e),
                "could not abort multipart upload");
        }
    }

    /// Starts sending the buffered part, once fewer than `parts_in_flight` are on their way.
    async fn send_part(&mut self) -> Result<(), AwsError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .store
                    .start_upload(&self.bucket, &self.key, Some(&self.content_type), &[])
                    .await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        self.wait_for_parts(self.store.parts_in_flight - 1).await?;
        let number = (self.parts.len() + self.sending.len()) as i32 + 1;
        let body = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        let (store, bucket, key) = (self.store.clone(), self.bucket.clone(), self.key.clone());
        self.sending.spawn(async move {
            let etag = store
                .upload_part(&bucket, &key, &upload_id, number, body)
                .await?;
            Ok((number, etag))
        });
        Ok(())
    }

    /// Waits until at most `left` parts are still being sent.
    async fn wait_for_parts(&mut self, left: usize) -> Result<(), AwsError> {
        while self.sending.len() > left {
            let Some(joined) = self.sending.join_next().await else {
                break;
            };
            let part = joined.map_err(|e| AwsError::S3 {
                op: "UploadPart",
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                message: format!("the part's task ended: {e}"),
            })??;
            self.parts.push(part);
        }
        Ok(())
    }
}

impl ByteSink for Upload {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes).await.map_err(io::Error::other)
    }
}

impl sluice_stages::ports::ObjectUpload for Upload {
    type Error = AwsError;

    fn finish(self) -> impl std::future::Future<Output = Result<u64, AwsError>> + Send {
        Upload::finish(self)
    }

    fn abort(self) -> impl std::future::Future<Output = ()> + Send {
        Upload::abort(self)
    }
}
