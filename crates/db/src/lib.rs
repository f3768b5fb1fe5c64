//! Sluice's status store on PostgreSQL (RDS in production).
//!
//! One connection per process ([`Db`]), re-made when it drops; embedded, ordered migrations
//! ([`migrate`]); and the [`Store`] that writes `file_process`, `file_event` and `api_call`
//! with forward-only status moves.

mod calls;
mod connect;
mod migrate;
mod store;

pub use calls::{ApiCall, ApiCallRow, BatchHistory};
pub use connect::{Db, DbConfig};
pub use migrate::migrate;
pub use store::{
    file_id, EventRow, FileRow, NewFile, Registered, RowCounts, Store, TransformCounts,
};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection settings are wrong; fix the configuration.
    #[error("database configuration: {0}")]
    Config(String),
    /// PostgreSQL refused or the connection failed; usually worth a retry.
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migration(String),
    /// A stored value is not one Sluice writes.
    #[error("database holds an unexpected value: {0}")]
    Corrupt(String),
}
