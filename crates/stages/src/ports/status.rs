//! The status store as the stages see it: files registered once, claimed with leases, moved
//! forward along the allowed transitions, delivery attempts recorded and settled. PostgreSQL
//! implements it for the Lambdas; an in-memory store for `sluice run` without a database.

use std::future::Future;
use std::time::SystemTime;

use serde_json::Value;
use sluice_core::{FileStatus, Stage};
use uuid::Uuid;

use crate::ports::CallLog;

/// Namespace of file ids: a file's id is a UUIDv5 of its source object, so the same object
/// (bucket, key, ETag) always gets the same id, whichever event or retry sees it first.
const FILE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1ce5f1_1e00_4c0d_9e3a_510ce51d0001);

/// The id of the file that `bucket/key` with this ETag is.
pub fn file_id(bucket: &str, key: &str, etag: &str) -> Uuid {
    let name = format!("s3://{bucket}/{key}#{}", etag.trim_matches('"'));
    Uuid::new_v5(&FILE_ID_NAMESPACE, name.as_bytes())
}

/// A file seen for the first time (or again).
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub dataset: &'a str,
    /// The sending site, for a file the listener copied in from an FTP/SFTP drop.
    pub site: Option<&'a str>,
    pub bucket: &'a str,
    pub key: &'a str,
    pub etag: &'a str,
    pub size: i64,
    /// The earlier run this upload replays (`sluice replay --from sanitize` copies the
    /// original to a new key with `sluice-replay-of` in its metadata).
    pub replay_of: Option<Uuid>,
    /// Who uploaded it (`sluice-uploaded-by` metadata), for the dashboard and notifications.
    pub uploaded_by: Option<&'a str>,
    /// When it was uploaded (see [`sluice_core::message::uploaded_at`]): what orders the files
    /// of a delta scope. A replay from sanitize keeps its earlier run's; `None` means when it
    /// is registered.
    pub uploaded_at: Option<std::time::SystemTime>,
}

/// What registering a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub id: Uuid,
    /// False when the file was already known (a redelivered event).
    pub created: bool,
    pub status: FileStatus,
}

/// Row counts a stage reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub rows_in: i64,
    pub rows_out: i64,
    pub rows_rejected: i64,
}

/// Counts a transform reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformCounts {
    pub records: i64,
    pub batches: i32,
    /// Rows that could not be mapped.
    pub rows_unmapped: i64,
}

/// A `file_process` row.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: Uuid,
    /// `None` only for a drop whose path matched no dataset (rejected at once).
    pub dataset: Option<String>,
    /// The sending site of an FTP/SFTP drop.
    pub site: Option<String>,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub source_size: i64,
    pub clean_key: Option<String>,
    pub status: FileStatus,
    pub failed_stage: Option<String>,
    pub error: Option<String>,
    pub rows_in: Option<i64>,
    pub rows_out: Option<i64>,
    pub rows_rejected: Option<i64>,
    pub records: Option<i64>,
    pub batches_sent: Option<i32>,
    pub batches_delivered: Option<i32>,
    pub rows_unmapped: Option<i64>,
    /// For a dataset with a record key: records new, changed and unchanged against what was
    /// delivered before, and keys missing against the previous file in scope.
    pub records_new: Option<i64>,
    pub records_changed: Option<i64>,
    pub records_unchanged: Option<i64>,
    pub records_missing: Option<i64>,
    /// Records not sent because a newer upload of the scope delivered their keys.
    pub records_superseded: Option<i64>,
    /// When the file was uploaded (what orders a delta scope's files).
    pub uploaded_at: Option<SystemTime>,
    /// A replay: the earlier run's file id and the stage it was replayed from.
    pub replay_of: Option<Uuid>,
    pub replay_from: Option<String>,
    pub uploaded_by: Option<String>,
    /// The config the file is handled with ([`sluice_core::plan::ConfigPin`]): where it was
    /// read from and its version, and its dataset section's digest; `None` until a stage
    /// pinned it.
    pub config_version: Option<String>,
    pub config_digest: Option<String>,
    pub received_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A `file_event` row.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub stage: String,
    pub status: FileStatus,
    pub detail: Value,
    pub at: SystemTime,
}

