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
    if encoding.is_utf16() {
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
/// validity; anything else is a legacy encoding told by [`detect_legacy`], which may refuse.
/// `at_eof` says `head` is the whole file.
pub fn guess_encoding(head: &[u8], at_eof: bool) -> Result<EncodingGuess, String> {
    let guess = |encoding, bom, provisional| EncodingGuess {
        encoding,
        bom,
        provisional,
    };
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Ok(guess(Encoding::UTF_8, true, false));
    }
    if head.starts_with(b"\xFF\xFE") {
        return Ok(guess(Encoding::UTF_16LE, true, false));
    }
    if head.starts_with(b"\xFE\xFF") {
        return Ok(guess(Encoding::UTF_16BE, true, false));
    }
    if let Some(encoding) = bomless_utf16(head) {
        return Ok(guess(encoding, false, false));
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(guess(Encoding::UTF_8, false, true)),
        // Cut mid-character at the end of the sniff window: still UTF-8.
        Err(e) if e.error_len().is_none() && !at_eof => Ok(guess(Encoding::UTF_8, false, true)),
        Err(_) => Ok(guess(detect_legacy(head, at_eof)?, false, false)),
    }
}

/// Picks the legacy (non-UTF) encoding of `bytes` with chardetng, which weighs the non-ASCII
/// bytes against letter-pair statistics of each language's encodings. `at_eof` says `bytes`
/// run to the end of the file (else a multi-byte character may be cut at the end).
///
/// chardetng never proposes Mac OS Roman; text it would read as Windows-1252 but whose lines
/// end in bare CR (the classic Mac OS convention) is taken as Mac OS Roman.
///
/// Refuses, with a reason that names the likely encoding and the setting that would force it,
/// when chardetng is not confident or when the likely encoding does not fit the bytes (an
/// invalid sequence, or a byte the encoding leaves undefined): garbled text is never accepted
/// silently.
pub fn detect_legacy(bytes: &[u8], at_eof: bool) -> Result<Encoding, String> {
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, at_eof);
    let (guess, confident) = detector.guess_assess(None, false);
    let mut encoding = Encoding::from_label(guess.name()).unwrap_or(Encoding::WINDOWS_1252);
    // A handful of non-ASCII bytes cannot tell a script apart: take the Western default when
    // it fits, as browsers do, rather than a coin toss between CJK and Central European.
    let evidence = bytes.iter().filter(|&&b| b >= 0x80).count();
    if evidence < MIN_EVIDENCE_BYTES && misfit(bytes, Encoding::WINDOWS_1252, at_eof).is_none() {
        encoding = Encoding::WINDOWS_1252;
    }
    if classic_mac_line_endings(bytes)
        && implausibility(bytes, Encoding::MACINTOSH) < implausibility(bytes, encoding)
    {
        encoding = Encoding::MACINTOSH;
    }
    let label = encoding.label();
    let force = format!(
        "if it is, set `encoding = \"{label}\"` in the dataset's [sanitize] settings (or the \
         encoding the file really is in)"
    );
    let western = encoding == Encoding::WINDOWS_1252 || encoding == Encoding::MACINTOSH;
    let doubt = if evidence < MIN_EVIDENCE_BYTES && !western {
        Some(format!("only {evidence} non-ASCII bytes are there to tell"))
    } else if !confident {
        Some("not clearly".to_string())
    } else {
        misfit(bytes, encoding, at_eof)
    };
    match doubt {
        None => Ok(encoding),
        Some(doubt) => Err(format!(
            "cannot tell the text encoding: the bytes are not UTF-8 and look most like \
             {label}, but {doubt}; {force}"
        )),
    }
}

/// Non-ASCII bytes below which a script other than Western Latin (Windows-1252, or Mac OS
/// Roman, which has its own test) is not taken.
const MIN_EVIDENCE_BYTES: usize = 16;

/// Line breaks are bare CRs only.
fn classic_mac_line_endings(bytes: &[u8]) -> bool {
    memchr::memchr(b'\r', bytes).is_some() && memchr::memchr(b'\n', bytes).is_none()
}

