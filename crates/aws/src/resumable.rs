//! A multipart upload that outlives the process that started it (`sluice upload` resumes one
//! after a crash): each step a call of its own, the caller keeping the upload id and the parts'
//! ETags between runs. The stages' streaming writes are [`crate::Upload`].

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::s3::s3_error;
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
    /// Writes a small object whole, with user metadata (`x-amz-meta-*`).
    pub async fn put_with_metadata(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        metadata: &[(String, String)],
    ) -> Result<(), AwsError> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body));
        for (k, v) in metadata {
            put = put.metadata(k, v);
        }
        put.send()
            .await
            .map(|_| ())
            .map_err(|e| s3_error("PutObject", bucket, key, e))
    }

    /// Starts a multipart upload whose object will carry `metadata`; its upload id.
    pub async fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        metadata: &[(String, String)],
    ) -> Result<String, AwsError> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key);
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
}
