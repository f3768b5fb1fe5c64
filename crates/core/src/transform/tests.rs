//! The mapping, from config text to JSON records and report.

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::*;
use crate::config::PipelineConfig;

const ORDERS: &str = r#"
[datasets.orders]
prefix = "incoming/orders/"
[datasets.orders.mapping]
date_field = "orderedAt"
timezone = "Europe/Paris"
max_error_share = 0.5

[[datasets.orders.mapping.fields]]
name = "orderId"
column = "order_id"
required = true

[[datasets.orders.mapping.fields]]
name = "orderedAt"
column = "order_date"
type = "datetime"
formats = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%:z"]

[[datasets.orders.mapping.fields]]
name = "line.sku"
column = "sku"
required = true

[[datasets.orders.mapping.fields]]
name = "line.quantity"
column = "qty"
type = "integer"
empty = "default"
default = 1

[[datasets.orders.mapping.fields]]
name = "line.unitPrice"
column = "unit_price_eur"
type = "decimal"

[[datasets.orders.mapping.fields]]
name = "customer.email"
column = "customer_e_mail"

[[datasets.orders.mapping.fields]]
name = "giftWrap"
column = "gift"
type = "boolean"
empty = "null"

[[datasets.orders.mapping.fields]]
name = "source"
value = "marketplace"
"#;

fn mapping(text: &str) -> Mapping {
    let config = PipelineConfig::parse(text, "test").unwrap();
    config.dataset("orders").unwrap().mapping.clone().unwrap()
}

fn header() -> Vec<String> {
    [
        "order_id",
        "order_date",
        "sku",
        "qty",
        "unit_price_eur",
        "customer_e_mail",
        "gift",
    ]
    .map(String::from)
    .to_vec()
}

fn record(row: &[&str]) -> Result<Value, FieldError> {
    let m = mapping(ORDERS);
    let mapper = RecordMapper::new(&m, &header()).unwrap();
    let mut out = Vec::new();
    mapper.write(row, &mut out)?;
    Ok(serde_json::from_slice(&out).expect("records are valid JSON"))
}

#[test]
fn maps_a_row_to_a_nested_typed_record() {
    let rec = record(&[
        "A-1",
        "2026-11-23 08:14",
        "SKU-1",
        "2",
        "19.90",
        "a@example.com",
        "yes",
    ])
    .unwrap();
    assert_eq!(
        rec,
        json!({
            "orderId": "A-1",
            "orderedAt": "2026-11-23T07:14:00Z",
            "line": { "sku": "SKU-1", "quantity": 2, "unitPrice": 19.90 },
            "customer": { "email": "a@example.com" },
            "giftWrap": true,
            "source": "marketplace"
        })
    );
}

