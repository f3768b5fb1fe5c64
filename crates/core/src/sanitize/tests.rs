//! Behaviour of the whole sanitizer, on small files written here.

use sha2::{Digest, Sha256};

use super::*;

/// Runs the sanitizer feeding `chunk` bytes at a time; returns the output text and report.
fn run_chunked(input: &[u8], policy: Policy, chunk: usize) -> (String, Report) {
    let mut sanitizer = Sanitizer::new(policy, None);
    let mut out = Vec::new();
    let mut written = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let _ = sanitizer.feed(piece, &mut out);
        written.append(&mut out);
    }
    let report = sanitizer.finish(&mut out);
    written.append(&mut out);
    if report.verdict == Verdict::Rejected {
        written.clear();
    }
    (String::from_utf8(written).expect("output is UTF-8"), report)
}

fn run(input: &[u8]) -> (String, Report) {
    run_with(input, Policy::default())
}

fn run_with(input: &[u8], policy: Policy) -> (String, Report) {
    let (out, report) = run_chunked(input, policy.clone(), 1 << 20);
    // Every behaviour must hold whatever the chunking of the input.
    for chunk in [1, 3, 17] {
        let (o, r) = run_chunked(input, policy.clone(), chunk);
        assert_eq!(o, out, "output differs with {chunk}-byte chunks");
        assert_eq!(r, report, "report differs with {chunk}-byte chunks");
    }
    (out, report)
}

fn accepted(input: &[u8]) -> (String, Report) {
    let (out, report) = run(input);
    assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
    (out, report)
}

fn rejected_reason(input: &[u8], policy: Policy) -> String {
    let (out, report) = run_with(input, policy);
    assert_eq!(report.verdict, Verdict::Rejected);
    assert!(out.is_empty());
    assert_eq!(report.sha256_out, None);
    report.reason.expect("a rejected file has a reason")
}

fn lines_of(out: &str) -> Vec<&str> {
    out.split("\r\n").filter(|l| !l.is_empty()).collect()
}

