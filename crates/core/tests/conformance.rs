//! The external conformance corpus (`../shared/conformance`, CSV files from public projects with
//! a manifest of expected outcomes): every file through the sanitizer with the default policy,
//! every non-null expectation asserted, and the csv-spectrum and CSVW files compared value by
//! value with their expected parses. Each file is also read at several read sizes, which must
//! all give the same output.
//!
//! The corpus lives outside the repository; `SLUICE_CONFORMANCE_DIR` points elsewhere. A missing
//! corpus fails the test: it is never skipped.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_core::sanitize::drive::{sanitize_pipelined, sanitize_read};
use sluice_core::sanitize::{Encoding, Policy, Report, Verdict};

/// `SLUICE_CONFORMANCE_DIR`, else `shared/conformance` beside the checkout (`../shared`
/// from the repository root), looked for in every folder above this crate so that a checkout
/// at any depth finds it.
fn corpus() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("SLUICE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            here.ancestors()
                .map(|a| a.join("shared/conformance"))
                .find(|d| d.join("manifest.json").is_file())
        })
        .unwrap_or_else(|| here.join("../../../shared/conformance"));
    assert!(
        dir.join("manifest.json").is_file(),
        "the conformance corpus is missing: no manifest.json in {} (set SLUICE_CONFORMANCE_DIR \
         to the folder that holds it)",
        dir.display()
    );
    dir
}

/// Hands out at most `size` bytes per read, as a network stream might.
struct Trickle<'a> {
    bytes: &'a [u8],
    size: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.size.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fn sanitize(bytes: &[u8], read_size: usize) -> (Vec<u8>, Report) {
    let mut out = Vec::new();
    let input = Trickle {
        bytes,
        size: read_size,
    };
    let report = sanitize_read(input, &mut out, Policy::default(), None).expect("in-memory I/O");
    if report.verdict == Verdict::Rejected {
        out.clear();
    }
    (out, report)
}

/// The manifest's encoding names, as `encoding_rs` knows them.
fn expected_encoding(name: &str) -> Encoding {
    Encoding::from_label(name).unwrap_or_else(|| panic!("manifest encoding {name:?} is unknown"))
}

fn decode(bytes: &[u8], encoding: Encoding) -> String {
    let label = encoding.label();
    let codec = encoding_rs::Encoding::for_label(label.as_bytes()).expect("a known label");
    codec.decode_with_bom_removal(bytes).0.into_owned()
}

/// Everything wrong with one file's outcome; empty when it conforms.
fn check(dir: &Path, entry: &Value) -> Vec<String> {
    let name = entry["file"].as_str().expect("file");
    let bytes = std::fs::read(dir.join(name)).expect("corpus file readable");
    let (out, report) = sanitize(&bytes, usize::MAX);
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(format!("{name}: {what}"));

    for read_size in [1000, 8192, 65_536] {
        let (o, r) = sanitize(&bytes, read_size);
        if o != out || r.sha256_out != report.sha256_out || r.verdict != report.verdict {
            problem(format!(
                "output differs when read {read_size} bytes at a time"
            ));
        }
    }
    let mut piped = Vec::new();
    let piped_report = sanitize_pipelined(
        Trickle {
            bytes: &bytes,
            size: 8192,
        },
        &mut piped,
        Policy::default(),
        None,
    )
    .expect("in-memory I/O");
    if piped_report.verdict == Verdict::Rejected {
        piped.clear();
    }
    if piped != out || piped_report != report {
        problem(
            "the pipelined driver's output or report differs from the single-thread one".into(),
        );
    }
    let verdict = match report.verdict {
        Verdict::Accepted => "accepted",
        Verdict::Rejected => "rejected",
    };
    // The manifest calls every workbook and compressed file "not a CSV" (rejected): a CSV
    // sanitizer's truth. Sluice reads them through (spreadsheets, gzip/bzip2/zstd), so for a
    // file it read as one of those the truth is that it is read, and accepted.
    let read_through = report.spreadsheet.is_some() || report.compression.is_some();
    let not_a_csv = entry["note"]
        .as_str()
        .is_some_and(|n| n.starts_with("not-a-csv"));
    let expected = match entry["verdict"].as_str() {
        Some("rejected") if read_through && not_a_csv => Some("accepted"),
        other => other,
    };
    if let Some(expected) = expected {
        if expected != verdict {
            problem(format!(
                "verdict {verdict}, expected {expected} (reason: {:?})",
                report.reason
            ));
        }
    }
    if let Some(expected) = entry["delimiter"].as_str() {
        if report.delimiter.as_deref() != Some(expected) {
            problem(format!(
                "delimiter {:?}, expected {expected:?}",
                report.delimiter
            ));
        }
    }
    if let Some(expected) = entry["encoding"].as_str() {
        let wanted = expected_encoding(expected);
        let found = report.encoding.as_deref().and_then(Encoding::from_label);
        // Two names for one decoding of this file (windows-1253 and ISO-8859-7 agree on every
        // Greek letter) are the same answer.
        let same_text = found.is_some_and(|f| decode(&bytes, f) == decode(&bytes, wanted));
        if found != Some(wanted) && !same_text {
            problem(format!(
                "encoding {:?}, expected {expected} (reason: {:?})",
                report.encoding, report.reason
            ));
        }
    }
    if let Some(expected) = entry["bom"].as_bool() {
        if report.bom != expected {
            problem(format!("bom {}, expected {expected}", report.bom));
        }
    }
    if let Some(expected) = entry["rows_out"].as_u64() {
        if report.verdict == Verdict::Accepted && report.rows_out != expected {
            problem(format!("rows_out {}, expected {expected}", report.rows_out));
        }
    }
    let saw_every_row = report.verdict == Verdict::Accepted
        || report
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("rows rejected"));
    if let (Some(expected), true) = (entry["ragged_lines"].as_array(), saw_every_row) {
        let expected: Vec<u64> = expected.iter().filter_map(Value::as_u64).collect();
        let ragged: Vec<u64> = report
            .rejects
            .iter()
            .filter(|r| r.reason.starts_with("expected "))
            .map(|r| r.line)
            .collect();
        if ragged != expected {
            problem(format!("ragged lines {ragged:?}, expected {expected:?}"));
        }
    }
    if report.verdict == Verdict::Accepted {
        if let Some(rows) = expected_rows(dir, name) {
            problems.extend(compare_values(name, &out, &report, &rows));
        }
    }
    problems
}