/// Who holds a lease and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The invocation: function and request id.
    pub owner: String,
    /// When the claim lapses if not released: the invocation's deadline.
    pub until: SystemTime,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The work is this caller's; `attempts` counts claims of it, this one included.
    Won { attempts: i32 },
    /// Another worker holds a live lease on it: do nothing now.
    Busy,
    /// The file is in another status (not yet ready, or already past this stage).
    Elsewhere(FileStatus),
    /// There is no such file (or batch's file).
    Missing,
}

/// A batch claim, with what a deliverer needs to know in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchClaim {
    /// `Won` or `Busy`.
    pub claim: Claim,
    /// The batch's attempts and whether one got a 2xx, before this claim.
    pub history: BatchHistory,
    /// The status of the batch's file; `None` when there is no such file.
    pub file_status: Option<FileStatus>,
    /// The dataset section the file's plan pinned ([`sluice_core::plan::ConfigPin`]); `None`
    /// when it has none.
    pub pinned: Option<serde_json::Value>,
}

/// What is on record for a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchHistory {
    /// Attempts so far (the highest attempt number).
    pub attempts: i32,
    /// Whether one of them got a 2xx.
    pub delivered: bool,
}

/// What a replay from the forward stage leaves out: the earlier run's batches with a 2xx when
/// the replay was made, and its counts, which the replay's own transform must match (the same
/// clean file through the same mapping makes the same batches; another config would not).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplaySkip {
    /// The earlier run's file id.
    pub of: Uuid,
    pub batches: i32,
    pub records: i64,
    /// Sequence numbers of the earlier run's delivered batches: not sent again.
    pub delivered: Vec<u32>,
}

/// One status store as the stages see it, cut into the capabilities they ask for: a stage
/// function is bound on the few it uses ([`Registry`], [`Progress`], [`Leases`], ...), so a
/// fake for its test implements only those. Every status write moves only along
/// [`sluice_core::status::TRANSITIONS`] (a write that would not is a no-op that says so), and
/// each move is an event in the file's history, written with it.
///
/// `Storage` carries what all the capabilities share: the store's error.
pub trait Storage: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;
}

/// Files registered once per source object, and read back.
pub trait Registry: Storage {
    /// Registers a file as `received`, or finds it if it is already known.
    fn register(
        &self,
        file: &NewFile<'_>,
    ) -> impl Future<Output = Result<Registered, Self::Error>> + Send;

    /// The file's row, if there is one.
    fn file(&self, id: Uuid) -> impl Future<Output = Result<Option<FileRow>, Self::Error>> + Send;

    /// The file's event history, oldest first.
    fn events(&self, id: Uuid) -> impl Future<Output = Result<Vec<EventRow>, Self::Error>> + Send;
}

