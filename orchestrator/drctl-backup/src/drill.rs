//! Restore tests, run: restore into a scratch copy nobody can reach, run
//! the checks, measure, remove the copy, report.
//!
//! What is measured is what a real restore would give: the restore time
//! from the start to the verified copy (against the tier's `restore.rto`)
//! and the recovery-point error, the point asked for against the newest
//! transaction really present in the copy. The scratch copy listens on no
//! TCP address at all, only on a socket in a private folder, so no client
//! of the estate can reach it by mistake; and its archiving is off, so it
//! never pushes WAL into the production repository.

use crate::restore::{self, epoch, rfc3339};
use crate::Error;
use drctl_control::live::Clients;
use drctl_core::restore_test::{Check, Point, RestoreTest};
use drctl_core::topology::{Datastore, DatastoreKind, EntitySpec};
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_state::State;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A restore test's outcome.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub id: String,
    /// `report.json`'s whole content.
    pub report: Value,
    pub verified: bool,
    pub meets_rto: bool,
    /// The restore itself failed (a runtime failure, not a failed check).
    pub error: Option<String>,
    pub report_dir: PathBuf,
}

fn to_arg(p: &Point, earliest: Option<SystemTime>, now: SystemTime) -> String {
    match p {
        Point::Latest => "latest".into(),
        Point::Ago(d) => format!("-{}ms", d.as_millis()),
        Point::At(t) => t.clone(),
        Point::Random => {
            let from = earliest.unwrap_or(now);
            let span = now.duration_since(from).unwrap_or_default().as_secs_f64();
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            let share = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
            rfc3339(from + Duration::from_secs_f64(span * share))
        }
    }
}

/// Where a restore test's report goes.
#[derive(Debug, Clone)]
pub enum ReportAt {
    /// This folder (`drctl drill --report DIR`).
    Exactly(PathBuf),
    /// A folder named after the test's id under this one (the CLI's
    /// `.drctl/reports`, the controller's reports folder).
    Under(PathBuf),
}

impl ReportAt {
    fn dir(&self, id: &str) -> PathBuf {
        match self {
            ReportAt::Exactly(d) => d.clone(),
            ReportAt::Under(root) => root.join(id),
        }
    }
}