/// The expected parse of a csv-spectrum or CSVW file: one JSON object per data row, keyed by
/// the original header (CSVW omits empty cells).
fn expected_rows(dir: &Path, name: &str) -> Option<Vec<serde_json::Map<String, Value>>> {
    let json_path = if let Some(stem) = name.strip_prefix("csv-spectrum/csvs/") {
        dir.join("csv-spectrum/json")
            .join(stem.replace(".csv", ".json"))
    } else if name.starts_with("csvw/test") {
        dir.join(name.replace(".csv", ".json"))
    } else {
        return None;
    };
    let json: Value = serde_json::from_slice(&std::fs::read(json_path).ok()?).ok()?;
    let rows = if name.starts_with("csvw/") {
        json["tables"][0]["row"]
            .as_array()?
            .iter()
            .map(|r| r["describes"][0].clone())
            .collect()
    } else {
        // Upstream's location_coordinates.json is an object with a wrong phone number.
        json.as_array()?.clone()
    };
    rows.into_iter()
        .map(|r| r.as_object().cloned())
        .collect::<Option<Vec<_>>>()
}

fn compare_values(
    name: &str,
    out: &[u8],
    report: &Report,
    expected: &[serde_json::Map<String, Value>],
) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(out);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("RFC 4180")).collect();
    if rows.len() != expected.len() {
        return vec![format!(
            "{name}: {} rows out, the expected parse has {}",
            rows.len(),
            expected.len()
        )];
    }
    let mut problems = Vec::new();
    for (i, (row, want)) in rows.iter().zip(expected).enumerate() {
        for (col, original) in report.headers_original.iter().enumerate() {
            let got = row.get(col).unwrap_or_default();
            let want = match want.get(original) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            if got != want {
                problems.push(format!(
                    "{name}: row {} column {original:?} is {got:?}, expected {want:?}",
                    i + 1
                ));
            }
        }
    }
    problems
}

#[test]
fn every_corpus_file_meets_its_manifest() {
    let dir = corpus();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest is JSON");
    let entries = manifest["files"].as_array().expect("files");
    let mut problems = Vec::new();
    let mut held = 0;
    for entry in entries {
        let found = check(&dir, entry);
        held += usize::from(found.is_empty());
        problems.extend(found);
    }
    assert!(
        problems.is_empty(),
        "{held} of {} corpus files conform; problems:\n{}",
        entries.len(),
        problems.join("\n")
    );
    assert_eq!(held, entries.len());
}
