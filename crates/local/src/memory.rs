//! The embedded status store: the same files, transitions, leases, events and delivery
//! bookkeeping as PostgreSQL, held in memory for one process.
//!
//! In memory rather than SQLite: a local run is one process, so nothing needs to be shared or
//! to outlive it unless the user asks for history, and then `DATABASE_URL` gives the real
//! store with no second SQL dialect to keep equal. The shared contract test suite
//! (tests/status_contract.rs) runs against both.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sluice_core::transform::delta::{DeltaReport, RecordHash};
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::sweep::idle_spacing;
use sluice_stages::ports::{
    file_id, ApiCall, BatchClaim, BatchHistory, Batches, CallLog, Claim, Compared,
    DeliveredRecords, EventRow, FileNotice, FileRow, Lease, Leases, Missing, NewFile, Outcomes,
    Outstanding, Planned, PlannedRecord, Plans, Progress, RecordPlanning, RecordPlans, Redrive,
    Registered, Registry, RowCounts, Storage, Stuck, StuckFile, Sweep, TransformCounts,
};
use uuid::Uuid;

use crate::records::RecordBook;

/// The embedded store never fails; its error type says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    records: Mutex<RecordBook>,
    /// Where the record state is saved between runs, if anywhere.
    records_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<Uuid, Entry>,
    sources: HashMap<(String, String, String), Uuid>,
    calls: Vec<Call>,
    batch_claims: HashMap<String, Held>,
    /// Notifications: files whose final status was published, and those taken until when.
    published: HashSet<Uuid>,
    held: HashMap<Uuid, SystemTime>,
}

#[derive(Debug)]
struct Entry {
    row: FileRow,
    lease: Option<Held>,
    attempts: i32,
    events: Vec<EventRow>,
    /// The file's plan (see `StatusStore::fix_plan`).
    plan: Option<Value>,
    /// Its batches' marks by sequence number (see `StatusStore::mark_batches`).
    marks: std::collections::BTreeMap<String, Value>,
    /// Re-drives after lapsed leases, and re-sends while idle (see [`Sweep`]).
    redrives: i32,
    resends: i32,
}

#[derive(Debug, Clone)]
struct Held {
    owner: Option<String>,
    until: Option<SystemTime>,
    attempts: i32,
}

impl Held {
    fn live(&self) -> bool {
        self.owner.is_some() && self.until.is_some_and(|u| u > SystemTime::now())
    }
}

#[derive(Debug)]
struct Call {
    file_id: Uuid,
    batch_id: String,
    attempt: i32,
    http_status: Option<i32>,
}