#[test]
fn fields_keep_config_order_and_decimals_keep_their_digits() {
    let m = mapping(ORDERS);
    let mapper = RecordMapper::new(&m, &header()).unwrap();
    let mut out = Vec::new();
    let row = ["A-1", "2026-11-23 08:14", "S", "2", "0.10", "", ""];
    mapper.write(&row, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(r#"{"orderId":"A-1","orderedAt":"#),
        "{text}"
    );
    assert!(text.contains(r#""unitPrice":0.10"#), "{text}");
}

#[test]
fn empty_cells_follow_their_policy() {
    let rec = record(&["A-1", "", "SKU-1", "", "", " ", ""]).unwrap();
    assert_eq!(rec["orderedAt"], Value::Null);
    assert_eq!(rec["line"]["quantity"], 1);
    assert_eq!(rec["customer"]["email"], Value::Null);
    let err = record(&["", "", "SKU-1", "", "", "", ""]).unwrap_err();
    assert_eq!(err.field, "orderId");
    assert_eq!(err.reason, "required value is empty");
}

#[test]
fn bad_values_name_the_field_and_show_an_excerpt() {
    let err = record(&["A-1", "", "S", "two", "", "", ""]).unwrap_err();
    assert_eq!(
        (err.field.as_str(), err.value.as_str()),
        ("line.quantity", "two")
    );
    assert_eq!(err.reason, "not an integer");
    let long = "x".repeat(100);
    let err = record(&["A-1", "", "S", "1", &long, "", ""]).unwrap_err();
    assert_eq!(err.value.len(), 40);
    let err = record(&["A-1", "23/11/2026", "S", "1", "", "", ""]).unwrap_err();
    assert!(err.reason.contains("%Y-%m-%d %H:%M"), "{}", err.reason);
}

#[test]
fn datetimes_read_offsets_and_local_time_and_refuse_dst_gaps() {
    let at =
        |cell: &str| record(&["A", cell, "S", "1", "", "", ""]).map(|r| r["orderedAt"].clone());
    assert_eq!(
        at("2026-11-23T08:14:00+05:00").unwrap(),
        "2026-11-23T03:14:00Z"
    );
    assert_eq!(at("2026-07-01 12:00").unwrap(), "2026-07-01T10:00:00Z");
    assert!(at("2026-03-29 02:30")
        .unwrap_err()
        .reason
        .contains("does not exist"));
    assert!(at("2026-10-25 02:30").unwrap_err().reason.contains("twice"));
}

#[test]
fn a_file_with_bad_rows_reports_each_and_keeps_the_good_ones() {
    let csv = "order_id,order_date,sku,qty,unit_price_eur,customer_e_mail,gift\r\n\
               A-1,2026-11-23 08:14,S,1,1.00,,\r\n\
               A-2,2026-11-23 09:00,S,many,1.00,,\r\n\
               A-3,2026-11-23 10:00,S,1,\"1,5\",,\r\n\
               A-4,2026-11-24 10:00,S,3,2.50,,no\r\n";
    let mut records = Vec::new();
    let report = transform_read(
        csv.as_bytes(),
        &mapping(ORDERS),
        Some("orders".into()),
        None,
        usize::MAX,
        |r| {
            records.push(serde_json::from_slice::<Value>(r).unwrap());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(report.verdict, TransformVerdict::Ok);
    assert_eq!(
        (report.rows_in, report.records_out, report.rows_failed),
        (4, 2, 2)
    );
    assert_eq!(report.errors[0].line, 3);
    assert_eq!(report.errors[0].field, "line.quantity");
    assert_eq!(report.errors[1].line, 4);
    assert_eq!(report.errors[1].field, "line.unitPrice");
    assert_eq!(records[1]["orderId"], "A-4");
}

#[test]
fn too_many_bad_rows_fail_the_file() {
    let csv = "order_id,order_date,sku,qty,unit_price_eur,customer_e_mail,gift\n,,,,,,\nA,,,,,,\n";
    let report = transform_read(
        csv.as_bytes(),
        &mapping(ORDERS),
        None,
        None,
        usize::MAX,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(report.verdict, TransformVerdict::Failed);
    assert!(report.reason.unwrap().contains("2 of 2 rows"));
}

#[test]
fn the_date_range_filter_uses_the_local_date_of_the_date_field() {
    let csv = "order_id,order_date,sku,qty,unit_price_eur,customer_e_mail,gift\n\
               A-1,2026-11-22 23:30,S,1,,,\n\
               A-2,2026-11-23 00:30,S,1,,,\n\
               A-3,2026-11-24 00:00,S,1,,,\n\
               A-4,,S,1,,,\n";
    let filter = DateFilter {
        start: NaiveDate::from_ymd_opt(2026, 11, 23),
        end: NaiveDate::from_ymd_opt(2026, 11, 23),
    };
    let mut ids = Vec::new();
    let report = transform_read(
        csv.as_bytes(),
        &mapping(ORDERS),
        None,
        Some(filter),
        usize::MAX,
        |r| {
            ids.push(serde_json::from_slice::<Value>(r).unwrap()["orderId"].clone());
            Ok(())
        },
    )
    .unwrap();
    // 00:30 in Paris on the 23rd is the 22nd in UTC: the filter goes by the local date.
    assert_eq!(ids, [json!("A-2")]);
    assert_eq!(report.rows_filtered, 3);
}

#[test]
fn a_clean_file_without_a_required_column_is_refused_naming_it_and_optional_ones_may_be_absent() {
    let csv = "order_date,qty\n2026-11-23 10:00,1\n";
    let err = transform_read(
        csv.as_bytes(),
        &mapping(ORDERS),
        None,
        None,
        usize::MAX,
        |_| Ok(()),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("order_id") && text.contains("sku"), "{text}");
    assert!(!text.contains("order_date"), "{text}");
    // Only the required columns: the others read as empty cells.
    let mut records = Vec::new();
    transform_read(
        "order_id,sku\nA,S\n".as_bytes(),
        &mapping(ORDERS),
        None,
        None,
        usize::MAX,
        |r| {
            records.push(serde_json::from_slice::<Value>(r).unwrap());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["orderId"], "A");
}

#[test]
fn a_filter_needs_a_date_field() {
    let text = ORDERS.replace("date_field = \"orderedAt\"\n", "");
    let filter = DateFilter {
        start: None,
        end: None,
    };
    let err = transform_read(
        "order_id\n".as_bytes(),
        &mapping(&text),
        None,
        Some(filter),
        usize::MAX,
        |_| Ok(()),
    );
    assert!(err.unwrap_err().to_string().contains("date_field"));
}

#[test]
fn mapping_config_errors_name_dataset_and_field() {
    let field = |extra: &str| {
        format!("[datasets.orders]\nprefix = \"in/\"\n[datasets.orders.mapping]\n{extra}")
    };
    let cases = [
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\ntype = \"money\"\n"), "mapping.fields.a.type"),
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\nvalue = 1\n"), "mapping.fields.a"),
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"A b\"\n"), "mapping.fields.a.column"),
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\ntype = \"integer\"\ndefault = \"x\"\n"), "mapping.fields.a.default"),
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\nrequired = true\ndefault = \"x\"\n"), "mapping.fields.a.required"),
        (field("timezone = \"Mars/Olympus\"\n[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\n"), "mapping.timezone"),
        (field("date_field = \"a\"\n[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\n"), "mapping.date_field"),
        (field("[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\n[[datasets.orders.mapping.fields]]\nname = \"a.b\"\ncolumn = \"b\"\n"), "mapping.fields.a.b"),
        (field("decimal_separator = \";\"\n[[datasets.orders.mapping.fields]]\nname = \"a\"\ncolumn = \"a\"\n"), "mapping.decimal_separator"),
    ];
    for (text, field) in cases {
        let err = PipelineConfig::parse(&text, "t").unwrap_err().to_string();
        assert!(
            err.contains("`orders`") && err.contains(field),
            "{field}: {err}"
        );
    }
}

