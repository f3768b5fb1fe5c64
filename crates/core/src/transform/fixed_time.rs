//! A hand-written reader for the few fixed-width date and datetime layouts nearly every export
//! uses (`%Y-%m-%d`, `%Y-%m-%d %H:%M`, `%Y-%m-%d %H:%M:%S`, with a space or a `T`).
//!
//! chrono's general format parser was a fifth of the transform's time. This reader only ever
//! answers where its answer is certainly chrono's: a value in exactly the layout's shape with
//! valid fields, or a value in the shape of another of these layouts, which chrono refuses for
//! being too long or too short. Anything else (other widths, leap seconds, out-of-range
//! fields, stray spaces) is left to chrono, so results and error messages do not change.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// A layout this module reads, named by what it holds after the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedLayout {
    /// `%Y-%m-%d`
    Date,
    /// `%Y-%m-%d %H:%M`, with `sep` (` ` or `T`) between date and time.
    Minutes { sep: u8 },
    /// `%Y-%m-%d %H:%M:%S`, likewise.
    Seconds { sep: u8 },
}

/// What the fast reader can say about a value for one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    /// The value, as chrono would read it (midnight for a date-only layout).
    Read(NaiveDateTime),
    /// chrono would refuse the value for this format: it has another fixed layout's length.
    NotThisFormat,
    /// Ask chrono.
    Unsure,
}

impl FixedLayout {
    /// The layout of a strftime format, when it is one of those read here.
    pub fn of(format: &str) -> Option<Self> {
        let (date, rest) = (format.get(..8)?, format.get(8..)?);
        if date != "%Y-%m-%d" {
            return None;
        }
        let sep = rest.as_bytes().first().copied();
        match (rest.get(1..), sep) {
            (None, None) => Some(Self::Date),
            (Some("%H:%M"), Some(sep @ (b' ' | b'T'))) => Some(Self::Minutes { sep }),
            (Some("%H:%M:%S"), Some(sep @ (b' ' | b'T'))) => Some(Self::Seconds { sep }),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Date => 10,
            Self::Minutes { .. } => 16,
            Self::Seconds { .. } => 19,
        }
    }

    /// Reads `value` (already trimmed) in this layout.
    pub fn read(self, value: &str) -> Fixed {
        let b = value.as_bytes();
        let Some(shape) = Shape::of(b) else {
            return Fixed::Unsure;
        };
        if shape.len() != self.len() {
            return Fixed::NotThisFormat;
        }
        let sep_ok = match self {
            Self::Date => true,
            Self::Minutes { sep } | Self::Seconds { sep } => b[10] == sep,
        };
        if !sep_ok {
            return Fixed::Unsure;
        }
        let num = |at: usize, width: usize| {
            b[at..at + width]
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
        };
        let Some(date) = NaiveDate::from_ymd_opt(num(0, 4) as i32, num(5, 2), num(8, 2)) else {
            return Fixed::Unsure;
        };
        let (hour, minute, second) = match self {
            Self::Date => (0, 0, 0),
            Self::Minutes { .. } => (num(11, 2), num(14, 2), 0),
            Self::Seconds { .. } => (num(11, 2), num(14, 2), num(17, 2)),
        };
        // chrono reads second 60 as a leap second; from_hms_opt refuses it: left to chrono.
        match NaiveTime::from_hms_opt(hour, minute, second) {
            Some(time) => Fixed::Read(date.and_time(time)),
            None => Fixed::Unsure,
        }
    }
}

/// Which of the three fixed shapes a value has, if any: digits where the digits go, `-` and
/// `:` where they go, a space or `T` after the date.
struct Shape(usize);

impl Shape {
    fn of(b: &[u8]) -> Option<Self> {
        const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
        let len = b.len();
        if !matches!(len, 10 | 16 | 19) {
            return None;
        }
        let digits_ok = DIGITS
            .iter()
            .take_while(|&&i| i < len)
            .all(|&i| b[i].is_ascii_digit());
        let marks_ok = b[4] == b'-'
            && b[7] == b'-'
            && (len == 10 || (matches!(b[10], b' ' | b'T') && b[13] == b':'))
            && (len != 19 || b[16] == b':');
        (digits_ok && marks_ok).then_some(Self(len))
    }

    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::format::{Parsed, StrftimeItems};

    /// What chrono alone makes of `value` in `format`: a date and time, or a refusal.
    fn chrono_reads(value: &str, format: &str) -> Option<NaiveDateTime> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, value, StrftimeItems::new(format)).ok()?;
        let date = parsed.to_naive_date().ok()?;
        let time = parsed.to_naive_time().unwrap_or(NaiveTime::MIN);
        Some(date.and_time(time))
    }

    const FORMATS: [&str; 5] = [
        "%Y-%m-%d",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ];

    #[test]
    fn knows_only_the_fixed_layouts() {
        for format in FORMATS {
            assert!(FixedLayout::of(format).is_some(), "{format}");
        }
        for other in [
            "%d/%m/%Y",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H",
            "%Y-%m-%d_%H:%M",
            "%Y",
        ] {
            assert_eq!(FixedLayout::of(other), None, "{other}");
        }
    }

    #[test]
    fn agrees_with_chrono_wherever_it_answers() {
        let mut values = vec![
            "2026-11-05".to_string(),
            "2026-11-05 23:06".into(),
            "2026-11-05 23:06:43".into(),
            "2026-11-05T23:06:43".into(),
            "2026-02-29".into(),
            "2024-02-29 00:00:00".into(),
            "2026-13-01".into(),
            "2026-04-31 10:00".into(),
            "2026-11-05 24:00".into(),
            "2026-11-05 23:60".into(),
            "2026-11-05 23:59:60".into(),
            "2026-11-05 23:59:61".into(),
            "0000-01-01".into(),
            "2026-1-05".into(),
            "2026-11-05  23:06".into(),
            "2026/11/05".into(),
            "2026-11-05 2:06:43".into(),
            "+2026-11-05".into(),
            "2026-11-05x23:06".into(),
            "20261105".into(),
        ];
        // Every digit position through every digit, on each shape.
        for base in ["2026-11-05", "2026-11-05 23:06", "2026-11-05 23:06:43"] {
            for i in 0..base.len() {
                for d in b'0'..=b'9' {
                    let mut v = base.as_bytes().to_vec();
                    if v[i].is_ascii_digit() {
                        v[i] = d;
                        values.push(String::from_utf8(v).unwrap());
                    }
                }
            }
        }
        let mut answered = 0;
        for format in FORMATS {
            let layout = FixedLayout::of(format).unwrap();
            for value in &values {
                let expected = chrono_reads(value, format);
                match layout.read(value) {
                    Fixed::Read(v) => {
                        assert_eq!(Some(v), expected, "{value:?} in {format}");
                        answered += 1;
                    }
                    Fixed::NotThisFormat => {
                        assert_eq!(expected, None, "{value:?} in {format}");
                        answered += 1;
                    }
                    Fixed::Unsure => {}
                }
            }
        }
        assert!(
            answered > 500,
            "the fast path answered only {answered} times"
        );
    }
}
