//! The PostgreSQL store as the stages' status-store ports ([`Registry`], [`Progress`],
//! [`Leases`], ...): each method is the store's own.

use std::collections::HashSet;
use std::future::Future;

use serde_json::Value;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::{
    BatchClaim, BatchHistory, Batches, Claim, EventRow, FileRow, Lease, Leases, NewFile, Outcomes,
    Plans, Progress, Registered, Registry, ReplaySkip, RowCounts, Storage, TransformCounts,
};
use uuid::Uuid;

use crate::{DbError, Store};

impl Storage for Store {
    type Error = DbError;
}

impl Registry for Store {
    fn register(
        &self,
        file: &NewFile<'_>,
    ) -> impl Future<Output = Result<Registered, DbError>> + Send {
        Store::register(self, file)
    }

    fn file(&self, id: Uuid) -> impl Future<Output = Result<Option<FileRow>, DbError>> + Send {
        Store::file(self, id)
    }

    fn events(&self, id: Uuid) -> impl Future<Output = Result<Vec<EventRow>, DbError>> + Send {
        Store::events(self, id)
    }
}

impl Progress for Store {
    fn advance(
        &self,
        id: Uuid,
        stage: Stage,
        to: FileStatus,
        detail: Value,
    ) -> impl Future<Output = Result<bool, DbError>> + Send {
        Store::advance(self, id, stage, to, detail)
    }

    fn fail(
        &self,
        id: Uuid,
        stage: Stage,
        error: &str,
    ) -> impl Future<Output = Result<bool, DbError>> + Send {
        Store::fail(self, id, stage, error)
    }

    fn note_error(
        &self,
        id: Uuid,
        stage: Stage,
        error: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        Store::note_error(self, id, stage, error)
    }

    fn note_dropped(
        &self,
        id: Uuid,
        stage: Stage,
        what: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        Store::note_dropped(self, id, stage, what)
    }
}

impl Outcomes for Store {
    fn finish_sanitize(
        &self,
        id: Uuid,
        to: FileStatus,
        clean_key: Option<&str>,
        counts: RowCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> impl Future<Output = Result<bool, DbError>> + Send {
        Store::finish_sanitize(self, id, to, clean_key, counts, reason, detail)
    }

    fn finish_transform(
        &self,
        id: Uuid,
        to: FileStatus,
        counts: TransformCounts,
        reason: Option<&str>,
        detail: Value,
    ) -> impl Future<Output = Result<bool, DbError>> + Send {
        Store::finish_transform(self, id, to, counts, reason, detail)
    }
}

impl Leases for Store {
    fn claim(
        &self,
        id: Uuid,
        stage: Stage,
        from: FileStatus,
        to: FileStatus,
        lease: &Lease,
    ) -> impl Future<Output = Result<Claim, DbError>> + Send {
        Store::claim(self, id, stage, from, to, lease)
    }

    fn claim_in_place(
        &self,
        id: Uuid,
        stage: Stage,
        statuses: &[FileStatus],
        lease: &Lease,
    ) -> impl Future<Output = Result<Claim, DbError>> + Send {
        Store::claim_in_place(self, id, stage, statuses, lease)
    }

    fn release(&self, id: Uuid, owner: &str) -> impl Future<Output = Result<(), DbError>> + Send {
        Store::release(self, id, owner)
    }
}

impl Plans for Store {
    fn fix_plan(
        &self,
        id: Uuid,
        proposed: &serde_json::Value,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, DbError>> + Send {
        Store::fix_plan(self, id, proposed)
    }

    fn mark_batches(
        &self,
        id: Uuid,
        marks: &serde_json::Value,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, DbError>> + Send {
        Store::mark_batches(self, id, marks)
    }

    fn replay_skip(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<ReplaySkip>, DbError>> + Send {
        Store::replay_skip(self, id)
    }
}

impl Batches for Store {
    fn claim_batch(
        &self,
        file_id: Uuid,
        batch_id: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<BatchClaim, DbError>> + Send {
        Store::claim_batch(self, file_id, batch_id, lease)
    }

    fn release_batch(
        &self,
        batch_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send {
        Store::release_batch(self, batch_id, owner)
    }

    fn batch_history(
        &self,
        batch_id: &str,
    ) -> impl Future<Output = Result<BatchHistory, DbError>> + Send {
        Store::batch_history(self, batch_id)
    }

    fn delivered_batches(
        &self,
        file_id: Uuid,
    ) -> impl Future<Output = Result<HashSet<String>, DbError>> + Send {
        Store::delivered_batches(self, file_id)
    }

    fn settle_delivery(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<FileStatus, DbError>> + Send {
        Store::settle_delivery(self, id)
    }
}

impl sluice_stages::ports::Sweep for Store {
    fn stuck_files(
        &self,
        stale_after: std::time::Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<sluice_stages::ports::StuckFile>, DbError>> + Send {
        Store::stuck_files(self, stale_after, limit)
    }

    fn redrive(
        &self,
        file: &sluice_stages::ports::StuckFile,
        max_redrives: i32,
        stale_after: std::time::Duration,
        why: &str,
    ) -> impl Future<Output = Result<sluice_stages::ports::Redrive, DbError>> + Send {
        Store::redrive(self, file, max_redrives, stale_after, why)
    }
}
