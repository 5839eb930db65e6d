//! Measuring the estate now: every datastore's replicas and RPO, every
//! service's health and estimated RTO. Measurements run concurrently, each
//! under a deadline, and a system that does not answer becomes an `error`
//! in its own entry without hiding the others.

use aws_config::SdkConfig;
use drctl_aws::{rds, s3};
use drctl_core::plan::{plan, Observations, Placement, Scope};
use drctl_core::status::{datastore_status, service_status, DatastoreStatus, Measurement, ServiceStatus, StatusReport};
use drctl_core::topology::{Datastore, DatastoreKind, EntitySpec, Location, Topology};
use drctl_providers::{http, postgres};
use std::time::{Duration, SystemTime};
// Where callers have always found them.
pub use crate::times::{now_rfc3339, rfc3339_secs};

/// How long one datastore's measurement may take before it is an error.
pub const MEASURE_TIMEOUT: Duration = Duration::from_secs(10);

/// The clients every operation shares: one AWS configuration, built
/// lazily (only estates with AWS datastores pay for it), one S3 client per
/// endpoint, one HTTP client. Made once per process, at its wiring point.
pub struct Clients {
    credentials: drctl_aws::Credentials,
    sdk: tokio::sync::OnceCell<SdkConfig>,
    http: http::Client,
    /// One S3 client per (endpoint, region): a client owns a connection pool
    /// and TLS setup, far too costly to build per bucket per pass.
    s3: std::sync::Mutex<std::collections::HashMap<EndpointKey, s3::S3Client>>,
}

/// (endpoint URL, region) of an S3 client.
type EndpointKey = (Option<String>, Option<String>);

impl Default for Clients {
    fn default() -> Self {
        Clients::new(drctl_aws::Credentials::Chain)
    }
}

impl Clients {
    pub fn new(credentials: drctl_aws::Credentials) -> Self {
        Clients { credentials, sdk: tokio::sync::OnceCell::new(), http: http::client(), s3: Default::default() }
    }

    pub fn with_sdk(sdk: SdkConfig) -> Self {
        Clients {
            credentials: drctl_aws::Credentials::Chain,
            sdk: tokio::sync::OnceCell::new_with(Some(sdk)),
            http: http::client(),
            s3: Default::default(),
        }
    }

    /// The (shared) S3 client for an endpoint and region.
    pub async fn s3(&self, endpoint: Option<&str>, region: Option<&str>) -> s3::S3Client {
        let key = (endpoint.map(str::to_string), region.map(str::to_string));
        if let Some(c) = self.s3.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return c.clone();
        }
        let client = s3::client_for(self.sdk().await, endpoint, region);
        self.s3.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(client).clone()
    }

    /// The shared HTTP client (health checks, webhooks).
    pub fn http(&self) -> &http::Client {
        &self.http
    }

    pub async fn sdk(&self) -> &SdkConfig {
        self.sdk.get_or_init(|| drctl_aws::sdk_config_with(&self.credentials)).await
    }
}

/// The S3 buckets of a datastore: primary first.
pub async fn buckets(clients: &Clients, topo: &Topology, ds: &Datastore) -> Vec<s3::Bucket> {
    let mut out = Vec::new();
    for m in ds.primary.iter().chain(&ds.replicas) {
        if let Location::S3 { bucket, endpoint, region } = &m.location {
            out.push(s3::Bucket {
                zone: topo.zones[m.zone].name.clone(),
                name: bucket.clone(),
                endpoint: endpoint.clone(),
                client: clients.s3(endpoint.as_deref(), region.as_deref()).await,
            });
        }
    }
    out
}

fn region_of(topo: &Topology, ds: &Datastore) -> Option<String> {
    ds.region
        .clone()
        .or_else(|| ds.primary.as_ref().map(|p| topo.zones[p.zone].region.clone()))
        .or_else(|| topo.zones.first().map(|z| z.region.clone()))
}

/// The members of a PostgreSQL datastore as the provider takes them, primary first.
pub fn postgres_members(topo: &Topology, ds: &Datastore) -> Vec<postgres::Member> {
    ds.primary
        .iter()
        .chain(&ds.replicas)
        .filter_map(|m| match &m.location {
            Location::Postgres { url, fence, .. } => {
                Some(postgres::Member { zone: topo.zones[m.zone].name.clone(), url: url.clone(), fence: fence.clone() })
            }
            _ => None,
        })
        .collect()
}

