//! How the operator API answers when it cannot do what was asked: one
//! error shape (a status and a JSON body), the mapping of every lower
//! crate's error onto it, and the checks of request bodies every handler
//! shares (unknown fields, lengths, services, times).

use crate::Shared;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use drctl_control::declare;
use serde_json::{json, Value};
use std::time::SystemTime;

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

/// Reads a request body into its type; a field it does not define (a
/// typo such as `dryrun`) or a missing one answers 422 naming it, so a
/// mistyped request never runs as something else.
pub(crate) fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    T::deserialize(v).map_err(|e| control_error(declare::body_error(&e.to_string()).into()))
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

pub(crate) fn parse_time(field: &str, v: &str) -> Result<SystemTime, ApiError> {
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
