//! One status-store test suite, run against both stores the stages can be given: PostgreSQL
//! (the Lambdas') and the embedded in-memory store (`sluice run` without `DATABASE_URL`). Each
//! test is written once, bound on the ports it exercises ([`Registry`], [`Leases`],
//! [`Batches`], ...), and run twice: one contract per port, held by both stores.

use std::time::{Duration, SystemTime};

use serde_json::json;
use sluice_core::{FileStatus, Stage};
use sluice_stages::ports::{
    ApiCall, Batches, CallLog, Claim, Lease, Leases, NewFile, Outcomes, Plans, Progress, Redrive,
    Registry, RowCounts, Stuck, Sweep, TransformCounts,
};
use uuid::Uuid;

/// Runs `$suite` against a fresh in-memory store and a fresh PostgreSQL schema.
macro_rules! on_both_stores {
    ($($name:ident => $suite:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$suite(&sluice_local::MemoryStore::new()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let schema = sluice_e2e::Schema::create().await;
                super::$suite(&schema.store().await).await;
            }
        }
    )*};
}

on_both_stores! {
    register => a_file_is_registered_once_per_source_object,
    transitions => statuses_move_only_along_the_table_and_each_move_is_an_event,
    final_errors => a_final_status_keeps_its_reason,
    claims => one_of_eight_claims_wins_and_the_others_learn_why,
    takeover => an_expired_lease_is_taken_over_and_a_released_one_is_free,
    in_place => a_lease_in_place_leaves_the_status_where_it_is,
    batches => a_batch_is_claimed_by_one_worker_until_its_2xx_is_recorded,
    pinned => a_batch_claim_brings_the_section_its_file_was_pinned_to,
    settling => delivery_settles_the_file_as_its_batches_get_through,
    plans => a_plan_is_fixed_by_the_first_writer_of_each_of_its_keys,
    plans_at_once => eight_workers_fixing_one_plan_at_once_all_get_the_same_plan,
    batch_marks => a_batch_mark_is_kept_by_the_first_cut_and_the_plan_around_it_stays,
    sweep => a_dead_worker_is_redriven_then_given_up_and_an_idle_file_is_only_resent,
    sweeps_at_once => two_sweeps_deciding_one_file_at_once_decide_it_once,
}

fn lease(owner: &str, seconds: i64) -> Lease {
    let now = SystemTime::now();
    let until = match seconds >= 0 {
        true => now + Duration::from_secs(seconds as u64),
        false => now - Duration::from_secs(seconds.unsigned_abs()),
    };
    Lease {
        owner: owner.to_string(),
        until,
    }
}

async fn received<S: Registry>(store: &S, name: &str) -> Uuid {
    let key = format!("incoming/orders/{name}");
    store
        .register(&NewFile {
            dataset: "orders",
            site: Some("leeds"),
            bucket: "quarantine",
            key: &key,
            etag: "e1",
            size: 10,
            replay_of: None,
            uploaded_by: None,
            uploaded_at: None,
        })
        .await
        .unwrap()
        .id
}

/// A file at `transformed` with `batches` batches sent.
async fn transformed<S: Registry + Outcomes + Leases>(store: &S, name: &str, batches: i32) -> Uuid {
    let id = received(store, name).await;
    let sanitizing = lease("sanitizer/1", 60);
    let claim = store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &sanitizing,
        )
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Won { attempts: 1 }), "{claim:?}");
    let counts = RowCounts {
        rows_in: 3,
        rows_out: 3,
        rows_rejected: 0,
    };
    assert!(store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            Some("clean/x.csv"),
            counts,
            None,
            json!({})
        )
        .await
        .unwrap());
    let transforming = lease("transformer/1", 60);
    store
        .claim(
            id,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            &transforming,
        )
        .await
        .unwrap();
    let counts = TransformCounts {
        records: 3,
        batches,
        rows_unmapped: 0,
    };
    assert!(store
        .finish_transform(id, FileStatus::Transformed, counts, None, json!({}))
        .await
        .unwrap());
    id
}

async fn call<S: CallLog>(store: &S, id: Uuid, batch: &str, attempt: i32, status: i32) {
    let record = ApiCall {
        file_id: id,
        batch_id: batch,
        attempt,
        http_status: Some(status),
        latency_ms: 3,
        response_excerpt: None,
        error: None,
        endpoint: "https://api.example.com/v1/records",
        simulated: false,
    };
    CallLog::record_call(store, &record).await.unwrap();
}

