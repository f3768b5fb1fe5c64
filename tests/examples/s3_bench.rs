//! S3 to S3 speed of the sanitizer's data path beside the server's own ceiling, against a
//! local S3 server (`AWS_ENDPOINT_URL`). Run it through bench/s3.sh, one mode per process so
//! each has its own peak RSS.
//!
//! usage: s3_bench put BUCKET KEY FILE          upload FILE (creating BUCKET)
//!        s3_bench copy BUCKET KEY PARTS        the ceiling: one streaming GET into a
//!                                              multipart PUT, PARTS parts in flight, with
//!                                              the SDK alone (no Sluice code)
//!        s3_bench sanitize BUCKET KEY R/W      what the sanitizer Lambda does to the bytes:
//!                                              open, sanitize, write the clean object, with
//!                                              R ranged GETs and W part uploads in flight
//!                                              (SLUICE_S3_RANGES_IN_FLIGHT, ..._PARTS_...)
//! Each run prints "seconds bytes_out" and removes the object it wrote.

use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sluice_aws::s3::PART_BYTES;
use sluice_aws::{Clients, ObjectStore};
use sluice_core::sanitize::drive::sanitize_async;
use sluice_core::sanitize::{Policy, Verdict};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let s3 = Clients::from_env().await.s3;
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["put", bucket, key, file] => put(&s3, bucket, key, file).await,
        ["copy", bucket, key, parts] => copy(&s3, bucket, key, parts.parse()?).await,
        ["sanitize", bucket, key, parts] => {
            let (reads, writes) = parts.split_once('/').unwrap_or((parts, parts));
            sanitize(s3, bucket, key, reads.parse()?, writes.parse()?).await
        }
        _ => Err("usage: s3_bench put BUCKET KEY FILE | copy|sanitize BUCKET KEY PARTS".into()),
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, file: &str) -> Result<(), Error> {
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    let mut input = tokio::fs::File::open(file).await?;
    let mut upload = ObjectStore::new(s3.clone()).upload(bucket, key, "text/csv");
    let mut chunk = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        upload.write(&chunk[..n]).await?;
    }
    let bytes = upload.finish().await?;
    println!("put {bytes} bytes");
    Ok(())
}

/// The plain copy: the whole object in one GET, its body cut into parts as it streams in,
/// up to `parts` part uploads at once.
async fn copy(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, parts: usize) -> Result<(), Error> {
    let started = Instant::now();
    let to = format!("copy/{key}");
    let mut body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .body
        .into_async_read();
    let id = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(&to)
        .send()
        .await?
        .upload_id
        .ok_or("no upload id")?;
    let mut sending: JoinSet<Result<CompletedPart, Error>> = JoinSet::new();
    let mut done = Vec::new();
    let (mut number, mut bytes) = (0, 0u64);
    loop {
        let mut part = Vec::with_capacity(PART_BYTES);
        while part.len() < PART_BYTES {
            if (&mut body)
                .take((PART_BYTES - part.len()) as u64)
                .read_to_end(&mut part)
                .await?
                == 0
            {
                break;
            }
        }
        if part.is_empty() {
            break;
        }
        while sending.len() >= parts {
            done.push(sending.join_next().await.ok_or("no part")???);
        }
        number += 1;
        bytes += part.len() as u64;
        let (s3, bucket, to, id) = (s3.clone(), bucket.to_string(), to.clone(), id.clone());
        sending.spawn(async move {
            let sent = s3
                .upload_part()
                .bucket(bucket)
                .key(to)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(sent.e_tag)
                .build())
        });
    }
    while let Some(part) = sending.join_next().await {
        done.push(part??);
    }
    done.sort_by_key(|p| p.part_number());
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(&to)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await?;
    println!("{:.4} {bytes}", started.elapsed().as_secs_f64());
    s3.delete_object().bucket(bucket).key(&to).send().await?;
    Ok(())
}

/// The sanitizer Lambda's byte path (sluice-stages' sanitize step without its database,
/// tags and message): the object opened with `reads` ranges in flight, sanitized with the
/// default policy, written with `writes` part uploads in flight.
async fn sanitize(
    s3: aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    reads: usize,
    writes: usize,
) -> Result<(), Error> {
    let started = Instant::now();
    let to = format!("clean/{key}");
    let objects = ObjectStore::new(s3.clone())
        .with_parts_in_flight(writes)
        .with_ranges_in_flight(reads);
    let (body, _) = objects.open(bucket, key, None).await?;
    let mut upload = objects.upload(bucket, &to, "text/csv; charset=utf-8");
    let report = sanitize_async(body, &mut upload, Policy::default(), None).await?;
    if report.verdict != Verdict::Accepted {
        upload.abort().await;
        return Err(format!("the file was rejected: {:?}", report.reason).into());
    }
    let bytes = upload.finish().await?;
    println!("{:.4} {bytes}", started.elapsed().as_secs_f64());
    s3.delete_object().bucket(bucket).key(&to).send().await?;
    Ok(())
}
