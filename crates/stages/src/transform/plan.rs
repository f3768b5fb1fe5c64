//! A keyed file's plan, made once in the transformer's first pass: each chunk of records is
//! compared with what was delivered for their keys (one round trip), the new and changed ones
//! are claimed and given their batches (one more), and at the end the keys the previous file
//! in scope had and this one has not are counted, listed, and (with `on_missing = "send"`)
//! planned as "deleted" records. Files are compared in upload order: a record whose key a
//! newer upload delivered is stale (`superseded`) and not sent, and only the scope's newest
//! file looks for missing keys.

use std::collections::HashSet;

use sluice_core::transform::delta::{
    deletion_record, DeltaReport, SizeBatches, MAX_LISTED_MISSING,
};
use sluice_core::transform::{Delta, OnMissing};
use uuid::Uuid;

use super::pass::KeyChunk;
use crate::ports::{Compared, PlannedRecord, RecordKind, RecordPlanning};

/// Missing keys given their batches per round trip.
const DELETIONS_PAGE: usize = 4096;

/// The file a plan is for.
pub(super) struct Subject<'a> {
    pub file: Uuid,
    pub dataset: &'a str,
    pub delta: &'a Delta,
    /// The file's scope: its records are compared with what the scope's files delivered.
    pub scope: String,
    /// Whether the file's keys are compared with the scope's previous file for missing keys
    /// (not when a date-range filter keeps only part of the file).
    pub remember: bool,
    /// Send every record (a full replay): nothing is claimed, unchanged records go too.
    pub full: bool,
}

/// Plans one file.
pub(super) struct Planner<'a, S> {
    store: &'a S,
    file: Uuid,
    dataset: &'a str,
    delta: &'a Delta,
    scope: String,
    remember: bool,
    full: bool,
    batches: SizeBatches,
    ordinal: u64,
    chunk: u32,
    report: DeltaReport,
    /// A newer upload of the scope, looked up with the first chunk.
    newer: Option<Option<Uuid>>,
}

impl<'a, S: RecordPlanning> Planner<'a, S> {
    pub fn new(store: &'a S, subject: Subject<'a>, batches: SizeBatches) -> Self {
        let report = DeltaReport {
            scope: subject.scope.clone(),
            previous_file: None,
            full: subject.full,
            new: 0,
            changed: 0,
            unchanged: 0,
            repeated: 0,
            superseded: 0,
            newer_file: None,
            missing: None,
            missing_keys: Vec::new(),
            missing_truncated: false,
            missing_sent: false,
            batches: 0,
        };
        Self {
            store,
            file: subject.file,
            dataset: subject.dataset,
            delta: subject.delta,
            scope: subject.scope,
            remember: subject.remember,
            full: subject.full,
            batches,
            ordinal: 0,
            chunk: 0,
            report,
            newer: None,
        }
    }

