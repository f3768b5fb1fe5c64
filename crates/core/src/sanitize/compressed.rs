//! Compressed inputs: a gzip (one member or several), bzip2 or zstd file is the file it holds.
//! Recognized by its magic bytes, whatever its name, and decompressed as a stream: nothing is
//! staged in memory or on disk.
//!
//! [`open_read`] and [`open_async`] put a decoder in front of the sanitizer when the first
//! bytes call for one. Bytes the source gives are counted (for the expansion limit and the
//! report). Data the decoder cannot read (corrupt, cut short) ends the stream, and
//! [`Source::failure`] says why: the driver rejects the file with that reason, rather than
//! failing as if S3 had failed (a retry would read the same bytes).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// How many bytes are looked at to recognize a compressed file.
const MAGIC_BYTES: usize = 10;

/// Below this many decompressed bytes the expansion ratio is not checked: a small file may
/// expand a lot (a short run of empty fields) and do no harm.
pub const RATIO_FLOOR_BYTES: u64 = 8 * 1024 * 1024;

/// A compression format Sluice reads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Bzip2,
    Zstd,
}

impl Compression {
    /// The format `head` (a file's first bytes) starts with, if any.
    pub fn of(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            return Some(Self::Gzip);
        }
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Some(Self::Zstd);
        }
        // "BZh", the block size, then a block's magic (the digits of pi) or the end of an
        // empty stream (those of the square root of pi): letters alone could be a header.
        let block = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
        let end = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
        if head.len() >= 10
            && head.starts_with(b"BZh")
            && (b'1'..=b'9').contains(&head[3])
            && (head[4..10] == block || head[4..10] == end)
        {
            return Some(Self::Bzip2);
        }
        None
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Bzip2 => "bzip2",
            Self::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the source gave, shared between the reader (possibly on another thread) and the
/// driver.
#[derive(Debug, Default)]
struct Tally {
    bytes: AtomicU64,
    source_failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// A file's bytes as the sanitizer reads them: decompressed when they were compressed.
pub struct Source<R> {
    compression: Option<Compression>,
    tally: Arc<Tally>,
    /// What to read from.
    pub reader: R,
}

/// What a driver needs to know of a [`Source`] once its reader has moved elsewhere.
#[derive(Clone)]
pub struct SourceInfo {
    compression: Option<Compression>,
    tally: Arc<Tally>,
}

impl<R> Source<R> {
    /// The reader and what to ask of it later.
    pub fn split(self) -> (R, SourceInfo) {
        let info = SourceInfo {
            compression: self.compression,
            tally: self.tally,
        };
        (self.reader, info)
    }
}

impl SourceInfo {
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// Bytes the source has given so far (compressed, for a compressed file).
    pub fn source_bytes(&self) -> u64 {
        self.tally.bytes.load(Ordering::Relaxed)
    }

    /// Why the decoder stopped before the end, if it did: the file is then rejected.
    pub fn failure(&self) -> Option<String> {
        self.tally
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Counts what the source gives and notes that an error was the source's own.
struct Counted<R> {
    inner: R,
    tally: Arc<Tally>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.tally.source_failed.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// Turns a decoder's own error into the end of the stream, with the reason kept; the
/// source's errors pass through (they are worth a retry).
struct Guarded<R> {
    inner: R,
    compression: Compression,
    tally: Arc<Tally>,
}

impl<R> Guarded<R> {
    fn settle(&self, result: io::Result<usize>) -> io::Result<usize> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) if !self.tally.source_failed.load(Ordering::Relaxed) => {
                let read = self.tally.bytes.load(Ordering::Relaxed);
                let reason = format!(
                    "the {} data is corrupt or cut short (within its first {read} bytes): {e}",
                    self.compression
                );
                *self.tally.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                Ok(0)
            }
            other => other,
        }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self
            .tally
            .failure
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(true)
        {
            return Ok(0);
        }
        let result = self.inner.read(buf);
        self.settle(result)
    }
}

/// `input`, decompressed when its first bytes say it is compressed.
pub fn open_read<'a, R: Read + Send + 'a>(
    mut input: R,
) -> io::Result<Source<Box<dyn Read + Send + 'a>>> {
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    (&mut input)
        .take(MAGIC_BYTES as u64)
        .read_to_end(&mut head)?;
    let tally = Arc::new(Tally::default());
    tally.bytes.store(head.len() as u64, Ordering::Relaxed);
    let compression = Compression::of(&head);
    let counted = io::Cursor::new(head).chain(Counted {
        inner: input,
        tally: tally.clone(),
    });
    let reader: Box<dyn Read + Send + 'a> = match compression {
        None => Box::new(counted),
        Some(format) => {
            let buffered = io::BufReader::with_capacity(64 * 1024, counted);
            let decoder: Box<dyn Read + Send + 'a> = match format {
                Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
                Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
                Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            };
            Box::new(Guarded {
                inner: decoder,
                compression: format,
                tally: tally.clone(),
            })
        }
    };
    Ok(Source {
        compression,
        tally,
        reader,
    })
}

