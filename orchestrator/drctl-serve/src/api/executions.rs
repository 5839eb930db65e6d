//! Executions: declaring a failover, a commander's decisions on its steps
//! (approve, retry, skip: one handler shape), abort, and reading them
//! back. Every one goes through the declarer, the one path the CLI and
//! drills take too; only the leader runs an execution.

use super::answer::{body, control_error, internal, state_error, ApiError, ApiResult};
use super::auth::{authorize, permit, token_of, Remote};
use crate::Shared;
use axum::extract::{Path, State as Ax};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use drctl_control::declare::{self, Actor, IncidentPolicy, Recorded};
use drctl_control::failover::{self, Declaration};
use drctl_runtime::OnFailure;
use drctl_state::controller::Role;
use drctl_state::journal::exec_state;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    step: String,
    /// For a step a crash interrupted: its effect happened, do not run it again.
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    step: String,
    #[serde(default)]
    overrides: drctl_control::overrides::Overrides,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipRequest {
    step: String,
}

/// Runs an execution in the background; the declarer records its outcome
/// on its incident.
pub(crate) fn spawn_execution(s: &Arc<Shared>, id: String) {
    // Only the leader executes (docs/guide/ha-etcd.md); a follower's declarations were
    // forwarded to it, and the next leader resumes what this one left.
    let Some(center) = s.work() else {
        (s.opts.say)(&format!("execution {id}: not leading; the leader runs it"));
        return;
    };
    let s2 = s.clone();
    center.spawn(format!("execution {id}"), OnFailure::Log, move |token| {
        let (s2, id) = (s2.clone(), id.clone());
        async move {
            loop {
                let result = run_execution(&s2, &id).await;
                // Another process (a `drctl declare` still running) owns it:
                // watch, and take over if its lease lapses without it ending.
                if let Err(Stopped::Owned(by)) = &result {
                    (s2.opts.say)(&format!("execution {id} is run by {by}; this controller takes over if it stops"));
                    tokio::select! {
                        _ = tokio::time::sleep(drctl_engine::LEASE) => {}
                        _ = token.cancelled() => return,
                    }
                    let ended = s2
                        .opts
                        .state
                        .execution(&id)
                        .map(|r| drctl_state::journal::exec_state::is_final(&r.state))
                        .unwrap_or(true);
                    if ended {
                        s2.refresh().await;
                        return;
                    }
                    continue;
                }
                let said = match &result {
                    Ok(ended) => format!("ended {ended:?}"),
                    Err(e) => format!("stopped: {e}"),
                };
                (s2.opts.say)(&format!("execution {id}: {said}"));
                s2.refresh().await;
                return;
            }
        }
    });
}

/// Why a run of an execution stopped before its end.
enum Stopped {
    /// Another process holds its lease (this one takes over if it lapses).
    Owned(String),
    Other(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Owned(by) => write!(f, "run by {by}"),
            Stopped::Other(why) => f.write_str(why),
        }
    }
}

/// Runs (or resumes) one execution to its end: a declaration through the
/// declarer, a restore through its own runner (its steps are not a
/// failover plan), saying on a `--replace` restore's incident how it ended.
async fn run_execution(s: &Arc<Shared>, id: &str) -> Result<drctl_engine::Ended, Stopped> {
    let restore = s.opts.state.execution(id).is_ok_and(|row| drctl_backup::restore::is_restore(&row));
    if !restore {
        return s.declarer().run(id).await.map_err(|e| match e {
            drctl_control::Error::Engine { source: drctl_engine::Error::Owned { by, .. }, .. } => Stopped::Owned(by),
            other => Stopped::Other(other.to_string()),
        });
    }
    let topo = s.opts.topology.clone();
    let request = drctl_backup::restore::request_of(&*s.opts.state, id);
    let ended = match request {
        // S3 and RDS restores run through their cloud API (an RDS
        // `--replace` says on its incident how it ended there).
        Ok(req) if req.is_s3() || req.is_rds() => {
            drctl_backup::cloud::execute(topo, s.opts.state.clone(), s.opts.clients.clone(), id, req).await
        }
        other => {
            let site = drctl_backup::site_dir(&topo);
            let ended =
                drctl_backup::restore::execute(topo, site, s.opts.state.clone(), s.opts.clock.clone(), id).await;
            if other.is_ok_and(|r| r.replace_of.is_some()) {
                drctl_backup::restore::close_incident_of(&*s.opts.state, id, &ended);
            }
            ended
        }
    };
    ended.map_err(|e| match e {
        drctl_backup::Error::Engine { source: drctl_engine::Error::Owned { by, .. }, .. } => Stopped::Owned(by),
        other => Stopped::Other(other.to_string()),
    })
}

