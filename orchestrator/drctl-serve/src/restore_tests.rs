//! Restore tests on their cron (docs/guide/restore-tests.md): a restore
//! test listed in the topology's `drills:` runs when its `schedule:` (or
//! the drill's `cron:`) comes due on the controller's clock, on the
//! leader, one at a time. Each is audited before it starts; its report is
//! written to the controller's reports folder and recorded as drills are,
//! and the datastore's last tested restore (what the status pages show)
//! is updated by drctl-backup, which runs it.
//!
//! A restore test runs beside the estate (a scratch copy nobody reaches),
//! so it does not wait for a chaos drill to end, nor a drill for it.

use crate::Shared;
use chrono::{DateTime, Utc};
use drctl_backup::drill::ReportAt;
use drctl_control::declare::Actor;
use drctl_core::topology::{cron_schedule, Drill, Topology};
use drctl_runtime::CancellationToken;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Whether the topology schedules any restore test (the leader runs [`run`] then).
pub(crate) fn any(s: &Shared) -> bool {
    s.opts.topology.drills.iter().any(|d| d.restore_test)
}

/// The next restore test due after `after`, and when.
fn next_due(drills: &[Drill], after: DateTime<Utc>) -> Option<(DateTime<Utc>, PathBuf)> {
    drills
        .iter()
        .filter(|d| d.restore_test)
        .filter_map(|d| {
            let (_, sched) = cron_schedule(&d.cron).ok()?;
            Some((sched.after(&after).next()?, d.experiment.clone()))
        })
        .min_by_key(|(t, _)| *t)
}

/// The leader's loop: sleep until the next restore test is due, run it to
/// its end, repeat. Stopping cancels a test under way (its scratch copy
/// is then left for the next run's operator to remove, as its log says).
pub(crate) async fn run(s: Arc<Shared>, stop: CancellationToken) {
    let clock = s.opts.clock.clone();
    let mut after = DateTime::<Utc>::from(clock.now());
    loop {
        let Some((at, path)) = next_due(&s.opts.topology.drills, after) else { return };
        tokio::select! {
            _ = clock.sleep_until(at.into()) => {}
            _ = stop.cancelled() => return,
        }
        after = at;
        tokio::select! {
            _ = run_one(&s, &path, at) => {}
            _ = stop.cancelled() => {
                (s.opts.say)(&format!("scheduled restore test {}: stopped with the controller", path.display()));
                return;
            }
        }
        s.refresh().await;
    }
}

