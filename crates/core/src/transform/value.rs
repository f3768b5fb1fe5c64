//! Typed cell values: parsing clean CSV cells as integers, exact decimals and booleans, and
//! writing JSON strings. (Dates and datetimes are parsed in `record`, with the formats the
//! mapping compiled.)

use std::fmt;

/// A cell that could not be read as the type its field asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    pub expected: &'static str,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not {}", self.expected)
    }
}

/// Parses a whole number that fits in 64 bits: optional sign, digits, surrounding spaces.
pub fn parse_integer(cell: &str) -> Result<i64, BadValue> {
    let bad = BadValue {
        expected: "an integer",
    };
    let text = cell.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    text.strip_prefix('+')
        .unwrap_or(text)
        .parse::<i64>()
        .map_err(|_| bad)
}

/// An exact decimal, kept as its canonical text: no float ever touches it, so `19.90` stays
/// `19.90` (trailing zeros kept: they carry precision) and `0.1` is not `0.1000000000000000055`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    /// The canonical text, valid as a JSON number: optional `-`, no leading zeros, `.` as the
    /// separator, digits on both sides of it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a decimal number with `separator` (`.` or `,`) between the integer and the
/// fraction: `-12.50`, `+3`, `.5`, `12,5` with `,`. No thousands separators, no exponents:
/// a value that needs them is more likely a misread column than a number.
pub fn parse_decimal(cell: &str, separator: char) -> Result<Decimal, BadValue> {
    let mut out = Vec::with_capacity(cell.len() + 1);
    write_decimal(&mut out, cell, separator)?;
    // Only ASCII digits, `-` and `.` were written.
    Ok(Decimal(String::from_utf8_lossy(&out).into_owned()))
}

/// [`parse_decimal`], appending the canonical text to `out` (untouched on `Err`), with no
/// allocation of its own.
pub fn write_decimal(out: &mut Vec<u8>, cell: &str, separator: char) -> Result<(), BadValue> {
    let bad = BadValue {
        expected: "a decimal number",
    };
    let text = cell.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once(separator) {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let frac = frac_part.unwrap_or("");
    if !all_digits(int_part) || !all_digits(frac) || int_part.len() + frac.len() == 0 {
        return Err(bad);
    }
    let int_digits = int_part.trim_start_matches('0');
    let is_zero = int_digits.is_empty() && frac.bytes().all(|b| b == b'0');
    if negative && !is_zero {
        out.push(b'-');
    }
    out.extend_from_slice(if int_digits.is_empty() {
        b"0"
    } else {
        int_digits.as_bytes()
    });
    if !frac.is_empty() {
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    Ok(())
}

/// Parses the usual spellings of a boolean, case-insensitively: true/false, yes/no, y/n,
/// t/f, 1/0, on/off.
pub fn parse_boolean(cell: &str) -> Result<bool, BadValue> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "t" | "1" | "on" => Ok(true),
        "false" | "no" | "n" | "f" | "0" | "off" => Ok(false),
        _ => Err(BadValue {
            expected: "a boolean (true/false, yes/no, y/n, t/f, 1/0, on/off)",
        }),
    }
}

/// Appends `s` as a JSON string (quotes included), escaped by serde_json.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_with_sign_and_spaces() {
        assert_eq!(parse_integer(" 42 "), Ok(42));
        assert_eq!(parse_integer("+7"), Ok(7));
        assert_eq!(parse_integer("-0"), Ok(0));
        assert_eq!(parse_integer("-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            "",
            "+",
            "-",
            "1.0",
            "1e3",
            "12a",
            "9223372036854775808",
            "1 000",
            "++1",
        ] {
            assert!(parse_integer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decimals_stay_exact_and_canonical() {
        let d = |s: &str, sep| parse_decimal(s, sep).map(|d| d.as_str().to_string());
        assert_eq!(d("19.90", '.'), Ok("19.90".into()));
        assert_eq!(d("0.1", '.'), Ok("0.1".into()));
        assert_eq!(d("+003.50", '.'), Ok("3.50".into()));
        assert_eq!(d("-.5", '.'), Ok("-0.5".into()));
        assert_eq!(d("7.", '.'), Ok("7".into()));
        assert_eq!(d("-0.00", '.'), Ok("0.00".into()));
        assert_eq!(d("12,5", ','), Ok("12.5".into()));
        assert_eq!(
            d("123456789012345678901234567890.000000000000000000001", '.'),
            Ok("123456789012345678901234567890.000000000000000000001".into())
        );
        for bad in ["", ".", "-", "1.2.3", "1,5", "1e5", "12 .5", "NaN", "--1"] {
            assert!(parse_decimal(bad, '.').is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_decimals_are_valid_json_numbers() {
        for text in ["19.90", "-.5", "+003.50", "0", "-0.00"] {
            let d = parse_decimal(text, '.').unwrap();
            let parsed: serde_json::Value = serde_json::from_str(d.as_str()).unwrap();
            assert!(parsed.is_number(), "{text} -> {}", d.as_str());
        }
    }

    #[test]
    fn booleans_in_their_usual_spellings() {
        for t in ["true", "TRUE", " Yes ", "y", "T", "1", "on"] {
            assert_eq!(parse_boolean(t), Ok(true), "{t:?}");
        }
        for f in ["false", "No", "n", "F", "0", "OFF"] {
            assert_eq!(parse_boolean(f), Ok(false), "{f:?}");
        }
        assert!(parse_boolean("maybe")
            .unwrap_err()
            .to_string()
            .contains("yes/no"));
    }

    #[test]
    fn json_strings_are_escaped_and_round_trip() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "line\nbreak\r\ttab",
            "\u{1}ctl",
            "café ✓",
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
