//! What every backend must do, as one check each backend's tests run:
//! SQLite and the in-memory key-value space here, etcd in `drctl-etcd`'s
//! tests against a real cluster. A backend that passes behaves as the
//! rest of drctl expects; one that differs fails here, not in a failover.
//!
//! The check panics on the first difference (it is test code); it needs an
//! empty store.

use crate::error::Error;
use crate::model::audience::{Attempt, Channel, DeliveryState, Notification, SubscriptionState};
use crate::model::controller::{Role, Verified};
use crate::model::journal::{exec_state, Claim, ExecutionRow, StepState, Transition};
use crate::model::samples::{MultipartCheckpoint, ReplicatedObject, RpoSample, RunTotals};
use crate::model::Store;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn exec(id: &str, at_s: u64) -> ExecutionRow {
    ExecutionRow {
        id: id.into(),
        declared_at: UNIX_EPOCH + Duration::from_secs(at_s),
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: "az1 is down".into(),
        plan: "{}".into(),
        options: "{}".into(),
    }
}

fn running(by: &str) -> Transition<'_> {
    let now = SystemTime::now();
    Transition {
        at: now,
        state: StepState::Running,
        attempts: 1,
        started_at: Some(now),
        finished_at: None,
        error: None,
        note: None,
        ran_by: Some(by),
    }
}

/// Runs every check on an empty store; panics on the first difference.
pub fn check(s: &dyn Store) {
    journal(s);
    controller(s);
    samples(s);
    audience(s);
    erasures(s);
}

/// The erasure ledger: numbered, read back whole, changed whole.
fn erasures(s: &dyn Store) {
    use crate::erasure::{CopyState, ErasureRequest};
    let at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let draft = ErasureRequest {
        id: String::new(),
        requested_at: at,
        due_at: at + Duration::from_secs(86_400),
        who: "cli:test".into(),
        reason: "request 1".into(),
        subject: Some("subject-conformance-1".into()),
        erased_at: None,
        forgotten_at: None,
        copies: vec![CopyState {
            datastore: "db".into(),
            zone: "az1".into(),
            primary: true,
            erased_at: None,
            verified_at: None,
            position: Some("0/3000060".into()),
            pending: None,
        }],
    };
    let a = s.create_erasure(&draft).unwrap();
    let b = s.create_erasure(&draft).unwrap();
    assert_ne!(a.id, b.id);
    let changed = s.update_erasure(&a.id, &mut |r| r.copies[0].verified_at = Some(at)).unwrap();
    assert!(changed.verified());
    assert_eq!(s.erasure(&a.id).unwrap(), Some(changed));
    let all = s.erasures().unwrap();
    assert_eq!(all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![a.id.clone(), b.id.clone()], "oldest first");
    assert_eq!(all[1].subject.as_deref(), Some("subject-conformance-1"));
    assert!(s.update_erasure("er-999999", &mut |_| {}).is_err());
}

fn note(event: &str, services: &[&str], at_ms: i64) -> Notification {
    Notification {
        event: event.into(),
        kind: "incident.created".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        at_ms,
        payload: serde_json::json!({"id": 1}),
    }
}

