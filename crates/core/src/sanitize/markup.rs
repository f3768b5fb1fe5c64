//! HTML/script markup in cells: finding it and making it inert.
//!
//! A cell counts as markup when it has a tag opener (`<` then a letter, `/`, `!` or `?`), an
//! event-handler attribute (`onerror=`, `onload =`, at a word start), or a script URL scheme
//! (`javascript:`, `vbscript:`, `livescript:`, `data:text/html`, even with tabs or newlines
//! inside the scheme, which browsers ignore). Neutralizing it escapes `& < > " '` as HTML
//! entities (no tag or attribute can open or close), writes the handler's `=` as `&#61;`, and
//! the scheme's `:` as `%3A` (an entity would be decoded back inside an `href`, a percent
//! escape is not, so the URL becomes a harmless relative one).

/// A cheap over-approximation of [`has_markup`] for many cells at once (a record's cell
/// bytes laid end to end): false means none of them holds markup.
pub fn may_hold_markup(bytes: &[u8]) -> bool {
    memchr::memchr3_iter(b'<', b'=', b':', bytes).any(|i| {
        if bytes[i] == b'<' {
            return bytes
                .get(i + 1)
                .is_some_and(|&n| n.is_ascii_alphabetic() || matches!(n, b'/' | b'!' | b'?'));
        }
        let before = bytes[..i]
            .iter()
            .rev()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        before.is_some_and(u8::is_ascii_alphabetic)
    })
}

/// Whether the cell holds markup (see the module doc).
pub fn has_markup(cell: &[u8]) -> bool {
    has_tag(cell) || !defused_positions(cell).is_empty()
}

fn has_tag(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'<', bytes).any(|i| {
        bytes
            .get(i + 1)
            .is_some_and(|&n| n.is_ascii_alphabetic() || matches!(n, b'/' | b'!' | b'?'))
    })
}

/// Byte positions of handler `=` and scheme `:` that must be defused.
fn defused_positions(bytes: &[u8]) -> Vec<usize> {
    let mut hits = Vec::new();
    for i in memchr::memchr2_iter(b'=', b':', bytes) {
        let word = letters_before(bytes, i);
        let hit = match bytes[i] {
            b'=' => is_handler_name(&word),
            _ => is_script_scheme(&word, &bytes[i + 1..]),
        };
        if hit {
            hits.push(i);
        }
    }
    hits
}

/// The run of ASCII letters (lower-cased) ending just before `end`, skipping whitespace
/// between it and `end` and tab/CR/LF inside it; empty if the run does not start a word.
fn letters_before(bytes: &[u8], end: usize) -> Vec<u8> {
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

fn is_script_scheme(word: &[u8], after: &[u8]) -> bool {
    if word.ends_with(b"javascript") || word.ends_with(b"vbscript") || word.ends_with(b"livescript")
    {
        return true;
    }
    if word.ends_with(b"data") {
        let rest: Vec<u8> = after
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take(13)
            .map(u8::to_ascii_lowercase)
            .collect();
        return rest.starts_with(b"text/html") || rest.starts_with(b"image/svg");
    }
    false
}

/// Appends the inert form of `cell` to `out` (see the module doc).
pub fn neutralize(cell: &str, out: &mut String) {
    let defuse = defused_positions(cell.as_bytes());
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
            "JaVa\tScRiPt:alert(1)",
            "vbscript:msgbox",
            "data:text/html;base64,PHNjcmlwdD4=",
        ] {
            assert!(has_markup(cell.as_bytes()), "{cell:?}");
            assert!(may_hold_markup(cell.as_bytes()), "{cell:?}");
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
