//! `recover: restore`: a logical disaster (rows deleted, objects
//! overwritten) is carried by replication to every zone, so a failover
//! moves the damage along. The drill answers it as an operator would: a
//! restore of each damaged datastore to the moment just before its first
//! fault, in place (`drctl restore DS --to T --replace`), through the same
//! library and journal as `drctl restore`. The lab then counts, from its
//! workload's acknowledgements, the writes from before the fault that came
//! back and those made after it that the restore gave up.

use super::*;
use drctl_backup::restore::{self as pitr, Proposal};

/// A datastore's restore, once run: the report's `restore` object.
pub(super) struct Outcome {
    pub(super) execution: String,
    pub(super) state: String,
    pub(super) json: serde_json::Value,
    /// Acknowledged writes after the point that the restore gave up (None: not counted).
    pub(super) lost_writes: Option<u64>,
    pub(super) recovery_point_error_s: Option<f64>,
    pub(super) ok: bool,
}

/// The datastore a logical fault damages.
pub(super) fn damaged(f: &FaultRequest) -> Option<&str> {
    match f {
        FaultRequest::DataLoss { datastore, .. } | FaultRequest::ObjectOverwrite { datastore, .. } => {
            Some(datastore.as_str())
        }
        _ => None,
    }
}

fn bad(e: drctl_backup::Error) -> Error {
    Error::BadInput(e.to_string())
}

/// Before any fault: every datastore the experiment damages can be
/// restored in place (pgBackRest installed, a backup taken, the
/// datastore's kind supported). A drill that could not undo its damage
/// does not start.
pub(super) async fn preflight(opts: &Options) -> Result<(), Error> {
    let topo = &opts.topology;
    let mut seen = Vec::new();
    for f in &opts.experiment.faults {
        let req = FaultRequest::from(&f.fault);
        let Some(ds) = damaged(&req) else { continue };
        if seen.contains(&ds.to_string()) {
            continue;
        }
        seen.push(ds.to_string());
        if drctl_backup::cloud::s3_of(topo, ds).is_some() {
            continue;
        }
        if topo.entity_id(ds).is_none() {
            return Err(Error::BadInput(format!(
                "`{ds}` is not a datastore of {}: the experiment cannot restore it",
                topo.file.display()
            )));
        }
        drctl_backup::pgbackrest::find().map_err(bad)?;
        let site = drctl_backup::site_dir(topo);
        let p = pitr::propose(topo, &site, &*opts.state, ds, "latest", None, true, false, opts.clock.now())
            .await
            .map_err(bad)?;
        if p.refused() {
            let why: Vec<String> =
                p.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.subject, c.detail)).collect();
            return Err(Error::BadInput(format!("{ds} cannot be restored in its primary's place: {}", why.join("; "))));
        }
    }
    Ok(())
}

/// Restores `datastore` in place to `point`, and counts what came back.
pub(super) async fn restore(opts: &Options, datastore: &str, point: SystemTime, reason: &str) -> Outcome {
    let started = Instant::now();
    let to = pitr::rfc3339(point);
    let topo = opts.topology.clone();
    let now = opts.clock.now();
    let s3 = drctl_backup::cloud::s3_of(&topo, datastore).is_some();
    let site = drctl_backup::site_dir(&topo);
    let who = drctl_control::declare::Actor::new("drill", "controller");
    let run = async {
        if s3 {
            let request = drctl_backup::cloud::s3_request(datastore, &to, None, None, true, now)?;
            let p = Proposal {
                id: pitr::new_id(now),
                request,
                earliest: None,
                backup_bytes: 0,
                rate: None,
                checks: Vec::new(),
            };
            // Audited before it changes anything, as `drctl restore` does.
            let audit = serde_json::json!({ "datastore": datastore, "to": to, "target": p.request.target,
                "replace": true, "reason": reason, "dry_run": false });
            drctl_control::declare::audit(&*opts.state, &who, "restore", &format!("execution {}", p.id), &audit)?;
            pitr::create(&*opts.state, &p, reason, now)?;
            drctl_backup::cloud::execute(
                topo.clone(),
                opts.state.clone(),
                opts.clients.clone(),
                &p.id,
                p.request.clone(),
            )
            .await?;
            Ok::<_, drctl_backup::Error>(p.id)
        } else {
            // `restore --replace` as a library call: proposed, audited,
            // journaled, executed, its incident told how it ended.
            let done = drctl_backup::replace::replace(
                topo.clone(),
                site.clone(),
                opts.state.clone(),
                opts.clock.clone(),
                &who,
                datastore,
                &to,
                reason,
                &[],
            )
            .await?;
            Ok(done.id)
        }
    };
    let result = run.await;
    let restore_s = started.elapsed().as_secs_f64();
    let target = topo.entity_id(datastore).and_then(|i| topo.restore_targets(i).rto).map(|d| d.as_secs_f64());
    let (execution, state, error) = match &result {
        Ok(id) => {
            let st = opts.state.execution(id).map(|r| r.state).unwrap_or_else(|_| "unknown".into());
            let failed: Vec<String> = opts
                .state
                .steps(id)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s.state == drctl_state::journal::StepState::Failed)
                .map(|s| format!("{}: {}", s.id, s.error.unwrap_or_default()))
                .collect();
            let error = (st != exec_state::SUCCEEDED).then(|| format!("the restore ended {st}: {}", failed.join("; ")));
            (id.clone(), st, error)
        }
        Err(e) => (String::new(), "not started".to_string(), Some(e.to_string())),
    };
    if let (Ok(id), true) = (&result, state == exec_state::PAUSED) {
        // Nobody stands by a drill to decide: a paused restore is aborted.
        let _ = drctl_control::declare::abort(&*opts.state, id, &who);
    }
    // What came back, counted from the lab's workload.
    let point_ms = point.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let counted = match &opts.lab {
        Some(lab) if error.is_none() => lab.restored(datastore, point_ms).await.ok(),
        _ => None,
    };
    let recovered_ms = counted.as_ref().and_then(|c| c.newest_back_ms);
    let rpe = recovered_ms.map(|r| (point_ms as f64 - r as f64) / 1000.0);
    let all_back = counted.as_ref().map(|c| c.came_back == c.before_point);
    let checks = match &counted {
        Some(c) => vec![serde_json::json!({
            "check": "every write acknowledged before the point is back",
            "expect": c.before_point,
            "got": c.came_back,
            "passed": c.came_back == c.before_point,
        })],
        None => Vec::new(),
    };
    let verified = error.is_none() && all_back.unwrap_or(true);
    let meets_rto = error.is_none() && target.is_none_or(|t| restore_s <= t);
    let ok = error.is_none() && verified && meets_rto;
    let json = serde_json::json!({
        "datastore": datastore,
        "execution": (!execution.is_empty()).then_some(&execution),
        "requested_point": to,
        "recovered_point": recovered_ms.map(|r| pitr::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(r))),
        "recovery_point_error_s": rpe,
        "restore_s": restore_s,
        "restore_target_s": target,
        "meets_rto": meets_rto,
        "verified": verified,
        "checks": checks,
        "resurrected_erasures": 0,
        "acknowledged_before_point": counted.as_ref().map(|c| c.before_point),
        "came_back": counted.as_ref().map(|c| c.came_back),
        "acknowledged_after_point": counted.as_ref().map(|c| c.after_point),
        "lost_writes": counted.as_ref().map(|c| c.lost_writes),
        "error": error,
    });
    Outcome {
        execution,
        state,
        lost_writes: counted.as_ref().map(|c| c.lost_writes),
        recovery_point_error_s: rpe,
        ok,
        json,
    }
}
