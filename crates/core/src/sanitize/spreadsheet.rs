//! Spreadsheets: an `.xlsx`, `.xlsm`, `.xlsb`, `.xls` or `.ods` workbook is read with
//! [calamine](https://docs.rs/calamine), one sheet is chosen, and its rows become CSV text as a
//! person reads the cells; that text then goes through the sanitizer like any CSV.
//!
//! calamine reads a workbook from memory and a sheet whole, so a workbook is held in memory up
//! to the dataset's `limits.max_spreadsheet_bytes` and refused above it; its sheet's cells are
//! then rendered a row at a time.

use std::io::Cursor;

use calamine::{open_workbook_auto_from_rs, Data, Range, Reader, SheetVisible, Sheets};
use serde::{Deserialize, Serialize};

/// Whether `head` (a file's first 64 bytes) starts a workbook: an OLE compound file (xls), or
/// a zip whose first entry is an Office Open XML (xlsx, xlsm, xlsb) or OpenDocument (ods)
/// package's. Another zip is an archive, not a workbook.
pub fn looks_like_workbook(head: &[u8]) -> bool {
    if head.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return true;
    }
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return false;
    }
    let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
    let name = &head[30..head.len().min(30 + name_len)];
    name == b"[Content_Types].xml"
        || name == b"mimetype"
        || [&b"_rels/"[..], b"docProps/", b"xl/"]
            .iter()
            .any(|start| name.starts_with(start))
}

/// Which sheet a dataset takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SheetChoice {
    /// By name.
    Name(String),
    /// By position, from 1, hidden sheets counted.
    Position(usize),
}

/// What the report says of a workbook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpreadsheetReport {
    /// `xlsx` (also xlsm), `xlsb`, `xls` or `ods`.
    pub format: String,
    /// The sheet read.
    pub sheet: String,
    /// The workbook's other sheets, not read.
    pub other_sheets: Vec<String>,
    /// Cells holding an error (`#N/A`, `#DIV/0!`, ...): written empty.
    pub error_cells: u64,
}

/// A workbook's chosen sheet, ready to be read row by row.
pub struct Sheet {
    range: Range<Data>,
    /// The next row to render.
    next: usize,
    pub report: SpreadsheetReport,
}

/// Why a workbook gives no sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// The bytes are no workbook calamine knows (another zip archive, say): the file is then
    /// judged as the bytes it is.
    NotAWorkbook,
    /// A workbook, refused for this reason.
    Refused(String),
}

/// How many times its own size a zipped workbook may unpack to: calamine holds the sheet it
/// unpacks, about twice the sheet's XML in memory (measured: 724 MB for 383 MB of XML).
pub const MAX_UNPACK_FACTOR: u64 = 12;

impl Sheet {
    /// Opens `bytes` as a workbook and takes the sheet `choice` names, else the first visible
    /// one. A zipped workbook whose parts say they unpack to more than `unpack_limit` bytes is
    /// refused before anything is unpacked; a workbook that makes the reader panic is refused
    /// too (a reader's bug must not take the file's whole batch down).
    pub fn open(
        bytes: &[u8],
        choice: Option<&SheetChoice>,
        unpack_limit: u64,
    ) -> Result<Self, Unreadable> {
        check_unpacked_size(bytes, unpack_limit)?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::read(bytes, choice)))
            .unwrap_or_else(|_| {
                Err(Unreadable::Refused(
                    "the workbook is malformed: the spreadsheet reader failed on it".into(),
                ))
            })
    }

    fn read(bytes: &[u8], choice: Option<&SheetChoice>) -> Result<Self, Unreadable> {
        let mut workbook =
            open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|_| Unreadable::NotAWorkbook)?;
        let format = match &workbook {
            Sheets::Xls(_) => "xls",
            Sheets::Xlsx(_) => "xlsx",
            Sheets::Xlsb(_) => "xlsb",
            Sheets::Ods(_) => "ods",
        };
        let sheets = workbook.sheets_metadata().to_vec();
        let names: Vec<String> = sheets.iter().map(|s| s.name.clone()).collect();
        let chosen = match choice {
            Some(SheetChoice::Name(name)) => {
                names.iter().position(|n| n == name).ok_or_else(|| {
                    Unreadable::Refused(format!(
                        "the workbook has no sheet named {name:?} (it has {})",
                        quoted(&names)
                    ))
                })?
            }
            Some(SheetChoice::Position(n)) => match n.checked_sub(1) {
                Some(i) if i < names.len() => i,
                _ => {
                    return Err(Unreadable::Refused(format!(
                        "the workbook has no sheet {n} (it has {}: {})",
                        names.len(),
                        quoted(&names)
                    )))
                }
            },
            None => sheets
                .iter()
                .position(|s| s.visible == SheetVisible::Visible)
                .ok_or_else(|| Unreadable::Refused("the workbook has no visible sheet".into()))?,
        };
        let sheet = names[chosen].clone();
        let range = workbook.worksheet_range(&sheet).map_err(|e| {
            Unreadable::Refused(format!(
                "sheet {sheet:?} of the {format} workbook cannot be read: {e}"
            ))
        })?;
        if range.is_empty() {
            return Err(Unreadable::Refused(format!(
                "sheet {sheet:?} of the {format} workbook is empty"
            )));
        }
        Ok(Self {
            range,
            next: 0,
            report: SpreadsheetReport {
                format: format.into(),
                other_sheets: names.into_iter().filter(|n| *n != sheet).collect(),
                sheet,
                error_cells: 0,
            },
        })
    }

    /// Renders the next rows as CSV records (RFC 4180, `,`, CRLF) onto `out`, until it holds
    /// `at_least` bytes or the sheet ends; `false` once every row has been rendered. Error
    /// cells are counted in the report.
    pub fn next_text(&mut self, out: &mut Vec<u8>, at_least: usize) -> bool {
        let mut cell = String::new();
        let width = self.range.width();
        let mut rows = self.range.rows().skip(self.next);
        while out.len() < at_least {
            let Some(row) = rows.next() else {
                return false;
            };
            self.next += 1;
            for (i, value) in row.iter().enumerate().take(width) {
                if i > 0 {
                    out.push(b',');
                }
                cell.clear();
                if !write_cell(value, &mut cell) {
                    self.report.error_cells += 1;
                }
                quote_into(&cell, out);
            }
            out.extend_from_slice(b"\r\n");
        }
        self.next < self.range.height()
    }
}

