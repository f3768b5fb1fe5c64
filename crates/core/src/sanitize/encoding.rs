//! Turning the input bytes into UTF-8, chunk by chunk.

use encoding_rs::{DecoderResult, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};
use serde::{Serialize, Serializer};

use super::sniff::detect_legacy;

/// An input encoding: any encoding the WHATWG Encoding Standard (and so `encoding_rs`) knows,
/// except the replacement encoding. Output is always UTF-8 without BOM.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Encoding(&'static encoding_rs::Encoding);

impl Encoding {
    pub const UTF_8: Self = Self(UTF_8);
    pub const UTF_16LE: Self = Self(UTF_16LE);
    pub const UTF_16BE: Self = Self(UTF_16BE);
    pub const WINDOWS_1252: Self = Self(WINDOWS_1252);
    pub const MACINTOSH: Self = Self(encoding_rs::MACINTOSH);

    /// The label used in config and reports: the standard name in lower case (`utf-8`,
    /// `windows-1252`, `big5`, `macintosh`, `iso-8859-7`, ...).
    pub fn label(self) -> String {
        self.0.name().to_ascii_lowercase()
    }

    /// Parses a config label: any label of the Encoding Standard (`latin1` and `iso-8859-1`
    /// mean Windows-1252, as browsers treat them), plus `utf16le` and `utf16be`.
    pub fn from_label(label: &str) -> Option<Self> {
        let label = label.trim().to_ascii_lowercase();
        let found = match label.as_str() {
            "utf16le" => Some(UTF_16LE),
            "utf16be" => Some(UTF_16BE),
            "mac_roman" | "macroman" => Some(encoding_rs::MACINTOSH),
            other => encoding_rs::Encoding::for_label(other.as_bytes()),
        }?;
        (found != encoding_rs::REPLACEMENT).then_some(Self(found))
    }

    /// Whether this is UTF-16 (either byte order), whose text is full of NUL bytes.
    pub fn is_utf16(self) -> bool {
        self.0 == UTF_16LE || self.0 == UTF_16BE
    }

    pub(crate) fn codec(self) -> &'static encoding_rs::Encoding {
        self.0
    }

    /// Decodes a whole (small) buffer, dropping a BOM of this encoding; for sniffing.
    pub fn decode_sample(self, bytes: &[u8]) -> String {
        self.0.decode_with_bom_removal(bytes).0.into_owned()
    }
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Serialize for Encoding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

const OUT_CHUNK: usize = 64 * 1024;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
/// Raw bytes looked at to pick a legacy encoding when text that began as ASCII turns out not
/// to be UTF-8. Always exactly these bytes, however the input is read, so the choice is a
/// function of the input alone.
pub const DETECT_BYTES: usize = 64 * 1024;

/// A streaming decoder to UTF-8.
///
/// UTF-8 that was only guessed from leading ASCII gives way to a legacy encoding at the first
/// invalid byte (all encodings offered agree on ASCII, so nothing already emitted changes):
/// the decoder holds the next [`DETECT_BYTES`] from that byte, picks the encoding from them
/// (see [`detect_legacy`]) and decodes on with it. After real UTF-8 text, invalid sequences
/// become U+FFFD and are counted.
pub struct TextDecoder {
    encoding: Encoding,
    decoder: encoding_rs::Decoder,
    may_fall_back: bool,
    /// Raw bytes from the first non-UTF-8 byte on, held until they decide the encoding.
    deciding: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Last raw bytes of the previous chunk: a bad sequence may have started there.
    tail: [u8; 3],
    tail_len: usize,
    offset: u64,
    replacements: u64,
    fell_back_at: Option<u64>,
}

impl TextDecoder {
    /// A decoder for `encoding`; `provisional` allows the legacy fallback for UTF-8.
    pub fn new(encoding: Encoding, provisional: bool) -> Self {
        Self {
            encoding,
            decoder: encoding.codec().new_decoder_with_bom_removal(),
            may_fall_back: provisional && encoding == Encoding::UTF_8,
            deciding: None,
            buf: vec![0; OUT_CHUNK],
            tail: [0; 3],
            tail_len: 0,
            offset: 0,
            replacements: 0,
            fell_back_at: None,
        }
    }

    /// The encoding in force now (it changes on a fallback).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Invalid sequences replaced by U+FFFD so far.
    pub fn replacements(&self) -> u64 {
        self.replacements
    }

    /// Input byte offset at which UTF-8 was abandoned for a legacy encoding, if it was.
    pub fn fell_back_at(&self) -> Option<u64> {
        self.fell_back_at
    }

    /// Decodes `raw`, handing UTF-8 pieces to `sink` in order. `last` flushes the decoder.
    /// `Err` from the decoder itself means no encoding could be told with confidence.
    pub fn push<E: From<String>>(
        &mut self,
        raw: &[u8],
        last: bool,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        match &mut self.deciding {
            Some(pending) => pending.extend_from_slice(raw),
            None => self.decode(raw, last, sink)?,
        }
        self.offset += raw.len() as u64;
        let ready = self
            .deciding
            .as_ref()
            .is_some_and(|p| last || p.len() >= DETECT_BYTES);
        if ready {
            let pending = self.deciding.take().unwrap_or_default();
            let window = &pending[..pending.len().min(DETECT_BYTES)];
            let encoding = detect_legacy(window, last && window.len() == pending.len())?;
            self.encoding = encoding;
            self.decoder = encoding.codec().new_decoder_without_bom_handling();
            self.decode(&pending, last, sink)?;
        }
        Ok(())
    }

