//! The embedded store's record state: what was delivered per key, plans, claims and the keys
//! of each scope's latest file, with the same meaning as PostgreSQL's (migration V8). What a
//! later run needs (delivered records, scopes and their keys) can be saved to a file and
//! loaded again, so `sluice run` on the same folder twice sends nothing the second time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sluice_core::transform::delta::{DeltaReport, RecordHash, DELETED_ORDINAL_BASE};
use sluice_stages::ports::{Compared, Missing, Planned, PlannedRecord, RecordKind};
use uuid::Uuid;

/// What a later run needs: written by [`RecordBook::save`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// Dataset -> scope -> key -> what was delivered.
    delivered: BTreeMap<String, BTreeMap<String, BTreeMap<String, Delivered>>>,
    /// Dataset -> scope -> the latest file.
    scopes: BTreeMap<String, BTreeMap<String, Uuid>>,
    /// The keys of each scope's latest file.
    seen: BTreeMap<Uuid, BTreeMap<u32, Vec<String>>>,
    /// When each scope's latest file was uploaded.
    #[serde(default)]
    uploaded: BTreeMap<Uuid, SystemTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivered {
    hash: RecordHash,
    file_id: Uuid,
    /// When the file that delivered it was uploaded (`None`: before upload times were kept,
    /// older than any file).
    #[serde(default)]
    uploaded_at: Option<SystemTime>,
}

impl Delivered {
    /// Whether a file uploaded at `at` may overwrite this.
    fn not_newer_than(&self, at: SystemTime) -> bool {
        self.uploaded_at.is_none_or(|t| t <= at)
    }
}

/// A claim: dataset, scope, key and content hash.
type Claimed = (String, String, String, RecordHash);

impl PlanRow {
    fn claimed(&self) -> Claimed {
        (
            self.dataset.clone(),
            self.scope.clone(),
            self.key.clone(),
            self.hash,
        )
    }
}

#[derive(Debug, Clone)]
struct PlanRow {
    dataset: String,
    scope: String,
    key: String,
    hash: RecordHash,
    kind: RecordKind,
    seq: Option<u32>,
    exclusive: bool,
}

#[derive(Debug, Default)]
pub(crate) struct RecordBook {
    saved: Saved,
    plans: HashMap<Uuid, BTreeMap<u64, PlanRow>>,
    /// Exclusive plan rows: (dataset, scope, key, hash) -> file.
    claims: HashMap<Claimed, Uuid>,
    finished: HashMap<Uuid, DeltaReport>,
}