impl Call {
    fn delivered(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl State {
    /// What is on record of deliveries of `batch_id`.
    fn batch_history(&self, batch_id: &str) -> BatchHistory {
        let calls = self.calls.iter().filter(|c| c.batch_id == batch_id);
        let (mut attempts, mut delivered) = (0, false);
        for call in calls {
            attempts = attempts.max(call.attempt);
            delivered |= call.delivered();
        }
        BatchHistory {
            attempts,
            delivered,
        }
    }
}

impl Entry {
    fn event(&mut self, stage: &str, status: FileStatus, detail: Value) {
        self.events.push(EventRow {
            stage: stage.to_string(),
            status,
            detail,
            at: SystemTime::now(),
        });
    }

    fn lease_is_live(&self) -> bool {
        self.lease.as_ref().is_some_and(Held::live)
    }

    /// How the file is stuck at `now`, if it is (the same rules as PostgreSQL's).
    fn stuck(&self, now: SystemTime, stale_after: Duration) -> Option<Stuck> {
        if self.row.status.is_final() {
            return None;
        }
        match self.lease.as_ref().and_then(|h| h.until) {
            Some(until) if until < now => Some(Stuck::LeaseLapsed),
            Some(_) => None,
            None => {
                let spacing = idle_spacing(stale_after, self.resends);
                (self.row.updated_at + spacing < now).then_some(Stuck::Idle)
            }
        }
    }
}

/// What a transition writes beside the status.
#[derive(Default)]
struct Extra<'a> {
    clean_key: Option<&'a str>,
    counts: Option<RowCounts>,
    transform: Option<TransformCounts>,
    reason: Option<&'a str>,
    error: Option<&'a str>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose record state (what was delivered per record key, for datasets with a
    /// `record_key`) starts from what `path` holds and is saved there by
    /// [`save_records`](Self::save_records).
    pub fn with_records_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            records: Mutex::new(RecordBook::load(path)?),
            records_file: Some(path.to_path_buf()),
            ..Self::default()
        })
    }

    /// Saves the record state where [`with_records_file`](Self::with_records_file) said.
    pub fn save_records(&self) -> std::io::Result<()> {
        match &self.records_file {
            Some(path) => self.records().save(path),
            None => Ok(()),
        }
    }

    pub(crate) fn records(&self) -> MutexGuard<'_, RecordBook> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When file `file` was uploaded (now for a file this store does not know).
    fn uploaded_at(&self, file: Uuid) -> SystemTime {
        self.state()
            .files
            .get(&file)
            .and_then(|e| e.row.uploaded_at)
            .unwrap_or_else(SystemTime::now)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn transition(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        extra: Extra<'_>,
        detail: Value,
    ) -> bool {
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return false;
        };
        let row = &mut entry.row;
        if !row.status.may_become(to) {
            return false;
        }
        row.status = to;
        row.updated_at = SystemTime::now();
        if to == FileStatus::Failed {
            row.failed_stage = Some(stage.as_str().to_string());
        }
        row.error = match to {
            FileStatus::Failed | FileStatus::Rejected => {
                extra.error.or(extra.reason).map(str::to_string)
            }
            _ => None,
        };
        if let Some(key) = extra.clean_key {
            row.clean_key = Some(key.to_string());
        }
        if let Some(c) = extra.counts {
            (row.rows_in, row.rows_out, row.rows_rejected) =
                (Some(c.rows_in), Some(c.rows_out), Some(c.rows_rejected));
        }
        if let Some(t) = extra.transform {
            (row.records, row.batches_sent, row.rows_unmapped) =
                (Some(t.records), Some(t.batches), Some(t.rows_unmapped));
        }
        entry.lease = None;
        entry.event(stage.as_str(), to, detail);
        drop(state);
        if matches!(to, FileStatus::Failed | FileStatus::Rejected) {
            self.records().release(id);
        }
        true
    }
}

impl CallLog for MemoryStore {
    async fn record_call(&self, call: &ApiCall<'_>) -> Result<Option<FileStatus>, Never> {
        let mut state = self.state();
        let delivered = call.http_status.is_some_and(|s| (200..300).contains(&s));
        state.calls.push(Call {
            file_id: call.file_id,
            batch_id: call.batch_id.to_string(),
            attempt: call.attempt,
            http_status: call.http_status,
        });
        // As in PostgreSQL: a 2xx ends the batch's claim with the record.
        if delivered {
            if let Some(held) = state.batch_claims.get_mut(call.batch_id) {
                (held.owner, held.until) = (None, None);
            }
        }
        Ok(None)
    }
}

impl Storage for MemoryStore {
    type Error = Never;
}

impl Registry for MemoryStore {
    async fn register(&self, file: &NewFile<'_>) -> Result<Registered, Never> {
        let mut state = self.state();
        let source = (
            file.bucket.to_string(),
            file.key.to_string(),
            file.etag.to_string(),
        );
        if let Some(id) = state.sources.get(&source) {
            let id = *id;
            let status = state.files[&id].row.status;
            return Ok(Registered {
                id,
                created: false,
                status,
            });
        }
        let id = file_id(file.bucket, file.key, file.etag);
        let now = SystemTime::now();
        // Only a file this store knows can be replayed: other metadata is ignored.
        let replay_of = file.replay_of.filter(|of| state.files.contains_key(of));
        let mut entry = Entry {
            row: FileRow {
                id,
                dataset: Some(file.dataset.to_string()),
                site: file.site.map(str::to_string),
                source_bucket: file.bucket.to_string(),
                source_key: file.key.to_string(),
                source_etag: file.etag.to_string(),
                source_size: file.size,
                clean_key: None,
                status: FileStatus::Received,
                failed_stage: None,
                error: None,
                rows_in: None,
                rows_out: None,
                rows_rejected: None,
                records: None,
                batches_sent: None,
                batches_delivered: None,
                rows_unmapped: None,
                records_new: None,
                records_changed: None,
                records_unchanged: None,
                records_missing: None,
                records_superseded: None,
                // A replay from sanitize keeps its earlier run's.
                uploaded_at: replay_of
                    .and_then(|of| state.files.get(&of))
                    .and_then(|earlier| earlier.row.uploaded_at)
                    .or(file.uploaded_at)
                    .or(Some(now)),
                replay_of,
                replay_from: replay_of.map(|_| "sanitize".to_string()),
                uploaded_by: file.uploaded_by.map(str::to_string),
                config_version: None,
                config_digest: None,
                received_at: now,
                updated_at: now,
            },
            lease: None,
            attempts: 0,
            events: Vec::new(),
            plan: None,
            marks: Default::default(),
            redrives: 0,
            resends: 0,
        };
        let detail = json!({ "bucket": file.bucket, "key": file.key });
        entry.event(Stage::Listener.as_str(), FileStatus::Received, detail);
        state.files.insert(id, entry);
        state.sources.insert(source, id);
        Ok(Registered {
            id,
            created: true,
            status: FileStatus::Received,
        })
    }

