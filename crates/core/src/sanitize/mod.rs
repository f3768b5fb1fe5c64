//! The streaming CSV sanitizer.
//!
//! [`Sanitizer`] is a push-based state machine with no I/O: feed it byte chunks of the input
//! as they arrive, it appends clean CSV bytes to a buffer you drain, and [`Sanitizer::finish`]
//! gives the [`Report`]. Memory stays bounded by the chunk size and the record limits, never by
//! the file size. [`drive`] has the thin sync (`Read`/`Write`) and async (tokio) loops around it.
//!
//! What it does, in order: sniff the first 64 KiB (not-a-CSV formats, encoding, delimiter);
//! decode to UTF-8; parse records with csv-core; clean the header; drop blank rows; reject rows
//! of the wrong width, with their starting line; strip control characters; neutralize formula
//! and markup cells; write RFC 4180 output; hash input and output.

pub mod cell;
pub mod compressed;
pub mod drive;
pub mod encoding;
pub mod header;
pub(crate) mod lines;
pub mod markup;
mod plain;
mod policy;
mod report;
mod rows;
pub mod sniff;
pub mod spreadsheet;

use sha2::{Digest, Sha256};

pub use encoding::Encoding;
pub use policy::{CellPolicy, Limits, MarkupPolicy, NumberFormat, Policy, RaggedRows};
pub use report::{
    CellCounts, ColumnReport, Report, RowReject, SanitizeSummary, Verdict, MAX_LISTED_REJECTS,
};

use compressed::Compression;
use encoding::TextDecoder;
use rows::Rows;
use sniff::{check_is_text, guess_encoding, sniff_delimiter, EncodingGuess, SNIFF_BYTES};

/// The file was rejected as a whole; the reason is also in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file rejected: {reason}")]
pub struct Rejected {
    pub reason: String,
}

/// Sanitizes one file. See the module documentation.
pub struct Sanitizer {
    policy: Policy,
    dataset: Option<String>,
    stage: Stage,
    /// `None` when the driver hashes input and output itself, on other threads.
    hashes: Option<Box<Digests>>,
    bytes_in: u64,
    bytes_out: u64,
    rejected: Option<Rejected>,
    /// Input stopped being read (the file is over the size limit): no input hash.
    gave_up_reading: bool,
    guess: Option<EncodingGuess>,
    delimiter: Option<u8>,
    /// The input was compressed: its format and the compressed bytes read so far.
    compressed: Option<(Compression, u64)>,
}

/// SHA-256 digests of a file's input and its clean output, taken by a driver that hashes
/// outside the sanitizer (see [`Sanitizer::hashed_outside`]).
pub(crate) struct Digests {
    pub input: Sha256,
    pub output: Sha256,
}

enum Stage {
    Sniffing(Vec<u8>),
    Parsing(Box<Parsing>),
}

struct Parsing {
    decoder: TextDecoder,
    rows: Rows,
}

impl Sanitizer {
    /// A sanitizer applying `policy`; `dataset` only names it in the report.
    pub fn new(policy: Policy, dataset: Option<String>) -> Self {
        Self {
            policy,
            dataset,
            stage: Stage::Sniffing(Vec::new()),
            hashes: Some(Box::new(Digests {
                input: Sha256::new(),
                output: Sha256::new(),
            })),
            bytes_in: 0,
            bytes_out: 0,
            rejected: None,
            gave_up_reading: false,
            guess: None,
            delimiter: None,
            compressed: None,
        }
    }

    /// A sanitizer that leaves hashing to its driver, which hashes every input chunk it feeds
    /// and every output byte it writes, and hands the digests to [`Self::finish_hashed`].
    pub(crate) fn hashed_outside(policy: Policy, dataset: Option<String>) -> Self {
        Self {
            hashes: None,
            ..Self::new(policy, dataset)
        }
    }

    /// Whether the driver should go on reading input. After a rejection the rest of the input
    /// is still read, for its hash, unless the file is over the size limit.
    pub fn wants_input(&self) -> bool {
        !self.gave_up_reading
    }

    /// The input is compressed in `format`, and `bytes` of it have been read so far (the
    /// driver says so before each chunk it feeds): the decompressed bytes may not pass the
    /// expansion limit ([`Limits::max_compression_ratio`]).
    pub fn note_compressed(&mut self, format: Compression, bytes: u64) {
        self.compressed = Some((format, bytes));
    }

    /// The input could not be read to its end as what it is (compressed data that is
    /// corrupt or cut short): the file is rejected with `reason`, and nothing more is read.
    pub fn refuse(&mut self, reason: String) {
        self.gave_up_reading = true;
        if self.rejected.is_none() {
            self.reject(reason);
        }
    }

    /// Whether the file has been rejected; its output must then be discarded.
    pub fn is_rejected(&self) -> bool {
        self.rejected.is_some()
    }