    fn decode<E>(
        &mut self,
        raw: &[u8],
        last: bool,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut src = raw;
        loop {
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(src, &mut self.buf, last);
            if self.may_fall_back && !self.buf[..written].is_ascii() {
                self.may_fall_back = false;
            }
            sink(&self.buf[..written])?;
            src = &src[read..];
            match result {
                DecoderResult::InputEmpty => break,
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(bad, after) if self.may_fall_back => {
                    let consumed = raw.len() - src.len();
                    let back = usize::from(bad) + usize::from(after);
                    self.start_deciding(raw, consumed, back);
                    return Ok(());
                }
                DecoderResult::Malformed(..) => {
                    self.replacements += 1;
                    sink(REPLACEMENT)?;
                }
            }
        }
        if self.may_fall_back {
            self.remember_tail(raw);
        }
        Ok(())
    }

    /// Holds the raw bytes from the start of the bad sequence on (some may be in the tail of
    /// the previous chunk) until they are enough to pick the legacy encoding.
    fn start_deciding(&mut self, raw: &[u8], consumed: usize, back: usize) {
        self.may_fall_back = false;
        self.fell_back_at = Some((self.offset + consumed as u64).saturating_sub(back as u64));
        let from_tail = back.saturating_sub(consumed).min(self.tail_len);
        let mut pending = Vec::with_capacity(DETECT_BYTES + from_tail);
        pending.extend_from_slice(&self.tail[self.tail_len - from_tail..self.tail_len]);
        pending.extend_from_slice(&raw[consumed.saturating_sub(back)..]);
        self.deciding = Some(pending);
    }

    fn remember_tail(&mut self, raw: &[u8]) {
        if raw.len() >= 3 {
            self.tail.copy_from_slice(&raw[raw.len() - 3..]);
            self.tail_len = 3;
        } else {
            for &b in raw {
                if self.tail_len == 3 {
                    self.tail.copy_within(1.., 0);
                    self.tail_len = 2;
                }
                self.tail[self.tail_len] = b;
                self.tail_len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(decoder: &mut TextDecoder, input: &[u8], chunk: usize) -> String {
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| -> Result<(), String> {
            out.extend_from_slice(b);
            Ok(())
        };
        for piece in input.chunks(chunk.max(1)) {
            decoder.push(piece, false, &mut sink).unwrap();
        }
        decoder.push(&[], true, &mut sink).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn utf8_with_bom_loses_the_bom() {
        let mut d = TextDecoder::new(Encoding::UTF_8, false);
        assert_eq!(decode_in_chunks(&mut d, "\u{FEFF}é,b".as_bytes(), 1), "é,b");
    }

    #[test]
    fn utf16_both_byte_orders() {
        let le: Vec<u8> = b"\xFF\xFE"
            .iter()
            .copied()
            .chain("né,x".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        let be: Vec<u8> = b"\xFE\xFF"
            .iter()
            .copied()
            .chain("né,x".encode_utf16().flat_map(|u| u.to_be_bytes()))
            .collect();
        for chunk in [1, 3, 100] {
            let mut d = TextDecoder::new(Encoding::UTF_16LE, false);
            assert_eq!(decode_in_chunks(&mut d, &le, chunk), "né,x");
            let mut d = TextDecoder::new(Encoding::UTF_16BE, false);
            assert_eq!(decode_in_chunks(&mut d, &be, chunk), "né,x");
        }
    }

    #[test]
    fn windows_1252_maps_high_bytes() {
        let mut d = TextDecoder::new(Encoding::WINDOWS_1252, false);
        assert_eq!(
            decode_in_chunks(&mut d, b"caf\xe9 \x80 \x93q\x94", 2),
            "café € “q”"
        );
    }

    #[test]
    fn ascii_guess_falls_back_to_1252_at_first_invalid_byte_even_across_chunks() {
        for chunk in [1, 2, 5, 1000] {
            let mut d = TextDecoder::new(Encoding::UTF_8, true);
            let text = decode_in_chunks(&mut d, b"plain ascii\nthen caf\xe9\n", chunk);
            assert_eq!(text, "plain ascii\nthen café\n", "chunk {chunk}");
            assert_eq!(d.encoding(), Encoding::WINDOWS_1252);
            assert_eq!(d.fell_back_at(), Some(20));
        }
    }

    #[test]
    fn utf8_with_earlier_non_ascii_replaces_invalid_bytes() {
        let mut d = TextDecoder::new(Encoding::UTF_8, true);
        let text = decode_in_chunks(
            &mut d,
            "né\n"
                .as_bytes()
                .iter()
                .chain(b"x\xff\n")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
            2,
        );
        assert_eq!(text, "né\nx\u{FFFD}\n");
        assert_eq!(d.encoding(), Encoding::UTF_8);
        assert_eq!(d.replacements(), 1);
    }
}
