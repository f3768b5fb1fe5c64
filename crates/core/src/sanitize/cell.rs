//! Per-cell clean-up: control characters and formula injection.

use std::borrow::Cow;

use super::NumberFormat;

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
/// with `=`, `+`, `-`, `@`, tab, CR or LF and is not a plain number in the dataset's format,
/// such as `-12.5`, `+971` or `-25,728.00`.
pub fn is_formula_like(cell: &str, numbers: &NumberFormat) -> bool {
    matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\n')
    ) && !is_plain_number(cell, numbers)
}

/// `[+-]integer[<decimal>digits][e[+-]digits]`, with digits on at least one side of the
/// decimal separator, where the integer part is plain digits or grouped in threes by one of
/// the format's separators (`25,728`, `1 317`).
pub fn is_plain_number(cell: &str, numbers: &NumberFormat) -> bool {
    let mut rest = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let int_len = integer_part_len(rest, &numbers.grouping);
    rest = &rest[int_len..];
    let mut frac_len = 0;
    if let Some(tail) = rest.strip_prefix(numbers.decimal) {
        frac_len = digits_len(tail);
        rest = &tail[frac_len..];
    }
    if int_len + frac_len == 0 {
        return false;
    }
    if let Some(tail) = rest.strip_prefix(['e', 'E']) {
        let tail = tail.strip_prefix(['+', '-']).unwrap_or(tail);
        let exp_len = digits_len(tail);
        return exp_len > 0 && exp_len == tail.len();
    }
    rest.is_empty()
}

fn digits_len(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Bytes of the integer part at the start of `s`: digits, or 1-3 digits followed by groups of
/// a separator and three digits (the same separator throughout).
fn integer_part_len(s: &str, grouping: &[char]) -> usize {
    let lead = digits_len(s);
    let Some(sep) = s[lead..].chars().next().filter(|c| grouping.contains(c)) else {
        return lead;
    };
    if lead == 0 || lead > 3 {
        return lead;
    }
    let mut len = lead;
    while let Some(group) = s[len..].strip_prefix(sep) {
        if digits_len(group) != 3 || group[3..].starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        len += sep.len_utf8() + 3;
    }
    len
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
        let numbers = NumberFormat::default();
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
            assert!(is_formula_like(cell, &numbers), "{cell:?}");
        }
    }

    #[test]
    fn plain_numbers_are_not_formulas() {
        let numbers = NumberFormat::default();
        for cell in [
            "-12.5",
            "+971",
            "-0.5e-3",
            "+.5",
            "-7.",
            "1e10",
            "-25,728.00",
            "-1 317",
            "-1\u{a0}234\u{a0}567.5",
            "+1,000",
            "-999,999,999.99",
        ] {
            assert!(!is_formula_like(cell, &numbers), "{cell:?}");
            assert!(is_plain_number(cell, &numbers), "{cell:?}");
        }
        for cell in [
            "-1-1",
            "+1e",
            "-.",
            "--1",
            "-1 ",
            "+44 20 7946 0958",
            "-1,2",
            "-1,2345",
            "-1234,567",
            "-1,234 567",
            "-,123",
            "-1,234,56",
        ] {
            assert!(!is_plain_number(cell, &numbers), "{cell:?}");
        }
    }

    #[test]
    fn a_dataset_may_write_numbers_the_continental_way() {
        let numbers = NumberFormat {
            decimal: ',',
            grouping: vec!['.', ' '],
        };
        for cell in ["-25.728,00", "-1 317", "+0,5", "-1.234.567"] {
            assert!(is_plain_number(cell, &numbers), "{cell:?}");
        }
        assert!(!is_plain_number("-25,728.00", &numbers));
        assert!(is_formula_like("-25,728.00", &numbers));
    }

    #[test]
    fn ordinary_cells_are_not_formulas() {
        for cell in ["", "abc", "a=b", "12-34", " =1"] {
            assert!(!is_formula_like(cell, &NumberFormat::default()), "{cell:?}");
        }
    }
}
