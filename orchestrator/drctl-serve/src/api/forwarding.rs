//! Highly available controllers (docs/guide/ha-etcd.md): who leads, and
//! an operator write sent to a follower taken over to the leader.

use super::answer::ApiError;
use super::auth::{allowed, Remote};
use crate::Shared;
use axum::body::Body;
use axum::extract::State as Ax;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// `GET /api/v1/leader` (no token): who this controller is and who leads.
pub(super) async fn leader(Ax(s): Ax<Arc<Shared>>) -> Response {
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
pub(super) async fn to_the_leader(
    Ax(s): Ax<Arc<Shared>>,
    mut req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
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
