//! S3 server-side copies, listing pages and deletes: what the listener does with drop objects.

use std::time::SystemTime;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::s3::{s3_error, ObjectStore};
use crate::AwsError;

/// CopyObject copies at most 5 GiB in one request; larger objects are copied in parts.
pub const MAX_SINGLE_COPY_BYTES: i64 = 5 * 1024 * 1024 * 1024;
/// Part size of a multipart copy: 10,000 parts of 512 MiB cover S3's 5 TiB object limit.
pub const COPY_PART_BYTES: i64 = 512 * 1024 * 1024;

/// Key characters kept as they are in `x-amz-copy-source` (S3 expects the key URL-encoded,
/// with its `/` separators).
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Without its quotes.
    pub etag: String,
    pub size: i64,
    pub last_modified: SystemTime,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    /// Whether keys after the last one remain.
    pub more: bool,
}

/// What HeadObject tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub etag: String,
    pub size: i64,
    /// User metadata (`x-amz-meta-*`, names without the prefix).
    pub metadata: std::collections::HashMap<String, String>,
    pub last_modified: Option<SystemTime>,
}

/// The object to copy, pinned to the content (ETag) it was listed with: a copy never takes a
/// newer upload to the same key by surprise.
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub etag: &'a str,
    pub size: i64,
}

impl ObjectStore {
    /// Up to `max_keys` objects under `prefix` whose keys sort after `start_after`.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<ListPage, AwsError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_string))
            .max_keys(max_keys)
            .send()
            .await
            .map_err(|e| s3_error("ListObjectsV2", bucket, prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    size: o.size().unwrap_or_default(),
                    last_modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        Ok(ListPage {
            objects,
            more: out.is_truncated().unwrap_or(false),
        })
    }

    /// Copies `from` to `to_bucket/to_key` inside S3 with `metadata` (replacing the source's),
    /// in parts above 5 GiB; returns the copy's ETag.
    pub async fn copy(
        &self,
        from: CopySource<'_>,
        to_bucket: &str,
        to_key: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        self.copy_with_parts(
            from,
            to_bucket,
            to_key,
            metadata,
            MAX_SINGLE_COPY_BYTES,
            COPY_PART_BYTES,
        )
        .await
    }

    /// [`ObjectStore::copy`] with its limits as arguments, so tests reach the multipart path
    /// with small objects.
    pub async fn copy_with_parts(
        &self,
        from: CopySource<'_>,
        to_bucket: &str,
        to_key: &str,
        metadata: &[(&str, &str)],
        single_copy_limit: i64,
        part_bytes: i64,
    ) -> Result<String, AwsError> {
        let source = format!(
            "{}/{}",
            from.bucket,
            utf8_percent_encode(from.key, KEY_SAFE)
        );
        let meta = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if from.size <= single_copy_limit {
            let out = self
                .client
                .copy_object()
                .bucket(to_bucket)
                .key(to_key)
                .copy_source(&source)
                .copy_source_if_match(format!("\"{}\"", from.etag))
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(meta))
                .send()
                .await
                .map_err(|e| s3_error("CopyObject", from.bucket, from.key, e))?;
            let etag = out.copy_object_result().and_then(|r| r.e_tag());
            return Ok(etag.unwrap_or_default().trim_matches('"').to_string());
        }
        let started = self
            .client
            .create_multipart_upload()
            .bucket(to_bucket)
            .key(to_key)
            .set_metadata(Some(meta))
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", to_bucket, to_key, e))?;
        let upload_id = started.upload_id().unwrap_or_default().to_string();
        let copied = self
            .copy_parts(from, &source, to_bucket, to_key, &upload_id, part_bytes)
            .await;
        if copied.is_err() {
            // Nothing half-copied is left behind (the bucket's lifecycle rule is the backstop).
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(to_bucket)
                .key(to_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        copied
    }

    async fn copy_parts(
        &self,
        from: CopySource<'_>,
        source: &str,
        to_bucket: &str,
        to_key: &str,
        upload_id: &str,
        part_bytes: i64,
    ) -> Result<String, AwsError> {
        let mut parts = Vec::new();
        let mut start = 0i64;
        while start < from.size {
            let end = (start + part_bytes).min(from.size) - 1;
            let number = parts.len() as i32 + 1;
            let out = self
                .client
                .upload_part_copy()
                .bucket(to_bucket)
                .key(to_key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(source)
                .copy_source_if_match(format!("\"{}\"", from.etag))
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| s3_error("UploadPartCopy", from.bucket, from.key, e))?;
            let etag = out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default();
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
            start = end + 1;
        }
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(to_bucket)
            .key(to_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", to_bucket, to_key, e))?;
        Ok(out
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string())
    }

    /// Deletes an object (deleting one that is gone is not an error in S3).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    /// An object's ETag, size and user metadata; `None` when it is not there.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, AwsError> {
        let out = match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) => return Err(s3_error("HeadObject", bucket, key, e)),
        };
        Ok(Some(Head {
            etag: out
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            size: out.content_length().unwrap_or_default(),
            metadata: out.metadata().cloned().unwrap_or_default(),
            last_modified: out
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        }))
    }

    /// User metadata of an object (`x-amz-meta-*`, names without the prefix).
    pub async fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<std::collections::HashMap<String, String>, AwsError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.is_not_found() => AwsError::NotFound {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                },
                _ => s3_error("HeadObject", bucket, key, e),
            })?;
        Ok(out.metadata().cloned().unwrap_or_default())
    }
}