fn reparse(out: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(out.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

// --- encodings ---

#[test]
fn utf8_bom_is_dropped_and_reported() {
    let (out, report) = accepted("\u{FEFF}id,name\n1,Zoë\n".as_bytes());
    assert_eq!(out, "id,name\r\n1,Zoë\r\n");
    assert_eq!(report.encoding.as_deref(), Some("utf-8"));
    assert!(report.bom);
}

#[test]
fn utf16le_excel_unicode_text_becomes_utf8() {
    let text = "Name\tCity\r\nJosé\tMálaga\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let (out, report) = accepted(&bytes);
    assert_eq!(out, "name,city\r\nJosé,Málaga\r\n");
    assert_eq!(report.encoding.as_deref(), Some("utf-16le"));
    assert_eq!(report.delimiter.as_deref(), Some("\t"));
}

#[test]
fn utf16be_with_bom_becomes_utf8() {
    let mut bytes = vec![0xFE, 0xFF];
    bytes.extend("a,b\n1,ü\n".encode_utf16().flat_map(u16::to_be_bytes));
    let (out, report) = accepted(&bytes);
    assert_eq!(out, "a,b\r\n1,ü\r\n");
    assert_eq!(report.encoding.as_deref(), Some("utf-16be"));
}

#[test]
fn invalid_utf8_is_read_as_windows_1252() {
    let (out, report) = accepted(b"city,price\nM\xe1laga,\x8010\n");
    assert_eq!(out, "city,price\r\nMálaga,€10\r\n");
    assert_eq!(report.encoding.as_deref(), Some("windows-1252"));
}

#[test]
fn windows_1252_found_past_the_sniff_window_switches_without_damage() {
    let mut input = b"id,city\n".to_vec();
    while input.len() < 100_000 {
        input.extend_from_slice(b"1,London\n");
    }
    input.extend_from_slice(b"2,M\xe1laga\n");
    let (out, report) = accepted(&input);
    assert!(out.ends_with("1,London\r\n2,Málaga\r\n"));
    assert_eq!(report.encoding.as_deref(), Some("windows-1252"));
    assert_eq!(
        report.encoding_fallback_at_byte,
        Some(input.len() as u64 - 6)
    );
}

#[test]
fn dataset_can_force_the_encoding() {
    let policy = Policy {
        encoding: Some(Encoding::WINDOWS_1252),
        ..Policy::default()
    };
    // Valid UTF-8 bytes, but the dataset says its files are Windows-1252.
    let (out, _) = run_with("a\n\u{e9}\n".as_bytes(), policy);
    assert_eq!(out, "a\r\nÃ©\r\n");
}

#[test]
fn dataset_can_force_any_encoding_the_standard_knows() {
    let policy = Policy {
        encoding: Encoding::from_label("iso-8859-7"),
        ..Policy::default()
    };
    let (bytes, _, _) = encoding_rs::ISO_8859_7.encode("name\nΑθήνα\n");
    let (out, report) = run_with(&bytes, policy);
    assert_eq!(out, "name\r\nΑθήνα\r\n");
    assert_eq!(report.encoding.as_deref(), Some("iso-8859-7"));
}

#[test]
fn big5_past_the_sniff_window_is_detected_there_whatever_the_read_size() {
    let mut text = String::from("id,city,office\n");
    for i in 0..6_000 {
        text.push_str(&format!("{i},plain,ascii\n"));
    }
    for i in 0..200 {
        text.push_str(&format!("{i},臺北市,信義區市府路一號\n"));
    }
    let (bytes, _, _) = encoding_rs::BIG5.encode(&text);
    assert!(bytes.iter().take(sniff::SNIFF_BYTES).all(u8::is_ascii));
    let (expected, report) = run_chunked(&bytes, Policy::default(), usize::MAX);
    assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
    assert_eq!(report.encoding.as_deref(), Some("big5"));
    assert!(expected.ends_with("199,臺北市,信義區市府路一號\r\n"));
    for chunk in [1, 1000, 4096, 65_536] {
        let (out, r) = run_chunked(&bytes, Policy::default(), chunk);
        assert_eq!((out.as_str(), &r), (expected.as_str(), &report), "{chunk}");
    }
}

#[test]
fn text_whose_encoding_cannot_be_told_is_rejected_naming_the_setting() {
    let reason = rejected_reason(b"id,name\n1,caf\x81e\n", Policy::default());
    assert!(reason.contains("set `encoding = "), "{reason}");
}

#[test]
fn header_cells_lose_bom_and_zero_width_characters() {
    let (out, report) = accepted("\u{FEFF}\u{FEFF}Order\u{200B} ID,\u{2060}SKU\n1,A\n".as_bytes());
    assert_eq!(lines_of(&out)[0], "order_id,sku");
    assert_eq!(report.headers, ["order_id", "sku"]);
}

// --- not a CSV ---

#[test]
fn rejects_zip_disguised_as_csv() {
    let zip = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml";
    let reason = rejected_reason(zip, Policy::default());
    assert!(
        reason.contains("archive") || reason.contains("spreadsheet"),
        "{reason}"
    );
}

#[test]
fn rejects_empty_file() {
    assert_eq!(
        rejected_reason(b"", Policy::default()),
        "empty file (0 bytes)"
    );
}

#[test]
fn rejects_file_of_blank_lines() {
    let reason = rejected_reason(b"\r\n\n  \n", Policy::default());
    assert!(reason.contains("header"), "{reason}");
}

#[test]
fn rejects_binary_with_many_nuls() {
    let mut bytes = b"id,x\n".to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 200));
    let reason = rejected_reason(&bytes, Policy::default());
    assert!(reason.contains("NUL"), "{reason}");
}

#[test]
fn rejected_file_still_reports_input_hash() {
    let (_, report) = run(b"%PDF-1.4\n...");
    assert_eq!(report.verdict, Verdict::Rejected);
    assert_eq!(
        report.sha256_in,
        Some(hex(Sha256::digest(b"%PDF-1.4\n...")))
    );
}

// --- dialect ---

#[test]
fn sniffs_semicolon_tab_and_pipe() {
    for (input, delim) in [
        (&b"a;b\n1;2,5\n"[..], ";"),
        (&b"a\tb\n1\t2\n"[..], "\t"),
        (&b"a|b\n1|2\n"[..], "|"),
    ] {
        let (out, report) = accepted(input);
        assert_eq!(report.delimiter.as_deref(), Some(delim));
        assert_eq!(lines_of(&out)[0], "a,b");
    }
}

#[test]
fn accepts_lf_crlf_and_lone_cr_line_endings() {
    for (input, style) in [
        (&b"a,b\n1,2\n3,4\n"[..], "lf"),
        (&b"a,b\r\n1,2\r\n3,4\r\n"[..], "crlf"),
        (&b"a,b\r1,2\r3,4\r"[..], "cr"),
        (&b"a,b\r\n1,2\n3,4"[..], "mixed"),
    ] {
        let (out, report) = accepted(input);
        assert_eq!(out, "a,b\r\n1,2\r\n3,4\r\n", "{style}");
        assert_eq!(report.line_endings.as_deref(), Some(style));
    }
}

