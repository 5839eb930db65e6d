//! `drctl backups`: per datastore, what can be restored and to when, how
//! much would be lost by restoring now (the backup RPO), and how the last
//! restore test went.
//!
//! The backup RPO is now minus the latest restorable point: for
//! PostgreSQL, the end of the newest WAL the repository holds (the
//! primary's archiver says when it last pushed a segment), or the end of
//! the newest backup when the primary does not answer.

use crate::Error;
use drctl_core::topology::backup::Backup;
use drctl_core::topology::{EntitySpec, Topology};
use drctl_state::State;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The last restore test of a datastore, kept in the state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTest {
    pub at: String,
    pub passed: bool,
    pub restore_s: Option<f64>,
    pub recovery_point_error_s: Option<f64>,
    pub report: Option<String>,
}

fn test_key(datastore: &str) -> String {
    format!("backup/restore-test/{datastore}")
}

pub fn record_test(state: &State, datastore: &str, t: &RestoreTest) -> Result<(), Error> {
    state.publish(&test_key(datastore), &serde_json::to_string(t).unwrap_or_default())?;
    Ok(())
}

pub fn last_test(state: &State, datastore: &str) -> Option<RestoreTest> {
    state.published(&test_key(datastore)).ok().flatten().and_then(|t| serde_json::from_str(&t).ok())
}

fn at(secs: f64) -> String {
    crate::restore::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
}

/// One datastore's entry; `error` when its backups could not be read.
pub async fn datastore(topo: &Topology, site: &Path, state: &State, id: usize, now: SystemTime) -> Value {
    let e = topo.entity(id);
    let EntitySpec::Datastore(ds) = &e.spec else { return Value::Null };
    let target = topo.restore_targets(id).rpo.map(|d| d.as_secs_f64());
    let test = last_test(state, &e.name).map(|t| {
        json!({ "at": t.at, "passed": t.passed, "restore_s": t.restore_s,
                "recovery_point_error_s": t.recovery_point_error_s })
    });
    let mut entry = json!({
        "name": e.name, "kind": e.kind_name(), "earliest_restorable": null, "latest_restorable": null,
        "rpo_s": null, "rpo_target_s": target, "meets_rpo": null, "last_backup": null,
        "last_restore_test": test, "error": null,
    });
    let measured: Result<(Option<f64>, Option<f64>, Value), String> = match &ds.backup {
        Some(Backup::PgBackRest(_)) => postgres(topo, site, state, &e.name).await.map_err(|e| e.to_string()),
        Some(Backup::S3Versions { versions }) => {
            // Every write of a versioned bucket is kept as a version for
            // `versions`: any moment in that window can be restored.
            let n = crate::restore::epoch(now);
            Ok((Some(n - versions.as_secs_f64()), Some(n), Value::Null))
        }
        Some(Backup::Rds { .. }) => Err("RDS backups are read with `drctl status` on AWS; not measured here".into()),
        None => return Value::Null,
    };
    match measured {
        Ok((earliest, latest, last)) => {
            entry["earliest_restorable"] = json!(earliest.map(at));
            entry["latest_restorable"] = json!(latest.map(at));
            let rpo = latest.map(|l| (crate::restore::epoch(now) - l).max(0.0));
            entry["rpo_s"] = json!(rpo);
            entry["meets_rpo"] = match (rpo, target) {
                (Some(r), Some(t)) => json!(r <= t),
                (Some(_), None) => json!(true),
                (None, _) => json!(false),
            };
            entry["last_backup"] = last;
        }
        Err(why) => {
            entry["error"] = json!(why);
            if target.is_some() {
                entry["meets_rpo"] = json!(false);
            }
        }
    }
    if matches!(ds.backup, Some(Backup::PgBackRest(_))) {
        if let Some(w) = crate::pg_datastore_now(topo, state, &e.name).ok().and_then(|d| d.zone_warning()) {
            entry["warning"] = json!(w);
        }
    }
    entry
}

/// Earliest and latest restorable points (seconds since the epoch) and the last backup.
async fn postgres(
    topo: &Topology,
    site: &Path,
    state: &State,
    name: &str,
) -> Result<(Option<f64>, Option<f64>, Value), Error> {
    let ds = crate::pg_datastore_now(topo, state, name)?;
    let (stanza, _) = crate::stanza(site, &ds).await?;
    let info = stanza.info().await?;
    let earliest = info.backups.first().map(|b| b.stopped as f64);
    let last_stop = info.backups.last().map(|b| b.stopped as f64);
    let archived = crate::postgres::last_archived(&ds.primary_url).await.ok().flatten();
    // WAL archived before the first backup restores nothing.
    let latest = match (last_stop, archived) {
        (Some(s), Some(a)) => Some(s.max(a)),
        (s, _) => s,
    };
    let last = info.backups.last().map(|b| {
        json!({ "kind": b.kind, "label": b.label, "finished_at": at(b.stopped as f64), "size": b.size,
                "repo_size": b.repo_size })
    });
    Ok((earliest, latest, last.unwrap_or(Value::Null)))
}

/// The whole answer: `{"datastores": [...]}`, and whether every target is met.
pub async fn backups(topo: &Topology, site: &Path, state: &State, now: SystemTime) -> (Value, bool) {
    let mut out = Vec::new();
    for (id, _, ds) in topo.datastores() {
        if ds.backup.is_some() {
            out.push(datastore(topo, site, state, id, now).await);
        }
    }
    let met = out.iter().all(|d| d["meets_rpo"] != false);
    (json!({ "datastores": out }), met)
}

/// Each backed-up datastore's backup RPO and last restore test, for
/// readiness to judge (the same reading as `drctl backups`).
pub async fn statuses(
    topo: &Topology,
    site: &Path,
    state: &State,
    now: SystemTime,
) -> Vec<drctl_core::status::BackupStatus> {
    let (all, _) = backups(topo, site, state, now).await;
    let when = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64))
    };
    all["datastores"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| drctl_core::status::BackupStatus {
                    datastore: d["name"].as_str().unwrap_or_default().to_string(),
                    rpo_s: d["rpo_s"].as_f64(),
                    rpo_target_s: d["rpo_target_s"].as_f64(),
                    error: d["error"].as_str().map(str::to_string),
                    last_test: when(&d["last_restore_test"]["at"])
                        .map(|at| (at, d["last_restore_test"]["passed"].as_bool().unwrap_or(false))),
                })
                .collect()
        })
        .unwrap_or_default()
}
