//! The lab's control API (HTTP on the base port): status, faults, heal,
//! safety and loss, as [`drctl_lab_api::LabClient`] calls them.

use super::*;

type ApiError = (StatusCode, String);

pub(super) fn api_error(e: Error) -> ApiError {
    match e {
        Error::BadInput(m) => (StatusCode::BAD_REQUEST, m),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
pub(super) struct SafetyQuery {
    datastore: String,
    since_ms: u64,
}

#[derive(Deserialize)]
pub(super) struct RestoredQuery {
    datastore: String,
    point_ms: u64,
}

#[derive(Deserialize)]
pub(super) struct LossQuery {
    datastore: String,
    zone: String,
}

pub(super) fn router(inner: Arc<Inner>) -> axum::Router {
    axum::Router::new()
        .route("/status", get(|AxState(i): AxState<Arc<Inner>>| async move { Json(status(&i).await) }))
        .route(
            "/faults",
            post(
                |AxState(i): AxState<Arc<Inner>>, Query(q): Query<DryRun>, Json(req): Json<FaultRequest>| async move {
                    inject(&i, req, q.dry_run).await.map(Json).map_err(api_error)
                },
            )
            .delete(|AxState(i): AxState<Arc<Inner>>| async move { Json(heal_all(&i).await) }),
        )
        .route(
            "/faults/{id}",
            delete(|AxState(i): AxState<Arc<Inner>>, UrlPath(id): UrlPath<u64>| async move {
                let f = {
                    let mut all = i.faults.lock().unwrap_or_else(|p| p.into_inner());
                    all.iter().position(|f| f.id == id).map(|p| all.remove(p))
                };
                match f {
                    Some(f) => Ok(Json(undo_fault(&i, f).await)),
                    None => Err((StatusCode::NOT_FOUND, format!("no fault {id} in force"))),
                }
            }),
        )
        .route(
            "/members/{datastore}/{zone}/power-off",
            post(|AxState(i): AxState<Arc<Inner>>, UrlPath((datastore, zone)): UrlPath<(String, String)>| async move {
                inject(&i, FaultRequest::PowerOff { datastore, zone }, false).await.map(Json).map_err(api_error)
            }),
        )
        .route(
            "/workload/safety",
            get(|AxState(i): AxState<Arc<Inner>>, Query(q): Query<SafetyQuery>| async move {
                if q.datastore != "orders-db" {
                    return Err(api_error(unknown_target(&q.datastore)));
                }
                let since = std::time::UNIX_EPOCH + Duration::from_millis(q.since_ms);
                let acks = i.pg_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
                // A few rounds before `since` say who was primary then.
                let rounds = i.probes.since(since - Duration::from_secs(2));
                Ok(Json(crate::safety::judge(&rounds, &acks, since)))
            }),
        )
        .route(
            "/workload/loss",
            get(|AxState(i): AxState<Arc<Inner>>, Query(q): Query<LossQuery>| async move {
                loss(&i, &q.datastore, &q.zone).await.map(Json).map_err(api_error)
            }),
        )
        .route(
            "/workload/restored",
            get(|AxState(i): AxState<Arc<Inner>>, Query(q): Query<RestoredQuery>| async move {
                let point = std::time::UNIX_EPOCH + Duration::from_millis(q.point_ms);
                restored(&i, &q.datastore, point).await.map(Json).map_err(api_error)
            }),
        )
        .route(
            "/shutdown",
            post(|AxState(i): AxState<Arc<Inner>>| async move {
                i.shutdown.notify_waiters();
                i.shutdown.notify_one();
                "stopping\n"
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(inner)
}