#[test]
fn quoted_fields_survive_intact() {
    let input = b"id;note\n1;\"semi; colon, comma\"\n2;\"two\nlines\"\n3;\"say \"\"hi\"\"\"\n";
    let (out, _) = accepted(input);
    let rows = reparse(&out);
    assert_eq!(
        rows,
        [
            vec!["id", "note"],
            vec!["1", "semi; colon, comma"],
            vec!["2", "two\nlines"],
            vec!["3", "say \"hi\""],
        ]
    );
    assert!(out.contains("\"say \"\"hi\"\"\""));
}

#[test]
fn records_already_in_rfc_4180_are_kept_byte_for_byte() {
    let (out, _) = accepted(b"\"a\",\"b\"\r\n\"1\",\"x,y\"\r\n2,\"\"\r\n");
    assert_eq!(out, "a,b\r\n\"1\",\"x,y\"\r\n2,\"\"\r\n");
}

/// A file larger than the sniff window, so that records really are parsed from pieces that
/// depend on how the input was read.
fn large_quoted_file() -> Vec<u8> {
    let mut input = b"\"id\",\"name\",\"note\"\r\n".to_vec();
    for i in 0..5_000 {
        input.extend_from_slice(
            format!("\"{i}\",\"name {i}\",\"a, b\"\r\n{i},plain,\"\"\r\n").as_bytes(),
        );
    }
    input
}

#[test]
fn output_is_the_same_whatever_the_read_size() {
    let input = large_quoted_file();
    assert!(input.len() > 2 * sniff::SNIFF_BYTES);
    let (expected, report) = run_chunked(&input, Policy::default(), usize::MAX);
    assert_eq!(report.verdict, Verdict::Accepted);
    assert_eq!(report.rows_out, 10_000);
    for chunk in [1000, 4096, 8192, 65_536, 65_537, 100_003] {
        let (out, r) = run_chunked(&input, Policy::default(), chunk);
        assert_eq!(r.sha256_out, report.sha256_out, "{chunk}-byte reads");
        assert_eq!(out, expected, "{chunk}-byte reads");
    }
    assert!(expected.contains("\r\n\"17\",\"name 17\",\"a, b\"\r\n17,plain,\"\"\r\n"));
}

#[test]
fn sanitizing_clean_output_again_changes_nothing() {
    let mut input = large_quoted_file();
    input.extend_from_slice(b"x,\"=1+1\",<b>hi</b>\r\n y ,\t\x01z,\"multi\nline\"\r\n");
    let (once, _) = run_chunked(&input, Policy::default(), 8192);
    let (twice, report) = run_chunked(once.as_bytes(), Policy::default(), 8192);
    assert_eq!(report.verdict, Verdict::Accepted);
    assert_eq!(twice, once);
}

#[test]
fn quotes_csv_core_tolerates_are_rewritten_as_rfc_4180() {
    // Text after a closing quote, and a quote inside a bare field.
    let (out, _) = accepted(b"id,v\n1,\"ab\"c\n2,ab\"c\n3,\"a\"\"b\"\n");
    assert_eq!(out, "id,v\r\n1,abc\r\n2,\"ab\"\"c\"\r\n3,\"a\"\"b\"\r\n");
    assert_rfc4180(&out);
}

/// Checks `out` is strict RFC 4180: every field bare (no `"`, `,`, CR or LF) or wholly quoted
/// with inner quotes doubled; records end in CRLF.
pub(crate) fn assert_rfc4180(out: &str) {
    let b = out.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // one field
        if b[i] == b'"' {
            i += 1;
            loop {
                assert!(i < b.len(), "unterminated quote in {out:?}");
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
        } else {
            while i < b.len() && !matches!(b[i], b',' | b'\r' | b'\n') {
                assert_ne!(b[i], b'"', "quote in a bare field at byte {i} of {out:?}");
                i += 1;
            }
        }
        match &b[i..] {
            [b',', ..] => i += 1,
            [b'\r', b'\n', ..] => i += 2,
            rest => panic!("field not followed by , or CRLF at byte {i} of {out:?}: {rest:?}"),
        }
    }
}

// --- headers ---

#[test]
fn report_maps_original_headers_to_clean_ones() {
    let (_, report) = accepted(b"Order ID,orderDate,,SKU,sku\n1,2,3,4,5\n");
    assert_eq!(
        report.headers_original,
        ["Order ID", "orderDate", "", "SKU", "sku"]
    );
    assert_eq!(
        report.headers,
        ["order_id", "order_date", "column_3", "sku", "sku_2"]
    );
    assert_eq!(report.columns[0].original, "Order ID");
    assert_eq!(report.columns[0].name, "order_id");
}

#[test]
fn missing_required_column_rejects_the_file_naming_it() {
    let policy = Policy {
        required_columns: vec!["order_id".into(), "price".into()],
        aliases: [("order_number".to_string(), "order_id".to_string())].into(),
        ..Policy::default()
    };
    let reason = rejected_reason(b"Order Number,qty\n1,2\n", policy);
    assert_eq!(
        reason,
        "line 1: missing required column(s): price (header has: order_id, qty)"
    );
}

