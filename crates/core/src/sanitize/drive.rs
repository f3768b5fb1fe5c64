//! Thin loops that run a [`Sanitizer`] over a byte source and into a byte sink.
//!
//! Output is written as it is produced: when the report says the file was rejected, what was
//! written is garbage and the caller must discard it (the CLI writes to a temporary file and
//! renames it only on acceptance; the Lambda aborts its multipart upload).

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use sha2::{Digest, Sha256};

use super::compressed::{self, SourceInfo};
use super::spreadsheet::{self, Sheet, Unreadable};
use super::{hex, Digests, Policy, Report, Sanitizer, Verdict};

/// Input is read in pieces of this size.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Buffers in flight each way in [`sanitize_pipelined`]: enough to keep both cores busy
/// through the jitter of reads and writes, few enough that memory stays a few MB.
const PIPELINE_DEPTH: usize = 4;

/// Sanitizes `input` into `output` with `policy`; `dataset` names it in the report. A
/// compressed input is read through ([`compressed`]), a workbook's sheet is read as its text
/// ([`spreadsheet`]).
/// `Err` only for I/O errors; a rejected file is an `Ok` report with verdict `rejected`.
pub fn sanitize_read<'a>(
    input: impl Read + Send + 'a,
    output: impl Write,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    sanitize_read_with_errors(input, output, io::sink(), policy, dataset)
}

/// [`sanitize_read`], writing the errors file (each rejected row with its cells) to `errors`.
pub fn sanitize_read_with_errors<'a>(
    input: impl Read + Send + 'a,
    output: impl Write,
    mut errors: impl Write,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    let (input, source) = compressed::open_read(input)?.split();
    let report = match open_sync(input, &policy)? {
        Opened::Stream(input) => read_stream(input, output, &mut errors, policy, dataset, &source),
        Opened::Workbook(bytes) => {
            read_workbook(bytes, output, &mut errors, policy, dataset, &source)
        }
        Opened::TooLarge => Ok(too_large(policy, dataset)),
    }?;
    errors.flush()?;
    Ok(report)
}

fn read_stream(
    mut input: impl Read,
    mut output: impl Write,
    errors: &mut impl Write,
    policy: Policy,
    dataset: Option<String>,
    source: &SourceInfo,
) -> io::Result<Report> {
    let mut sanitizer = Sanitizer::new(policy, dataset);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut rejected = Vec::new();
    while sanitizer.wants_input() {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        note_source(&mut sanitizer, source);
        let _ = sanitizer.feed(&chunk[..n], &mut out);
        if !sanitizer.is_rejected() {
            output.write_all(&out)?;
        }
        out.clear();
        write_errors(&mut sanitizer, &mut rejected, errors)?;
    }
    end_of_source(&mut sanitizer, source);
    let report = sanitizer.finish_with_errors(&mut out, &mut rejected);
    errors.write_all(&rejected)?;
    if report.verdict == Verdict::Accepted {
        output.write_all(&out)?;
    }
    output.flush()?;
    Ok(report)
}

