//! Drills through the controller: one started by an operator's request,
//! or by the topology's cron schedule, each through the drill's one
//! lifecycle (audited, announced, recorded with its report).

use super::answer::{problem, ApiError, ApiResult};
use super::auth::{permit, token_of, Remote};
use crate::Shared;
use axum::extract::State as Ax;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use drctl_control::declare::Actor;
use drctl_runtime::{CancellationToken, OnFailure};
use drctl_state::controller::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrillRequest {
    experiment: String,
}

/// The most an experiment file posted for a drill may weigh.
const MAX_EXPERIMENT_BYTES: u64 = 256 * 1024;

/// The experiment a drill request names, checked: a relative path, without
/// `..`, to a regular file of at most [`MAX_EXPERIMENT_BYTES`] inside the
/// topology's own chaos folders (`chaos/` beside it, and the folders of
/// the experiments its `drills:` schedule). Symbolic links are resolved
/// before the check, so none leads out.
fn experiment_path(s: &Shared, p: &str) -> Result<std::path::PathBuf, ApiError> {
    use std::path::{Component, Path};
    let unprocessable = |m: String| problem(StatusCode::UNPROCESSABLE_ENTITY, m);
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(unprocessable("`experiment` must be a relative path without `..` (e.g. chaos/x.yaml)".into()));
    }
    let base = s.topology_dir.clone();
    let mut roots = vec![base.join("chaos")];
    for d in &s.opts.topology.drills {
        let scheduled = if d.experiment.is_absolute() { d.experiment.clone() } else { base.join(&d.experiment) };
        roots.extend(scheduled.parent().map(Path::to_path_buf));
    }
    let roots: Vec<_> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let Ok(real) = base.join(path).canonicalize() else {
        return Err(unprocessable(format!("no experiment `{p}` beside the topology (e.g. chaos/x.yaml)")));
    };
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(unprocessable(format!(
            "`{p}` is not in the topology's chaos folders (chaos/ beside it, or a folder its `drills:` name)"
        )));
    }
    let meta = std::fs::metadata(&real).map_err(|e| unprocessable(format!("`{p}`: {e}")))?;
    if !meta.is_file() || meta.len() > MAX_EXPERIMENT_BYTES {
        return Err(unprocessable(format!(
            "`{p}` is not an experiment file of at most {} KiB",
            MAX_EXPERIMENT_BYTES >> 10
        )));
    }
    Ok(real)
}

/// Runs a drill in the background through its one lifecycle (audited
/// before it acts, announced to customers, recorded with its report);
/// returns its id. Refused (503) when the audit log cannot record it.
pub(crate) fn start_drill(
    s: &Arc<Shared>,
    experiment: drctl_core::chaos::Experiment,
    who: &Actor,
    request: Value,
) -> Result<String, ApiError> {
    // Customers see a drill like an incident: announced, then resolved with
    // what it measured. Its failover shows as any other.
    let services: Vec<String> = s.opts.topology.services().map(|(_, e, _)| e.name.clone()).collect();
    let begun = drctl_drill::lifecycle::begin(&*s.opts.state, who, &experiment, request, Some(&services))
        .map_err(|e| problem(StatusCode::SERVICE_UNAVAILABLE, format!("the drill was not started: {e}")))?;
    let id = begun.id.clone();
    let s2 = s.clone();
    let Some(center) = s.work() else {
        (s.opts.say)(&format!("drill {id}: not leading; not started"));
        let not_run = Err(drctl_drill::Error::BadInput("this controller does not lead; not started".into()));
        drctl_drill::lifecycle::finish(&*s.opts.state, &begun, &not_run);
        return Ok(id);
    };
    center.spawn(format!("drill {id}"), OnFailure::Log, move |token| {
        let (s2, experiment, begun) = (s2.clone(), experiment.clone(), begun.clone());
        async move {
            let lab = s2.lab().map(|m| drctl_lab_api::LabClient::new(&m.control));
            let say = s2.opts.say.clone();
            let name = experiment.name.clone();
            let opts = drctl_drill::drill::Options {
                topology: s2.opts.topology.clone(),
                experiment,
                state: s2.opts.state.clone(),
                clients: s2.opts.clients.clone(),
                lab,
                parallel: None,
                steady_timeout: Duration::from_secs(20),
                clock: s2.opts.clock.clone(),
                // Shutdown cancels the drill, which heals and reports.
                cancel: token,
                say: Box::new(move |l| say(&format!("drill {name}: {l}"))),
                controllers: Vec::new(),
                token: None,
                id: Some(begun.id.clone()),
            };
            let result = drctl_drill::drill::run(opts).await;
            match &result {
                Ok(report) => {
                    let out = s2.opts.reports_dir.join(&begun.id);
                    if let Err(e) = drctl_drill::report::write_all(report, &out) {
                        (s2.opts.say)(&format!("drill {}: cannot write the report: {e}", begun.id));
                    }
                }
                Err(e) => (s2.opts.say)(&format!("drill {}: {e}", begun.id)),
            }
            for w in drctl_drill::lifecycle::finish(&*s2.opts.state, &begun, &result) {
                (s2.opts.say)(&format!("drill {}: {w}", begun.id));
            }
            s2.refresh().await;
        }
    });
    Ok(id)
}