/// How badly `bytes` read as text in `encoding`: a C1 control (a byte the encoding leaves
/// undefined) weighs 10, a non-ASCII symbol wedged between a letter and a letter (`S¸d`,
/// `George‰Û`) weighs 1. Used only to tell Mac OS Roman from Windows-1252, which chardetng
/// does not do.
fn implausibility(bytes: &[u8], encoding: Encoding) -> u64 {
    let (text, _) = encoding.codec().decode_without_bom_handling(bytes);
    let chars: Vec<char> = text.chars().collect();
    let mut score = 0;
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() {
            continue;
        }
        if ('\u{80}'..='\u{9f}').contains(&c) {
            score += 10;
        } else if !c.is_alphabetic()
            && i > 0
            && chars[i - 1].is_ascii_alphabetic()
            && chars.get(i + 1).is_some_and(|n| n.is_alphabetic())
        {
            score += 1;
        }
    }
    score
}

/// Why `encoding` does not fit `bytes`, if it does not.
fn misfit(bytes: &[u8], encoding: Encoding, at_eof: bool) -> Option<String> {
    let label = encoding.label();
    let mut decoder = encoding.codec().new_decoder_without_bom_handling();
    let mut text = String::with_capacity(
        decoder
            .max_utf8_buffer_length_without_replacement(bytes.len())
            .unwrap_or(bytes.len() * 3),
    );
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut text, at_eof);
    if let encoding_rs::DecoderResult::Malformed(bad, after) = result {
        let at = read - usize::from(bad) - usize::from(after);
        return Some(format!(
            "the bytes at offset {at} of this sample are not valid {label}"
        ));
    }
    // Single-byte encodings map the bytes they leave undefined to C1 controls.
    text.chars()
        .find(|c| ('\u{80}'..='\u{9f}').contains(c))
        .map(|c| format!("byte 0x{:02X} is undefined in {label}", u32::from(c)))
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
        Some(Encoding::UTF_16LE)
    } else if mostly(even_nul) && hardly(odd_nul) {
        Some(Encoding::UTF_16BE)
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
        let err = check_is_text(zip, Encoding::UTF_8).unwrap_err();
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
            let err = check_is_text(bytes, Encoding::UTF_8).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn accepts_csv_whose_header_starts_like_a_magic_number() {
        // "BM" is the bitmap signature and "MZ" the DOS executable one.
        assert!(check_is_text(b"BMI,weight\n22.5,70\n", Encoding::UTF_8).is_ok());
        assert!(check_is_text(b"MZ_code,site\n1,2\n", Encoding::UTF_8).is_ok());
    }

    #[test]
    fn rejects_nul_dense_data_but_not_utf16() {
        let mut data = b"a,b\n".repeat(10);
        data.extend_from_slice(&[0u8; 20]);
        let err = check_is_text(&data, Encoding::UTF_8).unwrap_err();
        assert!(err.contains("NUL"), "{err}");
        assert!(check_is_text(&data, Encoding::UTF_16LE).is_ok());
    }

    #[test]
    fn accepts_a_stray_nul_in_text() {
        let mut data = b"id,name\n".repeat(20);
        data.push(0);
        assert!(check_is_text(&data, Encoding::UTF_8).is_ok());
    }

    #[test]
    fn rejects_html_page() {
        let err = check_is_text(b"<!DOCTYPE html><html><body>", Encoding::UTF_8).unwrap_err();
        assert!(err.contains("HTML"), "{err}");
    }

    #[test]
    fn encoding_from_boms() {
        assert_eq!(
            guess_encoding(b"\xEF\xBB\xBFa,b", true).unwrap().encoding,
            Encoding::UTF_8
        );
        assert!(guess_encoding(b"\xEF\xBB\xBFa,b", true).unwrap().bom);
        assert_eq!(
            guess_encoding(b"\xFF\xFEa\x00", true).unwrap().encoding,
            Encoding::UTF_16LE
        );
        assert_eq!(
            guess_encoding(b"\xFE\xFF\x00a", true).unwrap().encoding,
            Encoding::UTF_16BE
        );
    }

    #[test]
    fn encoding_from_bytes() {
        assert_eq!(
            guess_encoding("café,b".as_bytes(), true).unwrap().encoding,
            Encoding::UTF_8
        );
        assert_eq!(
            guess_encoding(b"caf\xe9,b", true).unwrap().encoding,
            Encoding::WINDOWS_1252
        );
        // A multi-byte character cut by the end of the sniff window is still UTF-8.
        assert_eq!(
            guess_encoding(b"caf\xc3", false).unwrap().encoding,
            Encoding::UTF_8
        );
        assert_eq!(
            guess_encoding(b"a\x00,\x00b\x00\n\x00", true)
                .unwrap()
                .encoding,
            Encoding::UTF_16LE
        );
        assert_eq!(
            guess_encoding(b"\x00a\x00,\x00b\x00\n", true)
                .unwrap()
                .encoding,
            Encoding::UTF_16BE
        );
    }

    #[test]
    fn legacy_encodings_are_told_by_their_letters() {
        let greek = "id,name\n1,Λεωνίδας Παπαδόπουλος\n2,Αλέξανδρος Οικονόμου\n";
        let (bytes, _, _) = encoding_rs::ISO_8859_7.encode(greek);
        let found = guess_encoding(&bytes, true).unwrap().encoding;
        assert!(
            matches!(found.label().as_str(), "iso-8859-7" | "windows-1253"),
            "{found:?}"
        );

        let chinese = "id,名稱,地址\n1,臺北市政府,臺北市信義區市府路一號\n2,高雄市政府,高雄市苓雅區四維三路二號\n";
        let (bytes, _, _) = encoding_rs::BIG5.encode(chinese);
        assert_eq!(
            guess_encoding(&bytes, true).unwrap().encoding.label(),
            "big5"
        );

        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode("name\nJosé Müller\n");
        assert_eq!(
            guess_encoding(&bytes, true).unwrap().encoding,
            Encoding::WINDOWS_1252
        );
    }

    #[test]
    fn mac_roman_is_told_from_windows_1252_by_where_symbols_fall() {
        // What a UTF-8 apostrophe becomes in a Mac file that went through Windows-1252: 1252
        // would read `George‰Ûªs`, and leave 0x9D undefined.
        let bytes =
            b"id,text\r1,Prince George\x89\xdb\xaas County\r2,Columbia.\x89\xdb\x9d\r".repeat(3);
        assert_eq!(
            guess_encoding(&bytes, true).unwrap().encoding,
            Encoding::MACINTOSH
        );
        // Windows-1252 with bare CR line breaks stays Windows-1252: Mac OS Roman would read
        // `Stn ñ S¸d`.
        let bytes = b"site;station\rLeeds;Garforth Stn \x96 S\xfcd\rYork;K\xf6ln\r";
        assert_eq!(
            guess_encoding(bytes, true).unwrap().encoding,
            Encoding::WINDOWS_1252
        );
    }

    #[test]
    fn too_little_evidence_for_anything_but_windows_1252_is_refused() {
        let err = guess_encoding(b"id,name\n1,caf\x81e\n", true).unwrap_err();
        assert!(err.contains("cannot tell the text encoding"), "{err}");
        assert!(err.contains("set `encoding = "), "{err}");
    }

    #[test]
    fn an_encoding_that_leaves_a_byte_undefined_does_not_fit() {
        let problem = misfit(b"ab\x81c", Encoding::WINDOWS_1252, true).unwrap();
        assert!(problem.contains("0x81"), "{problem}");
        assert_eq!(misfit(b"caf\xe9", Encoding::WINDOWS_1252, true), None);
        assert!(misfit(b"\xa4\x40\xff", Encoding::from_label("big5").unwrap(), true).is_some());
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
