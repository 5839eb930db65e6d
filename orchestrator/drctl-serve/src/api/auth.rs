//! Who may call the operator API, and the record of what they did.
//!
//! Operator routes check, in order: the client network (`--allow`, else
//! 403), the bearer token (else 401), the token's role (else 403). Every
//! change is written to the audit log with the token's name, the client
//! address and the request, before it is made.

use super::answer::{internal, problem, ApiError, ApiResult};
use crate::Shared;
use axum::extract::State as Ax;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use drctl_control::declare::{self, Actor};
use drctl_state::controller::{Role, Token};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address, attached to each connection's requests.
#[derive(Clone, Copy)]
pub(crate) struct Remote(pub SocketAddr);

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
pub(crate) fn permit(t: &Token, remote: SocketAddr, need: Role) -> Result<Actor, ApiError> {
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

pub(super) async fn audit_list(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Admin)?;
    Ok(Json(s.opts.state.audit_entries().map_err(internal)?).into_response())
}