fn audience(s: &dyn Store) {
    let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    // An e-mail subscription waits for its confirmation; a webhook is active.
    let mail = s.subscribe(Channel::Email, "ops@example.com", &["checkout".into()], "ja", at(1_000)).unwrap();
    assert_eq!(mail.subscription.state, SubscriptionState::Pending);
    let confirm = mail.confirm_token.clone().unwrap();
    let hook = s.subscribe(Channel::Webhook, "https://example.com/hook", &[], "en", at(1_000)).unwrap();
    assert_eq!(hook.subscription.state, SubscriptionState::Active);
    assert!(hook.subscription.secret.as_deref().is_some_and(|k| k.starts_with("whsec_")));
    assert!(hook.confirm_token.is_none());
    assert!(s.subscriptions().unwrap().iter().all(|x| x.confirm_hash.as_deref() != Some(confirm.as_str())));

    // Only active subscribers hear of an event, once however often it is offered.
    assert_eq!(s.enqueue(&note("incident.1.created", &["checkout"], 2_000), None, at(2_000)).unwrap(), 1);
    assert_eq!(s.enqueue(&note("incident.1.created", &["checkout"], 2_000), None, at(2_001)).unwrap(), 0);
    assert!(s.confirm_subscription("not-a-token", at(3_000)).unwrap().is_none());
    let confirmed = s.confirm_subscription(&confirm, at(3_000)).unwrap().unwrap();
    assert_eq!((confirmed.state, confirmed.confirmed_ms), (SubscriptionState::Active, Some(3_000)));
    // Confirmed after the event: not told of it; told of the next one that concerns it.
    assert_eq!(s.enqueue(&note("incident.1.created", &["checkout"], 2_000), None, at(3_001)).unwrap(), 0);
    assert_eq!(s.enqueue(&note("incident.2.created", &["search"], 4_000), None, at(4_000)).unwrap(), 1);
    assert_eq!(s.enqueue(&note("incident.3.created", &["checkout"], 5_000), None, at(5_000)).unwrap(), 2);
    // A message to one subscriber whatever its state.
    assert_eq!(s.enqueue(&note("confirm.9", &[], 5_000), Some(mail.subscription.id), at(5_000)).unwrap(), 1);

    // Due deliveries, soonest first; a retry moves one later, a success ends it.
    let due = s.due_deliveries(at(5_000), 100).unwrap();
    assert_eq!(due.len(), 5, "{due:?}");
    assert!(due.windows(2).all(|w| w[0].next_ms <= w[1].next_ms));
    let first = due[0].clone();
    s.record_attempt(first.id, &Attempt::Retry { at: at(60_000), error: "503".into() }, at(5_001)).unwrap();
    assert!(s.due_deliveries(at(59_999), 100).unwrap().iter().all(|d| d.id != first.id));
    let again = s.due_deliveries(at(60_000), 100).unwrap();
    let retried = again.iter().find(|d| d.id == first.id).unwrap();
    assert_eq!((retried.attempts, retried.last_error.as_deref()), (1, Some("503")));
    s.record_attempt(first.id, &Attempt::Delivered, at(60_001)).unwrap();
    s.record_attempt(first.id, &Attempt::Delivered, at(60_002)).unwrap();
    assert!(s.due_deliveries(at(99_999), 100).unwrap().iter().all(|d| d.id != first.id));
    let second = again.iter().find(|d| d.id != first.id).unwrap().id;
    s.record_attempt(second, &Attempt::GiveUp { error: "a day of failures".into() }, at(70_000)).unwrap();
    let all = s.deliveries().unwrap();
    let state = |id| all.iter().find(|d| d.id == id).unwrap().state;
    assert_eq!((state(first.id), state(second)), (DeliveryState::Delivered, DeliveryState::GivenUp));
    assert_eq!(s.due_deliveries(at(99_999), 100).unwrap().len(), 3);

    // Unsubscribing ends what is queued next.
    let gone = s.unsubscribe(&hook.subscription.unsubscribe_token, at(80_000)).unwrap().unwrap();
    assert_eq!(gone.state, SubscriptionState::Unsubscribed);
    assert!(s.unsubscribe("nope", at(80_000)).unwrap().is_none());
    assert_eq!(s.enqueue(&note("incident.4.created", &[], 90_000), None, at(90_000)).unwrap(), 1);

    // Reports: drafted once, edited, published.
    assert!(s.report(7).unwrap().is_none());
    assert!(s.publish_report(7, "alice", at(1)).is_err());
    assert!(s.draft_report(7, "draft", at(100)).unwrap());
    assert!(!s.draft_report(7, "another draft", at(101)).unwrap());
    let r = s.edit_report(7, "edited", "alice", at(200)).unwrap();
    assert_eq!((r.body.as_str(), r.edited_by.as_deref(), r.published_ms), ("edited", Some("alice"), None));
    let r = s.publish_report(7, "bob", at(300)).unwrap();
    assert_eq!((r.published_ms, r.published_by.as_deref(), r.drafted_ms), (Some(300), Some("bob"), 100));
    let r = s.edit_report(8, "written by hand", "carol", at(400)).unwrap();
    assert_eq!(r.body, "written by hand");

    // A customer token names its customer; no other token does.
    s.create_token("acme-auditor", Role::Customer, Some("acme")).unwrap();
    assert!(s.create_token("nobody", Role::Customer, None).is_err());
    assert!(s.create_token("ops2", Role::Operator, Some("acme")).is_err());
    let t = s.tokens().unwrap().into_iter().find(|t| t.name == "acme-auditor").unwrap();
    assert_eq!((t.role, t.customer.as_deref()), (Role::Customer, Some("acme")));
}

