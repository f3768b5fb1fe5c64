//! Workbooks made by real producers (scripts/make-fixtures.sh: XlsxWriter, xlwt, odfpy) read
//! as the text a person sees in them, then sanitized like any CSV.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sluice_core::sanitize::drive::{sanitize_pipelined, sanitize_read};
use sluice_core::sanitize::spreadsheet::SheetChoice;
use sluice_core::{Policy, Report, Verdict};

/// The fixtures folder, made once per test run.
fn fixtures() -> PathBuf {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = root.join("target/fixtures/spreadsheets");
        let status = Command::new(root.join("scripts/make-fixtures.sh"))
            .arg(&out)
            .status()
            .expect("scripts/make-fixtures.sh runs");
        assert!(status.success(), "making the fixtures failed");
        out
    })
    .clone()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

fn sanitize(bytes: &[u8], policy: Policy) -> (String, Report) {
    let mut out = Vec::new();
    let report = sanitize_read(bytes, &mut out, policy, Some("orders".into())).unwrap();
    (String::from_utf8(out).unwrap(), report)
}

const HEADER: &str = "order_id,order_date,ordered_at,sku,qty,unit_price_eur,paid,note";
const ROWS: [&str; 3] = [
    "A-2001,2026-11-23,2026-11-23T08:14:00,SKU-RED-M,2,19.9,true,\"gift, wrapped\"",
    "A-2002,1904-01-02,2026-11-23T09:30:15,SKU-BLU-L,1,0.3,false,\"'=cmd|\"\"/c calc\"\"\"",
    "A-2003,2026-02-28,2026-11-23T23:59:00,SKU-GRN-S,3,1234567.25,true,",
];

fn expected(extra_header: &str, extra: [&str; 3]) -> String {
    let mut text = format!("{HEADER}{extra_header}\r\n");
    for (row, more) in ROWS.iter().zip(extra) {
        text.push_str(&format!("{row}{more}\r\n"));
    }
    text
}

#[test]
fn an_xlsx_reads_as_a_person_sees_it_in_both_date_systems() {
    let want = expected(",total", [",39.8", ",0.3", ",3703701.75"]);
    for name in ["orders.xlsx", "orders-1904.xlsx"] {
        let (text, report) = sanitize(&read(name), Policy::default());
        assert_eq!(
            report.verdict,
            Verdict::Accepted,
            "{name}: {:?}",
            report.reason
        );
        assert_eq!(text, want, "{name}");
        let sheet = report.spreadsheet.expect("a workbook's report");
        assert_eq!(sheet.format, "xlsx");
        // The hidden first sheet is passed over, and the others are named.
        assert_eq!(sheet.sheet, "Orders");
        assert_eq!(sheet.other_sheets, ["Read me", "Totals"]);
        assert_eq!(
            report.cells.formulas_neutralized, 1,
            "the formula-like note"
        );
        assert_eq!(report.rows_out, 3);
    }
}

#[test]
fn an_xls_and_an_ods_read_the_same_orders() {
    let want = expected("", ["", "", ""]);
    for (name, format) in [("orders.xls", "xls"), ("orders.ods", "ods")] {
        let (text, report) = sanitize(&read(name), Policy::default());
        assert_eq!(
            report.verdict,
            Verdict::Accepted,
            "{name}: {:?}",
            report.reason
        );
        assert_eq!(text, want, "{name}");
        assert_eq!(report.spreadsheet.unwrap().format, format);
    }
}

#[test]
fn a_merged_cell_is_in_its_first_cell_and_an_error_cell_is_empty_and_counted() {
    let (text, report) = sanitize(&read("oddities.xlsx"), Policy::default());
    assert_eq!(text, "order_id,region,qty\r\nA-1,North,4\r\nA-2,,\r\n");
    assert_eq!(report.spreadsheet.unwrap().error_cells, 1);
}

#[test]
fn the_dataset_chooses_a_sheet_by_name_or_position_and_a_missing_one_is_a_rejection() {
    let book = read("orders.xlsx");
    let by_name = Policy {
        sheet: Some(SheetChoice::Name("Totals".into())),
        ..Policy::default()
    };
    let (text, report) = sanitize(&book, by_name);
    assert_eq!(text, "nothing_here\r\n");
    assert_eq!(report.spreadsheet.unwrap().sheet, "Totals");
    let first = Policy {
        sheet: Some(SheetChoice::Position(1)),
        ..Policy::default()
    };
    let (_, report) = sanitize(&book, first);
    assert_eq!(
        report.spreadsheet.unwrap().sheet,
        "Read me",
        "hidden, but asked for"
    );
    let missing = Policy {
        sheet: Some(SheetChoice::Name("Orders 2027".into())),
        ..Policy::default()
    };
    let (_, report) = sanitize(&book, missing);
    assert_eq!(report.verdict, Verdict::Rejected);
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("no sheet named \"Orders 2027\"") && reason.contains("\"Totals\""),
        "{reason}"
    );
}

#[test]
fn a_workbook_over_the_size_limit_is_refused_with_the_setting_to_change() {
    // A limit below the bytes looked at to tell a workbook is a limit too.
    for limit in [1024, 10] {
        let mut policy = Policy::default();
        policy.limits.max_spreadsheet_bytes = limit;
        let (_, report) = sanitize(&read("orders.xlsx"), policy);
        assert_eq!(report.verdict, Verdict::Rejected);
        assert!(report
            .reason
            .unwrap()
            .contains("sanitize.limits.max_spreadsheet_bytes"));
    }
}

