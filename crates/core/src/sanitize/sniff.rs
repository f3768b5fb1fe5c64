//! Looking at the first bytes of a file: is it text at all, which encoding, which delimiter.

use super::Encoding;

/// How many bytes are looked at before deciding encoding and delimiter.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// What the first bytes say about the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingGuess {
    pub encoding: Encoding,
    /// A byte-order mark was present (and is removed).
    pub bom: bool,
    /// UTF-8 guessed from valid bytes: may still turn out to be Windows-1252 later in the file.
    pub provisional: bool,
}

/// Refuses what is plainly not a text file, naming what it looks like.
///
/// `head` is the start of the file (up to [`SNIFF_BYTES`]); `encoding` is what the BOM or the
/// byte pattern said, because UTF-16 text legitimately has many NUL bytes.
pub fn check_is_text(head: &[u8], encoding: Encoding) -> Result<(), String> {
    if let Some(kind) = binary_format(head) {
        return Err(format!("not a CSV file: it looks like {kind}"));
    }
    if matches!(encoding, Encoding::Utf16Le | Encoding::Utf16Be) {
        return Ok(());
    }
    let nuls = memchr::memchr_iter(0, head).count();
    // A stray NUL or two is dirt to clean; many of them mean binary data.
    if nuls > 4 && nuls * 100 > head.len() {
        return Err(format!(
            "not a CSV file: binary data ({nuls} NUL bytes in the first {} bytes)",
            head.len()
        ));
    }
    let controls = head.iter().filter(|&&b| is_binary_control(b)).count();
    if controls > 4 && controls * 20 > head.len() {
        return Err(format!(
            "not a CSV file: binary data ({controls} control bytes in the first {} bytes)",
            head.len()
        ));
    }
    Ok(())
}

fn is_binary_control(b: u8) -> bool {
    matches!(b, 0x01..=0x08 | 0x0e..=0x1f)
}

/// Names the format of a file that is an archive, document, spreadsheet, image, executable
/// or other binary format, by its magic bytes.
fn binary_format(head: &[u8]) -> Option<String> {
    if head.starts_with(b"%PDF-") {
        return Some("a PDF document (.pdf)".into());
    }
    if head.starts_with(b"{\\rtf") {
        return Some("an RTF document (.rtf)".into());
    }
    if infer::text::is_html(head) {
        return Some("an HTML page (.html)".into());
    }
    if infer::text::is_xml(head) {
        return Some("an XML document (.xml)".into());
    }
    let kind = infer::get(head)?;
    // Some signatures are plain letters ("BM" for a bitmap, "MZ" for an executable) that a
    // CSV header may start with; binary formats have control bytes near the start too.
    let prefix = &head[..head.len().min(64)];
    if !prefix
        .iter()
        .any(|&b| b == 0 || is_binary_control(b) || b == 0x7f)
    {
        return None;
    }
    let what = match kind.matcher_type() {
        infer::MatcherType::Archive => "an archive",
        infer::MatcherType::Doc => "a document or spreadsheet",
        infer::MatcherType::Book => "an e-book",
        infer::MatcherType::Image => "an image",
        infer::MatcherType::Audio => "an audio file",
        infer::MatcherType::Video => "a video",
        infer::MatcherType::Font => "a font",
        infer::MatcherType::App => "an executable or application file",
        infer::MatcherType::Text | infer::MatcherType::Custom => "a binary file",
    };
    Some(format!(
        "{what} (.{}, {})",
        kind.extension(),
        kind.mime_type()
    ))
}

/// Decides the encoding from a byte-order mark, the NUL pattern of BOM-less UTF-16, or UTF-8
/// validity; anything else is taken as Windows-1252. `at_eof` says `head` is the whole file.
pub fn guess_encoding(head: &[u8], at_eof: bool) -> EncodingGuess {
    let guess = |encoding, bom, provisional| EncodingGuess {
        encoding,
        bom,
        provisional,
    };
    if head.starts_with(b"\xEF\xBB\xBF") {
        return guess(Encoding::Utf8, true, false);
    }
    if head.starts_with(b"\xFF\xFE") {
        return guess(Encoding::Utf16Le, true, false);
    }
    if head.starts_with(b"\xFE\xFF") {
        return guess(Encoding::Utf16Be, true, false);
    }
    if let Some(encoding) = bomless_utf16(head) {
        return guess(encoding, false, false);
    }
    match std::str::from_utf8(head) {
        Ok(_) => guess(Encoding::Utf8, false, true),
        // Cut mid-character at the end of the sniff window: still UTF-8.
        Err(e) if e.error_len().is_none() && !at_eof => guess(Encoding::Utf8, false, true),
        Err(_) => guess(Encoding::Windows1252, false, false),
    }
}

