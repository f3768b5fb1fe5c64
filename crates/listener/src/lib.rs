//! The listener: a Lambda on an EventBridge schedule (every 5 minutes by default). Each run
//! sweeps the FTP/SFTP drop areas into quarantine ([`sweep`]), registers quarantine objects that
//! have no row ([`reconcile`]) and re-drives files that stopped short of a final status
//! ([`redrive`]), within its time, and says what it did ([`Summary`]).

pub mod dead_letters;
mod handler;
pub mod reconcile;
pub mod redrive;
mod settings;
pub mod sweep;

pub use handler::{handle, run, Budget, Deps, Summary};
pub use settings::Settings;