#[test]
fn error_lines_count_line_breaks_inside_cells() {
    let csv = "order_id,order_date,sku,qty,unit_price_eur,customer_e_mail,gift\n\
               A-1,,\"two\nlines\",1,,,\n\
               A-2,,S,x,,,\n";
    let report = transform_read(
        csv.as_bytes(),
        &mapping(ORDERS),
        None,
        None,
        usize::MAX,
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(report.errors[0].line, 4);
}

#[test]
fn integers_are_written_exactly_at_the_extremes() {
    for n in ["-9223372036854775808", "9223372036854775807", "0", "-7"] {
        let rec = record(&["A", "", "S", n, "", "", ""]).unwrap();
        assert_eq!(rec["line"]["quantity"].to_string(), n);
    }
}

fn keyed(extra: &str) -> Result<PipelineConfig, crate::config::ConfigError> {
    let text = ORDERS.replace(
        "max_error_share = 0.5\n",
        &format!("max_error_share = 0.5\n{extra}\n"),
    );
    PipelineConfig::parse(&text, "test")
}

#[test]
fn a_record_key_is_checked_at_load() {
    let ok = keyed(r#"record_key = ["orderId", "line.sku"]"#).unwrap();
    let delta = ok.dataset("orders").unwrap().mapping.clone().unwrap().delta;
    let delta = delta.unwrap();
    assert_eq!(delta.record_key, ["orderId", "line.sku"]);
    assert_eq!(
        (delta.scope, delta.on_missing),
        (DeltaScope::Name, OnMissing::Report)
    );
    for (extra, says) in [
        (r#"record_key = ["orderNo"]"#, "not an output field"),
        (r#"record_key = ["line"]"#, "nested object"),
        (r#"record_key = ["customer.email"]"#, "not required"),
        (r#"record_key = ["source"]"#, "constant"),
        (r#"record_key = ["orderId", "orderId"]"#, "named twice"),
        (r#"record_key = []"#, "at least one"),
        (r#"on_missing = "send""#, "only means something"),
        (
            "record_key = [\"orderId\"]\ndelta_scope = \"everywhere\"",
            "unknown variant `everywhere`",
        ),
    ] {
        let err = keyed(extra).unwrap_err().to_string();
        // Unknown words are refused by the TOML reader, which names the line instead.
        let located = err.contains("orders") || err.contains("line 9");
        assert!(located && err.contains(says), "{extra}: {err}");
    }
}

#[test]
fn a_keyed_mapping_hands_each_record_its_key_as_written() {
    let config = keyed(r#"record_key = ["line.sku", "orderId"]"#).unwrap();
    let m = config.dataset("orders").unwrap().mapping.clone().unwrap();
    let csv = "order_id,order_date,sku,qty,unit_price_eur,customer_e_mail,gift\n\
               A-1,2026-11-23 08:14,\"S \"\"9\"\"\",1,1.00,,\n\
               A-2,2026-11-23 09:00,S,many,1.00,,\n";
    let mut seen = Vec::new();
    let report = transform_read_keyed(csv.as_bytes(), &m, None, None, usize::MAX, |r, k| {
        seen.push((
            String::from_utf8(r.to_vec()).unwrap(),
            String::from_utf8(k.to_vec()).unwrap(),
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(report.records_out, 1);
    assert_eq!(seen[0].1, r#"["S \"9\"","A-1"]"#);
    let key: Vec<Value> = serde_json::from_str(&seen[0].1).unwrap();
    let record: Value = serde_json::from_str(&seen[0].0).unwrap();
    assert_eq!(
        key,
        [record["line"]["sku"].clone(), record["orderId"].clone()]
    );
    // A mapping without a key is refused rather than given empty keys.
    assert!(
        transform_read_keyed(csv.as_bytes(), &mapping(ORDERS), None, None, 9, |_, _| Ok(
            ()
        ))
        .is_err()
    );
}