/// ASCII text in UTF-16 has a NUL in every other byte: LE puts them at odd offsets.
fn bomless_utf16(head: &[u8]) -> Option<Encoding> {
    let pairs = head.len() / 2;
    if pairs < 2 {
        return None;
    }
    let (mut even_nul, mut odd_nul) = (0usize, 0usize);
    for pair in head.chunks_exact(2) {
        even_nul += usize::from(pair[0] == 0);
        odd_nul += usize::from(pair[1] == 0);
    }
    let mostly = |n: usize| n * 10 >= pairs * 9;
    let hardly = |n: usize| n * 100 <= pairs;
    if mostly(odd_nul) && hardly(even_nul) {
        Some(Encoding::Utf16Le)
    } else if mostly(even_nul) && hardly(odd_nul) {
        Some(Encoding::Utf16Be)
    } else {
        None
    }
}

/// The delimiters tried, in order of preference on a tie.
pub const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Picks the delimiter whose parse of the sample gives the most consistent field count
/// (above one field); `,` when none splits anything. `text` is decoded UTF-8; its last record
/// is ignored unless `complete`, as it may be cut.
pub fn sniff_delimiter(text: &[u8], complete: bool) -> u8 {
    let mut best: Option<(Score, u8)> = None;
    for delimiter in DELIMITERS {
        let Some(score) = score_delimiter(text, delimiter, complete) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, delimiter));
        }
    }
    best.map_or(b',', |(_, d)| d)
}

/// Ordered: consistency first, then whether the header agrees, then more fields.
#[derive(Debug, PartialEq, PartialOrd)]
struct Score {
    consistency: u32,
    header_agrees: bool,
    fields: usize,
}

fn score_delimiter(text: &[u8], delimiter: u8, complete: bool) -> Option<Score> {
    const MAX_RECORDS: usize = 200;
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut out = vec![0u8; text.len() + 1];
    let mut ends = vec![0usize; 4096];
    let mut counts: Vec<usize> = Vec::new();
    let mut input = text;
    loop {
        let (res, nin, _, nend) = reader.read_record(input, &mut out, &mut ends);
        input = &input[nin..];
        match res {
            csv_core::ReadRecordResult::Record => {
                let blank = nend == 1 && ends[0] == 0;
                if !blank {
                    counts.push(nend);
                }
                if counts.len() >= MAX_RECORDS {
                    break;
                }
            }
            csv_core::ReadRecordResult::InputEmpty if input.is_empty() && complete => {
                // Flush the final record (no trailing newline).
                continue_final(&mut reader, &mut out, &mut ends, &mut counts);
                break;
            }
            csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => break,
            // A record wider than the sample: this delimiter splits far too much.
            csv_core::ReadRecordResult::OutputFull | csv_core::ReadRecordResult::OutputEndsFull => {
                return None
            }
        }
    }
    let header = *counts.first()?;
    let mut freq: Vec<(usize, usize)> = Vec::new();
    for &c in &counts {
        match freq.iter_mut().find(|(n, _)| *n == c) {
            Some((_, f)) => *f += 1,
            None => freq.push((c, 1)),
        }
    }
    let (mode, mode_freq) = freq.into_iter().max_by_key(|&(n, f)| (f, n))?;
    if mode < 2 {
        return None;
    }
    Some(Score {
        consistency: (mode_freq * 1000 / counts.len()) as u32,
        header_agrees: header == mode,
        fields: mode,
    })
}