/// How the topology's zones map to AWS availability zones (`name`, `aws_zone`).
pub fn zone_map(topo: &Topology) -> rds::ZoneMap {
    topo.zones.iter().map(|z| (z.name.clone(), z.aws_zone.clone())).collect()
}

/// Puts the bucket of the zone a datastore's primary moved to first.
pub fn primary_first(buckets: &mut Vec<s3::Bucket>, primary_zone: Option<&str>) {
    if let Some(pos) = primary_zone.and_then(|z| buckets.iter().position(|b| b.zone == z)) {
        let primary = buckets.remove(pos);
        buckets.insert(0, primary);
    }
}

async fn measure_datastore(
    clients: &Clients,
    topo: &Topology,
    ds: &Datastore,
    moved_to: Option<&str>,
    at: SystemTime,
) -> Measurement {
    let zones_map = zone_map(topo);
    match ds.kind {
        DatastoreKind::Postgres => postgres::measure(&postgres_members(topo, ds), MEASURE_TIMEOUT / 2).await,
        DatastoreKind::S3 => {
            let mut b = buckets(clients, topo, ds).await;
            primary_first(&mut b, moved_to);
            match b.split_first() {
                Some((primary, replicas)) => s3::measure(primary, replicas, at).await,
                None => Measurement { primary_zone: None, replicas: Vec::new(), error: Some("no buckets".into()) },
            }
        }
        DatastoreKind::RdsInstance => {
            let client = rds::Rds::new(clients.sdk().await, region_of(topo, ds).as_deref());
            // Members as (zone, instance), the current primary first: after a
            // promotion it is the instance in the zone the failover moved to.
            let mut members: Vec<(String, String)> = ds
                .primary
                .iter()
                .chain(&ds.replicas)
                .filter_map(|m| match &m.location {
                    Location::RdsInstance { instance } => Some((topo.zones[m.zone].name.clone(), instance.clone())),
                    _ => None,
                })
                .collect();
            if let Some(pos) = moved_to.and_then(|z| members.iter().position(|(zone, _)| zone == z)) {
                let primary = members.remove(pos);
                members.insert(0, primary);
            }
            let Some(((_, primary), replicas)) = members.split_first() else {
                return Measurement {
                    primary_zone: None,
                    replicas: Vec::new(),
                    error: Some("no primary instance".into()),
                };
            };
            rds::measure_instance(&client, primary, replicas, &zones_map).await
        }
        DatastoreKind::RdsCluster => {
            let client = rds::Rds::new(clients.sdk().await, region_of(topo, ds).as_deref());
            rds::measure_cluster(&client, ds.cluster.as_deref().unwrap_or_default(), &zones_map).await
        }
    }
}

/// Measures every datastore and service of the topology. `placements`:
/// where failovers moved primaries, (datastore, zone), from the state store.
pub async fn status(
    clients: &Clients,
    topo: &Topology,
    placements: &[(String, String)],
    at: SystemTime,
) -> StatusReport {
    let datastores: Vec<(usize, &Datastore)> = topo.datastores().map(|(i, _, d)| (i, d)).collect();
    let measured: Vec<Measurement> = futures::future::join_all(datastores.iter().map(|(id, ds)| async move {
        let moved_to = placements.iter().find(|(d, _)| *d == topo.entity(*id).name).map(|(_, z)| z.as_str());
        match tokio::time::timeout(MEASURE_TIMEOUT, measure_datastore(clients, topo, ds, moved_to, at)).await {
            Ok(m) => m,
            Err(_) => Measurement {
                primary_zone: None,
                replicas: Vec::new(),
                error: Some(format!("no answer within {}s", MEASURE_TIMEOUT.as_secs())),
            },
        }
    }))
    .await;

    let obs = observations(topo, &datastores, &measured);
    let ds_status: Vec<DatastoreStatus> =
        datastores.iter().zip(measured).map(|((id, _), m)| datastore_status(topo, *id, m)).collect();

    // A service's health: its shared URL, or the URL of the zone serving it
    // (where a failover moved it, else its first zone).
    let services: Vec<(usize, Option<(&str, Duration)>)> = topo
        .services()
        .map(|(i, e, s)| {
            let serving = placements
                .iter()
                .find(|(name, _)| *name == e.name)
                .and_then(|(_, z)| topo.zone_id(z))
                .or_else(|| s.zones.first().copied());
            (i, s.health.as_ref().and_then(|h| h.serving_url(serving).map(|u| (u, h.timeout))))
        })
        .collect();
    let health: Vec<Result<bool, String>> = futures::future::join_all(services.iter().map(|(_, h)| async move {
        match h {
            Some((url, timeout)) => http::check(&clients.http, url, *timeout).await.map(|()| true),
            None => Ok(true),
        }
    }))
    .await;
    let rto = worst_zone_rto(topo, &obs);
    let svc_status: Vec<ServiceStatus> = services
        .iter()
        .zip(health)
        .map(|((id, _), h)| {
            let (healthy, error) = match h {
                Ok(ok) => (ok, None),
                Err(why) => (false, Some(why)),
            };
            service_status(topo, *id, healthy, error, rto[*id])
        })
        .collect();
    StatusReport { at: rfc3339_secs(at), datastores: ds_status, services: svc_status }
}