async fn a_file_is_registered_once_per_source_object<S: Registry>(store: &S) {
    let file = NewFile {
        dataset: "orders",
        site: None,
        bucket: "quarantine",
        key: "incoming/orders/a.csv",
        etag: "\"abc\"",
        size: 1,
        replay_of: None,
        uploaded_by: None,
        uploaded_at: None,
    };
    let first = store.register(&file).await.unwrap();
    let again = store.register(&file).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.id, again.id);
    assert_eq!(
        first.id,
        sluice_stages::ports::file_id("quarantine", "incoming/orders/a.csv", "abc")
    );
    let other = store
        .register(&NewFile {
            etag: "\"abd\"",
            ..file
        })
        .await
        .unwrap();
    assert_ne!(other.id, first.id, "new content is a new file");
    let row = store.file(first.id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Received);
    assert_eq!(row.dataset.as_deref(), Some("orders"));
    assert!(store.file(Uuid::new_v4()).await.unwrap().is_none());
}

async fn statuses_move_only_along_the_table_and_each_move_is_an_event<
    S: Registry + Progress + Outcomes,
>(
    store: &S,
) {
    let id = received(store, "t.csv").await;
    // Skipping a step and moving backward change nothing.
    assert!(!store
        .advance(id, Stage::Sanitizer, FileStatus::Transformed, json!({}))
        .await
        .unwrap());
    assert!(store
        .advance(id, Stage::Sanitizer, FileStatus::Sanitizing, json!({}))
        .await
        .unwrap());
    assert!(!store
        .advance(id, Stage::Sanitizer, FileStatus::Received, json!({}))
        .await
        .unwrap());
    let counts = RowCounts {
        rows_in: 5,
        rows_out: 4,
        rows_rejected: 1,
    };
    assert!(store
        .finish_sanitize(
            id,
            FileStatus::Sanitized,
            Some("clean/t.csv"),
            counts,
            None,
            json!({"n": 1})
        )
        .await
        .unwrap());
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Sanitized);
    assert_eq!(row.clean_key.as_deref(), Some("clean/t.csv"));
    assert_eq!(
        (row.rows_in, row.rows_out, row.rows_rejected),
        (Some(5), Some(4), Some(1))
    );
    assert_eq!(row.site.as_deref(), Some("leeds"));
    let history: Vec<FileStatus> = store
        .events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        history,
        [
            FileStatus::Received,
            FileStatus::Sanitizing,
            FileStatus::Sanitized
        ]
    );
}

async fn a_final_status_keeps_its_reason<S: Registry + Progress + Outcomes>(store: &S) {
    let rejected = received(store, "r.csv").await;
    store
        .advance(
            rejected,
            Stage::Sanitizer,
            FileStatus::Sanitizing,
            json!({}),
        )
        .await
        .unwrap();
    store
        .finish_sanitize(
            rejected,
            FileStatus::Rejected,
            None,
            RowCounts::default(),
            Some("not a CSV"),
            json!({}),
        )
        .await
        .unwrap();
    let failed = received(store, "f.csv").await;
    store
        .note_error(failed, Stage::Sanitizer, "S3 was slow")
        .await
        .unwrap();
    assert_eq!(
        store.file(failed).await.unwrap().unwrap().error.as_deref(),
        Some("S3 was slow"),
        "a retried error shows while the file is not final"
    );
    assert!(store
        .fail(failed, Stage::Sanitizer, "gave up")
        .await
        .unwrap());
    for id in [rejected, failed] {
        let before = store.file(id).await.unwrap().unwrap();
        store
            .note_error(id, Stage::Forwarder, "late")
            .await
            .unwrap();
        assert!(!store.fail(id, Stage::Forwarder, "later").await.unwrap());
        let after = store.file(id).await.unwrap().unwrap();
        assert_eq!(after.error, before.error);
        assert_eq!(after.status, before.status);
    }
    let row = store.file(failed).await.unwrap().unwrap();
    assert_eq!(row.error.as_deref(), Some("gave up"));
    assert_eq!(row.failed_stage.as_deref(), Some("sanitizer"));
    assert_eq!(
        store
            .file(rejected)
            .await
            .unwrap()
            .unwrap()
            .error
            .as_deref(),
        Some("not a CSV")
    );
}