// --- rows ---

#[test]
fn ragged_rows_are_rejected_with_their_starting_physical_line() {
    let mut input = b"a,b,c\n1,\"x\ny\",3\n4,5\n".to_vec();
    input.extend(b"6,7,8\n".repeat(20));
    let (out, report) = accepted(&input);
    assert_eq!(report.rows_rejected, 1);
    assert_eq!(report.rejects[0].line, 4);
    assert_eq!(report.rejects[0].reason, "expected 3 fields, found 2");
    assert_eq!(report.rows_out, 21);
    assert!(!out.contains("4,5"));
}

#[test]
fn ragged_rows_can_be_padded() {
    let mut policy = limits(|l| l.max_rejected_share = 1.0);
    policy.ragged_rows = RaggedRows::Pad;
    let (out, report) = run_with(b"a,b,c\n1,2\n3,4,5,,\n6,7,8,9\n", policy);
    assert_eq!(out, "a,b,c\r\n1,2,\r\n3,4,5\r\n");
    assert_eq!(report.rows_rejected, 1);
    assert_eq!(report.rejects[0].line, 4);
}

#[test]
fn blank_and_whitespace_rows_are_dropped() {
    let (out, report) = accepted(b"a,b\n\n1,2\n   \n,\n \t, \n3,4\n");
    assert_eq!(out, "a,b\r\n1,2\r\n3,4\r\n");
    assert_eq!(report.rows_blank, 3);
    assert_eq!(report.rows_in, 5);
    assert_eq!(report.rows_out, 2);
}

#[test]
fn control_characters_are_removed_but_tab_and_newlines_in_quotes_stay() {
    let input = "a,b\n\"x\u{0}y\u{7}\",\"keep\ttab\r\nand lines\u{85}\"\n".as_bytes();
    let (out, report) = accepted(input);
    let rows = reparse(&out);
    assert_eq!(rows[1], ["xy", "keep\ttab\r\nand lines"]);
    assert_eq!(report.cells.control_chars_removed, 2);
    assert_eq!(report.columns[0].control_chars_removed, 1);
}

// --- hostile cells ---

#[test]
fn formula_cells_are_neutralized_but_numbers_are_not() {
    let input = b"id,v\n1,=HYPERLINK(\"http://x\")\n2,+cmd\n3,-2+3\n4,@SUM(A1)\n5,-12.5\n6,+971\n7,\"\tx\"\n";
    let (out, report) = accepted(input);
    let values: Vec<String> = reparse(&out)
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(
        values,
        [
            "'=HYPERLINK(\"http://x\")",
            "'+cmd",
            "'-2+3",
            "'@SUM(A1)",
            "-12.5",
            "+971",
            "'\tx"
        ]
    );
    assert_eq!(report.cells.formulas_neutralized, 5);
    assert_eq!(report.columns[1].formulas_neutralized, 5);
    assert_eq!(report.columns[0].formulas_neutralized, 0);
}

#[test]
fn negative_numbers_with_digit_groups_are_numbers_not_formulas() {
    let input = "id,amount\n1,\"-25,728.00\"\n2,-1 317\n3,-1\u{a0}317.5\n4,\"-1,2\"\n".as_bytes();
    let (out, report) = accepted(input);
    let values: Vec<String> = reparse(&out)
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(values, ["-25,728.00", "-1 317", "-1\u{a0}317.5", "'-1,2"]);
    assert_eq!(report.cells.formulas_neutralized, 1);

    let continental = Policy {
        numbers: NumberFormat {
            decimal: ',',
            grouping: vec!['.'],
        },
        ..Policy::default()
    };
    let (out, _) = run_with(
        b"id,amount\n1,\"-25.728,00\"\n2,\"-25,728.00\"\n",
        continental,
    );
    let values: Vec<String> = reparse(&out)
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(values, ["-25.728,00", "'-25,728.00"]);
}

#[test]
fn script_urls_anywhere_in_a_cell_are_defused() {
    let input = b"id,html\n1,\"<a href=\"\"javascript:go()\"\">x</a>\"\n2,see javascript&#58;go()\n3,JAVA\tSCRIPT&colon;go()\n4,at 12:30 see https://example.com\n";
    let (out, report) = accepted(input);
    let values: Vec<String> = reparse(&out)
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(
        values,
        [
            "&lt;a href=&quot;javascript%3Ago()&quot;&gt;x&lt;/a&gt;",
            "see javascript%3Ago()",
            "JAVA\tSCRIPT%3Ago()",
            "at 12:30 see https://example.com",
        ]
    );
    assert_eq!(report.cells.markup_neutralized, 3);
}