fn journal(s: &dyn Store) {
    let steps = vec![
        ("db/failover".to_string(), "db".to_string(), "postgres.promote".to_string()),
        ("db".to_string(), "db".to_string(), "approval".to_string()),
    ];
    s.create_execution(&exec("e1", 100), &steps, &["db".into()]).unwrap();
    let err = s.create_execution(&exec("e2", 200), &steps, &["db".into()]).unwrap_err();
    assert!(matches!(&err, Error::Locked { entity, execution } if entity == "db" && execution == "e1"), "{err}");

    s.transition("e1", 0, "db/failover", &running("c1")).unwrap();
    let mut done = running("c2");
    done.state = StepState::Succeeded;
    done.ran_by = None;
    done.note = Some("promoted");
    done.finished_at = Some(SystemTime::now());
    s.transition("e1", 0, "db/failover", &done).unwrap();
    let rows = s.steps("e1").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].state, rows[0].note.as_deref()), (StepState::Succeeded, Some("promoted")));
    assert_eq!(rows[0].ran_by.as_deref(), Some("c1"), "who ran a step survives later transitions");
    assert_eq!((rows[1].id.as_str(), rows[1].state), ("db", StepState::Pending));

    // Approvals belong to one attempt; a step id that is a prefix of another never shares them.
    assert!(s.approve("e1", "db", "alice", false).unwrap());
    assert!(!s.approve("e1", "db", "bob", true).unwrap(), "an attempt is decided once");
    assert_eq!(s.approved_by("e1", "db", 0).unwrap().map(|a| a.by), Some("alice".into()));
    assert_eq!(s.approved_by("e1", "db/failover", 0).unwrap(), None);
    assert_eq!(s.approved_by("e1", "db", 1).unwrap(), None, "a later attempt needs its own decision");
    assert!(matches!(s.approve("nope", "db", "x", false), Err(Error::NoSuchExecution(_))));

    let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ttl = Duration::from_secs(10);
    assert_eq!(s.claim_execution("e1", "a", t0, ttl).unwrap(), Claim::Ours);
    assert_eq!(
        s.claim_execution("e1", "b", t0 + Duration::from_secs(5), ttl).unwrap(),
        Claim::Held { by: "a".into(), until: t0 + ttl }
    );
    assert_eq!(s.execution_owner("e1", t0).unwrap(), Some(("a".into(), t0 + ttl)));
    assert_eq!(s.claim_execution("e1", "b", t0 + Duration::from_secs(11), ttl).unwrap(), Claim::Ours);
    s.release_execution("e1", "a").unwrap();
    assert_eq!(s.execution_owner("e1", t0 + Duration::from_secs(12)).unwrap().map(|o| o.0), Some("b".into()));
    s.release_execution("e1", "b").unwrap();
    assert_eq!(s.execution_owner("e1", t0 + Duration::from_secs(12)).unwrap(), None);

    assert_eq!(s.request_abort("e1").unwrap(), exec_state::ABORTING);
    s.set_execution_state("e1", exec_state::ABORTED, Some(SystemTime::now())).unwrap();
    assert_eq!(s.request_abort("e1").unwrap(), exec_state::ABORTED, "a final state stays");
    s.create_execution(&exec("e2", 200), &steps, &["db".into()]).unwrap();
    let ids: Vec<String> = s.executions().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["e2", "e1"], "newest first");
    let kinds: Vec<String> = s.events("e1").unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["declared", "running", "succeeded", "approved", "aborting", "aborted"]);
    let counts = s.execution_counts().unwrap();
    assert!(counts.contains(&("aborted".into(), 1)) && counts.contains(&("running".into(), 1)), "{counts:?}");
    assert_eq!(s.step_durations().unwrap().iter().map(|d| d.2).sum::<u64>(), 1);

    s.set_placement("db", "az2").unwrap();
    s.set_placement("db", "az3").unwrap();
    s.set_placement("cache", "az1").unwrap();
    assert_eq!(s.placements().unwrap(), [("cache".into(), "az1".into()), ("db".into(), "az3".into())]);
}

