//! The public status page and its machine-readable faces (status JSON,
//! Statuspage's v2, the Atom feed, metrics), all answered from the last
//! rendered snapshot: no request reaches the state store.

use super::answer::problem;
use crate::page::Lang;
use crate::Shared;
use axum::extract::{Path, Query, State as Ax};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

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

/// The public routes, from the snapshot.
pub(super) fn routes() -> Router<Arc<Shared>> {
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
}
