//! HTML/script markup in cells: finding it and making it inert.
//!
//! A cell counts as markup when it has a tag opener (`<` then a letter, `/`, `!` or `?`), an
//! event-handler attribute (`onerror=`, `onload =`, at a word start), or starts with a script
//! URL (`javascript:`, `vbscript:`, `livescript:`, `data:text/html`, `data:image/svg`; leading
//! whitespace and tabs or newlines inside the scheme are ignored, as browsers do). A scheme
//! further into the cell is not a URL's scheme, so it is left alone. Neutralizing escapes
//! `& < > " '` as HTML entities (no tag or attribute can open or close), writes the handler's
//! `=` as `&#61;`, and the scheme's `:` as `%3A` (an entity would be decoded back inside an
//! `href`, a percent escape is not, so the URL becomes a harmless relative one).

/// A cheap over-approximation of tags and handler attributes for many cells at once (a
/// record's cell bytes laid end to end): false means none of them holds either.
pub fn may_hold_tag_or_handler(bytes: &[u8]) -> bool {
    memchr::memchr2_iter(b'<', b'=', bytes).any(|i| {
        if bytes[i] == b'<' {
            return is_tag_start(bytes.get(i + 1));
        }
        let before = bytes[..i]
            .iter()
            .rev()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        before.is_some_and(u8::is_ascii_alphabetic)
    })
}

/// Whether the cell begins with a script URL; looks at a few leading bytes only.
pub fn starts_with_script_url(cell: &[u8]) -> bool {
    leading_scheme_colon(cell).is_some()
}

/// Whether the cell holds markup (see the module doc).
pub fn has_markup(cell: &[u8]) -> bool {
    has_tag(cell) || !handler_equals(cell).is_empty() || starts_with_script_url(cell)
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

/// Position of the `:` ending a script scheme at the start of the cell.
fn leading_scheme_colon(cell: &[u8]) -> Option<usize> {
    const LONGEST: usize = b"livescript".len();
    let mut i = cell.iter().position(|&b| b > b' ')?;
    if !matches!(cell[i] | 0x20, b'j' | b'v' | b'l' | b'd') {
        return None;
    }
    let mut word = [0u8; LONGEST];
    let mut len = 0;
    while let Some(&b) = cell.get(i) {
        if b.is_ascii_alphabetic() && len < LONGEST {
            word[len] = b.to_ascii_lowercase();
            len += 1;
        } else if !matches!(b, b'\t' | b'\r' | b'\n') {
            break;
        }
        i += 1;
    }
    (cell.get(i) == Some(&b':') && is_script_scheme(&word[..len], &cell[i + 1..])).then_some(i)
}

fn is_script_scheme(word: &[u8], after: &[u8]) -> bool {
    match word {
        b"javascript" | b"vbscript" | b"livescript" => true,
        b"data" => {
            let rest: Vec<u8> = after
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
    let mut defuse = handler_equals(bytes);
    defuse.extend(leading_scheme_colon(bytes));
    for (i, c) in cell.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '=' if defuse.contains(&i) => out.push_str("&#61;"),
            ':' if defuse.contains(&i) => out.push_str("%3A"),
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
        ] {
            assert!(has_markup(cell.as_bytes()), "{cell:?}");
            let bytes = cell.as_bytes();
            assert!(
                may_hold_tag_or_handler(bytes) || starts_with_script_url(bytes),
                "{cell:?}"
            );
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
            "see javascript:alert(1) in the docs",
            "Dmitri",
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
        for cell in [
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