/// Writes the errors file's rows the sanitizer has ready.
fn write_errors(
    sanitizer: &mut Sanitizer,
    buf: &mut Vec<u8>,
    errors: &mut impl Write,
) -> io::Result<()> {
    sanitizer.take_errors(buf);
    if !buf.is_empty() {
        errors.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

/// The start of an input: a workbook is read whole (calamine needs it so), up to the
/// dataset's limit; anything else goes on as a stream.
enum Opened<R> {
    Stream(R),
    Workbook(Vec<u8>),
    TooLarge,
}

/// Bytes looked at to tell a workbook: a zip's first entry name, or an OLE file's signature.
const WORKBOOK_HEAD: usize = 64;

fn open_sync<R: Read>(
    mut input: R,
    policy: &Policy,
) -> io::Result<Opened<io::Chain<io::Cursor<Vec<u8>>, R>>> {
    let mut head = Vec::with_capacity(WORKBOOK_HEAD);
    (&mut input)
        .take(WORKBOOK_HEAD as u64)
        .read_to_end(&mut head)?;
    if !spreadsheet::looks_like_workbook(&head) {
        return Ok(Opened::Stream(io::Cursor::new(head).chain(input)));
    }
    let limit = policy.limits.max_spreadsheet_bytes;
    let mut bytes = head;
    (&mut input)
        .take(limit.saturating_add(1).saturating_sub(bytes.len() as u64))
        .read_to_end(&mut bytes)?;
    Ok(if bytes.len() as u64 > limit {
        Opened::TooLarge
    } else {
        Opened::Workbook(bytes)
    })
}

/// A workbook over the size limit: rejected, having read no more than the limit.
fn too_large(policy: Policy, dataset: Option<String>) -> Report {
    let limit = policy.limits.max_spreadsheet_bytes;
    let mut sanitizer = Sanitizer::new(policy, dataset);
    sanitizer.refuse(format!(
        "the workbook is larger than {limit} bytes, the limit for a spreadsheet \
         (sanitize.limits.max_spreadsheet_bytes: a workbook is read whole)"
    ));
    sanitizer.finish(&mut Vec::new())
}

/// What a workbook's sheet is sanitized with: its text is UTF-8 CSV with `,` and numbers
/// written plainly, whatever the dataset's CSV files look like.
fn sheet_policy(policy: Policy) -> Policy {
    Policy {
        encoding: Some(super::Encoding::UTF_8),
        delimiter: Some(b','),
        numbers: super::NumberFormat::default(),
        ..policy
    }
}

/// A workbook's chosen sheet, or why it gives none.
enum Workbook {
    Sheet(Box<Sheet>, String),
    /// Not a workbook calamine reads: judged as the bytes it is.
    Bytes(Vec<u8>),
    Refused(String),
}

fn open_workbook(bytes: Vec<u8>, policy: &Policy) -> Workbook {
    let unpack_limit = policy
        .limits
        .max_spreadsheet_bytes
        .saturating_mul(spreadsheet::MAX_UNPACK_FACTOR);
    match Sheet::open(&bytes, policy.sheet.as_ref(), unpack_limit) {
        Ok(sheet) => Workbook::Sheet(Box::new(sheet), hex(Sha256::digest(&bytes))),
        Err(Unreadable::NotAWorkbook) => Workbook::Bytes(bytes),
        Err(Unreadable::Refused(reason)) => Workbook::Refused(reason),
    }
}

fn read_workbook(
    bytes: Vec<u8>,
    mut output: impl Write,
    errors: &mut impl Write,
    policy: Policy,
    dataset: Option<String>,
    source: &SourceInfo,
) -> io::Result<Report> {
    let (sheet, sha256) = match open_workbook(bytes, &policy) {
        Workbook::Sheet(sheet, sha256) => (sheet, sha256),
        Workbook::Bytes(bytes) => {
            return read_stream(bytes.as_slice(), output, errors, policy, dataset, source)
        }
        Workbook::Refused(reason) => return Ok(refused(policy, dataset, source, reason)),
    };
    let mut run = SheetRun::new(sheet, sha256, policy, dataset, source);
    while let Some((clean, rejected)) = run.next_clean() {
        output.write_all(clean)?;
        errors.write_all(rejected)?;
    }
    let (report, tail, rejected) = run.finish();
    output.write_all(&tail)?;
    errors.write_all(&rejected)?;
    output.flush()?;
    Ok(report)
}

/// A workbook's sheet through the sanitizer, a piece of text at a time: the same steps for
/// every driver, which only write what comes out.
struct SheetRun {
    sheet: Box<Sheet>,
    sha256: String,
    sanitizer: Sanitizer,
    text: Vec<u8>,
    out: Vec<u8>,
    errors: Vec<u8>,
    more: bool,
}

impl SheetRun {
    fn new(
        sheet: Box<Sheet>,
        sha256: String,
        policy: Policy,
        dataset: Option<String>,
        source: &SourceInfo,
    ) -> Self {
        let mut sanitizer = Sanitizer::new(sheet_policy(policy), dataset);
        note_source(&mut sanitizer, source);
        Self {
            sheet,
            sha256,
            sanitizer,
            text: Vec::with_capacity(CHUNK_BYTES + 4096),
            out: Vec::with_capacity(CHUNK_BYTES * 2),
            errors: Vec::new(),
            more: true,
        }
    }

    /// The clean bytes of the next piece of the sheet (empty for a rejected file) and the
    /// errors file's rows it made; `None` once the sheet is read.
    fn next_clean(&mut self) -> Option<(&[u8], &[u8])> {
        if !(self.more && self.sanitizer.wants_input()) {
            return None;
        }
        self.text.clear();
        self.out.clear();
        self.errors.clear();
        self.more = self.sheet.next_text(&mut self.text, CHUNK_BYTES);
        let _ = self.sanitizer.feed(&self.text, &mut self.out);
        self.sanitizer.take_errors(&mut self.errors);
        let clean: &[u8] = if self.sanitizer.is_rejected() {
            &[]
        } else {
            &self.out
        };
        Some((clean, &self.errors))
    }

    /// The report, the last clean bytes to write (none for a rejected file) and the errors
    /// file's last rows.
    fn finish(mut self) -> (Report, Vec<u8>, Vec<u8>) {
        self.out.clear();
        self.errors.clear();
        let mut report = self
            .sanitizer
            .finish_with_errors(&mut self.out, &mut self.errors);
        if report.verdict != Verdict::Accepted {
            self.out.clear();
        }
        report.sha256_in = Some(self.sha256);
        report.spreadsheet = Some(self.sheet.report);
        (report, self.out, self.errors)
    }
}

fn refused(policy: Policy, dataset: Option<String>, source: &SourceInfo, reason: String) -> Report {
    let mut sanitizer = Sanitizer::new(policy, dataset);
    note_source(&mut sanitizer, source);
    sanitizer.refuse(reason);
    sanitizer.finish(&mut Vec::new())
}

/// [`sanitize_read`] on three threads: one reads and hashes the input, one (the caller's)
/// parses and cleans, one hashes and writes the output, with [`PIPELINE_DEPTH`] buffers
/// circulating each way so memory stays flat whatever the file size. Hashing both sides
/// (a third of the single-thread time) and the I/O then overlap with parsing on another
/// core. The report and the output are the same bytes [`sanitize_read`] gives.
pub fn sanitize_pipelined<R, W>(
    input: R,
    output: W,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report>
where
    R: Read + Send,
    W: Write + Send,
{
    sanitize_pipelined_with_errors(input, output, io::sink(), policy, dataset)
}

/// [`sanitize_pipelined`], writing the errors file to `errors` (from the parsing thread:
/// rejected rows are few beside the clean ones).
pub fn sanitize_pipelined_with_errors<R, W, E>(
    input: R,
    output: W,
    mut errors: E,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report>
where
    R: Read + Send,
    W: Write + Send,
    E: Write,
{
    let (input, source) = compressed::open_read(input)?.split();
    let input = match open_sync(input, &policy)? {
        Opened::Stream(input) => input,
        Opened::Workbook(bytes) => {
            let report = read_workbook(bytes, output, &mut errors, policy, dataset, &source)?;
            errors.flush()?;
            return Ok(report);
        }
        Opened::TooLarge => return Ok(too_large(policy, dataset)),
    };
    let (free_in, empty_chunks) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    let (full_in, chunks) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    let (full_out, outputs) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    let (free_out, empty_outputs) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
    for _ in 0..PIPELINE_DEPTH {
        let _ = free_in.send(vec![0; CHUNK_BYTES]);
        let _ = free_out.send(Vec::with_capacity(CHUNK_BYTES * 2));
    }
    thread::scope(|scope| {
        let reader = thread::Builder::new()
            .name("sanitize-read".into())
            .spawn_scoped(scope, move || read_and_hash(input, empty_chunks, full_in))?;
        let writer = thread::Builder::new()
            .name("sanitize-write".into())
            .spawn_scoped(scope, move || hash_and_write(output, outputs, free_out))?;
        let mut sanitizer = Sanitizer::hashed_outside(policy, dataset);
        let mut spare: Option<Vec<u8>> = None;
        let mut rejected = Vec::new();
        for chunk in &chunks {
            // No free buffer means the writer stopped on an error, reported below.
            let Some(mut out) = spare.take().or_else(|| empty_outputs.recv().ok()) else {
                break;
            };
            out.clear();
            note_source(&mut sanitizer, &source);
            let _ = sanitizer.feed(&chunk, &mut out);
            let _ = free_in.send(chunk);
            write_errors(&mut sanitizer, &mut rejected, &mut errors)?;
            if sanitizer.is_rejected() || out.is_empty() {
                spare = Some(out);
            } else if full_out.send(out).is_err() {
                break;
            }
            if !sanitizer.wants_input() {
                break;
            }
        }
        // The reader stops at its next chunk once nobody takes or returns them.
        drop((chunks, free_in));
        end_of_source(&mut sanitizer, &source);
        let mut out = spare.unwrap_or_default();
        out.clear();
        let mut io_result = Ok(());
        let report = sanitizer.finish_hashed(&mut out, &mut rejected, |tail, accepted| {
            if accepted && !tail.is_empty() {
                let _ = full_out.send(tail.to_vec());
            }
            drop(full_out);
            let (output, written) = join(writer);
            let (input, read) = join(reader);
            io_result = read.and(written);
            Digests { input, output }
        });
        io_result?;
        errors.write_all(&rejected)?;
        errors.flush()?;
        Ok(report)
    })
}

/// The reader thread: fills free buffers from `input`, hashing each before passing it on.
/// Stops at the end of input, on an error, or when the parser hangs up.
fn read_and_hash(
    mut input: impl Read,
    empty: Receiver<Vec<u8>>,
    full: SyncSender<Vec<u8>>,
) -> (Sha256, io::Result<()>) {
    let mut hash = Sha256::new();
    for mut chunk in &empty {
        chunk.resize(CHUNK_BYTES, 0);
        let n = loop {
            match input.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return (hash, Err(e)),
            }
        };
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        hash.update(&chunk);
        if full.send(chunk).is_err() {
            break;
        }
    }
    (hash, Ok(()))
}

/// The writer thread: hashes and writes each clean buffer, then hands it back for reuse.
fn hash_and_write(
    mut output: impl Write,
    full: Receiver<Vec<u8>>,
    empty: SyncSender<Vec<u8>>,
) -> (Sha256, io::Result<()>) {
    let mut hash = Sha256::new();
    for out in &full {
        hash.update(&out);
        if let Err(e) = output.write_all(&out) {
            return (hash, Err(e));
        }
        // `try_send`: the parser's last piece comes in a buffer of its own, which must not
        // block on a full pool while the parser waits for this thread to end.
        let _ = empty.try_send(out);
    }
    (hash, output.flush())
}

/// Tells the sanitizer how much of a compressed source has been read.
fn note_source(sanitizer: &mut Sanitizer, source: &SourceInfo) {
    if let Some(format) = source.compression() {
        sanitizer.note_compressed(format, source.source_bytes());
    }
}

/// The source has ended: for a compressed one, perhaps because its data was bad.
fn end_of_source(sanitizer: &mut Sanitizer, source: &SourceInfo) {
    note_source(sanitizer, source);
    if let Some(reason) = source.failure() {
        sanitizer.refuse(reason);
    }
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
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
    input: impl tokio::io::AsyncRead + Unpin + Send,
    output: &mut impl ByteSink,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    sanitize_async_with_errors(input, output, &mut Discard, policy, dataset).await
}

/// A sink that keeps nothing: the errors file of a caller that wants none.
#[cfg(feature = "tokio")]
pub struct Discard;

#[cfg(feature = "tokio")]
impl ByteSink for Discard {
    async fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// [`sanitize_async`], writing the errors file (each rejected row with its cells) to
/// `errors`, which is not flushed or closed either.
#[cfg(feature = "tokio")]
pub async fn sanitize_async_with_errors(
    input: impl tokio::io::AsyncRead + Unpin + Send,
    output: &mut impl ByteSink,
    errors: &mut impl ByteSink,
    policy: Policy,
    dataset: Option<String>,
) -> io::Result<Report> {
    let (input, source) = compressed::open_async(input).await?.split();
    match open_nonblocking(input, &policy).await? {
        Opened::Stream(input) => {
            stream_async(input, output, errors, policy, dataset, &source).await
        }
        Opened::Workbook(bytes) => {
            workbook_async(bytes, output, errors, policy, dataset, &source).await
        }
        Opened::TooLarge => Ok(too_large(policy, dataset)),
    }
}

#[cfg(feature = "tokio")]
async fn open_nonblocking<R: tokio::io::AsyncRead + Unpin>(
    mut input: R,
    policy: &Policy,
) -> io::Result<Opened<tokio::io::Chain<io::Cursor<Vec<u8>>, R>>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(WORKBOOK_HEAD);
    (&mut input)
        .take(WORKBOOK_HEAD as u64)
        .read_to_end(&mut head)
        .await?;
    if !spreadsheet::looks_like_workbook(&head) {
        return Ok(Opened::Stream(AsyncReadExt::chain(
            io::Cursor::new(head),
            input,
        )));
    }
    let limit = policy.limits.max_spreadsheet_bytes;
    let mut bytes = head;
    (&mut input)
        .take(limit.saturating_add(1).saturating_sub(bytes.len() as u64))
        .read_to_end(&mut bytes)
        .await?;
    Ok(if bytes.len() as u64 > limit {
        Opened::TooLarge
    } else {
        Opened::Workbook(bytes)
    })
}

#[cfg(feature = "tokio")]
async fn stream_async(
    mut input: impl tokio::io::AsyncRead + Unpin,
    output: &mut impl ByteSink,
    errors: &mut impl ByteSink,
    policy: Policy,
    dataset: Option<String>,
    source: &SourceInfo,
) -> io::Result<Report> {
    use tokio::io::AsyncReadExt;

    let mut sanitizer = Sanitizer::new(policy, dataset);
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut rejected = Vec::new();
    while sanitizer.wants_input() {
        let n = input.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        note_source(&mut sanitizer, source);
        let _ = sanitizer.feed(&chunk[..n], &mut out);
        if !sanitizer.is_rejected() {
            output.write_all(&out).await?;
        }
        out.clear();
        sanitizer.take_errors(&mut rejected);
        if !rejected.is_empty() {
            errors.write_all(&rejected).await?;
            rejected.clear();
        }
    }
    end_of_source(&mut sanitizer, source);
    let report = sanitizer.finish_with_errors(&mut out, &mut rejected);
    errors.write_all(&rejected).await?;
    if report.verdict == Verdict::Accepted {
        output.write_all(&out).await?;
    }
    Ok(report)
}

#[cfg(feature = "tokio")]
async fn workbook_async(
    bytes: Vec<u8>,
    output: &mut impl ByteSink,
    errors: &mut impl ByteSink,
    policy: Policy,
    dataset: Option<String>,
    source: &SourceInfo,
) -> io::Result<Report> {
    let (sheet, sha256) = match open_workbook(bytes, &policy) {
        Workbook::Sheet(sheet, sha256) => (sheet, sha256),
        Workbook::Bytes(bytes) => {
            return stream_async(bytes.as_slice(), output, errors, policy, dataset, source).await
        }
        Workbook::Refused(reason) => return Ok(refused(policy, dataset, source, reason)),
    };
    let mut run = SheetRun::new(sheet, sha256, policy, dataset, source);
    while let Some((clean, rejected)) = run.next_clean() {
        output.write_all(clean).await?;
        errors.write_all(rejected).await?;
    }
    let (report, tail, rejected) = run.finish();
    output.write_all(&tail).await?;
    errors.write_all(&rejected).await?;
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

    /// A messy file several chunks long, so the pipelined driver cycles its buffers.
    fn long_messy_file() -> Vec<u8> {
        let mut input = b"\xEF\xBB\xBFOrder ID;Note;Qty\r\n".to_vec();
        for i in 0..60_000 {
            let row = match i % 5 {
                0 => format!("{i};\"multi\nline; note\";3\r\n"),
                1 => format!("{i};=HYPERLINK(\"x\");1\r\n"),
                2 => format!("{i};<b onclick=x>hi</b>;2\r\n"),
                3 => format!("{i};too;many;fields\r\n"),
                _ => format!("{i};caf\u{e9} \u{1}ok;4\r\n"),
            };
            input.extend_from_slice(row.as_bytes());
        }
        input
    }

    #[test]
    fn pipelined_driver_gives_the_bytes_and_report_of_the_single_thread_one() {
        let input = long_messy_file();
        assert!(input.len() > 4 * CHUNK_BYTES);
        let policy = Policy {
            limits: crate::sanitize::Limits {
                max_rejected_share: 0.5,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut single = Vec::new();
        let single_report = sanitize_read(input.as_slice(), &mut single, policy.clone(), None)
            .expect("in-memory I/O");
        let mut piped = Vec::new();
        let piped_report =
            sanitize_pipelined(input.as_slice(), &mut piped, policy, None).expect("in-memory I/O");
        assert_eq!(single_report.verdict, Verdict::Accepted);
        assert!(single_report.rows_rejected > 10_000);
        assert_eq!(piped, single);
        assert_eq!(piped_report, single_report);
    }

    #[test]
    fn pipelined_driver_ends_on_a_last_row_without_line_break() {
        // The last row then comes out of `finish`, in a buffer beyond the pool's: returning
        // it once deadlocked the writer against a full pool.
        let mut input = long_messy_file();
        input.truncate(input.len() - 2);
        let (done, result) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let policy = Policy {
                limits: crate::sanitize::Limits {
                    max_rejected_share: 0.5,
                    ..Default::default()
                },
                ..Default::default()
            };
            let mut out = Vec::new();
            let report = sanitize_pipelined(input.as_slice(), &mut out, policy, None);
            let _ = done.send((report.map(|r| r.rows_out), out.ends_with(b"4\r\n")));
        });
        let (rows_out, last_row_written) = result
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the pipelined driver finished");
        assert_eq!(rows_out.unwrap(), 48_000);
        assert!(last_row_written);
    }

    #[test]
    fn pipelined_driver_hashes_a_rejected_file_to_the_end() {
        let mut input = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        input.resize(9 * CHUNK_BYTES + 17, 7);
        let single = sanitize_read(input.as_slice(), io::sink(), Policy::default(), None).unwrap();
        let piped =
            sanitize_pipelined(input.as_slice(), io::sink(), Policy::default(), None).unwrap();
        assert_eq!(piped.verdict, Verdict::Rejected);
        assert_eq!(piped, single);
    }

    #[test]
    fn pipelined_driver_stops_reading_a_file_over_the_size_limit() {
        let input = long_messy_file();
        let policy = Policy {
            limits: crate::sanitize::Limits {
                max_file_bytes: 3 * CHUNK_BYTES as u64,
                ..Default::default()
            },
            ..Default::default()
        };
        let report = sanitize_pipelined(input.as_slice(), io::sink(), policy, None).unwrap();
        assert_eq!(report.verdict, Verdict::Rejected);
        assert_eq!(report.sha256_in, None);
        assert!(report.reason.unwrap().contains("larger than"));
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn lenient() -> Policy {
        Policy {
            limits: crate::sanitize::Limits {
                max_rejected_share: 0.5,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_gzip_file_is_sanitized_as_the_text_it_holds_by_every_driver() {
        let text = long_messy_file();
        let packed = gzip(&text);
        let mut plain = Vec::new();
        let plain_report = sanitize_read(text.as_slice(), &mut plain, lenient(), None).unwrap();
        let mut single = Vec::new();
        let report = sanitize_read(packed.as_slice(), &mut single, lenient(), None).unwrap();
        assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
        assert_eq!(single, plain);
        assert_eq!(report.compression, Some(compressed::Compression::Gzip));
        assert_eq!(report.bytes_compressed, Some(packed.len() as u64));
        assert_eq!(report.bytes_in, text.len() as u64);
        assert_eq!(report.sha256_in, plain_report.sha256_in, "of the text read");
        let mut piped = Vec::new();
        let piped_report =
            sanitize_pipelined(packed.as_slice(), &mut piped, lenient(), None).unwrap();
        assert_eq!(piped, plain);
        assert_eq!(piped_report, report);
    }

    #[test]
    fn a_cut_gzip_file_is_rejected_with_the_reason_by_every_driver() {
        let packed = gzip(&long_messy_file());
        let cut = &packed[..packed.len() / 2];
        let single = sanitize_read(cut, io::sink(), lenient(), None).unwrap();
        let piped = sanitize_pipelined(cut, io::sink(), lenient(), None).unwrap();
        for report in [single, piped] {
            assert_eq!(report.verdict, Verdict::Rejected);
            let reason = report.reason.unwrap();
            assert!(
                reason.starts_with("the gzip data is corrupt or cut short"),
                "{reason}"
            );
            assert_eq!(report.sha256_in, None, "not read to its end");
        }
    }

    #[test]
    fn a_compression_bomb_is_refused_after_reading_little_of_it() {
        // 35 MiB of one repeated row in some 35 KiB of gzip: a thousand times its size.
        let row = b"1,2,3\r\n".repeat(1 << 20);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        use std::io::Write as _;
        e.write_all(b"a,b,c\r\n").unwrap();
        for _ in 0..5 {
            e.write_all(&row).unwrap();
        }
        let bomb = e.finish().unwrap();
        let report = sanitize_read(bomb.as_slice(), io::sink(), Policy::default(), None).unwrap();
        assert_eq!(report.verdict, Verdict::Rejected);
        let reason = report.reason.unwrap();
        assert!(reason.contains("expands more than 200 times"), "{reason}");
        assert!(
            report.bytes_in < 16 << 20,
            "stopped early: {}",
            report.bytes_in
        );
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn the_async_driver_reads_a_zstd_file_as_the_sync_one_does() {
        let text = long_messy_file();
        let packed = zstd::stream::encode_all(text.as_slice(), 3).unwrap();
        let mut sync_out = Vec::new();
        let sync = sanitize_read(packed.as_slice(), &mut sync_out, lenient(), None).unwrap();
        let mut async_out = Vec::new();
        let report = sanitize_async(packed.as_slice(), &mut async_out, lenient(), None)
            .await
            .unwrap();
        assert_eq!(report, sync);
        assert_eq!(async_out, sync_out);
        assert_eq!(report.compression, Some(compressed::Compression::Zstd));
    }

    /// Fails after `ok` bytes, like a full disk or a closed pipe.
    struct Failing {
        ok: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(b'a');
            if let Some(first) = buf.first_mut() {
                *first = b'\n';
            }
            self.ok -= n;
            Ok(n)
        }
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.ok);
            self.ok -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn pipelined_driver_reports_read_and_write_errors() {
        let read = sanitize_pipelined(
            Failing {
                ok: 2 * CHUNK_BYTES,
            },
            io::sink(),
            Policy::default(),
            None,
        );
        assert_eq!(read.unwrap_err().to_string(), "disk gone");
        let input = long_messy_file();
        let policy = Policy {
            limits: crate::sanitize::Limits {
                max_rejected_share: 0.5,
                ..Default::default()
            },
            ..Default::default()
        };
        let written = sanitize_pipelined(input.as_slice(), Failing { ok: 1000 }, policy, None);
        assert_eq!(written.unwrap_err().to_string(), "disk full");
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
