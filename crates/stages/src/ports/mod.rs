//! The capabilities stages work through. Each is a small trait; adapters implement them (the
//! AWS and PostgreSQL ones for the Lambdas, local ones for a machine without services).

mod calls;
mod notify;
mod objects;
mod post;
mod records;
mod secrets;
pub mod status;
pub mod sweep;

pub use calls::{ApiCall, CallLog};
pub use notify::{
    flush, FileNotice, Flushed, NoticeCounts, Notifier, Outstanding, DETAIL_TYPE, EVENT_SOURCE,
};
pub use objects::{ObjectMeta, ObjectUpload, Objects, Outbox};
pub use post::Poster;
pub use records::{
    Compared, DeliveredRecords, Missing, Planned, PlannedRecord, RecordKind, RecordPlanning,
    RecordPlans, RecordState,
};
pub use secrets::{secret_field, SecretError, SecretFuture, SecretSource};
pub use status::*;
pub use sweep::{Redrive, Stuck, StuckFile, Sweep};