#[test]
fn formula_hidden_behind_a_control_character_is_still_neutralized() {
    let (out, _) = accepted(b"a\n\x01=1+1\n");
    assert_eq!(out, "a\r\n'=1+1\r\n");
}

#[test]
fn formula_rows_can_be_rejected_instead() {
    let policy = Policy {
        formulas: CellPolicy::RejectRow,
        limits: Limits {
            max_rejected_share: 1.0,
            ..Limits::default()
        },
        ..Policy::default()
    };
    let (out, report) = run_with(b"a,b\n1,=2\n3,4\n", policy);
    assert_eq!(out, "a,b\r\n3,4\r\n");
    assert_eq!(report.rejects[0].column.as_deref(), Some("b"));
    assert_eq!(report.rejects[0].line, 2);
}

#[test]
fn markup_is_neutralized_by_default_and_counted_per_column() {
    let input = b"name,bio\n<script>alert(1)</script>,\"<img src=x onerror=alert(1)>\"\nok,javascript:alert(1)\n";
    let (out, report) = accepted(input);
    let rows = reparse(&out);
    assert_eq!(rows[1][0], "&lt;script&gt;alert(1)&lt;/script&gt;");
    assert_eq!(rows[1][1], "&lt;img src=x onerror&#61;alert(1)&gt;");
    assert_eq!(rows[2][1], "javascript%3Aalert(1)");
    assert!(!out.contains('<'));
    assert_eq!(report.cells.markup_neutralized, 3);
    assert_eq!(report.columns[0].markup_neutralized, 1);
    assert_eq!(report.columns[1].markup_neutralized, 2);
}

#[test]
fn a_dataset_may_keep_markup_in_rich_text_columns() {
    let policy = Policy {
        markup_allowed_columns: vec!["body_html".into()],
        ..Policy::default()
    };
    let (out, report) = run_with(b"title,body_html\n<b>x</b>,<p>hi</p>\n", policy);
    assert_eq!(out, "title,body_html\r\n&lt;b&gt;x&lt;/b&gt;,<p>hi</p>\r\n");
    assert_eq!(report.columns[1].markup_neutralized, 0);
}

#[test]
fn markup_and_formula_in_one_cell_are_both_defused() {
    let (out, report) = accepted(b"a\n=<script>x</script>\n");
    assert_eq!(out, "a\r\n'=&lt;script&gt;x&lt;/script&gt;\r\n");
    assert_eq!(report.cells.formulas_neutralized, 1);
    assert_eq!(report.cells.markup_neutralized, 1);
}

#[test]
fn timestamps_and_urls_are_left_alone() {
    let input = b"at,url\n2026-11-23T10:15:00Z,https://example.com/?a=b\n";
    let (out, report) = accepted(input);
    assert_eq!(
        out,
        "at,url\r\n2026-11-23T10:15:00Z,https://example.com/?a=b\r\n"
    );
    assert_eq!(report.cells, CellCounts::default());
}

// --- limits ---

fn limits(f: impl FnOnce(&mut Limits)) -> Policy {
    let mut policy = Policy::default();
    f(&mut policy.limits);
    policy
}

#[test]
fn file_over_the_byte_limit_is_rejected_without_reading_on() {
    let policy = limits(|l| l.max_file_bytes = 10);
    let (_, report) = run_chunked(b"a,b\n1,2\n3,4\n5,6\n", policy, 4);
    assert_eq!(report.verdict, Verdict::Rejected);
    assert!(report.reason.unwrap().contains("larger than 10 bytes"));
    assert_eq!(report.sha256_in, None);
}

#[test]
fn too_many_columns_rejects_the_file() {
    let reason = rejected_reason(b"a,b,c,d\n1,2,3,4\n", limits(|l| l.max_columns = 3));
    assert!(
        reason.contains("more than 3 columns") || reason.contains("4 columns"),
        "{reason}"
    );
}

#[test]
fn long_field_rejects_the_row_naming_line_and_column() {
    let policy = limits(|l| {
        l.max_field_bytes = 8;
        l.max_rejected_share = 1.0;
    });
    let (out, report) = run_with(b"id,note\n1,short\n2,far too long here\n3,ok\n", policy);
    assert_eq!(out, "id,note\r\n1,short\r\n3,ok\r\n");
    assert_eq!(report.rejects[0].line, 3);
    assert_eq!(report.rejects[0].column.as_deref(), Some("note"));
}

#[test]
fn huge_record_is_skipped_without_holding_it() {
    let policy = limits(|l| {
        l.max_field_bytes = 1024;
        l.max_rejected_share = 1.0;
    });
    let mut input = b"a\n1\n\"".to_vec();
    input.extend(std::iter::repeat_n(b'x', 3 << 20));
    input.extend_from_slice(b"\"\n2\n");
    let (out, report) = run_chunked(&input, policy, 64 * 1024);
    assert_eq!(out, "a\r\n1\r\n2\r\n");
    assert_eq!(report.rows_rejected, 1);
    assert_eq!(report.rejects[0].line, 3);
}