fn controller(s: &dyn Store) {
    let secret = s.create_token("alice", Role::Commander, None).unwrap();
    assert!(s.create_token("alice", Role::Viewer, None).is_err(), "names are unique");
    assert!(s.create_token("bad name", Role::Viewer, None).is_err());
    s.create_token("bob", Role::Viewer, None).unwrap();
    let t = s.authenticate(&secret).unwrap().expect("the secret authenticates");
    assert_eq!((t.name.as_str(), t.role), ("alice", Role::Commander));
    assert!(s.authenticate("drctl_wrong").unwrap().is_none());
    s.revoke_token("alice").unwrap();
    assert!(s.authenticate(&secret).unwrap().is_none(), "a revoked token no longer works");
    let names: Vec<String> = s.tokens().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["alice", "bob"]);

    for i in 0..3 {
        s.audit("alice", "cli", "declare", &format!("execution e{i}"), &serde_json::json!({"i": i})).unwrap();
    }
    let entries = s.audit_entries().unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(entries[1].prev_hash, entries[0].hash, "chained");
    assert!(matches!(s.verify_audit().unwrap(), Verified::Intact { entries: 3, .. }));

    let id = s.create_incident("Orders down", "investigating", "Looking", &["orders".into()], Some("e1")).unwrap();
    s.update_incident(id, "resolved", "Fixed").unwrap();
    assert!(s.update_incident(id + 100, "resolved", "x").is_err());
    assert!(s.create_incident("x", "bogus", "", &[], None).is_err());
    let other = s.create_incident("Later", "identified", "", &[], None).unwrap();
    let all = s.incidents().unwrap();
    assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [other, id], "newest first");
    assert_eq!(all[1].status, "resolved");
    assert!(all[1].resolved_at.is_some());
    assert_eq!(all[1].updates.iter().map(|u| u.body.as_str()).collect::<Vec<_>>(), ["Fixed", "Looking"]);
    assert_eq!(s.incident_of_execution("e1").unwrap(), Some(id));
    // A declaration's incident is titled by its state.
    let fo = s.create_incident("Failover in progress: az1", "identified", "Moving", &[], Some("e2")).unwrap();
    let title = |s: &dyn Store| s.incidents().unwrap().into_iter().find(|i| i.id == fo).unwrap().title;
    assert_eq!(title(s), "Failover in progress: az1");
    s.update_incident(fo, "resolved", "Done").unwrap();
    assert_eq!(title(s), "Failed over: az1", "resolved, the title says so");

    let t = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    assert!(s.create_maintenance("x", "", &[], t, t).is_err());
    s.create_maintenance("late", "", &[], t + Duration::from_secs(60), t + Duration::from_secs(120)).unwrap();
    s.create_maintenance("early", "", &[], t, t + Duration::from_secs(60)).unwrap();
    let m: Vec<String> = s.maintenance().unwrap().into_iter().map(|m| m.title).collect();
    assert_eq!(m, ["early", "late"], "by start");

    let day = |d: u64| UNIX_EPOCH + Duration::from_secs(d * 86_400 + 5);
    s.record_health(day(10), &[("orders".into(), true), ("web".into(), false)]).unwrap();
    s.record_health(day(10), &[("orders".into(), false)]).unwrap();
    s.record_health(day(12), &[("orders".into(), true)]).unwrap();
    let up = s.uptime("orders", 11).unwrap();
    assert_eq!(up.iter().map(|d| (d.day, d.checks, d.healthy)).collect::<Vec<_>>(), [(12, 1, 1)]);
    let up = s.uptime("orders", 0).unwrap();
    assert_eq!(up.iter().map(|d| (d.day, d.checks, d.healthy)).collect::<Vec<_>>(), [(10, 2, 1), (12, 1, 1)]);

    s.begin_drill("d1", "chaos/a.yaml").unwrap();
    s.finish_drill("d1", Some(true), Some("{}")).unwrap();
    s.record_drill("d2", "chaos/b.yaml", SystemTime::now() + Duration::from_secs(5), false, "{}").unwrap();
    let d = s.drills().unwrap();
    assert_eq!(
        d.iter().map(|d| (d.id.as_str(), d.objectives_met)).collect::<Vec<_>>(),
        [("d2", Some(false)), ("d1", Some(true))]
    );
}