    async fn file(&self, id: Uuid) -> Result<Option<FileRow>, Never> {
        Ok(self.state().files.get(&id).map(|e| e.row.clone()))
    }

    async fn events(&self, id: Uuid) -> Result<Vec<EventRow>, Never> {
        Ok(self
            .state()
            .files
            .get(&id)
            .map(|e| e.events.clone())
            .unwrap_or_default())
    }
}

impl Progress for MemoryStore {
    async fn advance(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        detail: Value,
    ) -> Result<bool, Never> {
        Ok(self.transition(id, stage, to, Extra::default(), detail))
    }

    async fn fail(&self, id: Uuid, stage: Stage, error: &str) -> Result<bool, Never> {
        let extra = Extra {
            error: Some(error),
            ..Extra::default()
        };
        let detail = json!({ "error": error });
        Ok(self.transition(id, stage, FileStatus::Failed, extra, detail))
    }

    async fn note_error(&self, id: Uuid, stage: Stage, error: &str) -> Result<(), Never> {
        let mut state = self.state();
        if let Some(entry) = state.files.get_mut(&id) {
            if !entry.row.status.is_final() {
                entry.row.error = Some(error.to_string());
                entry.row.updated_at = SystemTime::now();
                let status = entry.row.status;
                entry.event(
                    stage.as_str(),
                    status,
                    json!({ "error": error, "retry": true }),
                );
            }
        }
        Ok(())
    }

    async fn note_dropped(&self, id: Uuid, stage: Stage, what: &str) -> Result<(), Never> {
        let mut state = self.state();
        if let Some(entry) = state.files.get_mut(&id) {
            if entry.row.status.is_final() {
                let status = entry.row.status;
                let detail = json!({ "dropped": what, "why": "the file is final" });
                entry.event(stage.as_str(), status, detail);
            }
        }
        Ok(())
    }
}

impl Outcomes for MemoryStore {
    async fn finish_sanitize(
        &self,
        id: Uuid,
        to: FileStatus,
        clean_key: Option<&str>,
        counts: RowCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<bool, Never> {
        let extra = Extra {
            clean_key,
            counts: Some(counts),
            reason,
            ..Extra::default()
        };
        Ok(self.transition(id, Stage::Sanitizer, to, extra, detail))
    }

    async fn finish_transform(
        &self,
        id: Uuid,
        to: FileStatus,
        counts: TransformCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<bool, Never> {
        let extra = Extra {
            transform: Some(counts),
            reason,
            ..Extra::default()
        };
        Ok(self.transition(id, Stage::Transformer, to, extra, detail))
    }
}

impl Leases for MemoryStore {
    async fn claim(
        &self,
        id: Uuid,
        stage: Stage,
        from: FileStatus,
        to: FileStatus,
        lease: &Lease,
    ) -> Result<Claim, Never> {
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return Ok(Claim::Missing);
        };
        let before = entry.row.status;
        let takeover = before == to && !entry.lease_is_live();
        if before != from && !takeover {
            return Ok(match before == to {
                true => Claim::Busy,
                false => Claim::Elsewhere(before),
            });
        }
        entry.attempts += 1;
        entry.row.status = to;
        entry.row.updated_at = SystemTime::now();
        entry.lease = Some(Held {
            owner: Some(lease.owner.clone()),
            until: Some(lease.until),
            attempts: entry.attempts,
        });
        let detail = match takeover {
            true => json!({ "lease": "taken over", "owner": lease.owner }),
            false => json!({ "owner": lease.owner }),
        };
        entry.event(stage.as_str(), to, detail);
        Ok(Claim::Won {
            attempts: entry.attempts,
        })
    }

    async fn claim_in_place(
        &self,
        id: Uuid,
        stage: Stage,
        statuses: &[FileStatus],
        lease: &Lease,
    ) -> Result<Claim, Never> {
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return Ok(Claim::Missing);
        };
        let status = entry.row.status;
        if !statuses.contains(&status) {
            return Ok(Claim::Elsewhere(status));
        }
        if entry.lease_is_live() {
            return Ok(Claim::Busy);
        }
        entry.attempts += 1;
        entry.row.updated_at = SystemTime::now();
        entry.lease = Some(Held {
            owner: Some(lease.owner.clone()),
            until: Some(lease.until),
            attempts: entry.attempts,
        });
        let detail = json!({ "owner": lease.owner, "lease": "re-drive" });
        entry.event(stage.as_str(), status, detail);
        Ok(Claim::Won {
            attempts: entry.attempts,
        })
    }