#[test]
fn too_many_rows_rejects_the_file() {
    let reason = rejected_reason(b"a\n1\n2\n3\n", limits(|l| l.max_rows = 2));
    assert!(reason.contains("more than 2 data rows"), "{reason}");
}

#[test]
fn unterminated_quote_at_the_end_rejects_the_file_naming_its_line() {
    let reason = rejected_reason(b"a,b\n1,2\n3,\"open\n4,5\n6,7\n", Policy::default());
    assert!(
        reason.starts_with("line 3:") && reason.contains("never closed"),
        "{reason}"
    );
}

#[test]
fn a_quote_closed_far_too_late_cannot_swallow_the_rows_between() {
    // The quote opened on line 2 is closed by a stray quote 500 lines later: a parser would
    // see one two-field record and silently lose every row in between.
    let mut input = b"a,b\n1,\"open\n".to_vec();
    input.extend(b"2,3\n".repeat(500));
    input.extend_from_slice(b"4,\"5\n6,7\n");
    let reason = rejected_reason(&input, limits(|l| l.max_record_lines = 100));
    assert!(
        reason.starts_with("line 2:") && reason.contains("502 lines"),
        "{reason}"
    );
}

#[test]
fn an_unterminated_quote_in_a_large_file_is_caught() {
    let mut input = b"a,b\n".to_vec();
    input.extend(b"1,2\n".repeat(30_000));
    input.extend_from_slice(b"3,\"never closed\n");
    input.extend(b"4,5\n".repeat(30_000));
    let (_, report) = run_chunked(&input, Policy::default(), 4096);
    assert_eq!(report.verdict, Verdict::Rejected);
    assert!(report.reason.unwrap().starts_with("line 30002:"));
}

/// A two-column file of `rows` data rows where the cell on line `open` starts a quote that
/// the cell on line `close` (if any) ends: one runaway record in between.
fn stray_quote_file(rows: u64, open: u64, close: Option<u64>) -> Vec<u8> {
    let mut input = b"id,name\n".to_vec();
    for line in 2..rows + 2 {
        let quote = if line == open || Some(line) == close {
            "\""
        } else {
            ""
        };
        input.extend_from_slice(format!("{line},{quote}name-{line:08}\n").as_bytes());
    }
    input
}

#[test]
fn a_stray_quote_past_the_record_byte_cap_rejects_the_file_wherever_it_is() {
    // 60,000 rows of 20 bytes: each run below is far over the 256 KiB record cap of a
    // two-column file and over 200 lines. Only the byte cap may see it (the line limit is
    // lifted), as happens when the closing quote is further away than a record can grow.
    let no_line_limit = limits(|l| l.max_record_lines = u64::MAX);
    for (open, close) in [(2, 40_000), (20_000, 59_000), (45_000, 60_001)] {
        let input = stray_quote_file(60_000, open, Some(close));
        for policy in [Policy::default(), no_line_limit.clone()] {
            let (_, report) = run_chunked(&input, policy, 8192);
            assert_eq!(report.verdict, Verdict::Rejected, "quote on line {open}");
            let reason = report.reason.unwrap();
            assert!(reason.starts_with(&format!("line {open}:")), "{reason}");
            assert_eq!(report.rows_out, 0);
        }
    }
}

#[test]
fn a_stray_quote_never_closed_near_the_end_rejects_the_file() {
    let input = stray_quote_file(30_000, 29_990, None);
    let (_, report) = run_chunked(&input, Policy::default(), 8192);
    let reason = report.reason.unwrap();
    assert!(reason.starts_with("line 29990:"), "{reason}");
    assert!(reason.contains("never closed"), "{reason}");
}

#[test]
fn a_short_quoted_run_is_one_rejected_record_with_its_line_span() {
    // The quote on line 3 closes on line 5: one record over three lines, of the wrong width.
    let policy = limits(|l| l.max_rejected_share = 1.0);
    let input = b"a,b\n1,x\n2,\"open\n3,y\n4,close\",extra\n5,z\n";
    let (out, report) = run_with(input, policy);
    assert_eq!(report.verdict, Verdict::Accepted);
    assert_eq!(out, "a,b\r\n1,x\r\n5,z\r\n");
    assert_eq!(report.rows_rejected, 1);
    let reject = &report.rejects[0];
    assert_eq!((reject.line, reject.end_line), (3, 5), "{reject:?}");
}

