//! A dataset's mapping over a clean file with no CLI around it: a quick target for
//! `perf record` while tuning (the release CLI takes minutes to link; this takes seconds).
//!
//! `cargo run --release -p sluice-core --example transform_file -- CONFIG DATASET INPUT OUTPUT`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use sluice_core::transform::transform_read;
use sluice_core::PipelineConfig;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, dataset, input, output] = args.as_slice() else {
        eprintln!("usage: transform_file CONFIG DATASET INPUT OUTPUT");
        return ExitCode::from(2);
    };
    match run(config, dataset, input, output) {
        Ok(records) => {
            eprintln!("{records} records");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("transform_file: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    config: &str,
    dataset: &str,
    input: &str,
    output: &str,
) -> Result<u64, Box<dyn std::error::Error>> {
    let config = PipelineConfig::load(std::path::Path::new(config))?;
    let mapping = config
        .dataset(dataset)?
        .mapping
        .clone()
        .ok_or("the dataset has no mapping")?;
    let mut out = BufWriter::new(File::create(output)?);
    let report = transform_read(
        File::open(input)?,
        &mapping,
        None,
        None,
        usize::MAX,
        |record| {
            out.write_all(record)?;
            out.write_all(b"\n")
        },
    )?;
    out.flush()?;
    Ok(report.records_out)
}
