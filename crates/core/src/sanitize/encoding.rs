//! Turning the input bytes into UTF-8, chunk by chunk.

use encoding_rs::{DecoderResult, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};
use serde::{Serialize, Serializer};

/// The input encodings Sluice reads. Output is always UTF-8 without BOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Windows1252,
}

impl Encoding {
    /// The label used in config and reports.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Windows1252 => "windows-1252",
        }
    }

    /// Parses a config label; `latin1`/`iso-8859-1` mean Windows-1252, as browsers treat them.
    pub fn from_label(label: &str) -> Option<Self> {
        match label.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "utf-16le" | "utf16le" => Some(Encoding::Utf16Le),
            "utf-16be" | "utf16be" => Some(Encoding::Utf16Be),
            "windows-1252" | "cp1252" | "latin1" | "iso-8859-1" => Some(Encoding::Windows1252),
            _ => None,
        }
    }

    fn codec(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => UTF_8,
            Encoding::Utf16Le => UTF_16LE,
            Encoding::Utf16Be => UTF_16BE,
            Encoding::Windows1252 => WINDOWS_1252,
        }
    }

    /// Decodes a whole (small) buffer, dropping a BOM of this encoding; for sniffing.
    pub fn decode_sample(self, bytes: &[u8]) -> String {
        self.codec().decode_with_bom_removal(bytes).0.into_owned()
    }
}

impl Serialize for Encoding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

const OUT_CHUNK: usize = 64 * 1024;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// A streaming decoder to UTF-8.
///
/// UTF-8 that was only guessed from valid leading bytes falls back to Windows-1252 at the
/// first invalid byte if everything before it was ASCII (the two agree on ASCII, so nothing
/// already emitted changes). Otherwise invalid sequences become U+FFFD and are counted.
pub struct TextDecoder {
    encoding: Encoding,
    decoder: encoding_rs::Decoder,
    may_fall_back: bool,
    buf: Vec<u8>,
    /// Last raw bytes of the previous chunk: a bad sequence may have started there.
    tail: [u8; 3],
    tail_len: usize,
    offset: u64,
    replacements: u64,
    fell_back_at: Option<u64>,
}

impl TextDecoder {
    /// A decoder for `encoding`; `provisional` allows the Windows-1252 fallback for UTF-8.
    pub fn new(encoding: Encoding, provisional: bool) -> Self {
        Self {
            encoding,
            decoder: encoding.codec().new_decoder_with_bom_removal(),
            may_fall_back: provisional && encoding == Encoding::Utf8,
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

    /// Input byte offset at which UTF-8 was abandoned for Windows-1252, if it was.
    pub fn fell_back_at(&self) -> Option<u64> {
        self.fell_back_at
    }

    /// Decodes `raw`, handing UTF-8 pieces to `sink` in order. `last` flushes the decoder.
    pub fn push<E>(
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
                    self.fall_back(consumed, back, sink)?;
                    src = &raw[consumed.saturating_sub(back)..];
                }
                DecoderResult::Malformed(..) => {
                    self.replacements += 1;
                    sink(REPLACEMENT)?;
                }
            }
        }
        self.remember_tail(raw);
        self.offset += raw.len() as u64;
        Ok(())
    }

    /// Switches to Windows-1252 and re-decodes the bad sequence's bytes that came from the
    /// previous chunk; the caller re-feeds the ones in this chunk.
    fn fall_back<E>(
        &mut self,
        consumed: usize,
        back: usize,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.encoding = Encoding::Windows1252;
        self.decoder = WINDOWS_1252.new_decoder_without_bom_handling();
        self.may_fall_back = false;
        self.fell_back_at = Some((self.offset + consumed as u64).saturating_sub(back as u64));
        let from_tail = back.saturating_sub(consumed).min(self.tail_len);
        if from_tail > 0 {
            let tail = self.tail;
            let (_, _, written) = self.decoder.decode_to_utf8_without_replacement(
                &tail[self.tail_len - from_tail..self.tail_len],
                &mut self.buf,
                false,
            );
            sink(&self.buf[..written])?;
        }
        Ok(())
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
        let mut sink = |b: &[u8]| -> Result<(), ()> {
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
        let mut d = TextDecoder::new(Encoding::Utf8, false);
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
            let mut d = TextDecoder::new(Encoding::Utf16Le, false);
            assert_eq!(decode_in_chunks(&mut d, &le, chunk), "né,x");
            let mut d = TextDecoder::new(Encoding::Utf16Be, false);
            assert_eq!(decode_in_chunks(&mut d, &be, chunk), "né,x");
        }
    }

    #[test]
    fn windows_1252_maps_high_bytes() {
        let mut d = TextDecoder::new(Encoding::Windows1252, false);
        assert_eq!(
            decode_in_chunks(&mut d, b"caf\xe9 \x80 \x93q\x94", 2),
            "café € “q”"
        );
    }

    #[test]
    fn ascii_guess_falls_back_to_1252_at_first_invalid_byte_even_across_chunks() {
        for chunk in [1, 2, 5, 1000] {
            let mut d = TextDecoder::new(Encoding::Utf8, true);
            let text = decode_in_chunks(&mut d, b"plain ascii\nthen caf\xe9\n", chunk);
            assert_eq!(text, "plain ascii\nthen café\n", "chunk {chunk}");
            assert_eq!(d.encoding(), Encoding::Windows1252);
            assert_eq!(d.fell_back_at(), Some(20));
        }
    }

    #[test]
    fn utf8_with_earlier_non_ascii_replaces_invalid_bytes() {
        let mut d = TextDecoder::new(Encoding::Utf8, true);
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
        assert_eq!(d.encoding(), Encoding::Utf8);
        assert_eq!(d.replacements(), 1);
    }
}