    /// Plans a chunk of records.
    pub async fn chunk(&mut self, chunk: KeyChunk) -> Result<(), String> {
        let store = self.store;
        let newer = match self.newer {
            Some(newer) => newer,
            None => {
                let newer = store
                    .newer_upload(self.file, self.dataset, &self.scope)
                    .await
                    .map_err(|e| e.to_string())?;
                *self.newer.insert(newer)
            }
        };
        // Each file a whole snapshot (deletions sent): a key no one delivered that a newer
        // snapshot has already been planned without is gone, or on its way from that file.
        let stale_when_new = newer.is_some() && self.delta.on_missing == OnMissing::Send;
        let compared = store
            .compare_records(
                self.file,
                self.dataset,
                &self.scope,
                self.chunk,
                &chunk.keys,
                &chunk.hashes,
                self.remember,
            )
            .await
            .map_err(|e| e.to_string())?;
        let before = self.batches.clone();
        let mut sends = Vec::new();
        for (i, compared) in compared.iter().enumerate() {
            let kind = match compared {
                Compared::New if stale_when_new => {
                    self.report.superseded += 1;
                    continue;
                }
                Compared::New => RecordKind::New,
                Compared::Changed => RecordKind::Changed,
                Compared::Unchanged if self.full => RecordKind::Unchanged,
                Compared::Unchanged => {
                    self.report.unchanged += 1;
                    continue;
                }
                // Not even on a full replay: the API has a newer upload's record.
                Compared::Superseded => {
                    self.report.superseded += 1;
                    continue;
                }
            };
            sends.push((i, kind));
        }
        // Batches are given as if every claim succeeds; a lost claim (rare) renumbers.
        let planned: Vec<PlannedRecord<'_>> = sends
            .iter()
            .map(|&(i, kind)| PlannedRecord {
                ordinal: self.ordinal + 1 + i as u64,
                key: &chunk.keys[i],
                hash: &chunk.hashes[i],
                kind,
                seq: self.batches.push(chunk.lens[i]),
            })
            .collect();
        let added = store
            .plan_records(self.file, self.dataset, &self.scope, &planned, !self.full)
            .await
            .map_err(|e| e.to_string())?;
        if added.len() < planned.len() {
            let added: HashSet<u64> = added.iter().copied().collect();
            self.batches = before;
            let mut seqs = Vec::with_capacity(added.len());
            for (record, &(i, _)) in planned.iter().zip(&sends) {
                if added.contains(&record.ordinal) {
                    seqs.push((record.ordinal, self.batches.push(chunk.lens[i])));
                }
            }
            store
                .renumber(self.file, &seqs)
                .await
                .map_err(|e| e.to_string())?;
        }
        let added: HashSet<u64> = added.into_iter().collect();
        for record in &planned {
            if !added.contains(&record.ordinal) {
                self.report.repeated += 1;
                continue;
            }
            match record.kind {
                RecordKind::New => self.report.new += 1,
                RecordKind::Changed => self.report.changed += 1,
                _ => self.report.unchanged += 1,
            }
        }
        self.ordinal += chunk.keys.len() as u64;
        self.chunk += 1;
        Ok(())
    }

    /// Ends the plan: missing keys counted (and planned, if they are sent), the plan recorded.
    pub async fn finish(mut self) -> Result<DeltaReport, String> {
        let store = self.store;
        if self.remember {
            let scope = self.scope.clone();
            let missing = store
                .missing_records(self.file, self.dataset, &scope, MAX_LISTED_MISSING)
                .await
                .map_err(|e| e.to_string())?;
            self.report.previous_file = missing.previous;
            self.report.newer_file = missing.newer;
            self.report.missing = missing.newer.is_none().then_some(missing.count);
            self.report.missing_truncated = missing.count > missing.first.len() as u64;
            self.report.missing_keys = missing
                .first
                .iter()
                .map(|k| serde_json::from_str(k).unwrap_or_else(|_| k.as_str().into()))
                .collect();
            if self.delta.on_missing == OnMissing::Send
                && missing.newer.is_none()
                && missing.count > 0
            {
                self.plan_deletions(&scope).await?;
                self.report.missing_sent = true;
            }
        }
        self.report.batches = self.batches.batches();
        store
            .complete_plan(
                self.file,
                self.dataset,
                &self.scope,
                self.remember,
                &self.report,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.report)
    }

    async fn plan_deletions(&mut self, scope: &str) -> Result<(), String> {
        let store = self.store;
        store
            .plan_deletions(self.file, self.dataset, scope)
            .await
            .map_err(|e| e.to_string())?;
        let mut after = 0;
        loop {
            let page = store
                .unnumbered(self.file, after, DELETIONS_PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.0;
            let mut seqs = Vec::with_capacity(page.len());
            for (ordinal, key) in &page {
                let record = deletion_record(&self.delta.record_key, key)?;
                seqs.push((*ordinal, self.batches.push(record.len())));
            }
            store
                .renumber(self.file, &seqs)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}