/// What the measurements tell the planner: lag per replica, and where
/// primaries are now when that differs from the file.
pub fn observations(topo: &Topology, datastores: &[(usize, &Datastore)], measured: &[Measurement]) -> Observations {
    let mut obs = Observations::default();
    for ((id, ds), m) in datastores.iter().zip(measured) {
        for r in &m.replicas {
            let lag = r.lag_s.and_then(|l| Duration::try_from_secs_f64(l).ok());
            if let (Some(z), Some(lag)) = (topo.zone_id(&r.zone), lag) {
                obs.lag.insert((*id, z), lag);
            }
        }
        let Some(primary) = m.primary_zone.as_deref().and_then(|z| topo.zone_id(z)) else { continue };
        let mut members: Vec<usize> = ds.primary.iter().chain(&ds.replicas).map(|m| m.zone).collect();
        if ds.kind == DatastoreKind::RdsCluster {
            members = m.replicas.iter().filter_map(|r| topo.zone_id(&r.zone)).chain([primary]).collect();
        }
        if ds.primary.as_ref().map(|p| p.zone) != Some(primary) {
            obs.placement
                .insert(*id, Placement { primary, replicas: members.into_iter().filter(|&z| z != primary).collect() });
        }
    }
    obs
}

/// Per entity: the worst estimated RTO over the loss of any single zone
/// (what `status` shows as a service's RTO estimate): 0 when no single
/// zone's loss affects it, `None` when some zone's loss leaves it
/// unrecoverable (so it cannot meet a target).
pub fn worst_zone_rto(topo: &Topology, obs: &Observations) -> Vec<Option<f64>> {
    let mut worst: Vec<Option<f64>> = vec![Some(0.0); topo.entities.len()];
    for z in &topo.zones {
        let Ok(p) = plan(topo, &Scope { zones: vec![z.name.clone()], ..Scope::default() }, obs, None) else { continue };
        for e in &p.entities {
            if let Some(w) = topo.entity_id(&e.name).and_then(|id| worst[id].as_mut()) {
                *w = w.max(e.rto_estimate_s);
            }
        }
        for u in &p.unrecoverable {
            if let Some(id) = topo.entity_id(&u.name) {
                worst[id] = None;
            }
        }
    }
    worst
}

/// Records a status report: each datastore's RPO, and each replica's own
/// lag (the one `max_lag` is checked against when the primary is gone).
pub fn record(
    state: &drctl_state::State,
    report: &StatusReport,
    at: std::time::SystemTime,
) -> Result<(), drctl_state::Error> {
    state.record_rpo_samples(&samples(report, at))?;
    for d in report.datastores.iter().filter(|d| d.kind == "postgres" && !d.split_brain) {
        // The evidence a lag is judged on once the primary is gone: every
        // look counts, a primary that did not answer as much as one that did.
        let looks = crate::lag::wal_samples(d.primary_zone.as_deref(), &d.replicas, at);
        if !looks.is_empty() {
            state.record_wal_samples(&d.name, &looks)?;
        }
    }
    for d in &report.datastores {
        // Only lags measured against a primary that answered mean anything.
        if d.primary_zone.is_none() {
            continue;
        }
        let lags: Vec<(String, Option<f64>)> = d.replicas.iter().map(|r| (r.zone.clone(), r.lag_s)).collect();
        if !lags.is_empty() {
            state.record_replica_lags(&d.name, at, &lags)?;
        }
    }
    Ok(())
}