    /// Feeds the next chunk of input, appending clean output to `out` (which the caller
    /// drains whenever it likes). After `Err`, output is meaningless and further chunks are
    /// only hashed.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Rejected> {
        if let Some(hashes) = &mut self.hashes {
            hashes.input.update(chunk);
        }
        self.bytes_in += chunk.len() as u64;
        if let Some(rejected) = &self.rejected {
            return Err(rejected.clone());
        }
        if self.bytes_in > self.policy.limits.max_file_bytes {
            self.gave_up_reading = true;
            return Err(self.reject(format!(
                "file is larger than {} bytes, the limit",
                self.policy.limits.max_file_bytes
            )));
        }
        if let Some(reason) = self.expands_too_much() {
            self.gave_up_reading = true;
            return Err(self.reject(reason));
        }
        let mark = out.len();
        let result = match &mut self.stage {
            Stage::Sniffing(head) => {
                head.extend_from_slice(chunk);
                if head.len() >= SNIFF_BYTES {
                    self.start(false, out)
                } else {
                    Ok(())
                }
            }
            Stage::Parsing(p) => push(p, chunk, false, out),
        };
        self.after(result, mark, out)
    }

    /// Ends the input: flushes the last record, runs the whole-file checks, returns the report.
    pub fn finish(self, out: &mut Vec<u8>) -> Report {
        self.finish_with_errors(out, &mut Vec::new())
    }

    /// [`Self::finish`], moving the errors file's last rows onto `errors`.
    pub fn finish_with_errors(mut self, out: &mut Vec<u8>, errors: &mut Vec<u8>) -> Report {
        self.flush(out);
        self.take_errors(errors);
        let digests = self.hashes.take().map(|h| *h);
        self.report(digests)
    }

    /// Moves the errors file's rows written since the last call onto `out`: each rejected
    /// row's line, column and reason, then its cells (formula-like ones defused), under a
    /// header row; at most `limits.max_error_rows` rows, the last line saying when more were
    /// rejected.
    pub fn take_errors(&mut self, out: &mut Vec<u8>) {
        if let Stage::Parsing(p) = &mut self.stage {
            p.rows.errors.take(out);
        }
    }

    /// [`Self::finish`] for a sanitizer made by [`Self::hashed_outside`]; `digests` must
    /// include the output this call appends to `out` when the file is accepted.
    pub(crate) fn finish_hashed(
        mut self,
        out: &mut Vec<u8>,
        errors: &mut Vec<u8>,
        digests: impl FnOnce(&[u8], bool) -> Digests,
    ) -> Report {
        let mark = out.len();
        self.flush(out);
        self.take_errors(errors);
        let digests = digests(&out[mark..], self.rejected.is_none());
        self.report(Some(digests))
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.rejected.is_none() {
            let mark = out.len();
            let result = match &mut self.stage {
                Stage::Sniffing(_) => self.start(true, out),
                Stage::Parsing(_) => Ok(()),
            }
            .and_then(|()| match &mut self.stage {
                Stage::Parsing(p) => {
                    push(p, &[], true, out)?;
                    p.rows.finish(out)
                }
                Stage::Sniffing(_) => Ok(()),
            })
            .and_then(|()| self.check_rejected_share());
            let _ = self.after(result, mark, out);
        }
    }

    /// Decides encoding and delimiter from the buffered head, then parses it.
    fn start(&mut self, at_eof: bool, out: &mut Vec<u8>) -> Result<(), String> {
        let Stage::Sniffing(head) = &mut self.stage else {
            return Ok(());
        };
        let head = std::mem::take(head);
        if head.is_empty() {
            return Err("empty file (0 bytes)".into());
        }
        // Decide on exactly the first SNIFF_BYTES, however the input was chunked.
        let sample = &head[..head.len().min(SNIFF_BYTES)];
        let at_eof = at_eof && sample.len() == head.len();
        let guess = match self.policy.encoding {
            Some(encoding) => EncodingGuess {
                encoding,
                bom: has_bom(sample, encoding),
                provisional: false,
            },
            None => guess_encoding(sample, at_eof)?,
        };
        self.guess = Some(guess);
        check_is_text(sample, guess.encoding)?;
        let delimiter = match self.policy.delimiter {
            Some(d) => d,
            None => sniff_delimiter(guess.encoding.decode_sample(sample).as_bytes(), at_eof),
        };
        self.delimiter = Some(delimiter);
        let mut parsing = Box::new(Parsing {
            decoder: TextDecoder::new(guess.encoding, guess.provisional),
            rows: Rows::new(self.policy.clone(), delimiter),
        });
        push(&mut parsing, &head, false, out)?;
        self.stage = Stage::Parsing(parsing);
        Ok(())
    }

    fn check_rejected_share(&self) -> Result<(), String> {
        let Stage::Parsing(p) = &self.stage else {
            return Ok(());
        };
        let stats = &p.rows.stats;
        let considered = stats.rows_in - stats.rows_blank;
        let limit = self.policy.limits.max_rejected_share;
        if considered > 0 && stats.rows_rejected as f64 > limit * considered as f64 {
            return Err(format!(
                "{} of {} rows rejected ({:.1}%), over the limit of {:.1}%",
                stats.rows_rejected,
                considered,
                100.0 * stats.rows_rejected as f64 / considered as f64,
                100.0 * limit
            ));
        }
        Ok(())
    }

    /// Hashes new output, or records the rejection.
    fn after(
        &mut self,
        result: Result<(), String>,
        mark: usize,
        out: &[u8],
    ) -> Result<(), Rejected> {
        match result {
            Ok(()) => {
                if let Some(hashes) = &mut self.hashes {
                    hashes.output.update(&out[mark..]);
                }
                self.bytes_out += (out.len() - mark) as u64;
                Ok(())
            }
            Err(reason) => Err(self.reject(reason)),
        }
    }

    /// Why a compressed input is refused as a compression bomb, if it is.
    fn expands_too_much(&self) -> Option<String> {
        let (format, compressed) = self.compressed?;
        let ratio = self.policy.limits.max_compression_ratio;
        let over = self.bytes_in > compressed.max(1).saturating_mul(ratio);
        (self.bytes_in > compressed::RATIO_FLOOR_BYTES && over).then(|| {
            format!(
                "the {format} file expands more than {ratio} times ({} bytes from the first \
                 {compressed} compressed ones), the limit (sanitize.limits.\
                 max_compression_ratio): a compression bomb?",
                self.bytes_in
            )
        })
    }

    fn reject(&mut self, reason: String) -> Rejected {
        let rejected = Rejected { reason };
        self.rejected = Some(rejected.clone());
        rejected
    }

    /// `digests` is `None` only when hashing was left to a driver that never gave them.
    fn report(self, digests: Option<Digests>) -> Report {
        let accepted = self.rejected.is_none();
        let parsing = match &self.stage {
            Stage::Parsing(p) => Some(p),
            Stage::Sniffing(_) => None,
        };
        let (sha256_in, sha256_out) = match digests {
            Some(d) => (
                (!self.gave_up_reading).then(|| hex(d.input.finalize())),
                accepted.then(|| hex(d.output.finalize())),
            ),
            None => (None, None),
        };
        let header = parsing.and_then(|p| p.rows.header());
        let stats = parsing.map(|p| &p.rows.stats);
        let count = |f: fn(&rows::RowStats) -> u64| stats.map_or(0, f);
        let mut cells = stats.map(|s| s.cells.clone()).unwrap_or_default();
        cells.invalid_encoding_replaced = parsing.map_or(0, |p| p.decoder.replacements());
        Report {
            verdict: if accepted {
                Verdict::Accepted
            } else {
                Verdict::Rejected
            },
            reason: self.rejected.as_ref().map(|r| r.reason.clone()),
            dataset: self.dataset.clone(),
            encoding: parsing
                .map(|p| p.decoder.encoding())
                .or(self.guess.map(|g| g.encoding))
                .map(|e| e.label()),
            bom: self.guess.is_some_and(|g| g.bom),
            encoding_fallback_at_byte: parsing.and_then(|p| p.decoder.fell_back_at()),
            delimiter: self.delimiter.map(|d| char::from(d).to_string()),
            line_endings: parsing.map(|p| p.rows.line_endings().to_string()),
            bytes_in: self.bytes_in,
            compression: self.compressed.map(|(format, _)| format),
            bytes_compressed: self.compressed.map(|(_, bytes)| bytes),
            bytes_out: if accepted { self.bytes_out } else { 0 },
            rows_in: count(|s| s.rows_in),
            rows_out: if accepted { count(|s| s.rows_out) } else { 0 },
            rows_rejected: count(|s| s.rows_rejected),
            rows_blank: count(|s| s.rows_blank),
            rows_preamble: count(|s| s.rows_preamble),
            error_rows: parsing.map_or(0, |p| p.rows.errors.listed()),
            row_names_column: stats.and_then(|s| s.row_names_column.clone()),
            headers_original: header.map(|h| h.original.clone()).unwrap_or_default(),
            headers: header.map(|h| h.clean.clone()).unwrap_or_default(),
            columns: parsing.map(|p| p.rows.column_reports()).unwrap_or_default(),
            rejects: stats.map(|s| s.rejects.clone()).unwrap_or_default(),
            rejects_truncated: stats.is_some_and(|s| s.rows_rejected > s.rejects.len() as u64),
            cells,
            sha256_in,
            sha256_out,
            spreadsheet: None,
        }
    }
}

fn push(p: &mut Parsing, raw: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), String> {
    let Parsing { decoder, rows } = p;
    decoder.push(raw, last, &mut |text| rows.push(text, out))
}

fn has_bom(head: &[u8], encoding: Encoding) -> bool {
    let bom: &[u8] = if encoding == Encoding::UTF_8 {
        b"\xEF\xBB\xBF"
    } else if encoding == Encoding::UTF_16LE {
        b"\xFF\xFE"
    } else if encoding == Encoding::UTF_16BE {
        b"\xFE\xFF"
    } else {
        return false;
    };
    head.starts_with(bom)
}

pub(crate) fn hex(digest: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
