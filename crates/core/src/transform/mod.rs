//! Turning clean CSV rows into typed JSON records, per dataset: the mapping config (`spec`),
//! typed cell parsers (`value`), the record writer (`record`), the file driver with its report
//! and date-range filter (`run`), and batching into "record batch" messages (`batch`). The
//! transformer Lambda and `sluice transform` drive the same code.

pub mod batch;
pub mod delta;
mod fixed_time;
pub mod record;
pub mod run;
pub mod spec;
pub mod value;

pub use record::{FieldError, RecordMapper};
pub use run::{
    transform_read, transform_read_keyed, DateFilter, RowError, TransformError, TransformReport,
    TransformVerdict,
};
pub use spec::{Delta, DeltaScope, Empty, FieldSpec, Kind, Mapping, OnMissing, Source};

#[cfg(test)]
mod tests;
