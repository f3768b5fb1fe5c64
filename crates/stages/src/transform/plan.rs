//! A keyed file's plan, made once in the transformer's first pass: each chunk of records is
//! compared with what was delivered for their keys (one round trip), the new and changed ones
//! are claimed and given their batches (one more), and at the end the keys the previous file
//! in scope had and this one has not are counted, listed, and (with `on_missing = "send"`)
//! planned as "deleted" records.

use std::collections::HashSet;

use sluice_core::transform::delta::{
    deletion_record, DeltaReport, SizeBatches, MAX_LISTED_MISSING,
};
use sluice_core::transform::{Delta, OnMissing};
use uuid::Uuid;

use super::pass::KeyChunk;
use crate::ports::{Compared, PlannedRecord, RecordKind, RecordState};

/// Missing keys given their batches per round trip.
const DELETIONS_PAGE: usize = 4096;

/// Plans one file.
pub(super) struct Planner<'a, S> {
    pub store: &'a S,
    pub file: Uuid,
    pub dataset: &'a str,
    pub delta: &'a Delta,
    /// The file's scope; `None` when its keys are not compared (a date-range filter keeps
    /// only part of the file).
    pub scope: Option<String>,
    /// Send every record (a full replay): nothing is claimed, unchanged records go too.
    pub full: bool,
    pub batches: SizeBatches,
    pub ordinal: u64,
    pub chunk: u32,
    pub report: DeltaReport,
}

impl<'a, S: RecordState> Planner<'a, S> {
    pub fn new(
        store: &'a S,
        file: Uuid,
        dataset: &'a str,
        delta: &'a Delta,
        scope: Option<String>,
        full: bool,
        batches: SizeBatches,
    ) -> Self {
        let report = DeltaReport {
            scope: scope.clone().unwrap_or_default(),
            previous_file: None,
            full,
            new: 0,
            changed: 0,
            unchanged: 0,
            repeated: 0,
            missing: None,
            missing_keys: Vec::new(),
            missing_truncated: false,
            missing_sent: false,
            batches: 0,
        };
        Self {
            store,
            file,
            dataset,
            delta,
            scope,
            full,
            batches,
            ordinal: 0,
            chunk: 0,
            report,
        }
    }

    /// Plans a chunk of records.
    pub async fn chunk(&mut self, chunk: KeyChunk) -> Result<(), String> {
        let store = self.store;
        let compared = store
            .compare_records(
                self.file,
                self.dataset,
                self.chunk,
                &chunk.keys,
                &chunk.hashes,
                self.scope.is_some(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let before = self.batches.clone();
        let mut sends = Vec::new();
        for (i, compared) in compared.iter().enumerate() {
            let kind = match compared {
                Compared::New => RecordKind::New,
                Compared::Changed => RecordKind::Changed,
                Compared::Unchanged if self.full => RecordKind::Unchanged,
                Compared::Unchanged => {
                    self.report.unchanged += 1;
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
            .plan_records(self.file, self.dataset, &planned, !self.full)
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
        if let Some(scope) = self.scope.clone() {
            let missing = store
                .missing_records(self.file, self.dataset, &scope, MAX_LISTED_MISSING)
                .await
                .map_err(|e| e.to_string())?;
            self.report.previous_file = missing.previous;
            self.report.missing = Some(missing.count);
            self.report.missing_truncated = missing.count > missing.first.len() as u64;
            self.report.missing_keys = missing
                .first
                .iter()
                .map(|k| serde_json::from_str(k).unwrap_or_else(|_| k.as_str().into()))
                .collect();
            if self.delta.on_missing == OnMissing::Send && missing.count > 0 {
                self.plan_deletions(&scope).await?;
                self.report.missing_sent = true;
            }
        }
        self.report.batches = self.batches.batches();
        store
            .complete_plan(self.file, self.dataset, self.scope.as_deref(), &self.report)
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
