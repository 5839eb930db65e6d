//! Erasure in the controller: `POST /api/v1/erasures` (operator) records a
//! request and erases it in the background, `GET /api/v1/erasures`
//! (viewer) lists the ledger, `/metrics` counts open and overdue requests,
//! and the leader's periodic pass verifies what is not verified yet (a
//! replica that was down, a primary a failover moved). The operation is
//! drctl-control's (`erasure` module); this only parses and shows.

use crate::api::answer::{body, control_error, ApiResult};
use crate::api::auth::{authorize, Remote};
use crate::Shared;
use axum::extract::State as Ax;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use drctl_control::erasure::Eraser;
use drctl_runtime::{CancellationToken, OnFailure};
use drctl_state::controller::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How often the leader verifies what is not verified yet.
pub(crate) const PASS_EVERY: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewErasure {
    subject: String,
    reason: String,
}

fn eraser(s: &Shared) -> Eraser {
    Eraser::new(s.opts.topology.clone(), s.opts.state.clone(), s.opts.clients.clone()).with_clock(s.opts.clock.clone())
}

/// `POST /api/v1/erasures` `{subject, reason}`: 202 with the request's id
/// once it is in the ledger; the erasure runs on the leader.
pub(crate) async fn create(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> ApiResult {
    let who = authorize(&s, &headers, remote, Role::Operator)?;
    let req: NewErasure = body(raw)?;
    let recorded = eraser(&s).request(&req.subject, &req.reason, &who).map_err(control_error)?;
    let id = recorded.id.clone();
    match s.work() {
        Some(center) => {
            let s2 = s.clone();
            let id2 = id.clone();
            center.spawn(format!("erasure {id}"), OnFailure::Log, move |token| {
                let (s2, id) = (s2.clone(), id2.clone());
                async move {
                    let e = eraser(&s2);
                    let done = tokio::select! {
                        r = async { e.run(&id).await?; e.wait(&id, Duration::from_secs(120)).await } => r,
                        _ = token.cancelled() => return,
                    };
                    if let Err(err) = done {
                        (s2.opts.say)(&format!("erasure {id}: {err}; the next pass goes on"));
                    }
                    s2.refresh().await;
                }
            });
        }
        None => (s.opts.say)(&format!("erasure {id}: recorded; not leading, the leader's pass erases it")),
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "due_at": drctl_control::live::rfc3339_secs(recorded.due_at) })))
        .into_response())
}

/// `GET /api/v1/erasures`: the ledger as `drctl erasures --output json` prints it.
pub(crate) async fn list(
    Ax(s): Ax<Arc<Shared>>,
    Extension(Remote(remote)): Extension<Remote>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(&s, &headers, remote, Role::Viewer)?;
    let (report, _) = eraser(&s).report().map_err(control_error)?;
    Ok(Json(report).into_response())
}

/// The leader's pass, every [`PASS_EVERY`].
pub(crate) async fn run(s: Arc<Shared>, stop: CancellationToken) {
    let e = eraser(&s);
    let site = drctl_backup::site_dir(&s.opts.topology);
    loop {
        // Which backups still hold each request: read from pgBackRest each pass.
        let (sets, failed) = tokio::select! {
            r = drctl_backup::held::backup_sets(&s.opts.topology, &site) => r,
            _ = stop.cancelled() => return,
        };
        for f in failed {
            tracing::warn!(repository = %f, "the backups of a datastore could not be read; estimated from the retention");
        }
        e.set_backups(sets);
        let pass = tokio::select! {
            r = e.pass() => r,
            _ = stop.cancelled() => return,
        };
        match pass {
            Ok(sum) if sum.forgotten > 0 => {
                (s.opts.say)(&format!("erasure: {} identifiers forgotten (their older backups expired)", sum.forgotten))
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "erasure pass failed; the next one tries again"),
        }
        tokio::select! {
            _ = s.opts.clock.sleep(PASS_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// `/metrics`' erasure gauges.
pub(crate) fn metrics(s: &Shared) -> String {
    if s.opts.topology.erasure.is_none() {
        return String::new();
    }
    let Ok((open, overdue)) = drctl_control::erasure::counts(&*s.opts.state, s.opts.clock.now()) else {
        return String::new();
    };
    format!(
        "# HELP drctl_erasures_open Erasure requests not yet verified on every copy.\n# TYPE drctl_erasures_open gauge\ndrctl_erasures_open {open}\n\
         # HELP drctl_erasures_overdue Erasure requests with a copy not verified clean by their deadline.\n# TYPE drctl_erasures_overdue gauge\ndrctl_erasures_overdue {overdue}\n"
    )
}
