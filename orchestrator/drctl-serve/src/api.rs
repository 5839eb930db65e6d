//! HTTP: the public status page and its feeds, and the operator API.
//!
//! Public routes answer from the rendered snapshot. Operator routes check,
//! in order: the client network (`--allow`, else 403), the bearer token
//! (else 401), the token's role (else 403). Every change is written to the
//! audit log with the token's name, the client address and the request.

use crate::page::Lang;
use crate::Shared;
use axum::body::Body;
use axum::extract::{Path, Query, State as Ax};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use drctl_control::declare::{self, Actor, IncidentPolicy, Recorded};
use drctl_control::failover::{self, Declaration};
use drctl_runtime::{CancellationToken, OnFailure};
use drctl_state::controller::{Role, Token};
use drctl_state::journal::exec_state;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The client's address, attached to each connection's requests.
#[derive(Clone, Copy)]
pub(crate) struct Remote(pub SocketAddr);

/// An error answer: a status and a JSON body (`{"error": ...}` and more).
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"drctl\""));
        }
        r
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError { status, body: json!({ "error": message.into() }) }
}

/// The client network rule (`--allow`): 403 outside it.
pub(crate) fn allowed(s: &Shared, remote: SocketAddr) -> Result<(), ApiError> {
    if !s.opts.allow.is_empty() && !s.opts.allow.iter().any(|c| c.contains(remote.ip())) {
        return Err(problem(StatusCode::FORBIDDEN, format!("{} may not use the operator API", remote.ip())));
    }
    Ok(())
}

/// The token a request presents (after the client network rule).
pub(crate) fn token_of(s: &Shared, headers: &HeaderMap, remote: SocketAddr) -> Result<Token, ApiError> {
    allowed(s, remote)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            problem(StatusCode::UNAUTHORIZED, "send `Authorization: Bearer TOKEN` (`drctl token create`)")
        })?;
    s.opts
        .state
        .authenticate(token)
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "unknown or revoked token"))
}

pub(crate) fn authorize(s: &Shared, headers: &HeaderMap, remote: SocketAddr, need: Role) -> Result<Actor, ApiError> {
    permit(&token_of(s, headers, remote)?, remote, need)
}

/// What a token already authenticated may do: 403 below `need`.
fn permit(t: &Token, remote: SocketAddr, need: Role) -> Result<Actor, ApiError> {
    if t.role < need {
        return Err(problem(
            StatusCode::FORBIDDEN,
            format!("token `{}` is {}; this needs {} or above", t.name, t.role.as_str(), need.as_str()),
        ));
    }
    Ok(Actor::new(t.name.clone(), remote.ip().to_string()))
}

/// Records a change in the audit log before it is made: a change the log
/// cannot record is refused (503), never made unrecorded.
pub(crate) fn audit(s: &Shared, who: &Actor, action: &str, target: &str, request: &Value) -> Result<(), ApiError> {
    declare::audit(&*s.opts.state, who, action, target, request).map_err(|e| {
        tracing::error!(error = %e, action, "the audit log cannot be written; the request is refused");
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the audit log cannot be written, so nothing was changed: {e}"),
        )
    })
}