/// Loads, checks against the topology, audits and runs one restore test.
async fn run_one(s: &Arc<Shared>, path: &std::path::Path, at: DateTime<Utc>) {
    let what = format!("scheduled restore test {}", path.display());
    let topo: &Topology = &s.opts.topology;
    let test = match drctl_core::restore_test::load(path)
        .and_then(|t| drctl_core::restore_test::check_against(&t, topo).map(|()| t))
    {
        Ok(t) => t,
        Err(d) => {
            (s.opts.say)(&format!("{what}: {}", d.first().map(|x| x.to_string()).unwrap_or_default()));
            return;
        }
    };
    let who = Actor::new("scheduler", "controller");
    let request = json!({ "experiment": path, "cron": true, "due": at.to_rfc3339() });
    if let Err(e) = crate::api::audit(s, &who, "drill", &format!("restore test {}", test.name), &request) {
        (s.opts.say)(&format!("{what}: not run, the audit log cannot record it: {}", e.body["error"]));
        return;
    }
    let ran = drctl_backup::drill::run(
        s.opts.topology.clone(),
        s.opts.state.clone(),
        s.opts.clients.clone(),
        &test,
        None,
        ReportAt::Under(s.opts.reports_dir.clone()),
    )
    .await;
    match ran {
        Ok(r) if r.error.is_none() => (s.opts.say)(&format!(
            "{what}: {} {}, restore {:.1} s; report {}",
            r.id,
            if r.verified && r.meets_rto { "verified" } else { "NOT verified" },
            r.report["restore"]["restore_s"].as_f64().unwrap_or_default(),
            r.report_dir.display()
        )),
        Ok(r) => (s.opts.say)(&format!(
            "{what}: {} the restore FAILED: {}; report {}",
            r.id,
            r.error.unwrap_or_default(),
            r.report_dir.display()
        )),
        Err(e) => (s.opts.say)(&format!("{what} FAILED: {e}; tried again at its next time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_restore_tests_are_taken_and_the_soonest_first() {
        let d = |cron: &str, restore_test: bool, name: &str| Drill {
            experiment: PathBuf::from(name),
            cron: cron_schedule(cron).unwrap().0,
            restore_test,
        };
        let drills = [
            d("0 3 * * *", false, "chaos.yaml"),
            d("0 5 * * *", true, "late.yaml"),
            d("0 4 * * *", true, "early.yaml"),
        ];
        let now = DateTime::parse_from_rfc3339("2030-03-18T02:00:00Z").unwrap().with_timezone(&Utc);
        let (at, path) = next_due(&drills, now).unwrap();
        assert_eq!((at.to_rfc3339(), path), ("2030-03-18T04:00:00+00:00".to_string(), PathBuf::from("early.yaml")));
        assert!(next_due(&drills[..1], now).is_none());
    }

    /// Turns archive_mode on (a restart, as an operator would); drctl sets
    /// archive_command itself.
    fn archive_mode_on(pair: &drctl_testkit::PgPair) {
        pair.psql(pair.primary_port, "ALTER SYSTEM SET archive_mode = on");
        let out = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
            .arg("-D")
            .arg(pair.dir.join("primary"))
            .arg("-l")
            .arg(pair.dir.join("primary.log"))
            .args(["-w", "-m", "fast", "restart"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A restore test listed in `drills:` with only its own `schedule:`
    /// runs when the controller's clock reaches 04:00, on real PostgreSQL
    /// and real pgBackRest: audited, its report written and recorded as a
    /// drill's, and the datastore's last tested restore updated.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listed_restore_test_runs_on_its_schedule_and_its_report_is_kept() {
        use drctl_runtime::{Clock, MockClock};
        use std::time::{Duration, UNIX_EPOCH};
        if let Err(e) = drctl_backup::pgbackrest::find() {
            panic!("pgBackRest is needed for this test: {e}");
        }
        let pair = drctl_testkit::PgPair::start();
        let dir = std::env::temp_dir().join(format!("drctl-serve-restore-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        drctl_pgserver::hand_over(&dir).unwrap();
        let path = dir.join("drctl.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n  - {{ name: az3, region: r1 }}\n\
                 objectives:\n  tier-0: {{ rpo: 5s, rto: 2m, restore: {{ rpo: 1h, rto: 10m }} }}\n\
                 datastores:\n  - name: orders-db\n    kind: postgres\n    tier: tier-0\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
                 \x20   backup: {{ tool: pgbackrest, repo: {{ zone: az3, path: {} }}, retention: 7d }}\n\
                 drills:\n  - {{ experiment: orders-restore-test.yaml }}\n",
                pair.primary_url(),
                pair.standby_url(),
                dir.join("repo").display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("orders-restore-test.yaml"),
            "name: orders-restore-test\nrestore: { datastore: orders-db, to: latest }\nverify:\n  - { sql: \"SELECT count(*) FROM orders\", expect: 2 }\nschedule: \"0 4 * * *\"\n",
        )
        .unwrap();
        let loaded = drctl_core::load(&path);
        let topology = loaded.topology.unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
        assert!(topology.drills[0].restore_test, "told apart from a chaos drill");
        archive_mode_on(&pair);
        pair.psql(pair.primary_port, "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)");
        let ds = drctl_backup::pg_datastore(&topology, "orders-db").unwrap();
        drctl_backup::take_backup(&drctl_backup::site_dir(&topology), &ds, drctl_backup::pgbackrest::Kind::Full)
            .await
            .unwrap();

        // The controller's clock: 03:59:58 UTC on 2030-03-18, moving in real time.
        let t0 = UNIX_EPOCH + Duration::from_secs(1_900_036_800 - 2);
        let clock: Arc<dyn Clock> = Arc::new(MockClock::starting_at(t0));
        let said = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut opts = crate::handler_tests::options(topology, clock.clone());
        opts.topology_path = path.clone();
        opts.reports_dir = dir.join("reports");
        let log = said.clone();
        opts.say = Arc::new(move |line| log.lock().unwrap().push(line.to_string()));
        let state = opts.state.clone();
        let s = Arc::new(Shared::new(opts, "http://status.example".into()));
        assert!(any(&s));
        let stop = CancellationToken::new();
        let scheduler = tokio::spawn(run(s.clone(), stop.clone()));

        let started = std::time::Instant::now();
        let line = loop {
            if let Some(l) = said.lock().unwrap().iter().find(|l| l.starts_with("scheduled restore test")) {
                break l.clone();
            }
            assert!(started.elapsed() < Duration::from_secs(180), "no restore test ran: {:?}", said.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(clock.now() >= UNIX_EPOCH + Duration::from_secs(1_900_036_800), "not before 04:00");
        assert!(line.contains(" verified, restore "), "{line}");
        let last = drctl_backup::report::last_test(&*state, "orders-db").unwrap();
        assert!(last.passed, "{last:?}");
        let drills = state.drills().unwrap();
        assert_eq!(drills.len(), 1, "recorded as a drill");
        assert_eq!(drills[0].objectives_met, Some(true));
        let report: serde_json::Value = serde_json::from_str(drills[0].report.as_deref().unwrap()).unwrap();
        assert_eq!(report["restore"]["verified"], true, "{report}");
        assert!(dir.join("reports").join(&drills[0].id).join("report.json").is_file());
        let audit = state.audit_entries().unwrap();
        assert!(
            audit.iter().any(|a| a.actor == "scheduler"
                && a.action == "drill"
                && a.target == "restore test orders-restore-test"),
            "audited before it ran"
        );
        stop.cancel();
        scheduler.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