#[test]
fn too_many_rejected_rows_reject_the_file() {
    let reason = rejected_reason(b"a,b\n1\n2\n3,4\n", Policy::default());
    assert_eq!(
        reason,
        "2 of 3 rows rejected (66.7%), over the limit of 10.0%"
    );
}

#[test]
fn header_only_file_is_accepted_with_no_rows() {
    let (out, report) = accepted(b"id,name\n");
    assert_eq!(out, "id,name\r\n");
    assert_eq!(report.rows_out, 0);
}

// --- output ---

#[test]
fn output_is_deterministic_and_hashed() {
    let input = b"Name,Note\n\"a\",\"b,c\"\n";
    let (out1, r1) = accepted(input);
    let (out2, r2) = accepted(input);
    assert_eq!(out1, out2);
    assert_eq!(r1.sha256_out, r2.sha256_out);
    assert_eq!(r1.sha256_in, Some(hex(Sha256::digest(input))));
    assert_eq!(r1.sha256_out, Some(hex(Sha256::digest(out1.as_bytes()))));
    assert_eq!(r1.bytes_in, input.len() as u64);
    assert_eq!(r1.bytes_out, out1.len() as u64);
}

#[test]
fn single_column_empty_cell_does_not_become_a_blank_line() {
    let (out, _) = accepted(b"a\n\x00\n1\n");
    assert_eq!(reparse(&out).len(), 3);
}

#[test]
fn report_serializes_with_the_documented_fields() {
    let (_, report) = accepted(b"a\n1\n");
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "verdict",
        "reason",
        "encoding",
        "delimiter",
        "bytes_in",
        "bytes_out",
        "rows_in",
        "rows_out",
        "rows_rejected",
        "headers_original",
        "headers",
        "rejects",
        "cells",
        "sha256_in",
        "sha256_out",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(json["verdict"], "accepted");
}

// --- properties ---

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn csvish() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b",".to_vec()),
            Just(b";".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\"\"".to_vec()),
            Just(b",\"".to_vec()),
            Just(b"\",".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"=".to_vec()),
            Just(b"<script>".to_vec()),
            Just("é".as_bytes().to_vec()),
            Just(b"\xe9".to_vec()),
            Just(b"\x00".to_vec()),
            "[a-z0-9 ]{1,6}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = run_chunked(&bytes, Policy::default(), 7);
        }

        #[test]
        fn never_panics_on_mostly_text_bytes_under_any_policy(
            bytes in proptest::collection::vec(prop_oneof![9 => 0x20u8..0x7f, 1 => any::<u8>()], 0..600),
            chunk in 1usize..64,
            pad in any::<bool>(),
            windows_1252 in any::<bool>(),
        ) {
            let policy = Policy {
                ragged_rows: if pad { RaggedRows::Pad } else { RaggedRows::Reject },
                encoding: windows_1252.then_some(Encoding::WINDOWS_1252),
                limits: Limits { max_field_bytes: 16, max_record_lines: 3, ..Limits::default() },
                ..Policy::default()
            };
            let (out, report) = run_chunked(&bytes, policy, chunk);
            if report.verdict == Verdict::Accepted {
                assert_rfc4180(&out);
            }
        }

        #[test]
        fn accepted_output_reparses_with_the_header_width(bytes in csvish(), chunk in 1usize..50) {
            let (out, report) = run_chunked(&bytes, Policy::default(), chunk);
            if report.verdict == Verdict::Accepted {
                let rows = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(out.as_bytes())
                    .into_records()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                assert_rfc4180(&out);
                prop_assert_eq!(rows.len() as u64, report.rows_out + 1);
                for row in &rows {
                    prop_assert_eq!(row.len(), report.headers.len());
                }
                prop_assert!(!out.contains('<'));
            }
        }

        #[test]
        fn chunking_never_changes_the_result(bytes in csvish(), chunk in 1usize..50) {
            let whole = run_chunked(&bytes, Policy::default(), usize::MAX);
            let pieces = run_chunked(&bytes, Policy::default(), chunk);
            prop_assert_eq!(whole, pieces);
        }
    }

    proptest! {
        // Each case sanitizes a 200 KB file twice.
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn read_size_never_changes_the_output_of_a_large_file(
            rows in proptest::collection::vec(csvish(), 1..40),
            chunks in proptest::collection::vec(1usize..70_000, 1..8),
        ) {
            // Past the sniff window, records really are parsed from pieces that depend on the
            // read size; the reads here vary in size as network reads do.
            let mut input = large_quoted_file();
            for row in rows {
                input.extend_from_slice(&row);
            }
            let whole = run_chunked(&input, Policy::default(), usize::MAX);
            let mut sanitizer = Sanitizer::new(Policy::default(), None);
            let (mut out, mut written) = (Vec::new(), Vec::new());
            let mut rest = input.as_slice();
            for size in chunks.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*size).min(rest.len()));
                let _ = sanitizer.feed(piece, &mut out);
                written.append(&mut out);
                rest = tail;
            }
            let report = sanitizer.finish(&mut out);
            written.append(&mut out);
            prop_assert_eq!(&report, &whole.1);
            if report.verdict == Verdict::Accepted {
                prop_assert_eq!(String::from_utf8(written).unwrap(), whole.0);
            }
        }
    }
}