pub(super) async fn declare(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Commander)?;
    // The one check of every declaration: unknown fields and lengths.
    let req = declare::DeclarationRequest::from_json(&raw).map_err(|e| control_error(e.into()))?;
    let (decl, dry_run): (Declaration, bool) = req.check().map_err(|e| control_error(e.into()))?;
    let declarer = s.declarer();
    let proposal = declarer.propose(decl, None).await.map_err(control_error)?;
    let checks: Vec<Value> = proposal
        .prepared
        .checks
        .iter()
        .map(|c| json!({"subject": c.subject, "ok": c.ok, "detail": c.detail}))
        .collect();
    let recorded = declarer.record(&proposal, &who, dry_run, IncidentPolicy::Open).map_err(control_error)?;
    let id = proposal.id;
    match recorded {
        Recorded::DryRun => {
            let plan = serde_json::to_value(&proposal.prepared.plan.plan).unwrap_or(Value::Null);
            Ok(Json(json!({ "dry_run": true, "refused": false, "checks": checks, "plan": plan })).into_response())
        }
        Recorded::Refused if dry_run => {
            let plan = serde_json::to_value(&proposal.prepared.plan.plan).unwrap_or(Value::Null);
            Ok(Json(json!({ "dry_run": true, "refused": true, "checks": checks, "plan": plan })).into_response())
        }
        Recorded::Refused => {
            s.refresh().await;
            Err(ApiError {
                status: StatusCode::CONFLICT,
                body: json!({ "error": "refused by the preflight; nothing was changed", "id": id, "checks": checks }),
            })
        }
        Recorded::Accepted { incident } => {
            spawn_execution(&s, id.clone());
            s.refresh().await;
            let overrides = &proposal.decl.overrides;
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({ "id": id, "incident": incident, "checks": checks, "overrides": overrides, "by": who.name }),
                ),
            )
                .into_response())
        }
    }
}

/// What a commander's decision on one step did: the answer, and whether
/// the execution now goes on here.
struct Decided {
    status: StatusCode,
    answer: Value,
    resume: bool,
}

/// The one shape of a commander's decision on a step (approve, retry,
/// skip): a commander's token, a body of the decision's own type (unknown
/// fields refused), the decision through the declarer, then the execution
/// carried on by this controller when the decision lets it go on.
async fn decide<R: serde::de::DeserializeOwned>(
    s: Arc<Shared>,
    remote: SocketAddr,
    headers: &HeaderMap,
    id: String,
    raw: Value,
    decision: impl FnOnce(&Shared, &str, R, &Actor, Role) -> Result<Decided, ApiError>,
) -> ApiResult {
    let token = token_of(&s, headers, remote)?;
    let who = permit(&token, remote, Role::Commander)?;
    let req: R = body(raw)?;
    let decided = decision(&s, &id, req, &who, token.role)?;
    if decided.resume {
        spawn_execution(&s, id);
        s.refresh().await;
    }
    Ok((decided.status, Json(decided.answer)).into_response())
}

/// `POST /api/v1/executions/{id}/approve {step, done}`: a waiting step
/// approved, or a failed one recorded as done by hand.
pub(super) async fn approve(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    decide(s, remote, &headers, id, raw, |s, id, req: ApproveRequest, who, role| {
        let paused = s.opts.state.execution(id).map_err(state_error)?.state == exec_state::PAUSED;
        let fresh = declare::approve(&*s.opts.state, id, &req.step, req.done, who, role).map_err(control_error)?;
        // A paused execution's failed step done by hand: the rest goes on here.
        let resume = paused && s.opts.state.execution(id).map_err(state_error)?.state == exec_state::RUNNING;
        let answer =
            json!({ "id": id, "step": req.step, "approved_by": who.name, "done": req.done, "already": !fresh });
        Ok(Decided { status: StatusCode::OK, answer, resume })
    })
    .await
}

/// `POST /api/v1/executions/{id}/retry {step, overrides}`: a paused
/// execution's failed step again, with overrides added (journaled, by whom).
pub(super) async fn retry(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    decide(s, remote, &headers, id, raw, |s, id, req: RetryRequest, who, _| {
        s.declarer().retry(id, &req.step, &req.overrides, who).map_err(control_error)?;
        let answer = json!({ "id": id, "step": req.step, "overrides": req.overrides, "by": who.name });
        Ok(Decided { status: StatusCode::ACCEPTED, answer, resume: true })
    })
    .await
}

/// `POST /api/v1/executions/{id}/skip {step}`: gives the failed step up,
/// and every step that needs it (answered), and carries the rest on.
pub(super) async fn skip(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    decide(s, remote, &headers, id, raw, |s, id, req: SkipRequest, who, _| {
        let given_up = s.declarer().skip(id, &req.step, who).map_err(control_error)?;
        let answer = json!({ "id": id, "step": req.step, "given_up": given_up, "by": who.name });
        Ok(Decided { status: StatusCode::ACCEPTED, answer, resume: true })
    })
    .await
}

pub(super) async fn abort(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Commander)?;
    let state = declare::abort(&*s.opts.state, &id, &who).map_err(control_error)?;
    s.refresh().await;
    Ok(Json(json!({ "id": id, "state": state })).into_response())
}

pub(super) async fn executions(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let rows = s.opts.state.executions().map_err(internal)?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.id, "state": r.state, "declared_at": failover::rfc3339(r.declared_at), "reason": r.reason,
                })
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

pub(super) async fn execution(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let r = failover::report(Some(&s.opts.topology), &*s.opts.state, &id).map_err(control_error)?;
    Ok(Json(r).into_response())
}