/// Runs a restore test. `keep`: leave the copy running for inspection.
/// `clients` reach an S3 datastore's buckets.
pub async fn run(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    test: &RestoreTest,
    keep: Option<Duration>,
    reports: ReportAt,
) -> Result<TestRun, Error> {
    if let Some(ds) = s3_datastore(&topo, &test.datastore) {
        let ds = ds.clone();
        return run_s3(topo.clone(), state, clients, &ds, test, keep, reports).await;
    }
    let site = crate::site_dir(&topo);
    let ds = crate::pg_datastore_now(&topo, &*state, &test.datastore)?;
    let started_at = SystemTime::now();
    let started = Instant::now();
    let earliest = if test.to == Point::Random {
        let (stanza, _) = crate::stanza(&site, &ds).await?;
        stanza
            .info()
            .await?
            .backups
            .first()
            .map(|b| SystemTime::UNIX_EPOCH + Duration::from_secs(b.stopped.max(0) as u64))
    } else {
        None
    };
    let to = to_arg(&test.to, earliest, started_at);
    let p = restore::propose(&topo, &site, &*state, &test.datastore, &to, None, false, true, started_at).await?;
    let id = p.id.clone();
    let report_dir = reports.dir(&id);
    let _ = state.begin_drill(&id, &test.file.display().to_string());
    restore::create(&*state, &p, &format!("restore test {}", test.name), started_at)?;
    let ended =
        restore::execute(topo.clone(), site.clone(), state.clone(), Arc::new(drctl_runtime::SystemClock), &id).await;
    let copy = restore::copy_of(&site, &p.request);
    let requested = restore::resolve_target(&p.request.target, started_at).map(epoch).unwrap_or_default();
    let (checks, error) = match &ended {
        Ok(Ended::Succeeded) => {
            let url = copy.local_url(
                &crate::postgres::primary_user(&ds.primary_url),
                &crate::postgres::database_of(&ds.primary_url),
            );
            let checks: Vec<crate::verify::Check> = test
                .verify
                .iter()
                .filter_map(|c| match &c.value {
                    Check::Sql { sql, expect, fresher_than } => Some(crate::verify::Check {
                        sql: sql.clone(),
                        expect: expect.clone(),
                        fresher_than: *fresher_than,
                    }),
                    // Refused before the run (`check_against`): an S3 check reads no database.
                    _ => None,
                })
                .collect();
            (crate::verify::run(&url, &checks, requested).await, None)
        }
        Ok(other) => (Vec::new(), Some(format!("the restore ended {other:?}: `drctl show {id}` says why"))),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let restore_s = started.elapsed().as_secs_f64();
    let done = restore::restored(&site, &p.request);
    if let Some(d) = &done {
        restore::record_rate(&*state, &p.request, d);
    }
    let recovered = done.as_ref().and_then(|d| d.recovered_point);
    let verified = error.is_none() && !checks.is_empty() && checks.iter().all(|c| c["passed"] == true);
    let target = topo.entity_id(&test.datastore).and_then(|i| topo.restore_targets(i).rto).map(|d| d.as_secs_f64());
    let meets_rto = error.is_none() && target.is_none_or(|t| restore_s <= t);
    let erasures = restore::erasures_replayed(&site, &p.request).unwrap_or_default();
    let kept = match keep {
        Some(k) if error.is_none() => Some(k),
        _ => {
            copy.remove();
            let _ = std::fs::remove_dir_all(site.join("copies").join(&p.request.into));
            None
        }
    };
    let restore = json!({
        "datastore": test.datastore,
        "requested_point": p.request.target,
        "recovered_point": recovered.map(|r| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(r))),
        "recovery_point_error_s": recovered.map(|r| requested - r),
        "restore_s": restore_s,
        "restore_target_s": target,
        "meets_rto": meets_rto,
        "verified": verified,
        "checks": checks,
        // Subjects erased after the point still in the copy after the ledger's
        // replay (the replay step fails the restore when there is one).
        "resurrected_erasures": erasures.resurrected,
        "replayed_erasures": erasures.requests,
        "error": error,
        "kept": kept.map(|k| json!({ "for_s": k.as_secs_f64(), "data": copy.data.display().to_string(),
                                     "url": copy.local_url("postgres", &crate::postgres::database_of(&ds.primary_url)) })),
    });
    let rp_error = recovered.map(|r| requested - r);
    conclude(&*state, test, Run { id, started_at, verified, meets_rto, restore_s, rp_error, report_dir }, restore)
}

/// The S3 datastore `name`, if it is one.
fn s3_datastore<'a>(topo: &'a Topology, name: &str) -> Option<&'a Datastore> {
    match &topo.entity(topo.entity_id(name)?).spec {
        EntitySpec::Datastore(d) if d.kind == DatastoreKind::S3 => Some(d),
        _ => None,
    }
}

/// An S3 restore test ([`crate::s3_test`]), reported and recorded as a
/// PostgreSQL one is.
async fn run_s3(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    ds: &Datastore,
    test: &RestoreTest,
    keep: Option<Duration>,
    reports: ReportAt,
) -> Result<TestRun, Error> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let id = restore::new_id(started_at);
    let report_dir = reports.dir(&id);
    let _ = state.begin_drill(&id, &test.file.display().to_string());
    let out = crate::s3_test::run(&topo, &state, &clients, ds, test, &id, keep.is_some(), started_at).await?;
    let restore_s = started.elapsed().as_secs_f64();
    let checks = out.checks.clone();
    let verified = out.error.is_none() && !checks.is_empty() && checks.iter().all(|c| c["passed"] == true);
    let target = topo.entity_id(&test.datastore).and_then(|i| topo.restore_targets(i).rto).map(|d| d.as_secs_f64());
    let meets_rto = out.error.is_none() && target.is_none_or(|t| restore_s <= t);
    let (recovered_point, rp_error) = crate::s3_test::recovery(&out);
    let restore = json!({
        "datastore": test.datastore,
        "requested_point": rfc3339(out.requested),
        "recovered_point": recovered_point,
        "recovery_point_error_s": rp_error,
        "restore_s": restore_s,
        "restore_target_s": target,
        "meets_rto": meets_rto,
        "verified": verified,
        "checks": checks,
        "resurrected_erasures": out.erasures.resurrected,
        "replayed_erasures": out.erasures.requests,
        "error": out.error,
        "kept": out.kept.as_ref().zip(keep).map(|(b, k)| json!({ "for_s": k.as_secs_f64(), "bucket": b })),
    });
    conclude(&*state, test, Run { id, started_at, verified, meets_rto, restore_s, rp_error, report_dir }, restore)
}

