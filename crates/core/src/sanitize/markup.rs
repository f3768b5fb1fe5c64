//! HTML/script markup in cells: finding it and making it inert.
//!
//! A cell counts as markup when it has a tag opener (`<` then a letter, `/`, `!` or `?`), an
//! event-handler attribute (`onerror=`, `onload =`, at a word start), or a script URL anywhere
//! in it (`javascript:`, `vbscript:`, `livescript:`, `data:text/html`, `data:image/svg`, as a
//! word of its own, so inside `<a href="javascript:...">` too). Browsers ignore whitespace and
//! control characters inside a scheme and decode character references in attributes, so
//! `java<TAB>script:`, `javascript&#58;`, `javascript&#x3a;` and `javascript&colon;` count as
//! well. Neutralizing escapes `& < > " '` as HTML entities (no tag or attribute can open or
//! close), writes a handler's `=` as `&#61;`, and a script scheme's colon (the character or
//! its reference) as `%3A` (an entity would be decoded back inside an `href`, a percent escape
//! is not, so the URL becomes a harmless relative one).

use std::ops::Range;

/// A cheap over-approximation for many cells at once (a record's cell bytes laid end to end):
/// false means none of them holds a tag, a handler attribute or a script URL.
pub fn may_hold_markup(bytes: &[u8]) -> bool {
    memchr::memchr3_iter(b'<', b'=', b':', bytes).any(|i| match bytes[i] {
        b'<' => is_tag_start(bytes.get(i + 1)),
        b'=' => {
            let before = bytes[..i]
                .iter()
                .rev()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            before.is_some_and(u8::is_ascii_alphabetic)
        }
        // Cells laid end to end have no boundaries: a scheme may follow the last letter or
        // digit of the cell before.
        _ => is_script_colon(bytes, i..i + 1, false),
    }) || memchr::memchr_iter(b'&', bytes).any(|i| {
        colon_reference_len(&bytes[i..])
            .is_some_and(|len| is_script_colon(bytes, i..i + len, false))
    })
}

/// Whether the cell holds markup (see the module doc).
pub fn has_markup(cell: &[u8]) -> bool {
    has_tag(cell) || !handler_equals(cell).is_empty() || !script_colons(cell).is_empty()
}

fn is_tag_start(next: Option<&u8>) -> bool {
    next.is_some_and(|&n| n.is_ascii_alphabetic() || matches!(n, b'/' | b'!' | b'?'))
}

fn has_tag(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'<', bytes).any(|i| is_tag_start(bytes.get(i + 1)))
}

/// Byte positions of the `=` of event-handler attributes.
fn handler_equals(bytes: &[u8]) -> Vec<usize> {
    memchr::memchr_iter(b'=', bytes)
        .filter(|&i| is_handler_name(&word_before(bytes, i)))
        .collect()
}

/// The run of ASCII letters (lower-cased) ending just before `end`, skipping whitespace
/// between it and `end` and tab/CR/LF inside it; empty if the run does not start a word.
fn word_before(bytes: &[u8], end: usize) -> Vec<u8> {
    let mut i = end;
    while i > 0 && matches!(bytes[i - 1], b' ' | b'\t' | b'\r' | b'\n') {
        i -= 1;
    }
    let mut word = Vec::new();
    while i > 0 {
        let b = bytes[i - 1];
        if b.is_ascii_alphabetic() {
            word.push(b.to_ascii_lowercase());
        } else if !matches!(b, b'\t' | b'\r' | b'\n') {
            break;
        }
        i -= 1;
        if word.len() > 32 {
            return Vec::new();
        }
    }
    if i > 0 && bytes[i - 1].is_ascii_digit() {
        return Vec::new();
    }
    word.reverse();
    word
}

fn is_handler_name(word: &[u8]) -> bool {
    word.len() >= 5 && word.starts_with(b"on")
}

/// The byte ranges of colons (`:` or a character reference to it) that end a script scheme.
fn script_colons(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    for i in memchr::memchr2_iter(b':', b'&', bytes) {
        let len = if bytes[i] == b':' {
            Some(1)
        } else {
            colon_reference_len(&bytes[i..])
        };
        if let Some(len) = len {
            if is_script_colon(bytes, i..i + len, true) {
                found.push(i..i + len);
            }
        }
    }
    found
}

