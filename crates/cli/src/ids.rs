//! File ids as operators type them: whole, or the start of one (at least 4 hex digits) that
//! names exactly one file.

use anyhow::{anyhow, Result};
use sluice_db::Store;
use uuid::Uuid;

use crate::exit::Usage;

/// Hex digits a short id needs at least.
const SHORTEST: usize = 4;

/// The file `text` names: a whole id, or a prefix only one file id starts with.
pub async fn resolve(store: &Store, text: &str) -> Result<Uuid> {
    if let Ok(id) = text.parse::<Uuid>() {
        return Ok(id);
    }
    let hex = short_hex(text)?;
    let found = store
        .ids_starting_with(&hex, 3)
        .await
        .map_err(|e| anyhow!("reading file_process: {e}"))?;
    match found.as_slice() {
        [] => Err(anyhow!("no file id starts with {text}")),
        [id] => Ok(*id),
        [a, b, ..] => Err(Usage(format!(
            "{text} starts more than one file id ({a}, {b}{}): give more of it",
            if found.len() > 2 { ", ..." } else { "" }
        ))
        .into()),
    }
}

/// The hex digits of a short id, or why it is not one.
fn short_hex(text: &str) -> Result<String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() < SHORTEST || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Usage(format!(
            "{text:?} is not a file id, nor the start of one (at least {SHORTEST} hex digits)"
        ))
        .into());
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_id_is_hex_digits_and_dashes_of_a_sensible_length() {
        assert_eq!(short_hex("6f1c2d3e-0b7a").unwrap(), "6f1c2d3e0b7a");
        assert_eq!(short_hex("6F1C").unwrap(), "6F1C");
        for bad in ["6f1", "zz12", "", &"a".repeat(33)] {
            let e = short_hex(bad).unwrap_err();
            assert!(e.downcast_ref::<Usage>().is_some(), "{bad}: {e}");
        }
    }
}