fn requiring(columns: &[&str]) -> Policy {
    Policy {
        required_columns: columns.iter().map(|c| c.to_string()).collect(),
        ..Policy::default()
    }
}

#[test]
fn blank_and_title_rows_above_the_header_are_skipped_and_counted() {
    // An Excel export saved as CSV: a blank first row, a title, a note, then the table.
    let input = b",,,\r\nOrders export,,,\r\nExported 2026-11-23 by shop,,,\r\nOrder ID,SKU,Qty,Note\r\nA-1,X,2,\r\nA-2,Y,1,ok\r\n";
    let (out, report) = run_with(input, requiring(&["order_id", "sku"]));
    assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
    assert_eq!(
        lines_of(&out),
        ["order_id,sku,qty,note", "A-1,X,2,", "A-2,Y,1,ok"]
    );
    assert_eq!(report.rows_preamble, 3);
    assert_eq!((report.rows_in, report.rows_out), (2, 2));
    // A count line above the header, as some exports write.
    let (out, report) = run_with(
        b"2\r\norder_id,sku\r\nA-1,X\r\nA-2,Y\r\n",
        requiring(&["sku"]),
    );
    assert_eq!(lines_of(&out), ["order_id,sku", "A-1,X", "A-2,Y"]);
    assert_eq!(report.rows_preamble, 1);
    // Without required columns only blank rows are passed over.
    let (out, report) = accepted(b",,\r\n , \r\na,b\r\n1,2\r\n");
    assert_eq!(lines_of(&out), ["a,b", "1,2"]);
    assert_eq!(report.rows_preamble, 2);
}

#[test]
fn a_header_that_is_nowhere_is_refused_by_what_the_first_row_lacks() {
    let reason = rejected_reason(b"a,b\r\n1,2\r\n3,4\r\n", requiring(&["sku"]));
    assert!(
        reason.starts_with("line 1: missing required column(s): sku"),
        "{reason}"
    );
    // A row as wide as the header above it is no title: the header is probably wrong.
    let reason = rejected_reason(
        b"id,item,count\r\norder_id,sku,qty\r\nA-1,X,2\r\n",
        requiring(&["sku"]),
    );
    assert!(
        reason.starts_with("line 1: a row above the header (line 2) has 3 cells")
            && reason.contains("sanitize.header_row = 2"),
        "{reason}"
    );
    // Past the rows looked at, the first row's reason stands.
    let mut input = b"title\r\n".repeat(rows::MAX_PREAMBLE_ROWS as usize + 1);
    input.extend_from_slice(b"sku\r\nX\r\n");
    let reason = rejected_reason(&input, requiring(&["sku"]));
    assert!(reason.starts_with("line 1: missing required"), "{reason}");
}

#[test]
fn header_row_says_where_the_header_is() {
    let policy = Policy {
        header_row: Some(3),
        ..Policy::default()
    };
    let (out, report) = run_with(b"id,item,count\r\nnote\r\nsku,qty\r\nX,2\r\n", policy);
    assert_eq!(report.verdict, Verdict::Accepted, "{:?}", report.reason);
    assert_eq!(lines_of(&out), ["sku,qty", "X,2"]);
    assert_eq!(report.rows_preamble, 2);
}

#[test]
fn r_row_names_get_a_column_of_their_own() {
    // R's write.table(x, sep = ","): the header has no cell above the row names.
    let input = b"\"height\",\"weight\"\n\"1\",150,50.5\n\"2\",160,61\n";
    let (out, report) = accepted(input);
    assert_eq!(
        lines_of(&out),
        ["row_name,height,weight", "\"1\",150,50.5", "\"2\",160,61"]
    );
    assert_eq!(report.row_names_column.as_deref(), Some("row_name"));
    assert_eq!(report.headers, ["row_name", "height", "weight"]);
    assert_eq!(report.rows_rejected, 0);
    let named = Policy {
        row_names_column: "id".into(),
        ..Policy::default()
    };
    let (out, _) = run_with(input, named);
    assert!(out.starts_with("id,height,weight\r\n"), "{out}");
    // A header as long as its rows is left alone.
    let (out, report) = accepted(b"a,b\n1,2\n");
    assert_eq!(lines_of(&out), ["a,b", "1,2"]);
    assert_eq!(report.row_names_column, None);
}