#[cfg(feature = "tokio")]
mod nonblocking {
    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, ZstdDecoder};
    use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

    use super::{Compression, Counted, Guarded, Source, Tally, MAGIC_BYTES};

    /// An async reader that can be sent across threads.
    pub type AsyncSource<'a> = Pin<Box<dyn AsyncRead + Send + 'a>>;

    impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
            match &polled {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len() - before;
                    self.tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(Err(_)) => self.tally.source_failed.store(true, Ordering::Relaxed),
                Poll::Pending => {}
            }
            polled
        }
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Guarded<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self
                .tally
                .failure
                .lock()
                .map(|f| f.is_some())
                .unwrap_or(true)
            {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Err(e)) => Poll::Ready(self.settle(Err(e)).map(|_| ())),
                other => other,
            }
        }
    }

    /// [`super::open_read`] for a tokio reader.
    pub async fn open_async<'a, R: AsyncRead + Unpin + Send + 'a>(
        mut input: R,
    ) -> io::Result<Source<AsyncSource<'a>>> {
        let mut head = Vec::with_capacity(MAGIC_BYTES);
        (&mut input)
            .take(MAGIC_BYTES as u64)
            .read_to_end(&mut head)
            .await?;
        let tally = Arc::new(Tally::default());
        tally.bytes.store(head.len() as u64, Ordering::Relaxed);
        let compression = Compression::of(&head);
        let counted = std::io::Cursor::new(head).chain(Counted {
            inner: input,
            tally: tally.clone(),
        });
        let reader: AsyncSource<'a> = match compression {
            None => Box::pin(counted),
            Some(format) => {
                let buffered = BufReader::with_capacity(64 * 1024, counted);
                let decoder: AsyncSource<'a> = match format {
                    Compression::Gzip => {
                        let mut d = GzipDecoder::new(buffered);
                        d.multiple_members(true);
                        Box::pin(d)
                    }
                    Compression::Bzip2 => {
                        let mut d = BzDecoder::new(buffered);
                        d.multiple_members(true);
                        Box::pin(d)
                    }
                    Compression::Zstd => {
                        let mut d = ZstdDecoder::new(buffered);
                        d.multiple_members(true);
                        Box::pin(d)
                    }
                };
                Box::pin(Guarded {
                    inner: decoder,
                    compression: format,
                    tally: tally.clone(),
                })
            }
        };
        Ok(Source {
            compression,
            tally,
            reader,
        })
    }
}

#[cfg(feature = "tokio")]
pub use nonblocking::{open_async, AsyncSource};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"order_id,qty\r\nA-1,2\r\nA-2,3\r\n";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn read_all(input: &[u8]) -> (Vec<u8>, SourceInfo) {
        let (mut reader, info) = open_read(input).unwrap().split();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        (out, info)
    }

    #[test]
    fn plain_text_passes_through_and_is_counted() {
        let (out, info) = read_all(TEXT);
        assert_eq!(out, TEXT);
        assert_eq!(info.compression(), None);
        assert_eq!(info.source_bytes(), TEXT.len() as u64);
        assert_eq!(info.failure(), None);
        let (out, _) = read_all(b"ab");
        assert_eq!(out, b"ab", "shorter than the magic");
    }

    #[test]
    fn every_member_of_a_concatenated_gzip_is_read() {
        let mut two = gzip(&TEXT[..14]);
        two.extend(gzip(&TEXT[14..]));
        let (out, info) = read_all(&two);
        assert_eq!(out, TEXT);
        assert_eq!(info.compression(), Some(Compression::Gzip));
        assert_eq!(info.source_bytes(), two.len() as u64);
    }

    #[test]
    fn bzip2_and_zstd_are_read() {
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(TEXT).unwrap();
        let bz = bz.finish().unwrap();
        let (out, info) = read_all(&bz);
        assert_eq!(
            (out.as_slice(), info.compression()),
            (TEXT, Some(Compression::Bzip2))
        );
        let zst = zstd::stream::encode_all(TEXT, 3).unwrap();
        let (out, info) = read_all(&zst);
        assert_eq!(
            (out.as_slice(), info.compression()),
            (TEXT, Some(Compression::Zstd))
        );
    }

    #[test]
    fn a_cut_or_corrupt_stream_ends_with_the_reason_not_an_error() {
        let whole = gzip(&TEXT.repeat(100));
        let (_, info) = read_all(&whole[..whole.len() / 2]);
        let reason = info.failure().expect("a truncated gzip is a failure");
        assert!(
            reason.starts_with("the gzip data is corrupt or cut short"),
            "{reason}"
        );
        let mut corrupt = whole.clone();
        for b in &mut corrupt[20..60] {
            *b ^= 0x5a;
        }
        let (_, info) = read_all(&corrupt);
        assert!(info.failure().is_some());
    }

    #[test]
    fn letters_that_start_like_a_magic_are_text() {
        assert_eq!(Compression::of(b"BZh9,name\r\n"), None);
        assert_eq!(Compression::of(b"\x1f\x8bx"), None);
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn the_async_reader_reads_the_same_as_the_sync_one() {
        use tokio::io::AsyncReadExt;
        let mut two = gzip(&TEXT[..14]);
        two.extend(gzip(&TEXT[14..]));
        let zst = zstd::stream::encode_all(TEXT, 3).unwrap();
        for input in [TEXT.to_vec(), two, zst] {
            let (mut reader, info) = open_async(input.as_slice()).await.unwrap().split();
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, TEXT);
            assert_eq!(info.source_bytes(), input.len() as u64);
        }
        let whole = gzip(&TEXT.repeat(100));
        let (mut reader, info) = open_async(&whole[..whole.len() / 2]).await.unwrap().split();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert!(info.failure().is_some());
    }
}