    async fn release(&self, id: Uuid, owner: &str) -> Result<(), Never> {
        let mut state = self.state();
        if let Some(entry) = state.files.get_mut(&id) {
            if entry
                .lease
                .as_ref()
                .is_some_and(|l| l.owner.as_deref() == Some(owner))
            {
                entry.lease = None;
            }
        }
        Ok(())
    }
}

impl Plans for MemoryStore {
    async fn fix_plan(&self, id: Uuid, proposed: &Value) -> Result<Option<Value>, Never> {
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return Ok(None);
        };
        let mut plan = match entry.plan.take() {
            Some(Value::Object(kept)) => kept,
            _ => serde_json::Map::new(),
        };
        if let Value::Object(proposed) = proposed {
            for (key, value) in proposed {
                plan.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        let text = |key: &str| plan.get(key).and_then(Value::as_str).map(str::to_string);
        (entry.row.config_version, entry.row.config_digest) =
            (text("config_version"), text("config"));
        entry.plan = Some(Value::Object(plan));
        Ok(entry.plan.clone())
    }

    async fn mark_batches(&self, id: Uuid, marks: &Value) -> Result<Option<Value>, Never> {
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return Ok(None);
        };
        let mut recorded = serde_json::Map::new();
        for (seq, mark) in marks.as_object().into_iter().flatten() {
            let kept = entry
                .marks
                .entry(seq.clone())
                .or_insert_with(|| mark.clone());
            recorded.insert(seq.clone(), kept.clone());
        }
        Ok(Some(Value::Object(recorded)))
    }
}

impl Batches for MemoryStore {
    async fn claim_batch(
        &self,
        file_id: Uuid,
        batch_id: &str,
        lease: &Lease,
    ) -> Result<BatchClaim, Never> {
        // History and claim under one lock: a 2xx recorded between reading one and taking
        // the other would let this claim win over a delivered batch and POST it again.
        let mut state = self.state();
        let history = state.batch_history(batch_id);
        let file = state.files.get(&file_id);
        let file_status = file.map(|e| e.row.status);
        let pinned = file
            .and_then(|e| e.plan.as_ref()?.get("dataset").cloned())
            .filter(|v| !v.is_null());
        let claimed = |claim| BatchClaim {
            claim,
            history,
            file_status,
            pinned: pinned.clone(),
        };
        let held = state
            .batch_claims
            .entry(batch_id.to_string())
            .or_insert(Held {
                owner: None,
                until: None,
                attempts: 0,
            });
        if held.live() {
            return Ok(claimed(Claim::Busy));
        }
        held.owner = Some(lease.owner.clone());
        held.until = Some(lease.until);
        held.attempts += 1;
        Ok(claimed(Claim::Won {
            attempts: held.attempts,
        }))
    }

    async fn release_batch(&self, batch_id: &str, owner: &str) -> Result<(), Never> {
        let mut state = self.state();
        if let Some(held) = state.batch_claims.get_mut(batch_id) {
            if held.owner.as_deref() == Some(owner) {
                (held.owner, held.until) = (None, None);
            }
        }
        Ok(())
    }

    async fn batch_history(&self, batch_id: &str) -> Result<BatchHistory, Never> {
        Ok(self.state().batch_history(batch_id))
    }

    async fn delivered_batches(&self, file_id: Uuid) -> Result<HashSet<String>, Never> {
        let state = self.state();
        Ok(state
            .calls
            .iter()
            .filter(|c| c.file_id == file_id && c.delivered())
            .map(|c| c.batch_id.clone())
            .collect())
    }