/// What a restore test measured, for its report and its record.
struct Run {
    id: String,
    started_at: SystemTime,
    verified: bool,
    meets_rto: bool,
    restore_s: f64,
    rp_error: Option<f64>,
    report_dir: PathBuf,
}

/// Ends a restore test, PostgreSQL or S3 alike: its report written, its
/// drill finished, its outcome recorded where the status page reads it.
fn conclude(state: &State, test: &RestoreTest, run: Run, restore: Value) -> Result<TestRun, Error> {
    let Run { id, started_at, verified, meets_rto, restore_s, rp_error, report_dir } = run;
    let finished_at = SystemTime::now();
    let report = json!({
        "id": id,
        "experiment": test.name,
        "kind": "restore-test",
        "started_at": rfc3339(started_at),
        "finished_at": rfc3339(finished_at),
        "objectives_met": verified && meets_rto,
        "services": [],
        "datastores": [],
        "restore": restore,
    });
    write_report(&report_dir, &report)?;
    let _ = state.finish_drill(&id, Some(verified && meets_rto), Some(&report.to_string()));
    crate::report::record_test(
        state,
        &test.datastore,
        &crate::report::RestoreTest {
            at: rfc3339(finished_at),
            passed: verified && meets_rto,
            restore_s: Some(restore_s),
            recovery_point_error_s: rp_error,
            report: Some(report_dir.display().to_string()),
        },
    )?;
    Ok(TestRun {
        id,
        verified,
        meets_rto,
        error: report["restore"]["error"].as_str().map(str::to_string),
        report,
        report_dir,
    })
}

fn write_report(dir: &Path, report: &Value) -> Result<(), Error> {
    let io =
        |e: std::io::Error| Error::Io { what: format!("write the report in {}", dir.display()), why: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report).unwrap_or_default()).map_err(io)?;
    let r = &report["restore"];
    let mut md = format!(
        "# Restore test {}\n\n{} restored to {} (asked {}).\n\n| | |\n|---|---|\n| verified | {} |\n| restore time | {:.1} s (target {}) |\n| recovery-point error | {} |\n\n## Checks\n\n",
        report["experiment"].as_str().unwrap_or_default(),
        r["datastore"].as_str().unwrap_or_default(),
        r["recovered_point"].as_str().unwrap_or("nothing"),
        r["requested_point"].as_str().unwrap_or_default(),
        r["verified"],
        r["restore_s"].as_f64().unwrap_or_default(),
        r["restore_target_s"].as_f64().map(|t| format!("{t} s")).unwrap_or_else(|| "none".into()),
        r["recovery_point_error_s"].as_f64().map(|e| format!("{e:.3} s")).unwrap_or_else(|| "unknown".into()),
    );
    for c in r["checks"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- {} `{}`: got {}{}\n",
            if c["passed"] == true { "✓" } else { "✗" },
            c["sql"].as_str().or(c["check"].as_str()).unwrap_or_default(),
            c["got"],
            c["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
        ));
    }
    if let Some(e) = r["error"].as_str() {
        md.push_str(&format!("\nThe restore failed: {e}\n"));
    }
    std::fs::write(dir.join("report.md"), md).map_err(io)?;
    Ok(())
}