pub(super) async fn drill(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Json(req): Json<DrillRequest>,
) -> ApiResult {
    // Authenticated once: the role it needs depends on the experiment.
    let token = token_of(&s, &headers, remote)?;
    let who = permit(&token, remote, Role::Operator)?;
    let path = experiment_path(&s, &req.experiment)?;
    let exp = drctl_core::chaos::load(&path).map_err(|d| {
        problem(StatusCode::UNPROCESSABLE_ENTITY, d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n"))
    })?;
    // On a lab, with a commander declaring by hand, a drill changes
    // nothing real; anywhere else it can fail production over.
    let on_a_lab = s.lab().is_some();
    if !on_a_lab || exp.declare != drctl_core::chaos::DeclareMode::Manual {
        permit(&token, remote, Role::Commander).map_err(|e| {
            if e.status != StatusCode::FORBIDDEN {
                return e;
            }
            let why = if on_a_lab { "it declares a failover by itself" } else { "it runs on production, not on a lab" };
            problem(StatusCode::FORBIDDEN, format!("this drill needs a commander's token: {why}"))
        })?;
    }
    if drill_running(&s) {
        return Err(problem(StatusCode::CONFLICT, "a drill is already running"));
    }
    let id = start_drill(&s, exp, &who, json!({"experiment": req.experiment}))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

fn drill_running(s: &Shared) -> bool {
    s.work().is_some_and(|c| c.running().iter().any(|n| n.starts_with("drill ")))
}

/// The topology's next drill after `now`, and when.
fn next_drill(
    drills: &[drctl_core::topology::Drill],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(chrono::DateTime<chrono::Utc>, std::path::PathBuf)> {
    drills
        .iter()
        // Restore tests have a scheduler of their own (`restore_tests`).
        .filter(|d| !d.restore_test)
        .filter_map(|d| {
            let (_, sched) = drctl_core::topology::cron_schedule(&d.cron).ok()?;
            Some((sched.after(&now).next()?, d.experiment.clone()))
        })
        .min_by_key(|(t, _)| *t)
}

/// Runs the topology's drills at their cron times, on the controller's clock.
pub(crate) async fn drill_scheduler(s: Arc<Shared>, stop: CancellationToken) {
    let base = s.topology_dir.clone();
    let clock = s.opts.clock.clone();
    loop {
        let Some((at, experiment)) = next_drill(&s.opts.topology.drills, clock.now().into()) else { return };
        tokio::select! {
            _ = clock.sleep_until(at.into()) => {}
            _ = stop.cancelled() => return,
        }
        if drill_running(&s) {
            (s.opts.say)(&format!("scheduled drill {}: skipped, a drill is still running", experiment.display()));
            clock.sleep(Duration::from_secs(1)).await;
            continue;
        }
        let path = if experiment.is_absolute() { experiment.clone() } else { base.join(&experiment) };
        match drctl_core::chaos::load(&path) {
            Ok(exp) => {
                let who = Actor::new("scheduler", "controller");
                if let Err(e) = start_drill(&s, exp, &who, json!({"experiment": experiment, "cron": true})) {
                    (s.opts.say)(&format!("scheduled drill {}: {}", path.display(), e.body["error"]));
                }
            }
            Err(d) => (s.opts.say)(&format!(
                "scheduled drill {}: {}",
                path.display(),
                d.first().map(|x| x.to_string()).unwrap_or_default()
            )),
        }
        // Never twice in the same second.
        clock.sleep(Duration::from_secs(1)).await;
    }
}
