//! HTTP: the public status page and its feeds, and the operator API, a
//! file per resource; the router is built here, in one place, with the
//! layers every request passes (forwarding to the leader, body and rate
//! limits, trust between controllers, security headers).
//!
//! Public routes answer from the rendered snapshot ([`status`]). Operator
//! routes check who calls ([`auth`]) and answer errors one way
//! ([`answer`]): [`executions`], [`incidents`] (and maintenance),
//! [`drills`], [`forwarding`] to the leader; customers' subscriptions and
//! pages, erasures and readiness keep their handlers beside what they
//! serve and are routed here too.

use crate::Shared;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use drctl_runtime::CancellationToken;
use drctl_state::controller::Role;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod answer;
pub(crate) mod auth;
mod drills;
mod executions;
mod forwarding;
mod incidents;
pub(crate) mod status;

// What the rest of the controller starts from here.
pub(crate) use drills::drill_scheduler;
pub(crate) use executions::spawn_execution;
#[cfg(test)]
pub(crate) use forwarding::forward;
// The shared handler plumbing, under the names it has always had.
#[allow(unused_imports)]
pub(crate) use answer::{
    body, bounded, check_services, control_error, internal, problem, state_error, ApiError, ApiResult,
};
#[allow(unused_imports)]
pub(crate) use auth::{allowed, audit, authorize, token_of, Remote};
#[allow(unused_imports)]
pub(crate) use status::LangQuery;

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
        .merge(status::routes())
        .route("/api/v1/incidents", post(incidents::create_incident).get(incidents::list_incidents))
        .route("/api/v1/incidents/{id}/updates", post(incidents::update_incident))
        .route("/api/v1/maintenance", post(incidents::create_maintenance))
        .route("/api/v1/declare", post(executions::declare))
        .route("/api/v1/executions", get(executions::executions))
        .route("/api/v1/executions/{id}", get(executions::execution))
        .route("/api/v1/executions/{id}/approve", post(executions::approve))
        .route("/api/v1/executions/{id}/abort", post(executions::abort))
        .route("/api/v1/executions/{id}/retry", post(executions::retry))
        .route("/api/v1/executions/{id}/skip", post(executions::skip))
        .route("/api/v1/drills", post(drills::drill))
        .route("/api/v1/erasures", post(crate::erasure::create).get(crate::erasure::list))
        .route("/api/v1/audit", get(auth::audit_list))
        .route("/api/v1/leader", get(forwarding::leader))
        .merge(crate::audience::routes())
        .merge(crate::readiness::routes())
        .layer(axum::middleware::from_fn_with_state(s.clone(), forwarding::to_the_leader))
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
    // Every open connection is a task of this server's: finished ones are
    // reaped as new ones come, the rest are cancelled when it stops.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
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
        let svc = app.clone().layer(Extension(auth::Remote(remote)));
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
                connections.spawn(async move {
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
                connections.spawn(async move {
                    let _slot = slot;
                    let _ = fut.await;
                });
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    // What did not finish in time is cut, not left behind.
    connections.shutdown().await;
}