    async fn settle_delivery(&self, id: Uuid) -> Result<FileStatus, Never> {
        let delivered = self.delivered_batches(id).await?.len() as i32;
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&id) else {
            return Ok(FileStatus::Failed);
        };
        let row = &mut entry.row;
        if row.batches_delivered != Some(delivered) {
            row.batches_delivered = Some(delivered);
            row.updated_at = SystemTime::now();
        }
        let next = match (row.status, row.batches_sent) {
            (FileStatus::Transformed | FileStatus::Delivering, Some(sent)) if delivered >= sent => {
                FileStatus::Delivered
            }
            (FileStatus::Transformed, Some(_)) if delivered > 0 => FileStatus::Delivering,
            (status, _) => return Ok(status),
        };
        let sent = row.batches_sent;
        row.status = next;
        row.error = None;
        row.updated_at = SystemTime::now();
        entry.lease = None;
        entry.event(
            Stage::Forwarder.as_str(),
            next,
            json!({ "batches": sent, "batches_delivered": delivered }),
        );
        Ok(next)
    }
}

impl RecordPlanning for MemoryStore {
    async fn compare_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        chunk: u32,
        keys: &[String],
        hashes: &[RecordHash],
        remember: bool,
    ) -> Result<Vec<Compared>, Never> {
        let at = self.uploaded_at(file);
        Ok(self
            .records()
            .compare(file, at, dataset, scope, chunk, keys, hashes, remember))
    }

    async fn newer_upload(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
    ) -> Result<Option<Uuid>, Never> {
        let at = self.uploaded_at(file);
        Ok(self.records().newer_upload(file, at, dataset, scope))
    }

    async fn plan_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        records: &[PlannedRecord<'_>],
        exclusive: bool,
    ) -> Result<Vec<u64>, Never> {
        Ok(self
            .records()
            .plan(file, dataset, scope, records, exclusive))
    }

    async fn renumber(&self, file: Uuid, seqs: &[(u64, u32)]) -> Result<(), Never> {
        self.records().renumber(file, seqs);
        Ok(())
    }

    async fn missing_records(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        limit: usize,
    ) -> Result<Missing, Never> {
        let at = self.uploaded_at(file);
        Ok(self.records().missing(file, at, dataset, scope, limit))
    }

    async fn plan_deletions(&self, file: Uuid, dataset: &str, scope: &str) -> Result<u64, Never> {
        let at = self.uploaded_at(file);
        Ok(self.records().plan_deletions(file, at, dataset, scope))
    }

    async fn unnumbered(
        &self,
        file: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, Never> {
        Ok(self.records().unnumbered(file, after, limit))
    }

    async fn complete_plan(
        &self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        remember: bool,
        report: &DeltaReport,
    ) -> Result<(), Never> {
        let at = self.uploaded_at(file);
        self.records()
            .complete(file, at, dataset, scope, remember, report);
        let mut state = self.state();
        if let Some(entry) = state.files.get_mut(&file) {
            let row = &mut entry.row;
            row.records_new = Some(report.new as i64);
            row.records_changed = Some(report.changed as i64);
            row.records_unchanged = Some(report.unchanged as i64);
            row.records_missing = report.missing.map(|m| m as i64);
            row.records_superseded = Some(report.superseded as i64);
        }
        Ok(())
    }
}

impl RecordPlans for MemoryStore {
    async fn delta_plan(&self, file: Uuid) -> Result<Option<DeltaReport>, Never> {
        Ok(self.records().delta_plan(file))
    }

    async fn discard_plan(&self, file: Uuid) -> Result<(), Never> {
        self.records().discard_plan(file);
        Ok(())
    }

    async fn planned(&self, file: Uuid, after: u64, limit: usize) -> Result<Vec<Planned>, Never> {
        Ok(self.records().planned(file, after, limit))
    }
}

impl DeliveredRecords for MemoryStore {
    async fn record_delivered(&self, file: Uuid, seq: u32) -> Result<u64, Never> {
        let at = self.uploaded_at(file);
        Ok(self.records().delivered(file, at, seq))
    }
}

impl Outstanding for MemoryStore {
    type Error = Never;

