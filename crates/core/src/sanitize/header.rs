//! Header clean-up: one ASCII snake_case name per column, unique, aliased, checked.

use std::collections::{BTreeMap, HashSet};

use super::cell::strip_controls;

/// Characters that hide in header cells copied from spreadsheets and web pages.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{FEFF}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{00AD}'
    )
}

/// Turns a raw header cell into an ASCII snake_case name (`Order ID` -> `order_id`,
/// `unitPrice (€)` -> `unit_price_eur`, `Prénom` -> `prenom`). `None` when nothing is left.
pub fn normalize_header(raw: &str) -> Option<String> {
    let visible: String = strip_controls(raw)
        .chars()
        .filter(|&c| !is_invisible(c))
        .collect();
    let trimmed = visible.trim();
    let mut ascii = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        match c {
            '%' => ascii.push_str(" pct "),
            '#' => ascii.push_str(" no "),
            c if c.is_ascii() => ascii.push(c),
            // Accented letters join their word ("Prénom" -> "Prenom"); CJK comes spaced.
            c => ascii.push_str(deunicode::deunicode_char(c).unwrap_or(" ")),
        }
    }
    let name = snake_case(&ascii);
    (!name.is_empty()).then_some(name)
}

/// Lower snake case: words split at non-alphanumerics and at camelCase humps.
fn snake_case(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut pending_sep = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            pending_sep = true;
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let hump = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if (pending_sep || hump) && !out.is_empty() {
            out.push('_');
        }
        pending_sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The clean header of a file and how it came from the original.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub original: Vec<String>,
    pub clean: Vec<String>,
}

/// Why a header is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    #[error("header row is empty")]
    Empty,
    #[error("header has {found} columns, more than the limit of {limit}")]
    TooManyColumns { found: usize, limit: usize },
    #[error("missing required column(s): {missing} (header has: {present})")]
    MissingRequired { missing: String, present: String },
}

/// Builds the clean header: normalized names, aliases applied, blanks named by position
/// (`column_3`), duplicates numbered (`sku`, `sku_2`), required columns checked.
pub fn build_header(
    original: Vec<String>,
    aliases: &BTreeMap<String, String>,
    required: &[String],
    max_columns: usize,
) -> Result<Header, HeaderError> {
    if original.len() > max_columns {
        return Err(HeaderError::TooManyColumns {
            found: original.len(),
            limit: max_columns,
        });
    }
    let normalized: Vec<Option<String>> = original
        .iter()
        .map(|raw| normalize_header(raw).map(|n| aliases.get(&n).cloned().unwrap_or(n)))
        .collect();
    if normalized.iter().all(Option::is_none) {
        return Err(HeaderError::Empty);
    }
    let mut taken: HashSet<String> = HashSet::new();
    let mut clean = Vec::with_capacity(normalized.len());
    for (i, name) in normalized.into_iter().enumerate() {
        let base = name.unwrap_or_else(|| format!("column_{}", i + 1));
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        taken.insert(candidate.clone());
        clean.push(candidate);
    }
    let missing: Vec<&str> = required
        .iter()
        .filter(|r| !taken.contains(*r))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(HeaderError::MissingRequired {
            missing: missing.join(", "),
            present: clean.join(", "),
        });
    }
    Ok(Header { original, clean })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[&str]) -> Vec<String> {
        build_header(
            raw.iter().map(|s| s.to_string()).collect(),
            &BTreeMap::new(),
            &[],
            100,
        )
        .unwrap()
        .clean
    }

    #[test]
    fn normalizes_to_ascii_snake_case() {
        let cases = [
            ("Order ID", "order_id"),
            ("  orderDate ", "order_date"),
            ("Unit Price (EUR)", "unit_price_eur"),
            ("HTTPStatus", "http_status"),
            ("E-mail", "e_mail"),
            ("Prénom", "prenom"),
            ("Straße", "strasse"),
            ("Discount %", "discount_pct"),
            ("Order #", "order_no"),
            ("qty2Ship", "qty2_ship"),
            ("数量", "shu_liang"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_header(raw).as_deref(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn removes_bom_zero_width_and_controls_from_header_cells() {
        assert_eq!(
            normalize_header("\u{FEFF}order_id").as_deref(),
            Some("order_id")
        );
        assert_eq!(
            normalize_header("sk\u{200B}u\u{0007}").as_deref(),
            Some("sku")
        );
    }

    #[test]
    fn blank_headers_are_named_by_position_and_duplicates_made_unique() {
        assert_eq!(
            names(&["SKU", "", "sku", " ", "sku_2", "Sku"]),
            ["sku", "column_2", "sku_2", "column_4", "sku_2_2", "sku_3"]
        );
    }

    #[test]
    fn aliases_rename_and_required_columns_are_checked_after_them() {
        let aliases = BTreeMap::from([("order_number".to_string(), "order_id".to_string())]);
        let header = build_header(
            vec!["Order Number".into(), "SKU".into()],
            &aliases,
            &["order_id".into(), "sku".into()],
            10,
        )
        .unwrap();
        assert_eq!(header.clean, ["order_id", "sku"]);
        assert_eq!(header.original, ["Order Number", "SKU"]);
    }

    #[test]
    fn missing_required_columns_are_named() {
        let err = build_header(
            vec!["sku".into()],
            &BTreeMap::new(),
            &["order_id".into(), "sku".into(), "price".into()],
            10,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required column(s): order_id, price (header has: sku)"
        );
    }

    #[test]
    fn too_many_columns_and_empty_header_are_refused() {
        let wide = vec!["a".to_string(); 11];
        assert!(matches!(
            build_header(wide, &BTreeMap::new(), &[], 10),
            Err(HeaderError::TooManyColumns {
                found: 11,
                limit: 10
            })
        ));
        assert_eq!(
            build_header(vec!["".into(), " ".into()], &BTreeMap::new(), &[], 10),
            Err(HeaderError::Empty)
        );
    }
}