/// Maps an operation's error to an answer: the caller's fault is 4xx.
pub(crate) fn control_error(e: drctl_control::Error) -> ApiError {
    match e {
        drctl_control::Error::State(se) => state_error(se),
        drctl_control::Error::Request(r) => {
            let code = r.code();
            // Not the caller's input at fault but the caller: 403, as a role
            // too low for an endpoint is.
            let status = match r {
                drctl_control::Request::NotYourApproval { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError { status, body: json!({ "error": r.to_string(), "code": code.as_str(), "hint": code.hint() }) }
        }
        other => internal(other),
    }
}

fn bytes(content_type: &'static str, body: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LangQuery {
    pub lang: Option<String>,
}

async fn index(Ax(s): Ax<Arc<Shared>>, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let lang = Lang::pick(q.lang.as_deref(), accept);
    let r = s.rendered.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut resp = bytes("text/html; charset=utf-8", r.html.get(lang.code()).cloned().unwrap_or_default());
    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    resp.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    resp
}

macro_rules! snapshot_route {
    ($field:ident, $ct:expr) => {
        |Ax(s): Ax<Arc<Shared>>| async move {
            let r = s.rendered.read().unwrap_or_else(|p| p.into_inner()).clone();
            bytes($ct, r.$field.clone())
        }
    };
}

/// Atlassian Statuspage's public v2 endpoints, from the snapshot.
async fn statuspage_v2(Ax(s): Ax<Arc<Shared>>, Path(path): Path<String>) -> Response {
    let r = s.rendered.read().unwrap_or_else(|p| p.into_inner()).clone();
    match r.v2.get(path.as_str()) {
        Some(b) => bytes("application/json", b.clone()),
        None => problem(StatusCode::NOT_FOUND, format!("no /api/v2/{path}")).into_response(),
    }
}

// ---- operator API ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncident {
    title: String,
    status: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpdate {
    status: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMaintenance {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    services: Vec<String>,
    starts_at: String,
    ends_at: String,
}

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

/// Reads a request body into its type; a field it does not define (a
/// typo such as `dryrun`) or a missing one answers 422 naming it, so a
/// mistyped request never runs as something else.
pub(crate) fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    T::deserialize(v).map_err(|e| control_error(declare::body_error(&e.to_string()).into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillRequest {
    experiment: String,
}

pub(crate) fn check_services(s: &Shared, services: &[String]) -> Result<(), ApiError> {
    for n in services {
        if s.opts.topology.entity_id(n).is_none() {
            return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, format!("`{n}` is not in the topology")));
        }
    }
    Ok(())
}

pub(crate) fn bounded(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.chars().count() > max {
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, format!("`{field}` is over {max} characters")));
    }
    Ok(())
}

fn parse_time(field: &str, v: &str) -> Result<SystemTime, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v).map(|t| SystemTime::from(t.with_timezone(&chrono::Utc))).map_err(|_| {
        problem(StatusCode::UNPROCESSABLE_ENTITY, format!("`{field}` must be RFC 3339, e.g. 2026-12-01T02:00:00Z"))
    })
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(crate) fn state_error(e: drctl_state::Error) -> ApiError {
    match e {
        drctl_state::Error::NotFound(m) => problem(StatusCode::NOT_FOUND, m),
        e @ drctl_state::Error::NoSuchExecution(_) => problem(StatusCode::NOT_FOUND, e.to_string()),
        drctl_state::Error::Invalid(m) => problem(StatusCode::UNPROCESSABLE_ENTITY, m),
        e @ drctl_state::Error::Locked { .. } => problem(StatusCode::CONFLICT, e.to_string()),
        drctl_state::Error::Full(m) => problem(StatusCode::TOO_MANY_REQUESTS, m),
        other => internal(other),
    }
}

async fn create_incident(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Json(req): Json<NewIncident>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    bounded("title", &req.title, 200)?;
    bounded("body", &req.body, 10_000)?;
    check_services(&s, &req.services)?;
    audit(
        &s,
        &who,
        "incident.create",
        "new incident",
        &json!({"title": req.title, "status": req.status, "body": req.body, "services": req.services}),
    )?;
    let id =
        s.opts.state.create_incident(&req.title, &req.status, &req.body, &req.services, None).map_err(state_error)?;
    s.refresh().await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

async fn update_incident(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(req): Json<NewUpdate>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    bounded("body", &req.body, 10_000)?;
    // Refused before it is audited: the log records changes, not attempts.
    if !drctl_state::controller::INCIDENT_STATUSES.contains(&req.status.as_str()) {
        return Err(state_error(drctl_state::Error::Invalid(format!(
            "incident status `{}`: use one of {}",
            req.status,
            drctl_state::controller::INCIDENT_STATUSES.join(", ")
        ))));
    }
    if !s.opts.state.incidents().map_err(state_error)?.iter().any(|i| i.id == id) {
        return Err(problem(StatusCode::NOT_FOUND, format!("no incident {id}")));
    }
    audit(&s, &who, "incident.update", &format!("incident {id}"), &json!({"status": req.status, "body": req.body}))?;
    s.opts.state.update_incident(id, &req.status, &req.body).map_err(state_error)?;
    s.refresh().await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "status": req.status }))).into_response())
}

