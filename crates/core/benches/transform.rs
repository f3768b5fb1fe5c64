//! Mapping throughput: clean 8-column order rows into JSON records, with the shipped
//! `orders` mapping (datetime in Europe/Paris, integer, exact decimal, nested fields).
//!
//! `cargo bench -p sluice-core --bench transform`; `SLUICE_BENCH_ROWS` sets the row count.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_core::transform::transform_read;
use sluice_core::PipelineConfig;

fn clean_orders(rows: usize) -> Vec<u8> {
    let mut out =
        b"order_id,order_date,sku,qty,unit_price_eur,coupon,customer_e_mail,notes\r\n".to_vec();
    for i in 0..rows {
        let row =
            format!(
            "A-{i:09},2026-11-{:02} {:02}:{:02},SKU-{},{},{}.{:02},{},user{}@example.com,{}\r\n",
            1 + i % 28,
            i % 24,
            i % 60,
            i % 97,
            1 + i % 5,
            10 + i % 90,
            i % 100,
            if i % 10 == 0 { "WELCOME5" } else { "" },
            i % 997,
            if i % 7 == 0 { "\"leave at door, side gate\"" } else { "" },
        );
        out.extend_from_slice(row.as_bytes());
    }
    out
}

fn bench(c: &mut Criterion) {
    let rows: usize = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let config = PipelineConfig::parse(include_str!("../../../pipelines.toml"), "pipelines.toml")
        .expect("shipped config loads");
    let mapping = config.dataset("orders").unwrap().mapping.clone().unwrap();
    let input = clean_orders(rows);
    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10);
    group.bench_function("orders rows to JSON", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let report = transform_read(input.as_slice(), &mapping, None, None, usize::MAX, |r| {
                bytes += r.len();
                Ok(())
            })
            .unwrap();
            assert_eq!(report.records_out as usize, rows);
            bytes
        })
    });
    // The reference for keeping the hand-written record writer: the same records built as a
    // `serde_json::Value` per row and serialized (no parsing of dates or decimals at all, and
    // the decimal as a raw string, so this is a lower bound on what serde_json would cost).
    group.bench_function("same shape through serde_json::Value (reference)", |b| {
        b.iter(|| {
            let mut reader = csv::ReaderBuilder::new().from_reader(input.as_slice());
            let mut row = csv::StringRecord::new();
            let mut out = Vec::with_capacity(512);
            let mut bytes = 0usize;
            while reader.read_record(&mut row).unwrap() {
                let record = serde_json::json!({
                    "orderId": &row[0],
                    "orderedAt": &row[1],
                    "line": {
                        "sku": &row[2],
                        "quantity": row[3].parse::<i64>().unwrap(),
                        "unitPrice": &row[4],
                        "coupon": &row[5],
                    },
                    "customer": { "email": &row[6] },
                    "currency": "EUR",
                });
                out.clear();
                serde_json::to_writer(&mut out, &record).unwrap();
                bytes += out.len();
            }
            bytes
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