/// Refuses a zipped workbook whose directory says its parts unpack to more than `limit`
/// bytes. (A part that lies about its size is not caught here.)
fn check_unpacked_size(bytes: &[u8], limit: u64) -> Result<(), Unreadable> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return Ok(());
    }
    let Ok(archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return Ok(());
    };
    match archive.decompressed_size() {
        Some(size) if size > u128::from(limit) => Err(Unreadable::Refused(format!(
            "the workbook unpacks to {size} bytes, more than {limit} ({MAX_UNPACK_FACTOR} times \
             sanitize.limits.max_spreadsheet_bytes): a compression bomb?"
        ))),
        _ => Ok(()),
    }
}

/// Writes a cell as a person reads it; `false` for an error cell (written empty).
fn write_cell(value: &Data, out: &mut String) -> bool {
    use std::fmt::Write;
    match value {
        Data::Empty => {}
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => out.push_str(s),
        // Rust writes the shortest decimal that reads back as the same number: 0.3, not
        // 0.29999999999999999, and 5 for 5.0.
        Data::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Data::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::DateTime(at) => write_datetime(at, out),
        Data::Error(_) => return false,
    }
    true
}

/// A date as `2026-11-23`, a date and time as `2026-11-23T08:14:00`, a time of day alone (a
/// serial below one day) as `08:14:00`, a duration as `[h]:mm:ss`; both date systems (1900,
/// with its phantom 29 February 1900, and 1904) are calamine's to undo.
fn write_datetime(at: &calamine::ExcelDateTime, out: &mut String) {
    use std::fmt::Write;
    let serial = at.as_f64();
    let seconds = |days: f64| (days * 86_400.0).round() as i64;
    if !at.is_datetime() || serial < 1.0 {
        let total = seconds(serial.abs());
        let sign = if serial < 0.0 { "-" } else { "" };
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
        let _ = write!(out, "{sign}{h:02}:{m:02}:{s:02}");
        return;
    }
    match at.as_datetime() {
        Some(dt) if dt.time() == chrono::NaiveTime::MIN => {
            let _ = write!(out, "{}", dt.format("%Y-%m-%d"));
        }
        Some(dt) if dt.and_utc().timestamp_subsec_millis() == 0 => {
            let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S"));
        }
        Some(dt) => {
            let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.3f"));
        }
        None => {
            let _ = write!(out, "{serial}");
        }
    }
}

fn quote_into(cell: &str, line: &mut Vec<u8>) {
    if cell.contains([',', '"', '\r', '\n']) {
        line.push(b'"');
        for b in cell.bytes() {
            if b == b'"' {
                line.push(b'"');
            }
            line.push(b);
        }
        line.push(b'"');
    } else {
        line.extend_from_slice(cell.as_bytes());
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