    async fn take_notices(&self, limit: usize, hold: Duration) -> Result<Vec<FileNotice>, Never> {
        let now = SystemTime::now();
        let mut state = self.state();
        let State {
            files,
            published,
            held,
            ..
        } = &mut *state;
        let mut due: Vec<&FileRow> = files
            .values()
            .map(|e| &e.row)
            .filter(|r| r.status.is_final() && !published.contains(&r.id))
            .filter(|r| held.get(&r.id).is_none_or(|until| *until < now))
            .collect();
        due.sort_by_key(|r| (r.updated_at, r.id));
        due.truncate(limit);
        for row in &due {
            held.insert(row.id, now + hold);
        }
        Ok(due.into_iter().map(FileNotice::of).collect())
    }

    async fn published(&self, event_ids: &[String]) -> Result<(), Never> {
        let mut state = self.state();
        for id in event_ids
            .iter()
            .filter_map(|e| e.split('/').next()?.parse().ok())
        {
            state.held.remove(&id);
            state.published.insert(id);
        }
        Ok(())
    }

    async fn not_published(&self, event_ids: &[String], _error: &str) -> Result<(), Never> {
        let mut state = self.state();
        for id in event_ids
            .iter()
            .filter_map(|e| e.split('/').next()?.parse::<Uuid>().ok())
        {
            state.held.remove(&id);
        }
        Ok(())
    }
}

impl Sweep for MemoryStore {
    async fn stuck_files(
        &self,
        stale_after: Duration,
        limit: i64,
    ) -> Result<Vec<StuckFile>, Never> {
        let now = SystemTime::now();
        let state = self.state();
        let mut stuck: Vec<(SystemTime, StuckFile)> = state
            .files
            .values()
            .filter_map(|entry| {
                let stuck = entry.stuck(now, stale_after)?;
                let row = &entry.row;
                let file = StuckFile {
                    id: row.id,
                    dataset: row.dataset.clone().unwrap_or_default(),
                    status: row.status,
                    source_bucket: row.source_bucket.clone(),
                    source_key: row.source_key.clone(),
                    source_etag: row.source_etag.clone(),
                    clean_key: row.clean_key.clone(),
                    stuck,
                    redrives: entry.redrives,
                    resends: entry.resends,
                };
                Some((row.updated_at, file))
            })
            .collect();
        // Dead workers first, then the longest idle.
        stuck.sort_by_key(|(at, f)| (f.stuck != Stuck::LeaseLapsed, *at));
        Ok(stuck
            .into_iter()
            .take(limit.max(0) as usize)
            .map(|(_, f)| f)
            .collect())
    }

    async fn redrive(
        &self,
        file: &StuckFile,
        max_redrives: i32,
        stale_after: Duration,
        why: &str,
    ) -> Result<Redrive, Never> {
        let now = SystemTime::now();
        let mut state = self.state();
        let Some(entry) = state.files.get_mut(&file.id) else {
            return Ok(Redrive::Moved);
        };
        // What the listing saw must still hold, as in PostgreSQL's conditional UPDATEs.
        let unchanged = entry.row.status == file.status
            && entry.stuck(now, stale_after) == Some(file.stuck)
            && match file.stuck {
                Stuck::LeaseLapsed => entry.redrives == file.redrives,
                Stuck::Idle => entry.resends == file.resends,
            };
        if !unchanged {
            return Ok(Redrive::Moved);
        }
        let listener = Stage::Listener.as_str();
        match file.stuck {
            Stuck::LeaseLapsed if file.redrives >= max_redrives => {
                let reason = format!(
                    "stuck in {} ({why}) after {max_redrives} re-drives: given up",
                    file.status
                );
                drop(state);
                let extra = Extra {
                    error: Some(&reason),
                    ..Extra::default()
                };
                let detail = json!({ "error": reason, "redrives": file.redrives });
                self.transition(file.id, Stage::Listener, FileStatus::Failed, extra, detail);
                Ok(Redrive::GaveUp)
            }
            Stuck::LeaseLapsed => {
                entry.redrives += 1;
                entry.lease = None;
                entry.row.updated_at = now;
                let n = entry.redrives;
                entry.event(listener, file.status, json!({ "redrive": n, "why": why }));
                Ok(Redrive::Go { n })
            }
            Stuck::Idle => {
                entry.resends += 1;
                entry.row.updated_at = now;
                let n = entry.resends;
                entry.event(listener, file.status, json!({ "resend": n, "why": why }));
                Ok(Redrive::Resend { n })
            }
        }
    }
}