fn millis_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn samples(s: &dyn Store) {
    let now = SystemTime::now();
    let sample = |ds: &str, ago: u64, rpo: f64| RpoSample {
        datastore: ds.into(),
        at: now - Duration::from_secs(ago),
        rpo_s: Some(rpo),
        target_s: Some(60.0),
        error: None,
    };
    s.record_rpo_samples(&[sample("db", 20, 1.0), sample("db", 10, 2.0), sample("other", 10, 9.0)]).unwrap();
    let got: Vec<f64> =
        s.rpo_samples("db", now - Duration::from_secs(15)).unwrap().iter().filter_map(|x| x.rpo_s).collect();
    assert_eq!(got, [2.0]);
    assert_eq!(s.rpo_samples("db", UNIX_EPOCH).unwrap().len(), 2, "oldest first, both");

    s.record_replica_lags("db", now, &[("az2".into(), Some(0.5)), ("az3".into(), None)]).unwrap();
    s.record_replica_lags("db", now + Duration::from_secs(1), &[("az2".into(), None)]).unwrap();
    assert_eq!(s.last_replica_lag("db", "az2").unwrap().map(|l| l.1), Some(0.5), "the last known lag");
    assert_eq!(s.last_replica_lag("db", "az3").unwrap(), None);

    // The lag evidence: the last look with the primary answering, then the
    // first look without it, from any process writing to this store.
    // Kept to the millisecond.
    let t0 = UNIX_EPOCH + Duration::from_millis(millis_of(now));
    let look = |after: u64, primary: bool| crate::WalSample {
        zone: "az2".into(),
        at: t0 + Duration::from_secs(after),
        primary_zone: primary.then(|| "az1".to_string()),
        primary_lsn: primary.then_some(0x3000060),
        received_lsn: Some(0x3000000),
        lag_s: primary.then_some(0.4),
        replay_lag_s: Some(1.5),
        streaming: primary,
    };
    assert_eq!(s.lag_evidence("db", "az2").unwrap(), None);
    s.record_wal_samples("db", &[look(0, true), look(1, true)]).unwrap();
    s.record_wal_samples("db", &[look(2, false)]).unwrap();
    s.record_wal_samples("db", &[look(3, false)]).unwrap();
    let e = s.lag_evidence("db", "az2").unwrap().unwrap();
    assert_eq!(e.last_seen, Some(look(1, true)), "kept whole");
    assert_eq!(e.dark_since, Some(t0 + Duration::from_secs(2)));
    assert_eq!(e.interval, Some(Duration::from_secs(1)));
    assert_eq!(s.lag_evidence("db", "az3").unwrap(), None);

    assert!(s.open_replication_runs("assets").unwrap().is_empty());
    let run = s.begin_replication_run("assets", now).unwrap();
    let other = s.begin_replication_run("logs", now - Duration::from_secs(5)).unwrap();
    let ms = |runs: Vec<SystemTime>| runs.into_iter().map(crate::millis).collect::<Vec<_>>();
    assert_eq!(ms(s.open_replication_runs("assets").unwrap()), [crate::millis(now)], "a run in progress is open");
    let totals = RunTotals { copied: 3, bytes: 30, skipped: 1, failed: 0 };
    s.finish_replication_run(run, now, totals, None).unwrap();
    assert!(s.open_replication_runs("assets").unwrap().is_empty(), "a finished run is not");
    assert_eq!(ms(s.open_replication_runs("logs").unwrap()), [crate::millis(now - Duration::from_secs(5))]);
    s.finish_replication_run(other, now, RunTotals::default(), None).unwrap();
    let run = s.begin_replication_run("assets", now).unwrap();
    s.finish_replication_run(run, now, RunTotals { copied: 1, ..Default::default() }, Some("boom")).unwrap();
    let (_, last, err) = s.last_replication_run("assets").unwrap().unwrap();
    assert_eq!((last.copied, err.as_deref()), (1, Some("boom")));
    assert_eq!(
        s.replication_totals().unwrap(),
        [
            ("assets".into(), RunTotals { copied: 4, bytes: 30, skipped: 1, failed: 0 }),
            ("logs".into(), RunTotals::default())
        ]
    );

    let cp = MultipartCheckpoint { upload_id: "u1".into(), source_etag: "e".into(), part_size: 8, parts: vec![] };
    s.start_multipart("assets", "az2", "big/file", &cp).unwrap();
    s.record_part("assets", "az2", "big/file", 2, "p2").unwrap();
    s.record_part("assets", "az2", "big/file", 1, "p1").unwrap();
    let got = s.multipart_checkpoint("assets", "az2", "big/file").unwrap().unwrap();
    assert_eq!(got.parts, [(1, "p1".to_string()), (2, "p2".to_string())]);
    s.clear_multipart("assets", "az2", "big/file").unwrap();
    assert_eq!(s.multipart_checkpoint("assets", "az2", "big/file").unwrap(), None);

    let row = |key: &str| ReplicatedObject {
        zone: "az2".into(),
        key: key.into(),
        etag: "t".into(),
        source_etag: "s".into(),
        kept: false,
    };
    let many: Vec<ReplicatedObject> = (0..250).map(|i| row(&format!("k/{i:03}"))).collect();
    s.record_replicated("assets", &many).unwrap();
    assert_eq!(s.replicated("assets", "az2").unwrap().len(), 250, "more rows than one transaction holds");
    assert!(s.replicated("assets", "az1").unwrap().is_empty());
    s.forget_replicated("assets", "az2", "k/000").unwrap();
    s.keep_replicated("assets", "az2", "k/001", "new").unwrap();
    let got = s.replicated("assets", "az2").unwrap();
    assert_eq!(got.len(), 249);
    assert!(got["k/001"].kept && got["k/001"].etag == "new" && got["k/001"].source_etag == "s");

    s.replace_conflicts("assets", "az1", &[("a".into(), "e1".into(), "never replicated".into())]).unwrap();
    s.replace_conflicts("assets", "az2", &[("b".into(), "e2".into(), "newer".into())]).unwrap();
    s.replace_conflicts("assets", "az1", &[("c".into(), "e3".into(), "newer".into())]).unwrap();
    let c = s.conflicts("assets").unwrap();
    assert_eq!(c.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect::<Vec<_>>(), [("az1", "c"), ("az2", "b")]);

    assert_eq!(s.published("status").unwrap(), None);
    s.publish("status", "{\"a\":1}").unwrap();
    s.publish("status", "{\"a\":2}").unwrap();
    assert_eq!(s.published("status").unwrap().as_deref(), Some("{\"a\":2}"));
    assert!(s.schema_version().unwrap() >= 1);
}