fn continue_final(
    reader: &mut csv_core::Reader,
    out: &mut [u8],
    ends: &mut [usize],
    counts: &mut Vec<usize>,
) {
    let (res, _, _, nend) = reader.read_record(&[], out, ends);
    if res == csv_core::ReadRecordResult::Record && !(nend == 1 && ends[0] == 0) {
        counts.push(nend);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zip_disguised_as_csv() {
        let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00orders.csv\x00\x00\x00";
        let err = check_is_text(zip, Encoding::Utf8).unwrap_err();
        assert!(err.contains("archive") && err.contains("zip"), "{err}");
    }

    #[test]
    fn rejects_gzip_pdf_png_elf_and_legacy_excel() {
        let mut elf = [0u8; 64];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let cases: [(&[u8], &str); 5] = [
            (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "gz"),
            (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
            (
                b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
                "image",
            ),
            (&elf, "executable"),
            (
                b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\x00\x00\x00\x00\x00\x00\x00\x00",
                "document or spreadsheet",
            ),
        ];
        for (bytes, expected) in cases {
            let err = check_is_text(bytes, Encoding::Utf8).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn accepts_csv_whose_header_starts_like_a_magic_number() {
        // "BM" is the bitmap signature and "MZ" the DOS executable one.
        assert!(check_is_text(b"BMI,weight\n22.5,70\n", Encoding::Utf8).is_ok());
        assert!(check_is_text(b"MZ_code,site\n1,2\n", Encoding::Utf8).is_ok());
    }

    #[test]
    fn rejects_nul_dense_data_but_not_utf16() {
        let mut data = b"a,b\n".repeat(10);
        data.extend_from_slice(&[0u8; 20]);
        let err = check_is_text(&data, Encoding::Utf8).unwrap_err();
        assert!(err.contains("NUL"), "{err}");
        assert!(check_is_text(&data, Encoding::Utf16Le).is_ok());
    }

    #[test]
    fn accepts_a_stray_nul_in_text() {
        let mut data = b"id,name\n".repeat(20);
        data.push(0);
        assert!(check_is_text(&data, Encoding::Utf8).is_ok());
    }

    #[test]
    fn rejects_html_page() {
        let err = check_is_text(b"<!DOCTYPE html><html><body>", Encoding::Utf8).unwrap_err();
        assert!(err.contains("HTML"), "{err}");
    }

    #[test]
    fn encoding_from_boms() {
        assert_eq!(
            guess_encoding(b"\xEF\xBB\xBFa,b", true).encoding,
            Encoding::Utf8
        );
        assert!(guess_encoding(b"\xEF\xBB\xBFa,b", true).bom);
        assert_eq!(
            guess_encoding(b"\xFF\xFEa\x00", true).encoding,
            Encoding::Utf16Le
        );
        assert_eq!(
            guess_encoding(b"\xFE\xFF\x00a", true).encoding,
            Encoding::Utf16Be
        );
    }

    #[test]
    fn encoding_from_bytes() {
        assert_eq!(
            guess_encoding("café,b".as_bytes(), true).encoding,
            Encoding::Utf8
        );
        assert_eq!(
            guess_encoding(b"caf\xe9,b", true).encoding,
            Encoding::Windows1252
        );
        // A multi-byte character cut by the end of the sniff window is still UTF-8.
        assert_eq!(guess_encoding(b"caf\xc3", false).encoding, Encoding::Utf8);
        assert_eq!(
            guess_encoding(b"a\x00,\x00b\x00\n\x00", true).encoding,
            Encoding::Utf16Le
        );
        assert_eq!(
            guess_encoding(b"\x00a\x00,\x00b\x00\n", true).encoding,
            Encoding::Utf16Be
        );
    }

    #[test]
    fn sniffs_each_delimiter() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1,2,3\n", true), b',');
        assert_eq!(sniff_delimiter(b"a;b;c\n1;2,5;3\n4;5,0;6\n", true), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n1\t2\t3\n", true), b'\t');
        assert_eq!(sniff_delimiter(b"a|b|c\n1|2|3\n", true), b'|');
    }

    #[test]
    fn sniffing_ignores_delimiters_inside_quotes() {
        let text = b"name;note\n\"Smith, J\";\"a, b, c\"\n\"Doe, K\";\"x\"\n";
        assert_eq!(sniff_delimiter(text, true), b';');
    }

    #[test]
    fn single_column_file_defaults_to_comma() {
        assert_eq!(sniff_delimiter(b"email\na@example.com\n", true), b',');
    }
}
