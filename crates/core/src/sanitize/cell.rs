//! Per-cell clean-up: control characters and formula injection.

use std::borrow::Cow;

/// Whether `c` is a control character that has no place in a cell: C0 controls other than
/// tab, LF and CR; DEL; and the C1 controls U+0080–U+009F.
pub fn is_stray_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}')
}

/// Removes stray control characters (see [`is_stray_control`]); borrows when there are none.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_stray_control) {
        Cow::Owned(s.chars().filter(|&c| !is_stray_control(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether a spreadsheet would read the cell as a formula (OWASP CSV injection): it starts
/// with `=`, `+`, `-`, `@`, tab, CR or LF and is not a plain number such as `-12.5` or `+971`.
pub fn is_formula_like(cell: &[u8]) -> bool {
    matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\n')
    ) && !is_plain_number(cell)
}

/// `[+-]digits[.digits][e[+-]digits]`, with digits on at least one side of the point.
pub fn is_plain_number(cell: &[u8]) -> bool {
    let mut rest = cell;
    if let Some((b'+' | b'-', tail)) = rest.split_first() {
        rest = tail;
    }
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest = &rest[int_len..];
    let mut frac_len = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        frac_len = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        rest = &tail[frac_len..];
    }
    if int_len + frac_len == 0 {
        return false;
    }
    if let Some((b'e' | b'E', tail)) = rest.split_first() {
        let tail = match tail.split_first() {
            Some((b'+' | b'-', t)) => t,
            _ => tail,
        };
        let exp_len = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        return exp_len > 0 && exp_len == tail.len();
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_nul_c0_del_and_c1_but_keeps_tab_and_newlines() {
        let dirty = "a\u{0}b\u{7}c\td\ne\r\u{7F}f\u{85}g\u{9F}h";
        assert_eq!(strip_controls(dirty), "abc\td\ne\rfgh");
        assert!(matches!(strip_controls("clean é"), Cow::Borrowed(_)));
    }

    #[test]
    fn formula_triggers_per_owasp() {
        for cell in [
            "=1+1",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\t=x",
            "\r=x",
            "\n=x",
            "-",
            "+",
        ] {
            assert!(is_formula_like(cell.as_bytes()), "{cell:?}");
        }
    }

    #[test]
    fn plain_numbers_are_not_formulas() {
        for cell in ["-12.5", "+971", "-0.5e-3", "+.5", "-7.", "1e10"] {
            assert!(!is_formula_like(cell.as_bytes()), "{cell:?}");
            assert!(is_plain_number(cell.as_bytes()), "{cell:?}");
        }
        for cell in ["-1-1", "+1e", "-.", "--1", "-1 ", "+44 20 7946 0958"] {
            assert!(!is_plain_number(cell.as_bytes()), "{cell:?}");
        }
    }

    #[test]
    fn ordinary_cells_are_not_formulas() {
        for cell in ["", "abc", "a=b", "12-34", " =1"] {
            assert!(!is_formula_like(cell.as_bytes()), "{cell:?}");
        }
    }
}