impl RecordBook {
    /// Loads what an earlier run saved at `path` (nothing if there is no file yet).
    pub(crate) fn load(path: &Path) -> std::io::Result<Self> {
        let saved = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            saved,
            ..Self::default()
        })
    }

    /// Writes what a later run needs to `path`, whole or not at all (a temporary file renamed).
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.saved).map_err(std::io::Error::other)?;
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, path)
    }

    pub(crate) fn delta_plan(&self, file: Uuid) -> Option<DeltaReport> {
        self.finished.get(&file).cloned()
    }

    pub(crate) fn discard_plan(&mut self, file: Uuid) {
        self.drop_plan(file);
        self.saved.seen.remove(&file);
    }

    /// A failed or rejected file gives up its claims (a finished plan stays, so batches still
    /// on their way write the state on their 2xx); its keys go unless a scope needs them.
    pub(crate) fn release(&mut self, file: Uuid) {
        if !self.finished.contains_key(&file) {
            self.drop_plan(file);
        } else if let Some(plan) = self.plans.get_mut(&file) {
            for row in plan.values_mut().filter(|r| r.exclusive) {
                row.exclusive = false;
                self.claims.remove(&row.claimed());
            }
        }
        if !self.is_scope_file(file) {
            self.saved.seen.remove(&file);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compare(
        &mut self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
        chunk: u32,
        keys: &[String],
        hashes: &[RecordHash],
        remember: bool,
    ) -> Vec<Compared> {
        if remember {
            self.saved
                .seen
                .entry(file)
                .or_default()
                .insert(chunk, keys.to_vec());
        }
        let delivered = self.delivered_in(dataset, scope);
        keys.iter()
            .zip(hashes)
            .map(|(key, hash)| match delivered.and_then(|d| d.get(key)) {
                None => Compared::New,
                Some(d) if &d.hash == hash => Compared::Unchanged,
                Some(d) if !d.not_newer_than(at) => Compared::Superseded,
                Some(_) => Compared::Changed,
            })
            .collect()
    }

    pub(crate) fn plan(
        &mut self,
        file: Uuid,
        dataset: &str,
        scope: &str,
        records: &[PlannedRecord<'_>],
        exclusive: bool,
    ) -> Vec<u64> {
        let mut added = Vec::new();
        for r in records {
            let claim = (
                dataset.to_string(),
                scope.to_string(),
                r.key.to_string(),
                *r.hash,
            );
            let plan = self.plans.entry(file).or_default();
            if plan.contains_key(&r.ordinal) || (exclusive && self.claims.contains_key(&claim)) {
                continue;
            }
            plan.insert(
                r.ordinal,
                PlanRow {
                    dataset: dataset.to_string(),
                    scope: scope.to_string(),
                    key: r.key.to_string(),
                    hash: *r.hash,
                    kind: r.kind,
                    seq: Some(r.seq),
                    exclusive,
                },
            );
            if exclusive {
                self.claims.insert(claim, file);
            }
            added.push(r.ordinal);
        }
        added.sort_unstable();
        added
    }

    pub(crate) fn renumber(&mut self, file: Uuid, seqs: &[(u64, u32)]) {
        if let Some(plan) = self.plans.get_mut(&file) {
            for (ordinal, seq) in seqs {
                if let Some(row) = plan.get_mut(ordinal) {
                    row.seq = Some(*seq);
                }
            }
        }
    }

    pub(crate) fn missing(
        &self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
        limit: usize,
    ) -> Missing {
        let scope_file = self
            .saved
            .scopes
            .get(dataset)
            .and_then(|s| s.get(scope))
            .copied()
            .filter(|p| *p != file);
        // Only the newest upload of a scope looks for missing keys.
        let newer = self.newer_upload(file, at, dataset, scope);
        let previous = scope_file.filter(|_| newer.is_none());
        let keys = self.missing_keys(file, at, dataset, scope, previous);
        Missing {
            previous,
            newer,
            count: keys.len() as u64,
            first: keys.into_iter().take(limit).collect(),
        }
    }

    pub(crate) fn newer_upload(
        &self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
    ) -> Option<Uuid> {
        self.saved
            .scopes
            .get(dataset)
            .and_then(|s| s.get(scope))
            .copied()
            .filter(|p| *p != file && self.saved.uploaded.get(p).is_some_and(|t| *t > at))
    }

    fn missing_keys(
        &self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
        previous: Option<Uuid>,
    ) -> Vec<String> {
        let (Some(previous), Some(delivered)) = (previous, self.delivered_in(dataset, scope))
        else {
            return Vec::new();
        };
        let empty = BTreeMap::new();
        let mine: std::collections::HashSet<&String> = self
            .saved
            .seen
            .get(&file)
            .unwrap_or(&empty)
            .values()
            .flatten()
            .collect();
        let mut keys: Vec<String> = self
            .saved
            .seen
            .get(&previous)
            .unwrap_or(&empty)
            .values()
            .flatten()
            .filter(|k| {
                !mine.contains(k) && delivered.get(*k).is_some_and(|d| d.not_newer_than(at))
            })
            .cloned()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    pub(crate) fn plan_deletions(
        &mut self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
    ) -> u64 {
        let previous = self.missing(file, at, dataset, scope, 0).previous;
        let keys = self.missing_keys(file, at, dataset, scope, previous);
        let plan = self.plans.entry(file).or_default();
        let mut added = 0;
        for (i, key) in keys.into_iter().enumerate() {
            let ordinal = DELETED_ORDINAL_BASE + 1 + i as u64;
            if plan.contains_key(&ordinal) {
                continue;
            }
            plan.insert(
                ordinal,
                PlanRow {
                    dataset: dataset.to_string(),
                    scope: scope.to_string(),
                    key,
                    hash: [0; 32],
                    kind: RecordKind::Deleted,
                    seq: None,
                    exclusive: false,
                },
            );
            added += 1;
        }
        added
    }

    pub(crate) fn unnumbered(&self, file: Uuid, after: u64, limit: usize) -> Vec<(u64, String)> {
        self.plans
            .get(&file)
            .map(|plan| {
                plan.range(after + 1..)
                    .filter(|(_, row)| row.seq.is_none())
                    .take(limit)
                    .map(|(o, row)| (*o, row.key.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn complete(
        &mut self,
        file: Uuid,
        at: SystemTime,
        dataset: &str,
        scope: &str,
        remember: bool,
        report: &DeltaReport,
    ) {
        self.finished.entry(file).or_insert_with(|| report.clone());
        if !remember {
            return;
        }
        // The newest upload is the one the scope's next file is compared with.
        let scopes = self.saved.scopes.entry(dataset.to_string()).or_default();
        let current = scopes.get(scope).copied();
        let newer = current
            .filter(|c| *c != file)
            .and_then(|c| self.saved.uploaded.get(&c))
            .is_some_and(|t| *t > at);
        let forget = if newer {
            Some(file)
        } else {
            scopes.insert(scope.to_string(), file);
            self.saved.uploaded.insert(file, at);
            current.filter(|c| *c != file)
        };
        if let Some(forget) = forget {
            if !self.is_scope_file(forget) {
                self.saved.seen.remove(&forget);
                self.saved.uploaded.remove(&forget);
            }
        }
    }

    pub(crate) fn planned(&self, file: Uuid, after: u64, limit: usize) -> Vec<Planned> {
        self.plans
            .get(&file)
            .map(|plan| {
                plan.range(after + 1..)
                    .filter_map(|(o, row)| {
                        Some(Planned {
                            ordinal: *o,
                            seq: row.seq?,
                            deleted_key: (row.kind == RecordKind::Deleted).then(|| row.key.clone()),
                        })
                    })
                    .take(limit)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn delivered(&mut self, file: Uuid, at: SystemTime, seq: u32) -> u64 {
        let Some(plan) = self.plans.get_mut(&file) else {
            return 0;
        };
        let done: Vec<u64> = plan
            .iter()
            .filter(|(_, row)| row.seq == Some(seq))
            .map(|(o, _)| *o)
            .collect();
        // In ordinal order: a key twice in a batch ends with its later record.
        for ordinal in &done {
            let Some(row) = plan.remove(ordinal) else {
                continue;
            };
            if row.exclusive {
                self.claims.remove(&row.claimed());
            }
            let delivered = self
                .saved
                .delivered
                .entry(row.dataset)
                .or_default()
                .entry(row.scope)
                .or_default();
            // A key a newer upload delivered meanwhile keeps that upload's state.
            if delivered
                .get(&row.key)
                .is_some_and(|d| !d.not_newer_than(at))
            {
                continue;
            }
            match row.kind {
                RecordKind::Deleted => {
                    delivered.remove(&row.key);
                }
                _ => {
                    delivered.insert(
                        row.key,
                        Delivered {
                            hash: row.hash,
                            file_id: file,
                            uploaded_at: Some(at),
                        },
                    );
                }
            }
        }
        done.len() as u64
    }

    fn drop_plan(&mut self, file: Uuid) {
        if let Some(plan) = self.plans.remove(&file) {
            for row in plan.into_values().filter(|r| r.exclusive) {
                self.claims.remove(&row.claimed());
            }
        }
    }

    fn delivered_in(&self, dataset: &str, scope: &str) -> Option<&BTreeMap<String, Delivered>> {
        self.saved.delivered.get(dataset)?.get(scope)
    }

    fn is_scope_file(&self, file: Uuid) -> bool {
        self.saved
            .scopes
            .values()
            .any(|s| s.values().any(|f| *f == file))
    }
}
