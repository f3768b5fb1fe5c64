//! Sanitizer throughput on a realistic in-memory orders file, beside the floor set by the
//! parts it cannot skip (csv-core parsing, SHA-256 of input and output).
//!
//! `cargo bench -p sluice-core --bench sanitize`; set `SLUICE_BENCH_MB` for another size.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use sluice_core::sanitize::drive::CHUNK_BYTES;
use sluice_core::{Policy, Sanitizer, Verdict};

/// A quoted orders export like `bench/gen_orders.py` writes: BOM, CRLF, every field quoted,
/// some accents, commas and quotes in notes, one hostile cell in a few hundred rows.
fn orders_csv(target: usize) -> Vec<u8> {
    const NAMES: [&str; 8] = [
        "anna",
        "ben",
        "chloé",
        "dmitri",
        "eve",
        "françois",
        "zoë",
        "jo",
    ];
    const SKUS: [&str; 4] = ["SKU-RED-M", "SKU-BLU-L", "SKU-GRN-S", "SKU-BLK-XL"];
    const NOTES: [&str; 8] = [
        "",
        "",
        "",
        "gift wrap",
        "leave at door, side gate",
        "said \"\"ring twice\"\"",
        "fragile\nhandle with care",
        "Straße 12, 3. OG",
    ];
    const HOSTILE: [&str; 4] = [
        "=1+1",
        "<script>alert(1)</script>",
        "@SUM(A1)",
        "javascript:x",
    ];
    let mut out = "\u{FEFF}Order ID,Order Date,SKU,Quantity,Unit Price,Coupon,Customer Email,\
                   Customer Name,Notes\r\n"
        .as_bytes()
        .to_vec();
    let mut seed: u64 = 42;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut i = 0u64;
    while out.len() < target {
        let name = NAMES[next(8) as usize];
        let note = if next(500) == 0 {
            HOSTILE[next(4) as usize]
        } else {
            NOTES[next(8) as usize]
        };
        let row = format!(
            "\"A-{i:09}\",\"2026-11-{:02} {:02}:{:02}:{:02}\",\"{}\",\"{}\",\"{}.{:02}\",\"\",\
             \"{name}.{}@example.com\",\"{name} Smith\",\"{note}\"\r\n",
            1 + next(28),
            next(24),
            next(60),
            next(60),
            SKUS[next(4) as usize],
            1 + next(5),
            1 + next(99),
            next(100),
            i % 997,
        );
        out.extend_from_slice(row.as_bytes());
        i += 1;
    }
    out
}

fn sanitize(input: &[u8]) -> u64 {
    let mut sanitizer = Sanitizer::new(Policy::default(), None);
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut written = 0;
    for chunk in input.chunks(CHUNK_BYTES) {
        sanitizer.feed(chunk, &mut out).expect("accepted");
        written += out.len() as u64;
        out.clear();
    }
    let report = sanitizer.finish(&mut out);
    assert_eq!(report.verdict, Verdict::Accepted);
    written + out.len() as u64
}

fn parse_only(input: &[u8]) -> usize {
    let mut reader = csv_core::Reader::new();
    let (mut out, mut ends) = (vec![0u8; 1 << 16], vec![0usize; 64]);
    let mut records = 0;
    let mut rest = input;
    loop {
        let (res, nin, _, _) = reader.read_record(rest, &mut out, &mut ends);
        rest = &rest[nin..];
        match res {
            csv_core::ReadRecordResult::Record => records += 1,
            csv_core::ReadRecordResult::End => return records,
            _ => {}
        }
    }
}

fn bench(c: &mut Criterion) {
    let mb: usize = std::env::var("SLUICE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let input = orders_csv(mb << 20);
    let mut group = c.benchmark_group("orders");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    group.bench_function("sanitize", |b| b.iter(|| sanitize(&input)));
    group.bench_function("floor: csv-core parse", |b| b.iter(|| parse_only(&input)));
    group.bench_function("floor: sha256 x2", |b| {
        b.iter(|| (Sha256::digest(&input), Sha256::digest(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
