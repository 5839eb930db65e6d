//! Incidents and maintenance windows, as operators post them for the
//! status page (a declaration opens its own incident through the
//! declarer).

use super::answer::{bounded, check_services, internal, parse_time, problem, state_error, ApiResult};
use super::auth::{audit, authorize, Remote};
use crate::Shared;
use axum::extract::{Path, State as Ax};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use drctl_state::controller::Role;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIncident {
    title: String,
    status: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUpdate {
    status: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewMaintenance {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    services: Vec<String>,
    starts_at: String,
    ends_at: String,
}

pub(super) async fn create_incident(
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

pub(super) async fn update_incident(
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

pub(super) async fn list_incidents(
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

pub(super) async fn create_maintenance(
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
