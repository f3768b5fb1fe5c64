//! Sluice's status store on PostgreSQL (RDS in production).
//!
//! One connection per process ([`Db`]), re-made when it drops; embedded, ordered migrations
//! ([`migrate`]); and the [`Store`] that writes `file_process`, `file_event` and `api_call`
//! with forward-only status moves and leases.
//!
//! Boundary: implements the stages' status, record-state and call-log ports; knows no other
//! adapter.

mod calls;
mod connect;
mod drops;
mod lease;
mod migrate;
mod notify;
mod port;
mod reconcile;
mod records;
mod redrive;
mod replay;
mod store;

pub use calls::ApiCallRow;
pub use connect::{redact_url, Db, DbConfig, Refresh};
pub use drops::{DropClaim, DropCursor, DropObject};
pub use migrate::{migrate, pending_migrations};
pub use redrive::{stuck_condition, Redrive, Stuck, StuckFile};
pub use replay::{Earlier, ReplayError, ReplayFrom, Replayed};
pub use sluice_stages::ports::{
    file_id, ApiCall, BatchHistory, Claim, EventRow, FileRow, Lease, NewFile, Registered,
    ReplaySkip, RowCounts, TransformCounts,
};
pub use store::{FileQuery, Store};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection settings are wrong; fix the configuration.
    #[error("database configuration: {0}")]
    Config(String),
    /// PostgreSQL refused or the connection failed; usually worth a retry. Shown with its
    /// causes (tokio-postgres alone says only "db error" or "error performing TLS handshake").
    #[error("database: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migration(String),
    /// A stored value is not one Sluice writes.
    #[error("database holds an unexpected value: {0}")]
    Corrupt(String),
}

/// An error and its chain of sources, as one line.
fn with_causes(error: &tokio_postgres::Error) -> String {
    sluice_core::errors::chain(error)
}
