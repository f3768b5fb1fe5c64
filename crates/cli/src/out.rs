//! Standard output for the commands. A reader that stops reading (`| head -1`, a script that
//! takes one line) ends the output, not the command: the work it reports on is done, and the
//! exit code still says how it went (Rust's `println!` would panic on the closed pipe).

use std::io::{ErrorKind, Write};

/// Writes `args` (and a line break when `newline`) to standard output; a closed pipe is not an
/// error, any other failure is said once on standard error.
pub fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| match newline {
            true => out.write_all(b"\n"),
            false => Ok(()),
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() != ErrorKind::BrokenPipe {
            eprintln!("sluice: writing to standard output: {e}");
        }
    }
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::emit(format_args!($($arg)*), true)
    };
}

/// `print!` that survives a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::emit(format_args!($($arg)*), false)
    };
}