async fn one_of_eight_claims_wins_and_the_others_learn_why<S: Registry + Leases>(store: &S) {
    let id = received(store, "c.csv").await;
    let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("w/{i}"), 60)).collect();
    let claims = futures_util::future::join_all(leases.iter().map(|l| {
        store.claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            l,
        )
    }))
    .await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Won { .. })))
        .count();
    let busy = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Busy)))
        .count();
    assert_eq!((won, busy), (1, 7), "{claims:?}");
    // Not ready for the next stage, and no such file.
    let next = store
        .claim(
            id,
            Stage::Transformer,
            FileStatus::Sanitized,
            FileStatus::Transforming,
            &leases[0],
        )
        .await
        .unwrap();
    assert_eq!(next, Claim::Elsewhere(FileStatus::Sanitizing));
    let missing = store
        .claim(
            Uuid::new_v4(),
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            &leases[0],
        )
        .await
        .unwrap();
    assert_eq!(missing, Claim::Missing);
}

/// The sanitizer's claim of file `id` under `lease`.
async fn sanitizing<S: Leases>(store: &S, id: Uuid, lease: &Lease) -> Claim {
    store
        .claim(
            id,
            Stage::Sanitizer,
            FileStatus::Received,
            FileStatus::Sanitizing,
            lease,
        )
        .await
        .unwrap()
}

async fn an_expired_lease_is_taken_over_and_a_released_one_is_free<S: Registry + Leases>(
    store: &S,
) {
    let id = received(store, "x.csv").await;
    let dead = lease("sanitizer/dead", -1);
    let claim = sanitizing(store, id, &dead).await;
    assert_eq!(claim, Claim::Won { attempts: 1 });
    let next = lease("sanitizer/next", 60);
    let claim = sanitizing(store, id, &next).await;
    assert_eq!(
        claim,
        Claim::Won { attempts: 2 },
        "the dead worker's lease is taken over"
    );
    let third = lease("sanitizer/third", 60);
    let claim = sanitizing(store, id, &third).await;
    assert_eq!(claim, Claim::Busy);
    // Only the owner releases.
    store.release(id, "sanitizer/third").await.unwrap();
    let claim = sanitizing(store, id, &third).await;
    assert_eq!(claim, Claim::Busy);
    store.release(id, "sanitizer/next").await.unwrap();
    let claim = sanitizing(store, id, &third).await;
    assert_eq!(claim, Claim::Won { attempts: 3 });
    let taken_over = store
        .events(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.detail["lease"] == "taken over")
        .count();
    assert_eq!(taken_over, 2);
}

async fn a_lease_in_place_leaves_the_status_where_it_is<S: Registry + Outcomes + Leases>(
    store: &S,
) {
    let id = transformed(store, "p.csv", 2).await;
    let after = [FileStatus::Transformed, FileStatus::Delivering];
    let first = lease("transformer/a", 60);
    let claim = store
        .claim_in_place(id, Stage::Transformer, &after, &first)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Won { .. }), "{claim:?}");
    let second = lease("transformer/b", 60);
    let claim = store
        .claim_in_place(id, Stage::Transformer, &after, &second)
        .await
        .unwrap();
    assert_eq!(claim, Claim::Busy);
    assert_eq!(
        store.file(id).await.unwrap().unwrap().status,
        FileStatus::Transformed
    );
    let other = received(store, "q.csv").await;
    let claim = store
        .claim_in_place(other, Stage::Transformer, &after, &second)
        .await
        .unwrap();
    assert_eq!(claim, Claim::Elsewhere(FileStatus::Received));
}

async fn a_batch_is_claimed_by_one_worker_until_its_2xx_is_recorded<
    S: Registry + Outcomes + Leases + Batches + CallLog,
