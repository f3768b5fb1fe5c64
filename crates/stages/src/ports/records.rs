//! What was delivered per record key, for datasets with a record key, kept per dataset and
//! scope (the files that are versions of one another: the same original name by default; see
//! [`DeltaScope`](sluice_core::transform::DeltaScope)). The transformer plans
//! which of a file's records to send (new or changed keys) and claims them, so two files never
//! both send the same new record; the forwarder writes the state when a batch gets its 2xx.
//!
//! A file's plan is made once, in the transformer's first pass, and kept until its batches are
//! through: a retried transform sends exactly the planned records in the planned batches, so a
//! batch id always names the same records.

use std::future::Future;

use sluice_core::transform::delta::{DeltaReport, RecordHash};
use uuid::Uuid;

use crate::ports::{StatusStore, Storage};

/// How a record compares with what was last delivered for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    New,
    Changed,
    Unchanged,
    /// A newer upload of the scope delivered other content for the key: not sent.
    Superseded,
}

/// Why a planned record is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    New,
    Changed,
    /// Sent anyway: a full replay.
    Unchanged,
    /// A key the previous file had: a "deleted" record.
    Deleted,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::New => "new",
            RecordKind::Changed => "changed",
            RecordKind::Unchanged => "unchanged",
            RecordKind::Deleted => "deleted",
        }
    }
}

/// A record the plan sends: its place among the file's records, and its batch.
#[derive(Debug, Clone, Copy)]
pub struct PlannedRecord<'a> {
    pub ordinal: u64,
    pub key: &'a str,
    pub hash: &'a RecordHash,
    pub kind: RecordKind,
    pub seq: u32,
}

/// Keys the previous file in a scope had that this file has not (only keys the API was sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    pub previous: Option<Uuid>,
    /// A newer upload the scope has already planned: only the newest file looks for missing
    /// keys, so none are found for this one.
    pub newer: Option<Uuid>,
    pub count: u64,
    /// The first `limit` keys, sorted.
    pub first: Vec<String>,
}

/// One entry of a file's plan, as the second pass reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub ordinal: u64,
    pub seq: u32,
    /// For a "deleted" record, the key it is built from.
    pub deleted_key: Option<String>,
}

/// What the transformer's first pass asks while it plans which records to send. Every method
/// is one round trip (or one transaction).
pub trait RecordPlanning: Storage {
    /// Compares records with what was delivered for their keys in the scope, in upload order
    /// (a key a newer upload delivered is [`Compared::Superseded`]); with `remember`, notes
    /// the keys as this file's (chunk `chunk`), for finding missing keys later.
    #[allow(clippy::too_many_arguments)]
    fn compare_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        chunk: u32,
        keys: &[String],
        hashes: &[RecordHash],
        remember: bool,
    ) -> impl Future<Output = Result<Vec<Compared>, Self::Error>> + Send;

    /// The scope's newest planned file, if it was uploaded after this one.
    fn newer_upload(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
    ) -> impl Future<Output = Result<Option<Uuid>, Self::Error>> + Send;

    /// Adds records to the file's plan; returns the ordinals added. With `exclusive`, a
    /// record whose key and content another plan (of this file or another) is sending now is
    /// not added: that is the claim that keeps two uploads from both sending it.
    fn plan_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        records: &[PlannedRecord<'_>],
        exclusive: bool,
    ) -> impl Future<Output = Result<Vec<u64>, Self::Error>> + Send;

    /// Moves planned records to other batches: `(ordinal, seq)`.
    fn renumber(
        &self,
        file: Uuid,
        seqs: &[(u64, u32)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The keys the previous file of `scope` had and this one has not, among those delivered
    /// by files uploaded no later than this one; none when a newer upload of the scope has
    /// already planned ([`Missing::newer`]).
    fn missing_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Missing, Self::Error>> + Send;

    /// Plans a "deleted" record for each missing key (ordinals from
    /// [`DELETED_ORDINAL_BASE`](sluice_core::transform::delta::DELETED_ORDINAL_BASE) + 1, in
    /// key order, no batch yet); returns how many.
    fn plan_deletions(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Planned "deleted" records with no batch yet, after `after`: `(ordinal, key)`.
    fn unnumbered(
        &self,
        file: Uuid,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(u64, String)>, Self::Error>> + Send;

    /// Records the finished plan and its counts on the file; with `remember`, the file becomes
    /// the one the scope's next file is compared with for missing keys, unless a newer upload
    /// already is.
    fn complete_plan(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        remember: bool,
        report: &DeltaReport,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A file's record plan as the transformer reads it back: whether it is finished, and its
/// records in order.
pub trait RecordPlans: Storage {
    /// The file's finished plan, if its first pass completed one.
    fn delta_plan(
        &self,
        file: Uuid,
    ) -> impl Future<Output = Result<Option<DeltaReport>, Self::Error>> + Send;

    /// Forgets an unfinished plan of the file (a first pass that stopped part way).
    fn discard_plan(&self, file: Uuid) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The file's planned records after ordinal `after`, in order.
    fn planned(
        &self,
        file: Uuid,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Planned>, Self::Error>> + Send;
}

/// What the forwarder writes when a batch gets its 2xx.
pub trait DeliveredRecords: Storage {
    /// Batch `seq` of the file got its 2xx: its records become what was delivered for their
    /// keys (a "deleted" record removes its key), except for keys a newer upload delivered
    /// meanwhile. Returns the records of the batch; a batch done before has none.
    fn record_delivered(
        &self,
        file: Uuid,
        seq: u32,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}

/// The whole record-state store beside the status store: what an adapter implements.
pub trait RecordState: StatusStore + RecordPlanning + RecordPlans + DeliveredRecords {}

impl<T: StatusStore + RecordPlanning + RecordPlans + DeliveredRecords> RecordState for T {}