#[test]
fn a_workbook_that_unpacks_to_many_times_its_size_is_refused_before_it_is_read() {
    let dense = read("dense.xlsx");
    let mut policy = Policy::default();
    policy.limits.max_spreadsheet_bytes = dense.len() as u64 + 1;
    let (_, report) = sanitize(&dense, policy);
    assert_eq!(report.verdict, Verdict::Rejected);
    let reason = report.reason.unwrap();
    assert!(
        reason.starts_with("the workbook unpacks to ") && reason.contains("compression bomb"),
        "{reason}"
    );
    // Under the default limit the same workbook is read.
    let (_, report) = sanitize(&dense, Policy::default());
    assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
    assert_eq!(report.rows_out, 40_000);
}

#[test]
fn every_driver_reads_a_workbook_alike_and_a_gzipped_one_too() {
    let book = read("orders.xlsx");
    let (want, report) = sanitize(&book, Policy::default());
    let mut piped = Vec::new();
    let piped_report = sanitize_pipelined(
        book.as_slice(),
        &mut piped,
        Policy::default(),
        Some("orders".into()),
    )
    .unwrap();
    assert_eq!(
        (String::from_utf8(piped).unwrap(), &piped_report),
        (want.clone(), &report)
    );
    #[cfg(feature = "tokio")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut async_out = Vec::new();
        let async_report = runtime
            .block_on(sluice_core::sanitize::drive::sanitize_async(
                book.as_slice(),
                &mut async_out,
                Policy::default(),
                Some("orders".into()),
            ))
            .unwrap();
        assert_eq!(async_report, report);
        assert_eq!(String::from_utf8(async_out).unwrap(), want);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &book).unwrap();
    let (text, report) = sanitize(&gz.finish().unwrap(), Policy::default());
    assert_eq!(text, want);
    assert_eq!(report.compression.map(|c| c.name()), Some("gzip"));
}

#[test]
fn a_zip_that_is_no_workbook_is_still_an_archive() {
    let mut zip = Vec::new();
    let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut w, b"a,b\r\n1,2\r\n").unwrap();
    let data = w.finish().unwrap();
    // One entry, `orders.csv`, as a zip tool writes it (local header only: enough to tell).
    zip.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x00\x00");
    zip.extend_from_slice(&[0; 12]);
    zip.extend_from_slice(&10u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(b"orders.csv");
    zip.extend_from_slice(&data);
    let (_, report) = sanitize(&zip, Policy::default());
    assert_eq!(report.verdict, Verdict::Rejected);
    assert!(report.reason.unwrap().contains("archive"));
    assert_eq!(report.spreadsheet, None);
}

/// The errors file of `input`, and the report.
fn errors_of(input: &[u8], policy: Policy) -> (String, Report) {
    let mut errors = Vec::new();
    let report = sluice_core::sanitize::drive::sanitize_read_with_errors(
        input,
        std::io::sink(),
        &mut errors,
        policy,
        None,
    )
    .unwrap();
    (String::from_utf8(errors).unwrap(), report)
}

#[test]
fn every_rejected_row_is_in_the_errors_file_with_its_cells_and_python_reads_them_back() {
    let policy = Policy {
        limits: sluice_core::sanitize::Limits {
            max_rejected_share: 0.9,
            max_field_bytes: 16,
            ..Default::default()
        },
        ..Policy::default()
    };
    let input = "id,name,note\r\n1,ok,fine\r\n2,too,many,cells\r\n3,\"x, \"\"y\"\"\",=HYPERLINK(\"evil\")\r\n4,a field far longer than sixteen bytes,z\r\n5\r\n";
    let (errors, report) = errors_of(input.as_bytes(), policy.clone());
    assert_eq!(report.rows_rejected, 4, "{:?}", report.rejects);
    assert_eq!(report.error_rows, 4);
    let script = r#"
import csv, json, sys
rows = list(csv.reader(sys.stdin))
print(json.dumps(rows))
"#;
    let mut python = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(errors.as_bytes())
        .unwrap();
    let rows: Vec<Vec<String>> =
        serde_json::from_slice(&python.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(rows[0], ["line", "column", "reason", "id", "name", "note"]);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[1][..3], ["3", "", "expected 3 fields, found 4"]);
    assert_eq!(rows[1][3..], ["2", "too", "many", "cells"]);
    // The original cells come back, a formula-like one defused so that opening the file in
    // a spreadsheet is safe.
    assert_eq!(
        rows[2][..3],
        ["4", "note", "field is 18 bytes, over the limit of 16"]
    );
    assert_eq!(rows[2][3..], ["3", "x, \"y\"", "'=HYPERLINK(\"evil\")"]);
    assert_eq!(rows[3][..2], ["5", "name"]);
    assert_eq!(rows[3][4], "a field far longer than sixteen bytes");
    assert_eq!(rows[4][..4], ["6", "", "expected 3 fields, found 1", "5"]);

    // At most max_error_rows rows, and the last line says how many there were.
    let capped = Policy {
        limits: sluice_core::sanitize::Limits {
            max_error_rows: 1,
            ..policy.limits
        },
        ..policy
    };
    let (errors, report) = errors_of(input.as_bytes(), capped);
    assert_eq!(report.error_rows, 1);
    let last = errors.lines().last().unwrap();
    assert!(
        last.contains("the first 1 of 4 rejected rows are listed"),
        "{errors}"
    );
}
