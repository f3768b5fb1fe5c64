//! Turning clean CSV rows into typed JSON records, per dataset (issue 4, in progress): the
//! mapping config, the typed value parsers and the record writer. The file driver, batches and
//! the transformer Lambda come next.

pub mod batch;
pub mod record;
pub mod run;
pub mod spec;
pub mod value;

pub use record::{FieldError, RecordMapper};
pub use run::{
    transform_read, DateFilter, RowError, TransformError, TransformReport, TransformVerdict,
};
pub use spec::{Empty, FieldSpec, Kind, Mapping, Source};

#[cfg(test)]
mod tests;
