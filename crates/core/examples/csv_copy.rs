//! The reference the sanitizer benchmark measures against: a plain csv-crate parse-and-write
//! of a file (records read as bytes, written back RFC 4180), with no checks at all.
//!
//! `cargo run --release -p sluice-core --example csv_copy -- INPUT OUTPUT`

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: csv_copy INPUT OUTPUT");
        return ExitCode::from(2);
    };
    match copy(input, output) {
        Ok(records) => {
            eprintln!("{records} records");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("csv_copy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn copy(input: &str, output: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(256 * 1024, File::open(input)?));
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::CRLF)
        .from_writer(BufWriter::with_capacity(256 * 1024, File::create(output)?));
    let mut record = csv::ByteRecord::new();
    let mut records = 0;
    while reader.read_byte_record(&mut record)? {
        writer.write_byte_record(&record)?;
        records += 1;
    }
    writer.flush()?;
    Ok(records)
}