>(
    store: &S,
) {
    let id = transformed(store, "b.csv", 1).await;
    let batch = format!("{id}-000001");
    let a = lease("forwarder/a", 60);
    let b = lease("forwarder/b", 60);
    let claimed = store.claim_batch(id, &batch, &a).await.unwrap();
    assert_eq!(claimed.claim, Claim::Won { attempts: 1 });
    assert_eq!(claimed.file_status, Some(FileStatus::Transformed));
    assert_eq!(
        (claimed.history.attempts, claimed.history.delivered),
        (0, false)
    );
    assert_eq!(
        store.claim_batch(id, &batch, &b).await.unwrap().claim,
        Claim::Busy
    );
    call(store, id, &batch, 1, 503).await;
    assert_eq!(
        store.claim_batch(id, &batch, &b).await.unwrap().claim,
        Claim::Busy
    );
    store.release_batch(&batch, "forwarder/a").await.unwrap();
    let claimed = store.claim_batch(id, &batch, &b).await.unwrap();
    assert_eq!(claimed.claim, Claim::Won { attempts: 2 });
    assert_eq!(claimed.history.attempts, 1, "the claim brings the history");
    call(store, id, &batch, 2, 200).await;
    // The 2xx released the claim: the next copy claims it, and finds it delivered.
    let claimed = store.claim_batch(id, &batch, &a).await.unwrap();
    assert_eq!(claimed.claim, Claim::Won { attempts: 3 });
    assert!(claimed.history.delivered);
    let history = store.batch_history(&batch).await.unwrap();
    assert_eq!((history.attempts, history.delivered), (2, true));
    let none = store.batch_history("nothing").await.unwrap();
    assert_eq!((none.attempts, none.delivered), (0, false));
}

async fn a_batch_claim_brings_the_section_its_file_was_pinned_to<
    S: Registry + Outcomes + Leases + Batches + Plans,
>(
    store: &S,
) {
    let id = transformed(store, "pinned.csv", 2).await;
    let claimed = store
        .claim_batch(id, &format!("{id}-000001"), &lease("forwarder/a", 60))
        .await
        .unwrap();
    assert_eq!(claimed.pinned, None, "a file planned before pins has none");
    // A pin without a section (the dataset was not in the config) is none either.
    let other = transformed(store, "unpinned.csv", 1).await;
    store
        .fix_plan(other, &json!({ "dataset": null, "config": null }))
        .await
        .unwrap();
    let claimed = store
        .claim_batch(other, &format!("{other}-000001"), &lease("forwarder/a", 60))
        .await
        .unwrap();
    assert_eq!(claimed.pinned, None);
    let section = json!({ "prefix": "orders/", "delivery": { "endpoint": "https://a.example/" } });
    store
        .fix_plan(id, &json!({ "dataset": section, "config": "aa" }))
        .await
        .unwrap();
    let claimed = store
        .claim_batch(id, &format!("{id}-000002"), &lease("forwarder/b", 60))
        .await
        .unwrap();
    assert_eq!(claimed.claim, Claim::Won { attempts: 1 });
    assert_eq!(claimed.pinned, Some(section.clone()));
    // A busy claim brings it too: the loser's answer is as complete as the winner's.
    let busy = store
        .claim_batch(id, &format!("{id}-000002"), &lease("forwarder/c", 60))
        .await
        .unwrap();
    assert_eq!((busy.claim, busy.pinned), (Claim::Busy, Some(section)));
}

async fn delivery_settles_the_file_as_its_batches_get_through<
    S: Registry + Outcomes + Leases + Batches + CallLog,