async fn list_incidents(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let all = s.opts.state.incidents().map_err(internal)?;
    Ok(Json(all.iter().map(|i| json!({
        "id": i.id, "title": i.title, "status": i.status, "services": i.services,
        "created_at": crate::page::rfc3339(i.created_at), "execution": i.execution_id,
        "updates": i.updates.iter().map(|u| json!({"status": u.status, "body": u.body, "at": crate::page::rfc3339(u.at)})).collect::<Vec<_>>(),
    })).collect::<Vec<_>>()).into_response())
}

async fn create_maintenance(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Json(req): Json<NewMaintenance>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    bounded("title", &req.title, 200)?;
    bounded("body", &req.body, 10_000)?;
    check_services(&s, &req.services)?;
    let (starts, ends) = (parse_time("starts_at", &req.starts_at)?, parse_time("ends_at", &req.ends_at)?);
    audit(
        &s,
        &who,
        "maintenance.create",
        "new maintenance",
        &json!({"title": req.title, "body": req.body, "services": req.services, "starts_at": req.starts_at, "ends_at": req.ends_at}),
    )?;
    let id =
        s.opts.state.create_maintenance(&req.title, &req.body, &req.services, starts, ends).map_err(state_error)?;
    s.refresh().await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
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
    let site = drctl_backup::site_dir(&topo);
    let ended = drctl_backup::restore::execute(topo, site, s.opts.state.clone(), s.opts.clock.clone(), id).await;
    if drctl_backup::restore::request_of(&*s.opts.state, id).is_ok_and(|r| r.replace_of.is_some()) {
        drctl_backup::restore::close_incident_of(&*s.opts.state, id, &ended);
    }
    ended.map_err(|e| match e {
        drctl_backup::Error::Engine { source: drctl_engine::Error::Owned { by, .. }, .. } => Stopped::Owned(by),
        other => Stopped::Other(other.to_string()),
    })
}

async fn declare(
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

async fn approve(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    let token = token_of(&s, &headers, remote)?;
    let who = permit(&token, remote, Role::Commander)?;
    let req: ApproveRequest = body(raw)?;
    let paused = s.opts.state.execution(&id).map_err(state_error)?.state == exec_state::PAUSED;
    let fresh = declare::approve(&*s.opts.state, &id, &req.step, req.done, &who, token.role).map_err(control_error)?;
    // A paused execution's failed step done by hand: the rest goes on here.
    if paused && s.opts.state.execution(&id).map_err(state_error)?.state == exec_state::RUNNING {
        spawn_execution(&s, id.clone());
        s.refresh().await;
    }
    Ok(Json(json!({ "id": id, "step": req.step, "approved_by": who.name, "done": req.done, "already": !fresh }))
        .into_response())
}

/// `POST /api/v1/executions/{id}/retry {step, overrides}`: a paused
/// execution's failed step again, with overrides added (journaled, by whom).
async fn retry(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Commander)?;
    let req: RetryRequest = body(raw)?;
    s.declarer().retry(&id, &req.step, &req.overrides, &who).map_err(control_error)?;
    spawn_execution(&s, id.clone());
    s.refresh().await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "step": req.step, "overrides": req.overrides, "by": who.name })))
        .into_response())
}

/// `POST /api/v1/executions/{id}/skip {step}`: gives the failed step up,
/// and every step that needs it (answered), and carries the rest on.
async fn skip(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(raw): Json<Value>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Commander)?;
    let req: SkipRequest = body(raw)?;
    let given_up = s.declarer().skip(&id, &req.step, &who).map_err(control_error)?;
    spawn_execution(&s, id.clone());
    s.refresh().await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "step": req.step, "given_up": given_up, "by": who.name })))
        .into_response())
}