/// What the store records on its own (a token's creation, an audit entry,
/// an incident, a drill, a journal event, a step's approval) is stamped
/// with the clock it was given, never the machine's: `s` must have been
/// opened with a clock reading `at` (far from today), and be empty.
pub fn times_come_from_its_clock(s: &dyn Store, at: SystemTime) {
    let ms = |t: SystemTime| crate::millis(t);
    s.create_token("ic", Role::Commander, None).unwrap();
    assert_eq!(ms(s.tokens().unwrap()[0].created_at), ms(at), "a token's creation");
    let entry = s.audit("ic", "cli", "declare", "execution e1", &serde_json::json!({})).unwrap();
    assert_eq!(ms(entry.at), ms(at), "an audit entry");
    let id = s.create_incident("az1 down", "investigating", "", &[], None).unwrap();
    let incident = s.incidents().unwrap().into_iter().find(|i| i.id == id).unwrap();
    assert_eq!((ms(incident.created_at), ms(incident.updated_at)), (ms(at), ms(at)), "an incident");
    s.begin_drill("d1", "chaos/a.yaml").unwrap();
    s.finish_drill("d1", Some(true), None).unwrap();
    let drill = &s.drills().unwrap()[0];
    assert_eq!((ms(drill.started_at), drill.finished_at.map(ms)), (ms(at), Some(ms(at))), "a drill");
    let steps = [("db/failover".to_string(), "db".to_string(), "postgres.promote".to_string())];
    s.create_execution(&exec("e1", 1_000), &steps, &["db".into()]).unwrap();
    s.set_execution_state("e1", exec_state::ABORTED, None).unwrap();
    // `declared` carries the declaration's own time; `aborted` is the store's.
    let events = s.events("e1").unwrap();
    let aborted = events.iter().find(|e| e.kind == "aborted").unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(ms(aborted.at), ms(at), "a journal event");
}

#[cfg(test)]
mod tests {
    use drctl_runtime::MockClock;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn sqlite_keeps_the_contract() {
        super::check(&crate::Sqlite::in_memory().unwrap());
    }

    #[test]
    fn the_key_value_store_keeps_the_contract() {
        super::check(&crate::kv::KvStore::new(crate::kv::MemKv::default(), "/drctl/").unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn both_backends_stamp_what_they_record_with_the_callers_clock() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let clock = Arc::new(MockClock::starting_at(at));
        super::times_come_from_its_clock(&crate::Sqlite::in_memory().unwrap().with_clock(clock.clone()), at);
        let kv = crate::kv::KvStore::new(crate::kv::MemKv::default(), "/drctl/").unwrap().with_clock(clock);
        super::times_come_from_its_clock(&kv, at);
    }
}