>(
    store: &S,
) {
    let id = transformed(store, "s.csv", 2).await;
    assert_eq!(
        store.settle_delivery(id).await.unwrap(),
        FileStatus::Transformed
    );
    call(store, id, &format!("{id}-000001"), 1, 500).await;
    call(store, id, &format!("{id}-000001"), 2, 201).await;
    assert_eq!(
        store.settle_delivery(id).await.unwrap(),
        FileStatus::Delivering
    );
    call(store, id, &format!("{id}-000002"), 1, 200).await;
    // A duplicate 2xx of the same batch does not count twice.
    call(store, id, &format!("{id}-000001"), 3, 200).await;
    assert_eq!(store.delivered_batches(id).await.unwrap().len(), 2);
    assert_eq!(
        store.settle_delivery(id).await.unwrap(),
        FileStatus::Delivered
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(
        (row.batches_sent, row.batches_delivered),
        (Some(2), Some(2))
    );
    assert_eq!(row.error, None);
    assert_eq!(
        store.settle_delivery(id).await.unwrap(),
        FileStatus::Delivered,
        "settling again changes nothing"
    );
}

async fn a_plan_is_fixed_by_the_first_writer_of_each_of_its_keys<S: Registry + Plans>(store: &S) {
    assert_eq!(
        store.fix_plan(Uuid::new_v4(), &json!({})).await.unwrap(),
        None
    );
    let id = received(store, "plan.csv").await;
    // A replay writes its options first; the transformer's proposal adds only what is missing.
    let options = json!({ "date_range": null, "full": true });
    assert_eq!(store.fix_plan(id, &options).await.unwrap(), Some(options));
    let first = json!({ "dataset": { "batch": 2 }, "config": "aa", "date_range": { "start": "2026-01-01" }, "full": false });
    let fixed =
        json!({ "dataset": { "batch": 2 }, "config": "aa", "date_range": null, "full": true });
    assert_eq!(
        store.fix_plan(id, &first).await.unwrap(),
        Some(fixed.clone())
    );
    let later =
        json!({ "dataset": { "batch": 3 }, "config": "bb", "date_range": null, "full": false });
    assert_eq!(store.fix_plan(id, &later).await.unwrap(), Some(fixed));
}

async fn a_batch_mark_is_kept_by_the_first_cut_and_the_plan_around_it_stays<S: Registry + Plans>(
    store: &S,
) {
    assert_eq!(
        store
            .mark_batches(Uuid::new_v4(), &json!({}))
            .await
            .unwrap(),
        None
    );
    let id = received(store, "marks.csv").await;
    let options = json!({ "date_range": null, "full": false });
    store.fix_plan(id, &options).await.unwrap();
    let a = json!({ "first": 0, "records": 2, "sha256": "aa" });
    let b = json!({ "first": 2, "records": 2, "sha256": "bb" });
    assert_eq!(
        store
            .mark_batches(id, &json!({ "1": a, "2": b }))
            .await
            .unwrap(),
        Some(json!({ "1": a, "2": b }))
    );
    // A later cut of batch 2 gets the first one back; only the batches asked about return.
    let other = json!({ "first": 2, "records": 3, "sha256": "cc" });
    let c = json!({ "first": 4, "records": 1, "sha256": "dd" });
    assert_eq!(
        store
            .mark_batches(id, &json!({ "2": other, "3": c }))
            .await
            .unwrap(),
        Some(json!({ "2": b, "3": c }))
    );
    // The plan is untouched, and fixing the plan keeps the marks.
    let plan = store
        .fix_plan(id, &json!({ "config": "x" }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        plan,
        json!({ "date_range": null, "full": false, "config": "x" })
    );
    assert_eq!(
        store
            .mark_batches(id, &json!({ "1": c, "3": a }))
            .await
            .unwrap(),
        Some(json!({ "1": a, "3": c }))
    );
}

/// Take-overs of one file at the same moment (config changed between their containers'
/// loads): each gets the plan that is on the row, and it is one of theirs, whole.
async fn eight_workers_fixing_one_plan_at_once_all_get_the_same_plan<S: Registry + Plans>(
    store: &S,
) {
    let id = received(store, "plans-at-once.csv").await;
    let proposals: Vec<_> = (0..8)
        .map(|i| json!({ "dataset": { "batch": i }, "config": format!("v{i}"), "full": false }))
        .collect();
    let fixed = futures_util::future::join_all(proposals.iter().map(|p| store.fix_plan(id, p)))
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("the row"))
        .collect::<Vec<_>>();
    assert!(fixed.iter().all(|p| p == &fixed[0]), "{fixed:#?}");
    assert!(
        proposals.contains(&fixed[0]),
        "one proposal, whole: {}",
        fixed[0]
    );
    assert_eq!(
        store.fix_plan(id, &json!({})).await.unwrap().as_ref(),
        Some(&fixed[0])
    );
}

const HOUR: Duration = Duration::from_secs(3600);

async fn a_dead_worker_is_redriven_then_given_up_and_an_idle_file_is_only_resent<
    S: Registry + Leases + Sweep,
>(
    store: &S,
) {
    // A worker claimed the file and died: its lease lapsed.
    let dead = received(store, "dead.csv").await;
    sanitizing(store, dead, &lease("sanitizer/1", -1)).await;
    let listed = store.stuck_files(HOUR, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first = &listed[0];
    assert_eq!(
        (first.id, first.stuck, first.redrives),
        (dead, Stuck::LeaseLapsed, 0)
    );
    assert_eq!(
        store.redrive(first, 1, HOUR, "test").await.unwrap(),
        Redrive::Go { n: 1 }
    );
    // The same listing again (an overlapping sweep): already decided.
    assert_eq!(
        store.redrive(first, 1, HOUR, "test").await.unwrap(),
        Redrive::Moved
    );
    // Re-driven, its lease cleared and its time reset: not stuck until it is again.
    assert!(store.stuck_files(HOUR, 10).await.unwrap().is_empty());
    sanitizing(store, dead, &lease("sanitizer/2", -1)).await;
    let again = store.stuck_files(HOUR, 10).await.unwrap();
    assert_eq!((again[0].stuck, again[0].redrives), (Stuck::LeaseLapsed, 1));
    assert_eq!(
        store.redrive(&again[0], 1, HOUR, "test").await.unwrap(),
        Redrive::GaveUp
    );
    let row = store.file(dead).await.unwrap().unwrap();
    assert_eq!(row.status, FileStatus::Failed);
    assert!(
        row.error.as_deref().unwrap().contains("after 1 re-drives"),
        "{row:?}"
    );

    // A file no worker holds is idle once the stale time has passed (here at once): its
    // input is re-sent, as often as it stays idle, and it is never failed for it.
    let idle = received(store, "idle.csv").await;
    assert!(
        store.stuck_files(HOUR, 10).await.unwrap().is_empty(),
        "not idle for an hour"
    );
    for n in 1..=3 {
        let listed = store.stuck_files(Duration::ZERO, 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].id, listed[0].stuck), (idle, Stuck::Idle));
        assert_eq!(listed[0].resends, n - 1);
        let decided = store
            .redrive(&listed[0], 0, Duration::ZERO, "test")
            .await
            .unwrap();
        assert_eq!(decided, Redrive::Resend { n });
    }
    assert_eq!(
        store.file(idle).await.unwrap().unwrap().status,
        FileStatus::Received
    );
    let resends: Vec<i64> = store
        .events(idle)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.detail["resend"].as_i64())
        .collect();
    assert_eq!(resends, [1, 2, 3]);
}