async fn abort(
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

async fn executions(
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

async fn execution(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let r = failover::report(Some(&s.opts.topology), &*s.opts.state, &id).map_err(control_error)?;
    Ok(Json(r).into_response())
}

async fn audit_list(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Admin)?;
    Ok(Json(s.opts.state.audit_entries().map_err(internal)?).into_response())
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
    let base = topology_dir(s);
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

/// The topology's folder: relative experiment paths start there, and a lab
/// serving the topology keeps its manifest there.
fn topology_dir(s: &Shared) -> std::path::PathBuf {
    let parent = s.opts.topology_path.parent().filter(|p| !p.as_os_str().is_empty());
    parent.unwrap_or(std::path::Path::new(".")).to_path_buf()
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
            let lab = drctl_lab_api::Manifest::read(&topology_dir(&s2))
                .filter(|m| m.alive())
                .map(|m| drctl_lab_api::LabClient::new(&m.control));
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

async fn drill(
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
    let on_a_lab = drctl_lab_api::Manifest::read(&topology_dir(&s)).is_some_and(|m| m.alive());
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

/// `GET /api/v1/leader` (no token): who this controller is and who leads.
async fn leader(Ax(s): Ax<Arc<Shared>>) -> Response {
    let (leader, url) = match &s.opts.leadership {
        None => (Some(s.opts.id.clone()), Some(s.base_url.clone())),
        Some(l) => match l.leader().await {
            Some(l) => (Some(l.id), Some(l.url)),
            None => (None, None),
        },
    };
    Json(json!({ "self": s.opts.id, "leader": leader, "url": url, "leading": s.leads() })).into_response()
}

/// An operator write sent to a follower goes to the leader (docs/guide/ha-etcd.md):
/// forwarded as it came, or answered 503 naming the leader when it
/// cannot be reached. Reads are answered here, from the shared state.
async fn to_the_leader(Ax(s): Ax<Arc<Shared>>, mut req: Request<Body>, next: axum::middleware::Next) -> Response {
    let write = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let Some(election) = s.opts.leadership.clone() else { return next.run(req).await };
    if !write || !req.uri().path().starts_with("/api/") || s.leads() {
        return next.run(req).await;
    }
    let unavailable = |message: String, leader: Option<&drctl_runtime::Leader>| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: json!({ "error": message, "leader": leader.map(|l| l.id.clone()), "url": leader.map(|l| l.url.clone()) }),
    };
    // The client network rule holds here too, and the leader judges the
    // client, not this controller: the request says who it came from, with
    // a proof only a controller can make (crate::peer).
    let client = req.extensions().get::<Remote>().copied();
    if let Some(Remote(remote)) = client {
        if let Err(refused) = allowed(&s, remote) {
            return refused.into_response();
        }
    }
    let leader = election.leader().await.filter(|l| l.id != election.id());
    let Some(leader) = leader else {
        return unavailable(
            "no controller leads right now (an election is on); try again in a few seconds".into(),
            None,
        )
        .into_response();
    };
    if req.headers().contains_key(crate::peer::FORWARDED) {
        return unavailable(format!("this controller does not lead; `{}` does", leader.id), Some(&leader))
            .into_response();
    }
    if let Some(Remote(remote)) = client {
        crate::peer::sign(&s, election.id(), remote.ip(), &mut req);
    }
    // Never more connections to the leader than it lets one address hold.
    let Ok(_slot) = s.forward_slots.acquire().await else {
        return unavailable("this controller is stopping".into(), Some(&leader)).into_response();
    };
    match forward(&s.forwarder, &leader.url, election.id(), req).await {
        Ok(r) => r,
        Err(why) => unavailable(
            format!(
                "this controller does not lead and cannot reach the leader `{}` at {}: {why}",
                leader.id, leader.url
            ),
            Some(&leader),
        )
        .into_response(),
    }
}

/// Sends an operator request on to the leader and answers with its answer.
pub(crate) async fn forward(
    client: &reqwest::Client,
    base: &str,
    me: &str,
    req: Request<Body>,
) -> Result<Response, String> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024).await.map_err(|e| e.to_string())?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut out = client.request(method, format!("{}{path}", base.trim_end_matches('/'))).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            out = out.header(name.as_str(), v);
        }
    }
    for name in ["idempotency-key", crate::peer::FORWARDED_FOR, crate::peer::FORWARDED_PROOF] {
        if let Some(v) = parts.headers.get(name).and_then(|v| v.to_str().ok()) {
            out = out.header(name, v);
        }
    }
    // reqwest's own message is "error sending request": the cause (an
    // unknown issuer, a refused connection) is in its sources.
    let answer = out.header(crate::peer::FORWARDED, me).send().await.map_err(|e| drctl_core::error_chain(&e))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut r = (status, bytes).into_response();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(r)
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
    let base = topology_dir(&s);
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

async fn security_headers(req: Request<Body>, next: axum::middleware::Next) -> Response {
    let tls = req.extensions().get::<Tls>().is_some();
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    // A page with its own policy (a self-contained report's inline style) keeps it.
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    r
}

