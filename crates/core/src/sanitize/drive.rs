//! Thin loops that run a [`Sanitizer`] over a byte source and into a byte sink.
//!
//! Output is written as it is produced: when the report says the file was rejected, what was
//! written is garbage and the caller must discard it (the CLI writes to a temporary file and
//! renames it only on acceptance; the Lambda aborts its multipart upload).

use std::io::{self, Read, Write};

use super::{Policy, Report, Sanitizer};

/// Input is read in pieces of this size.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Sanitizes `input` into `output` with `policy`; `dataset` names it in the report.
/// `Err` only for I/O errors; a rejected file is an `Ok` report with verdict `rejected`.
pub fn sanitize_read(
    mut input: impl Read,
    mut output: impl Write,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    let mut sanitizer = Sanitizer::new(policy, dataset);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    while sanitizer.wants_input() {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let _ = sanitizer.feed(&chunk[..n], &mut out);
        if !sanitizer.is_rejected() {
            output.write_all(&out)?;
        }
        out.clear();
    }
    let report = sanitizer.finish(&mut out);
    if report.verdict == super::Verdict::Accepted {
        output.write_all(&out)?;
    }
    output.flush()?;
    Ok(report)
}

/// Where the async driver puts clean bytes: any tokio `AsyncWrite`, or an adapter such as
/// an S3 multipart upload that is not one.
#[cfg(feature = "tokio")]
pub trait ByteSink {
    /// Takes all of `bytes`, in order.
    fn write_all(&mut self, bytes: &[u8]) -> impl std::future::Future<Output = io::Result<()>>;
}

#[cfg(feature = "tokio")]
impl<W: tokio::io::AsyncWrite + Unpin> ByteSink for W {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, bytes).await
    }
}

/// The async twin of [`sanitize_read`], from a tokio `AsyncRead` into a [`ByteSink`]. The
/// sink is not flushed or closed: the caller finishes it (or abandons it when the report says
/// the file was rejected).
#[cfg(feature = "tokio")]
pub async fn sanitize_async(
    mut input: impl tokio::io::AsyncRead + Unpin,
    output: &mut impl ByteSink,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    use tokio::io::AsyncReadExt;

    let mut sanitizer = Sanitizer::new(policy, dataset);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    while sanitizer.wants_input() {
        let n = input.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let _ = sanitizer.feed(&chunk[..n], &mut out);
        if !sanitizer.is_rejected() {
            output.write_all(&out).await?;
        }
        out.clear();
    }
    let report = sanitizer.finish(&mut out);
    if report.verdict == super::Verdict::Accepted {
        output.write_all(&out).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::Verdict;

    const MESSY: &[u8] = b"\xEF\xBB\xBFOrder ID;Note\r\n1;\"a;b\"\r\n2;=cmd\r\n\r\n3;ok\r\n";

    #[test]
    fn sync_driver_writes_clean_output_for_an_accepted_file() {
        let mut out = Vec::new();
        let report = sanitize_read(MESSY, &mut out, Policy::default(), None).unwrap();
        assert_eq!(report.verdict, Verdict::Accepted);
        assert_eq!(out, b"order_id,note\r\n1,a;b\r\n2,'=cmd\r\n3,ok\r\n");
        assert_eq!(report.bytes_out, out.len() as u64);
    }

    #[test]
    fn sync_driver_reads_a_rejected_file_to_the_end_for_its_hash() {
        let mut input = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        input.resize(3 * CHUNK_BYTES, 0);
        let mut out = Vec::new();
        let report = sanitize_read(input.as_slice(), &mut out, Policy::default(), None).unwrap();
        assert_eq!(report.verdict, Verdict::Rejected);
        assert_eq!(report.bytes_in, input.len() as u64);
        assert!(report.sha256_in.is_some());
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_driver_matches_the_sync_one() {
        let mut sync_out = Vec::new();
        let sync_report = sanitize_read(MESSY, &mut sync_out, Policy::default(), None).unwrap();
        let mut async_out = Vec::new();
        let async_report = sanitize_async(MESSY, &mut async_out, Policy::default(), None)
            .await
            .unwrap();
        assert_eq!(async_out, sync_out);
        assert_eq!(async_report, sync_report);
    }
}