async fn two_sweeps_deciding_one_file_at_once_decide_it_once<
    S: Registry + Leases + Plans + Sweep,
>(
    store: &S,
) {
    let id = received(store, "once.csv").await;
    sanitizing(store, id, &lease("sanitizer/1", -1)).await;
    let listed = store.stuck_files(HOUR, 10).await.unwrap().remove(0);
    let decisions =
        futures_util::future::join_all((0..4).map(|_| store.redrive(&listed, 3, HOUR, "test")))
            .await;
    let went = decisions
        .iter()
        .filter(|d| matches!(d, Ok(Redrive::Go { n: 1 })))
        .count();
    let moved = decisions
        .iter()
        .filter(|d| matches!(d, Ok(Redrive::Moved)))
        .count();
    assert_eq!((went, moved), (1, 3), "{decisions:?}");
}

/// The same race on PostgreSQL with a connection per worker (one store's statements share a
/// connection, so the suite above cannot make them meet in the database): eight UPDATEs of
/// one row, released together by a barrier.
#[tokio::test]
async fn eight_connections_fixing_one_plan_at_once_all_get_the_same_plan() {
    let schema = sluice_e2e::Schema::create().await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(schema.store().await);
    }
    let id = received(&stores[0], "plans-on-eight.csv").await;
    let barrier = tokio::sync::Barrier::new(8);
    let proposals: Vec<_> = (0..8)
        .map(|i| json!({ "dataset": { "batch": i }, "config": format!("v{i}") }))
        .collect();
    let fixed =
        futures_util::future::join_all(stores.iter().zip(&proposals).map(|(store, proposal)| {
            let barrier = &barrier;
            async move {
                // Each connection is live before the start.
                store.fix_plan(Uuid::new_v4(), &json!({})).await.unwrap();
                barrier.wait().await;
                store
                    .fix_plan(id, proposal)
                    .await
                    .unwrap()
                    .expect("the row")
            }
        }))
        .await;
    assert!(fixed.iter().all(|p| p == &fixed[0]), "{fixed:#?}");
    assert!(
        proposals.contains(&fixed[0]),
        "one proposal, whole: {}",
        fixed[0]
    );
}