/// Moves that any stage makes: forward along the table, failed, or a note in the history.
pub trait Progress: Storage {
    /// Moves the file to `to` if the table allows it from where it is; returns whether it
    /// moved. `detail` goes into the event.
    fn advance(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        detail: Value,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Marks the file failed at `stage` with `error` (unless it is final already).
    fn fail(
        &self,
        id: Uuid,
        stage: Stage,
        error: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Notes an error that will be retried, without moving the status; never on a final one.
    fn note_error(
        &self,
        id: Uuid,
        stage: Stage,
        error: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Records that `stage` dropped a message about file `id` because the file is final
    /// (`what` says which message): an event in its history, nothing else changes.
    fn note_dropped(
        &self,
        id: Uuid,
        stage: Stage,
        what: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A stage's outcome with its counts, written with the move that ends the stage.
pub trait Outcomes: Storage {
    /// Records a sanitize outcome (`sanitized` or `rejected`) with its counts and clean key.
    fn finish_sanitize(
        &self,
        id: Uuid,
        to: FileStatus,
        clean_key: Option<&str>,
        counts: RowCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Records a transform outcome: `transformed` with its counts, or `failed` with the reason.
    fn finish_transform(
        &self,
        id: Uuid,
        to: FileStatus,
        counts: TransformCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// Leases on a file: who works on it, until when.
pub trait Leases: Storage {
    /// Claims file `id` for `stage`: moves it `from` -> `to`, or takes `to` over when its
    /// lease expired, setting the lease.
    fn claim(
        &self,
        id: Uuid,
        stage: Stage,
        from: FileStatus,
        to: FileStatus,
        lease: &Lease,
    ) -> impl Future<Output = Result<Claim, Self::Error>> + Send;

    /// Leases file `id` without moving it, if it is in one of `statuses` with no live lease.
    fn claim_in_place(
        &self,
        id: Uuid,
        stage: Stage,
        statuses: &[FileStatus],
        lease: &Lease,
    ) -> impl Future<Output = Result<Claim, Self::Error>> + Send;

    /// Gives up `owner`'s lease on file `id`.
    fn release(
        &self,
        id: Uuid,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A file's plan: fixed once, then its batches marked as they are cut.
pub trait Plans: Storage {
    /// Fixes file `id`'s plan ([`sluice_core::plan::FilePlan`], as JSON): each key of
    /// `proposed` the row's plan lacks is added, those it has are kept. Returns the plan now on
    /// the row (`None` if there is no row).
    fn fix_plan(
        &self,
        id: Uuid,
        proposed: &serde_json::Value,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, Self::Error>> + Send;

    /// Records the marks of some of file `id`'s batches (`marks`: an object of batch sequence
    /// numbers to [`sluice_core::plan::BatchMark`]s) in its plan's `batches`, each kept if one
    /// is there already (first writer wins). Returns the marks now recorded for those
    /// sequence numbers (`None` if there is no row).
    fn mark_batches(
        &self,
        id: Uuid,
        marks: &serde_json::Value,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, Self::Error>> + Send;

    /// For a replay from the forward stage, what it leaves out; `None` for any other file
    /// (stores without replays need not implement it).
    fn replay_skip(
        &self,
        _id: Uuid,
    ) -> impl Future<Output = Result<Option<ReplaySkip>, Self::Error>> + Send {
        async { Ok(None) }
    }
}

/// Batches claimed across their POST, and a file's delivery settled from the calls on record.
pub trait Batches: Storage {
    /// Claims batch `batch_id` of file `file_id` for delivery, across the POST; with the
    /// batch's history and the file's status, in one round trip.
    fn claim_batch(
        &self,
        file_id: Uuid,
        batch_id: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<BatchClaim, Self::Error>> + Send;

    /// Gives up `owner`'s claim on a batch.
    fn release_batch(
        &self,
        batch_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The batch's attempts so far and whether it is delivered.
    fn batch_history(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<BatchHistory, Self::Error>> + Send;

    /// The ids of the file's batches with a 2xx on record.
    fn delivered_batches(
        &self,
        file_id: Uuid,
    ) -> impl Future<Output = Result<std::collections::HashSet<String>, Self::Error>> + Send;

    /// Brings `batches_delivered` and the status up to date with the calls on record:
    /// `delivering` once a batch is through, `delivered` once all are. Returns the status.
    fn settle_delivery(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<FileStatus, Self::Error>> + Send;
}

/// The whole status store: what an adapter implements, and what a caller that drives every
/// stage (a local run, the contract suite) asks for.
pub trait StatusStore: Registry + Progress + Outcomes + Leases + Plans + Batches + CallLog {}

impl<T: Registry + Progress + Outcomes + Leases + Plans + Batches + CallLog> StatusStore for T {}