/// Completes a status report with what the state store knows: the S3
/// conflicts replication recorded, each PostgreSQL standby's lag tightened
/// by the primary's recent positions, and, where a primary is dark, by
/// what was seen before it went dark.
pub fn with_state(state: &drctl_state::State, report: &mut StatusReport, at: SystemTime) {
    attach_conflicts(state, report);
    dated_by_marks(state, report, at);
    with_evidence(state, report, at);
}

/// The bounds a standby gives read high after a quiet spell (its last
/// replayed write may be long before the first one it lacks). The samples
/// kept in the state store say when the primary was last at or before the
/// standby's received position: every write it lacks came after that look.
/// (Exact without them when the primary has `pg_walinspect`.)
fn dated_by_marks(state: &drctl_state::State, report: &mut StatusReport, at: SystemTime) {
    for d in report.datastores.iter_mut().filter(|d| d.kind == "postgres" && d.primary_zone.is_some()) {
        let mut changed = false;
        for r in d.replicas.iter_mut() {
            let (Some(lag), Some(received)) = (
                r.lag_s.filter(|l| *l > 0.0),
                r.wal.as_ref().and_then(|w| w.received.as_deref()).and_then(postgres::Lsn::parse),
            ) else {
                continue;
            };
            let Ok(Some(e)) = state.lag_evidence(&d.name, &r.zone) else { continue };
            let Some(since) = e.last_at_or_before(received.0) else { continue };
            let bound = at.duration_since(since).unwrap_or_default().as_secs_f64();
            if bound < lag {
                r.lag_s = Some(bound);
                changed = true;
            }
        }
        if changed {
            d.replica_lags_changed();
        }
    }
}

/// Where a PostgreSQL primary does not answer, what its standbys lack is
/// known only up to a bound the standby gives alone (the time since its
/// last replayed write). The evidence tightens it: a standby that has
/// since received the position the primary was last seen at lacks nothing
/// from before then, else what it lacked then; plus the interval until the
/// primary was first seen dark (writes there are unknown). The RPO stays a
/// number while a member answers, and agrees with what a declaration's
/// preflight would judge.
fn with_evidence(state: &drctl_state::State, report: &mut StatusReport, at: SystemTime) {
    let lsn = |s: Option<&str>| s.and_then(postgres::Lsn::parse);
    for d in report.datastores.iter_mut().filter(|d| d.kind == "postgres" && d.primary_zone.is_none() && !d.split_brain)
    {
        let mut changed = false;
        for r in d.replicas.iter_mut() {
            let Some(bound) = r.lag_s else { continue };
            let Ok(Some(e)) = state.lag_evidence(&d.name, &r.zone) else { continue };
            let Some(seen) = e.last_seen.as_ref() else { continue };
            let received = lsn(r.wal.as_ref().and_then(|w| w.received.as_deref()));
            let has_all_seen = matches!((received, seen.primary_lsn), (Some(got), Some(p)) if got.0 >= p);
            let lacked = if has_all_seen { 0.0 } else { seen.lag_s.unwrap_or(bound) };
            let dark = e.dark_since.unwrap_or(at);
            let unknown = dark.duration_since(seen.at).unwrap_or_default().as_secs_f64();
            let tightened = bound.min(lacked + unknown);
            if tightened < bound {
                r.lag_s = Some(tightened);
                changed = true;
            }
        }
        if changed {
            d.replica_lags_changed();
        }
    }
}

/// Adds to a status report the S3 conflicts replication recorded (objects
/// it left alone because they may be the only copy of a write).
pub fn attach_conflicts(state: &drctl_state::State, report: &mut StatusReport) {
    for d in report.datastores.iter_mut().filter(|d| d.kind == "s3") {
        d.conflicts = state
            .conflicts(&d.name)
            .unwrap_or_default()
            .into_iter()
            .map(|(zone, key, _, reason)| drctl_core::status::StatusConflict { zone, key, reason })
            .collect();
    }
}

/// RPO samples from a report, for the state store.
pub fn samples(report: &StatusReport, at: std::time::SystemTime) -> Vec<drctl_state::RpoSample> {
    report
        .datastores
        .iter()
        .map(|d| drctl_state::RpoSample {
            datastore: d.name.clone(),
            at,
            rpo_s: d.rpo_s,
            target_s: d.rpo_target_s,
            error: d.error.clone(),
        })
        .collect()
}

/// Whether any datastore of the topology needs AWS.
pub fn needs_aws(topo: &Topology) -> bool {
    topo.entities.iter().any(|e| matches!(&e.spec, EntitySpec::Datastore(d) if d.kind != DatastoreKind::Postgres))
}
