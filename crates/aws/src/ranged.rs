//! Reading an object as ranged GETs with several in flight, handed on in order as one byte
//! stream. One GET streams at one connection's speed; on S3 several ranges at once go as
//! fast as the function's network allows. Memory is bounded: at most `in_flight` ranges of
//! [`RANGE_BYTES`] are held, fetched or being fetched, ahead of the reader.

use std::future::Future;
use std::io;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{stream, FutureExt, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;
use tokio_util::task::AbortOnDropHandle;

use crate::s3::s3_error;

/// Each ranged GET asks for this much.
pub const RANGE_BYTES: u64 = 4 * 1024 * 1024;

/// Which object, pinned by the first answer's ETag (and version, if one was asked for): a
/// range of an object replaced meanwhile fails with 412 instead of mixing two files.
#[derive(Clone)]
pub(crate) struct Pinned {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
    pub etag: Option<String>,
}

/// The object's size from a ranged answer's `Content-Range` (`bytes 0-4194303/1073741824`).
pub(crate) fn total_size(first: &GetObjectOutput) -> Option<u64> {
    first.content_range()?.rsplit('/').next()?.parse().ok()
}

/// The whole object as a byte stream: `first` (the answer for `bytes=0-RANGE_BYTES-1`), then
/// the other ranges, up to `in_flight` of them fetched at once, in order.
pub(crate) fn read_ranges(
    pinned: Pinned,
    first: GetObjectOutput,
    size: u64,
    in_flight: usize,
) -> impl AsyncRead + Unpin + Send {
    let first_len = size.min(RANGE_BYTES);
    let first = {
        let pinned = pinned.clone();
        in_background(async move { collect(&pinned, first.body, first_len).await })
    };
    let rest = (RANGE_BYTES..size)
        .step_by(RANGE_BYTES as usize)
        .map(move |start| {
            let pinned = pinned.clone();
            let end = (start + RANGE_BYTES).min(size);
            in_background(async move { fetch(&pinned, start, end).await })
        });
    let segments = stream::iter(std::iter::once(first).chain(rest))
        .buffered(in_flight.max(1))
        .map_ok(|segments| stream::iter(segments.into_iter().map(Ok::<Bytes, io::Error>)))
        .try_flatten();
    StreamReader::new(Box::pin(segments))
}

/// Runs a range's fetch as its own task, so it goes on while the reader is busy with the
/// bytes before it (a future inside the stream would only move when the reader polls).
/// Dropping the reader cancels the fetches still running.
fn in_background(
    fetch: impl Future<Output = io::Result<Vec<Bytes>>> + Send + 'static,
) -> BoxFuture<'static, io::Result<Vec<Bytes>>> {
    let task = AbortOnDropHandle::new(tokio::spawn(fetch));
    async move {
        task.await
            .map_err(|e| io::Error::other(format!("S3 GetObject: the range's task ended: {e}")))?
    }
    .boxed()
}

/// Bytes `[start, end)` of the pinned object.
async fn fetch(pinned: &Pinned, start: u64, end: u64) -> io::Result<Vec<Bytes>> {
    let answer = pinned
        .client
        .get_object()
        .bucket(&pinned.bucket)
        .key(&pinned.key)
        .set_version_id(pinned.version.clone())
        .set_if_match(pinned.etag.clone())
        .range(format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .map_err(|e| io::Error::other(s3_error("GetObject", &pinned.bucket, &pinned.key, e)))?;
    collect(pinned, answer.body, end - start).await
}

/// A range's body, as the segments it arrived in (no copy into one buffer); it must be
/// `expected` bytes long, or the object changed under the reader.
async fn collect(pinned: &Pinned, body: ByteStream, expected: u64) -> io::Result<Vec<Bytes>> {
    let all = body.collect().await.map_err(|e| {
        io::Error::other(format!(
            "S3 GetObject s3://{}/{}: reading the body: {e}",
            pinned.bucket, pinned.key
        ))
    })?;
    let segments: Vec<Bytes> = all.into_segments().collect();
    let got: u64 = segments.iter().map(|s| s.len() as u64).sum();
    if got != expected {
        return Err(io::Error::other(format!(
            "S3 GetObject s3://{}/{}: a range came back {got} bytes long, not {expected} \
             (the object changed while it was read?)",
            pinned.bucket, pinned.key
        )));
    }
    Ok(segments)
}