/// Marks requests that came over TLS.
#[derive(Clone, Copy)]
struct Tls;

pub fn router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/static/status.css",
            get(|| async { bytes("text/css; charset=utf-8", bytes::Bytes::from_static(crate::page::CSS.as_bytes())) }),
        )
        .route("/api/v1/status", get(snapshot_route!(status_json, "application/json")))
        .route("/api/v2/{*path}", get(statuspage_v2))
        .route("/feed.atom", get(snapshot_route!(atom, "application/atom+xml; charset=utf-8")))
        .route("/metrics", get(snapshot_route!(metrics, "text/plain; version=0.0.4; charset=utf-8")))
        .route("/api/v1/openapi.json", get(|| async { Json(crate::openapi()) }))
        .route("/api/v1/incidents", post(create_incident).get(list_incidents))
        .route("/api/v1/incidents/{id}/updates", post(update_incident))
        .route("/api/v1/maintenance", post(create_maintenance))
        .route("/api/v1/declare", post(declare))
        .route("/api/v1/executions", get(executions))
        .route("/api/v1/executions/{id}", get(execution))
        .route("/api/v1/executions/{id}/approve", post(approve))
        .route("/api/v1/executions/{id}/abort", post(abort))
        .route("/api/v1/executions/{id}/retry", post(retry))
        .route("/api/v1/executions/{id}/skip", post(skip))
        .route("/api/v1/drills", post(drill))
        .route("/api/v1/erasures", post(crate::erasure::create).get(crate::erasure::list))
        .route("/api/v1/audit", get(audit_list))
        .route("/api/v1/leader", get(leader))
        .merge(crate::audience::routes())
        .merge(crate::readiness::routes())
        .layer(axum::middleware::from_fn_with_state(s.clone(), to_the_leader))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            crate::limits::Limiter {
                rate: Arc::new(crate::limits::RateLimiter::new(s.opts.limits.rate_per_s)),
                request_timeout: s.opts.limits.request_timeout,
                body_timeout: s.opts.limits.body_timeout,
                authenticate: Some({
                    let state = s.opts.state.clone();
                    Arc::new(move |t: &str| match state.authenticate(t) {
                        Ok(Some(token)) if token.role >= Role::Operator => crate::limits::TokenAccess::MayWrite,
                        Ok(Some(_)) => crate::limits::TokenAccess::ReadOnly,
                        _ => crate::limits::TokenAccess::Unknown,
                    })
                }),
            },
            crate::limits::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(s.clone(), crate::peer::trust_forwarded))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(s)
}

/// Accepts connections (TLS or not) until shutdown, then lets open requests finish.
pub(crate) async fn serve(
    s: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    let app = router(s.clone());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = s.opts.limits;
    // One permit per open connection: past the cap, new connections wait
    // in the kernel's backlog until one closes.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_client = crate::limits::Connections::new(limits.per_address);
    loop {
        let slot = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => break,
        };
        let (sock, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A client past its share is closed at once: it waits for nobody's slot.
        let Some(counted) = per_client.open(remote.ip()) else {
            tracing::debug!(client = %remote.ip(), "connection refused: its address holds its share");
            drop(sock);
            continue;
        };
        let slot = (slot, counted);
        let _ = sock.set_nodelay(true);
        let is_tls = acceptor.is_some();
        let svc = app.clone().layer(Extension(Remote(remote)));
        let svc = tower::ServiceBuilder::new()
            .map_request(move |mut r: Request<hyper::body::Incoming>| {
                if is_tls {
                    r.extensions_mut().insert(Tls);
                }
                r
            })
            .service(svc);
        let hyper_svc = hyper_util::service::TowerToHyperService::new(svc);
        // HTTP/1.1 only (as the router is built): no wait for a version
        // preface before the header timer runs.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
        // A client that opens a connection and sends nothing gives its slot back.
        builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
        match &acceptor {
            Some(acc) => {
                let acc = acc.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _slot = slot;
                    let Ok(Ok(stream)) = tokio::time::timeout(limits.header_timeout, acc.accept(sock)).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), hyper_svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
            None => {
                let conn = builder.serve_connection(TokioIo::new(sock), hyper_svc).into_owned();
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = fut.await;
                });
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