/// The length of the character reference to `:` at the start of `bytes` (`&colon;`, `&#58;`,
/// `&#x3A;`, with leading zeros, and the `;` optional after a numeric one), if it is one.
fn colon_reference_len(bytes: &[u8]) -> Option<usize> {
    const NAMED: &[u8] = b"&colon;";
    if bytes.len() >= NAMED.len() && bytes[..NAMED.len()].eq_ignore_ascii_case(NAMED) {
        return Some(NAMED.len());
    }
    let rest = bytes.strip_prefix(b"&#")?;
    let (hex, digits) = match rest.first() {
        Some(b'x' | b'X') => (true, &rest[1..]),
        _ => (false, rest),
    };
    let n = digits
        .iter()
        .take_while(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count();
    if n == 0 || n > 8 {
        return None;
    }
    let text = std::str::from_utf8(&digits[..n]).ok()?;
    let value = u32::from_str_radix(text, if hex { 16 } else { 10 }).ok()?;
    let semicolon = usize::from(digits.get(n) == Some(&b';'));
    (value == u32::from(b':')).then_some(2 + usize::from(hex) + n + semicolon)
}

/// Whether the colon at `colon` ends a script scheme: the scheme's letters right before it,
/// with tabs, line breaks or other control characters anywhere among them (browsers drop
/// those from URLs), and, when `word_start`, not preceded by a letter or digit.
fn is_script_colon(bytes: &[u8], colon: Range<usize>, word_start: bool) -> bool {
    const LONGEST: usize = b"javascript".len();
    let mut word = [0u8; LONGEST + 1];
    let mut len = 0;
    let mut i = colon.start;
    while i > 0 {
        let b = bytes[i - 1];
        if b.is_ascii_alphabetic() {
            if len > LONGEST {
                if word_start {
                    return false;
                }
                break;
            }
            word[len] = b.to_ascii_lowercase();
            len += 1;
        } else if !(b < b' ' || b == 0x7f) {
            break;
        }
        i -= 1;
    }
    if word_start && i > 0 && bytes[i - 1].is_ascii_digit() {
        return false;
    }
    let word = &mut word[..len];
    word.reverse();
    let word = if word_start {
        &*word
    } else {
        // Any ending of the letters may be the scheme.
        let ends = [
            b"javascript".as_slice(),
            b"vbscript",
            b"livescript",
            b"data",
        ];
        match ends.into_iter().find(|end| word.ends_with(end)) {
            Some(end) => end,
            None => return false,
        }
    };
    match word {
        b"javascript" | b"vbscript" | b"livescript" => true,
        b"data" => {
            let rest: Vec<u8> = bytes[colon.end..]
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take(13)
                .map(u8::to_ascii_lowercase)
                .collect();
            rest.starts_with(b"text/html") || rest.starts_with(b"image/svg")
        }
        _ => false,
    }
}

/// Appends the inert form of `cell` to `out` (see the module doc).
pub fn neutralize(cell: &str, out: &mut String) {
    let bytes = cell.as_bytes();
    let equals = handler_equals(bytes);
    let mut colons = script_colons(bytes).into_iter().peekable();
    let mut skip_to = 0;
    for (i, c) in cell.char_indices() {
        if i < skip_to {
            continue;
        }
        if colons.peek().is_some_and(|r| r.start == i) {
            let range = colons.next().unwrap_or(i..i + 1);
            out.push_str("%3A");
            skip_to = range.end;
            continue;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '=' if equals.contains(&i) => out.push_str("&#61;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inert(cell: &str) -> String {
        let mut out = String::new();
        neutralize(cell, &mut out);
        out
    }

    #[test]
    fn finds_tags_handlers_and_script_urls() {
        for cell in [
            "<script>alert(1)</script>",
            "hi <img src=x onerror=alert(1)>",
            "</textarea>",
            "<!-- x -->",
            "\" onmouseover=\"alert(1)",
            "x ONLOAD = go()",
            "javascript:alert(1)",
            "  JaVa\tScRiPt:alert(1)",
            "vbscript:msgbox",
            "data:text/html;base64,PHNjcmlwdD4=",
            "see javascript:alert(1) in the docs",
            "<a href=\"javascript:alert(1)\">x</a>",
            "click javascript&#58;alert(1)",
            "javascript&#x3A;alert(1)",
            "javascript&#0058alert(1)",
            "javascript&colon;alert(1)",
            "java\u{0}script:alert(1)",
            "java\nscript:alert(1)",
            "x data: text/html,<b>",
        ] {
            assert!(has_markup(cell.as_bytes()), "{cell:?}");
            let bytes = cell.as_bytes();
            assert!(may_hold_markup(bytes), "{cell:?}");
        }
    }

    #[test]
    fn ordinary_text_is_not_markup() {
        for cell in [
            "a < b",
            "3<4",
            "Station=Oxford",
            "once=1",
            "12:30:00",
            "https://example.com/a?b=c",
            "ratio 1:2",
            "mydata:1",
            "Dmitri",
            "myjavascript:1",
            "2javascript:1",
            "metadata:text/html",
            "Note: see &#58; and &amp;",
            "tom&jerry",
        ] {
            assert!(!has_markup(cell.as_bytes()), "{cell:?}");
        }
    }

    #[test]
    fn neutralized_markup_has_no_live_tag_handler_or_scheme() {
        assert_eq!(
            inert("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(
            inert("\" onmouseover=\"go()"),
            "&quot; onmouseover&#61;&quot;go()"
        );
        assert_eq!(inert("javascript:alert(1)"), "javascript%3Aalert(1)");
        assert_eq!(
            inert("<a href=\"javascript:go()\">x</a>"),
            "&lt;a href=&quot;javascript%3Ago()&quot;&gt;x&lt;/a&gt;"
        );
        assert_eq!(inert("see javascript&#58;go()"), "see javascript%3Ago()");
        assert_eq!(inert("JavaScript&colon;go()"), "JavaScript%3Ago()");
        assert_eq!(inert("java\tscript&#x3a;go()"), "java\tscript%3Ago()");
        for cell in [
            "see javascript&#58;x",
            "<a href=\"vbscript:x\">",
            "data:text/html,<b>",
            "<img src=x onerror=alert(1)>",
            "javascript:x",
            "\" onload=\"x",
        ] {
            assert!(
                !has_markup(inert(cell).as_bytes()),
                "{cell:?} -> {}",
                inert(cell)
            );
        }
    }
}
