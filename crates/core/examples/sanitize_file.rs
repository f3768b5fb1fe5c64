//! The sanitizer file to file with the default policy and no CLI around it: a quick target for
//! `perf record` while tuning (the release CLI takes minutes to link; this takes seconds).
//!
//! `cargo run --release -p sluice-core --example sanitize_file -- INPUT OUTPUT [--single]`

use std::fs::File;
use std::process::ExitCode;

use sluice_core::sanitize::drive::{sanitize_pipelined, sanitize_read};
use sluice_core::Policy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, output, single) = match args.as_slice() {
        [i, o] => (i, o, false),
        [i, o, flag] if flag == "--single" => (i, o, true),
        _ => {
            eprintln!("usage: sanitize_file INPUT OUTPUT [--single]");
            return ExitCode::from(2);
        }
    };
    let run = || -> std::io::Result<_> {
        let (input, output) = (File::open(input)?, File::create(output)?);
        match single {
            true => sanitize_read(
                input,
                std::io::BufWriter::new(output),
                Policy::default(),
                None,
            ),
            false => sanitize_pipelined(input, output, Policy::default(), None),
        }
    };
    match run() {
        Ok(report) => {
            eprintln!(
                "{:?}: {} rows out, sha256 out {}",
                report.verdict,
                report.rows_out,
                report.sha256_out.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sanitize_file: {e}");
            ExitCode::FAILURE
        }
    }
}
