//! Declaring a disaster and executing its plan (SPEC §6).
//!
//! Order of business, and why: plan from the world as drctl last recorded
//! it (primaries moved by earlier failovers); run every check that can
//! refuse the run (a replica behind `max_lag`, an unreachable standby, an
//! action this build cannot perform) before anything in the world changes,
//! so a refused run leaves the world as it found it; then journal the
//! execution, lock its entities, and let the engine run it.

use crate::live::Clients;
use crate::Error;
use drctl_core::action::Action;
use drctl_core::plan::{plan_with, DetailedPlan, Observations, Placement, Scope};
use drctl_core::runbook::RunbookStep;
use drctl_core::schedule::Policy;
use drctl_core::topology::{EntitySpec, Location, Route, RouteKind, Topology};
use drctl_engine::{ActionError, Actions, Ended, Engine, Note, StepSpec};
use drctl_providers::{http, postgres};
use drctl_state::journal::{exec_state, ExecutionRow};
use drctl_state::State;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the commander declared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declaration {
    pub zones: Vec<String>,
    pub regions: Vec<String>,
    pub targets: Vec<String>,
    pub reason: String,
    pub force: bool,
    pub parallel: Option<usize>,
}

impl Declaration {
    /// The names of the zones the declaration loses, by name or by region.
    pub fn lost_zones(&self, topo: &Topology) -> Vec<String> {
        topo.zones
            .iter()
            .filter(|z| self.zones.contains(&z.name) || self.regions.contains(&z.region))
            .map(|z| z.name.clone())
            .collect()
    }

    pub fn scope(&self) -> Scope {
        Scope { zones: self.zones.clone(), regions: self.regions.clone(), targets: self.targets.clone() }
    }
}

/// One preflight check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Prepared {
    pub plan: DetailedPlan,
    pub specs: Vec<StepSpec>,
    pub checks: Vec<Check>,
}

impl Prepared {
    pub fn refused(&self) -> bool {
        self.checks.iter().any(|c| !c.ok)
    }
}

/// Where primaries are now, from the state store (after earlier failovers).
pub fn observations(topo: &Topology, state: &State) -> Result<Observations, Error> {
    let mut obs = Observations::default();
    for (ds, zone) in state.placements()? {
        let (Some(id), Some(z)) = (topo.entity_id(&ds), topo.zone_id(&zone)) else { continue };
        if let EntitySpec::Datastore(d) = &topo.entity(id).spec {
            let members: Vec<usize> = d.primary.iter().chain(&d.replicas).map(|m| m.zone).collect();
            obs.placement
                .insert(id, Placement { primary: z, replicas: members.into_iter().filter(|&m| m != z).collect() });
        }
    }
    Ok(obs)
}

fn fill(value: &serde_json::Value, vars: &[(&str, &str)]) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::String(s) => {
            let mut out = s.clone();
            for (k, v) in vars {
                for pattern in [format!("{{{{ {k} }}}}"), format!("{{{{{k}}}}}")] {
                    out = out.replace(&pattern, v);
                }
            }
            J::String(out)
        }
        J::Array(a) => J::Array(a.iter().map(|x| fill(x, vars)).collect()),
        J::Object(o) => J::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, vars))).collect()),
        other => other.clone(),
    }
}

/// Plans the declaration and builds the steps the engine runs.
pub fn steps(topo: &Topology, plan: &DetailedPlan, incident: &str) -> Vec<StepSpec> {
    plan.plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let entity = topo.entity(plan.step_entities[i]);
            let from = s.from_zone.clone().unwrap_or_default();
            let to = s.to_zone.clone().unwrap_or_default();
            let vars = [
                ("to_zone", to.as_str()),
                ("from_zone", from.as_str()),
                ("entity", entity.name.as_str()),
                ("incident", incident),
            ];
            let rb: Option<&RunbookStep> =
                plan.runbook_steps[i].and_then(|k| entity.failover.runbook.as_ref().map(|r| &r.steps[k]));
            let (with, timeout, attempts, backoff) = match rb {
                Some(st) => (
                    fill(&serde_json::Value::Object(st.with.clone()), &vars),
                    st.timeout,
                    st.retries.attempts,
                    st.retries.backoff,
                ),
                None => {
                    let key = if entity.is_service() { "service" } else { "datastore" };
                    let estimate = entity.failover.estimate;
                    (
                        serde_json::json!({ key: entity.name }),
                        Some((estimate * 4).max(Duration::from_secs(30))),
                        3,
                        Duration::from_secs(2),
                    )
                }
            };
            StepSpec {
                id: s.id.clone(),
                entity: s.entity.clone(),
                action: s.action.clone(),
                after: plan.tasks[i].preds.clone(),
                priority: s.start_s,
                timeout,
                attempts,
                backoff,
                with,
                from_zone: s.from_zone.clone(),
                to_zone: s.to_zone.clone(),
            }
        })
        .collect()
}

fn pg_members(topo: &Topology, name: &str) -> Option<(Vec<postgres::Member>, Option<Duration>)> {
    let e = topo.entity(topo.entity_id(name)?);
    let EntitySpec::Datastore(d) = &e.spec else { return None };
    Some((crate::live::postgres_members(topo, d), e.failover.max_lag))
}

/// Plans and runs every check that can refuse the run. Changes nothing.
pub async fn prepare(
    topo: &Topology,
    state: &State,
    clients: &Clients,
    decl: &Declaration,
    incident: &str,
) -> Result<Prepared, Error> {
    let obs = observations(topo, state)?;
    let plan = plan_with(topo, &decl.scope(), &obs, decl.parallel, Policy::Prioritised)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let specs = steps(topo, &plan, incident);
    let mut checks = Vec::new();
    for s in &specs {
        let action = Action::parse(&s.action);
        if action.is_none() {
            checks.push(Check {
                subject: s.id.clone(),
                ok: false,
                detail: format!("action `{}` is unknown to this drctl; nothing was changed", s.action),
            });
        }
        if matches!(action, Some(Action::ServiceFailover | Action::DnsFailover)) {
            let name = s.with.get("service").and_then(|v| v.as_str()).unwrap_or(&s.entity);
            if let Some(EntitySpec::Service(svc)) = topo.entity_id(name).map(|i| &topo.entity(i).spec) {
                if let Some(route) = svc.route.as_ref().filter(|r| r.kind == RouteKind::LabDns) {
                    checks.push(lab_dns_check(&s.id, route).await);
                }
            }
        }
        if action == Some(Action::PostgresPromote) {
            let name = s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity);
            let Some((members, max_lag)) = pg_members(topo, name) else { continue };
            let Some(to) = s.to_zone.as_deref() else { continue };
            let check = postgres::standby_lag(&members, to, Duration::from_secs(5)).await;
            let lag = match check {
                postgres::LagCheck::Measured(l) => Some((l, "measured now".to_string())),
                postgres::LagCheck::PrimaryUnreachable => {
                    let since = SystemTime::now() - Duration::from_secs(3600);
                    state.rpo_samples(name, since)?.into_iter().rev().find_map(|x| {
                        x.rpo_s.map(|r| {
                            (
                                r,
                                format!(
                                    "last recorded {}s ago (the primary is unreachable)",
                                    x.at.elapsed().unwrap_or_default().as_secs()
                                ),
                            )
                        })
                    })
                }
                postgres::LagCheck::StandbyUnreachable(why) => {
                    checks.push(Check {
                        subject: s.id.clone(),
                        ok: false,
                        detail: format!("the standby in {to} cannot be promoted: {why}"),
                    });
                    continue;
                }
                postgres::LagCheck::NotAStandby(why) => {
                    // Not even --force: this would silently lose data.
                    checks.push(Check {
                        subject: s.id.clone(),
                        ok: false,
                        detail: format!("the member in {to} is not a standby ({why})"),
                    });
                    continue;
                }
            };
            let (ok, detail) = match (lag, max_lag) {
                (Some((l, how)), Some(max)) if l > max.as_secs_f64() && !decl.force => {
                    (false, format!("the standby in {to} is {l:.1}s behind ({how}), over max_lag {}s: --force to promote anyway", max.as_secs_f64()))
                }
                (Some((l, how)), _) => (true, format!("the standby in {to} is {l:.1}s behind ({how})")),
                (None, Some(_)) if !decl.force => {
                    (false, format!("the lag of the standby in {to} is unknown (primary unreachable, no recent sample): --force to promote anyway"))
                }
                (None, _) => (true, format!("the lag of the standby in {to} is unknown")),
            };
            checks.push(Check { subject: s.id.clone(), ok, detail });
        }
    }
    aws_preflight(topo, clients, decl, &specs, &mut checks).await;
    if !plan.plan.unrecoverable.is_empty() {
        for u in &plan.plan.unrecoverable {
            checks.push(Check {
                subject: u.name.clone(),
                ok: true,
                detail: format!("unrecoverable: {} (not part of this run)", u.reason),
            });
        }
    }
    Ok(Prepared { plan, specs, checks })
}

/// A lab-dns route can only be switched when its DNS server answers.
async fn lab_dns_check(subject: &str, route: &Route) -> Check {
    let Some(server) = route.server.as_deref() else {
        return Check {
            subject: subject.into(),
            ok: false,
            detail: format!("the lab-dns route {} has no `server`", route.name),
        };
    };
    match drctl_providers::dns::query_a(server, &route.name, Duration::from_secs(3)).await {
        Ok(now) => Check {
            subject: subject.into(),
            ok: true,
            detail: format!(
                "dns://{server} answers {} with {}",
                route.name,
                now.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ),
        },
        Err(e) => Check { subject: subject.into(), ok: false, detail: format!("{e}; nothing was changed") },
    }
}

/// Checks that every AWS resource a step will act on exists and answers
/// with the credentials at hand (no credentials, unknown identifiers and
/// missing permissions are found here, not halfway through a failover).
async fn aws_preflight(
    topo: &Topology,
    clients: &Clients,
    decl: &Declaration,
    specs: &[StepSpec],
    checks: &mut Vec<Check>,
) {
    let needs_aws = specs.iter().any(|s| match Action::parse(&s.action) {
        Some(
            Action::RdsPromoteReadReplica
            | Action::RdsFailoverDbCluster
            | Action::S3PromoteReplica
            | Action::Route53Upsert
            | Action::Route53Failover,
        ) => true,
        Some(Action::ServiceFailover) => service_route53(topo, &s.entity).is_some(),
        _ => false,
    });
    if !needs_aws {
        return;
    }
    let zones_map = crate::live::zone_map(topo);
    let lost = decl.lost_zones(topo);
    for s in specs {
        let ds = topo
            .entity_id(s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity))
            .map(|i| topo.entity(i));
        let Some(action) = Action::parse(&s.action) else { continue };
        let result: Option<Result<String, String>> = match (action, ds.map(|e| &e.spec)) {
            (Action::RdsPromoteReadReplica, Some(EntitySpec::Datastore(d))) => {
                let to = s.to_zone.as_deref().unwrap_or_default();
                let instance =
                    d.replicas.iter().find(|m| topo.zones[m.zone].name == to).and_then(|m| match &m.location {
                        Location::RdsInstance { instance } => Some(instance.clone()),
                        _ => None,
                    });
                let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
                Some(match instance {
                    None => Err(format!("no replica instance in {to}")),
                    Some(id) => drctl_aws::rds::describe_instance(&client, &id)
                        .await
                        .map(|i| format!("{} is {} in {}", i.id, i.status, i.availability_zone))
                        .map_err(|e| e.to_string()),
                })
            }
            (Action::RdsFailoverDbCluster, Some(EntitySpec::Datastore(d))) => {
                let client = drctl_aws::rds::Rds::new(clients.sdk().await, d.region.as_deref());
                let cluster = d.cluster.clone().unwrap_or_default();
                Some(match drctl_aws::rds::cluster_members(&client, &cluster, &zones_map).await {
                    Err(e) => Err(e.to_string()),
                    Ok(m) if m.iter().any(|(_, _, z)| !lost.contains(z)) => {
                        Ok(format!("{cluster} has a member outside the lost zones"))
                    }
                    Ok(_) => Err(format!("{cluster} has no member outside the lost zones")),
                })
            }
            (Action::S3PromoteReplica, Some(EntitySpec::Datastore(d))) => {
                let to = s.to_zone.as_deref().unwrap_or_default();
                let buckets = crate::live::buckets(clients, topo, d).await;
                Some(match buckets.iter().find(|b| b.zone == to) {
                    None => Err(format!("no bucket in {to}")),
                    Some(b) => b
                        .client
                        .head_bucket()
                        .bucket(&b.name)
                        .send()
                        .await
                        .map(|_| format!("bucket {} answers", b.name))
                        .map_err(|e| format!("bucket {}: {}", b.name, drctl_aws::explain(&e))),
                })
            }
            (Action::Route53Upsert | Action::Route53Failover, _) => {
                let zone_id = s.with.get("zone_id").and_then(|v| v.as_str()).map(str::to_string);
                Some(hosted_zone_check(clients, zone_id).await)
            }
            (Action::ServiceFailover, _) => match service_route53(topo, &s.entity) {
                Some(zone_id) => Some(hosted_zone_check(clients, Some(zone_id)).await),
                None => None,
            },
            _ => None,
        };
        if let Some(r) = result {
            let (ok, detail) = match r {
                Ok(d) => (true, d),
                Err(e) => (false, format!("{e}; nothing was changed")),
            };
            checks.push(Check { subject: s.id.clone(), ok, detail });
        }
    }
}

fn service_route53(topo: &Topology, name: &str) -> Option<String> {
    let e = topo.entity(topo.entity_id(name)?);
    match &e.spec {
        EntitySpec::Service(svc) => svc
            .route
            .as_ref()
            .filter(|r| r.kind == drctl_core::topology::RouteKind::Route53)
            .and_then(|r| r.zone_id.clone()),
        EntitySpec::Datastore(_) => None,
    }
}

async fn hosted_zone_check(clients: &Clients, zone_id: Option<String>) -> Result<String, String> {
    let Some(zone_id) = zone_id else { return Err("no hosted zone id".into()) };
    let client = drctl_aws::route53::client(clients.sdk().await);
    client
        .get_hosted_zone()
        .id(&zone_id)
        .send()
        .await
        .map(|_| format!("hosted zone {zone_id} answers"))
        .map_err(|e| format!("hosted zone {zone_id}: {}", drctl_aws::explain(&e)))
}

/// A new execution id: time-ordered and readable (`20261125-225301-7f3a`).
pub fn new_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), (nanos ^ std::process::id()) & 0xffff)
}

/// Journals the execution and locks its entities.
pub fn create(state: &State, id: &str, decl: &Declaration, prepared: &Prepared) -> Result<(), Error> {
    let row = ExecutionRow {
        id: id.to_string(),
        declared_at: SystemTime::now(),
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: decl.reason.clone(),
        plan: serde_json::to_string(&prepared.plan.plan).unwrap_or_default(),
        options: serde_json::to_string(decl).unwrap_or_default(),
    };
    let steps: Vec<(String, String, String)> =
        prepared.specs.iter().map(|s| (s.id.clone(), s.entity.clone(), s.action.clone())).collect();
    let mut entities: Vec<String> = prepared.specs.iter().map(|s| s.entity.clone()).collect();
    entities.dedup();
    state.create_execution(&row, &steps, &entities)?;
    Ok(())
}

/// Runs (or resumes) an execution to its end.
pub async fn execute(topo: Arc<Topology>, state: Arc<State>, clients: Arc<Clients>, id: &str) -> Result<Ended, Error> {
    let row = state.execution(id)?;
    let decl: Declaration = serde_json::from_str(&row.options)
        .map_err(|e| Error::CorruptJournal { execution: id.to_string(), why: format!("its declaration: {e}") })?;
    // Re-plan exactly as declared; placements recorded by this very run are
    // ignored so the steps come out the same on resume.
    let plan = plan_with(
        &topo,
        &decl.scope(),
        &observations_before(&topo, &*state, &row)?,
        decl.parallel,
        Policy::Prioritised,
    )
    .map_err(|e| Error::BadRequest(e.to_string()))?;
    let specs = steps(&topo, &plan, id);
    let recorded = state.steps(id)?;
    if recorded.len() != specs.len() || recorded.iter().zip(&specs).any(|(r, s)| r.id != s.id) {
        return Err(Error::BadRequest(format!(
            "execution {id} was planned from a different topology; restore the file it was declared with to resume it"
        )));
    }
    let lost_zones = decl.lost_zones(&topo);
    let actions = Arc::new(RealActions {
        topo: topo.clone(),
        state: state.clone(),
        clients,
        lost_zones,
        targets: decl.targets.clone(),
    });
    let engine = Engine::new(state.clone(), actions, decl.parallel);
    engine.run(id, &specs).await.map_err(|e| match e {
        drctl_engine::Error::State(s) => Error::State(s),
        other => Error::Engine { execution: id.to_string(), source: other },
    })
}

/// The placements as they were when an execution was declared: the plan
/// it executes, as JSON, says where each datastore moved from.
fn observations_before(topo: &Topology, state: &State, row: &ExecutionRow) -> Result<Observations, Error> {
    let mut obs = observations(topo, state)?;
    if let Ok(plan) = serde_json::from_str::<drctl_core::plan::Plan>(&row.plan) {
        for s in &plan.steps {
            let (Some(id), Some(from)) =
                (topo.entity_id(&s.entity), s.from_zone.as_deref().and_then(|z| topo.zone_id(z)))
            else {
                continue;
            };
            if let Some(p) = obs.placement.get_mut(&id) {
                if p.primary != from {
                    let old = p.primary;
                    p.primary = from;
                    p.replicas.retain(|&z| z != from);
                    p.replicas.push(old);
                }
            }
        }
    }
    Ok(obs)
}

/// The actions that act on the world.
struct RealActions {
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    /// The zones the declaration lost (routes answer with the others).
    lost_zones: Vec<String>,
    /// Entities named with `--target`: they move even when nothing is lost.
    targets: Vec<String>,
}

fn param<'a>(step: &'a StepSpec, key: &str) -> Option<&'a str> {
    step.with.get(key).and_then(|v| v.as_str())
}

fn duration_param(step: &StepSpec, key: &str, default: Duration) -> Result<Duration, ActionError> {
    match step.with.get(key) {
        None => Ok(default),
        Some(serde_json::Value::Number(n)) => Ok(Duration::from_secs_f64(n.as_f64().unwrap_or(0.0).max(0.0))),
        Some(serde_json::Value::String(s)) => drctl_core::duration::parse_duration(s).map_err(ActionError::Fatal),
        Some(other) => Err(ActionError::Fatal(format!("`{key}`: {other} is not a duration"))),
    }
}

fn provider_error(e: drctl_providers::Error) -> ActionError {
    match e {
        drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. } => {
            ActionError::Transient(e.to_string())
        }
        other => ActionError::Fatal(other.to_string()),
    }
}

fn aws_error(e: drctl_aws::Error) -> ActionError {
    match e {
        drctl_aws::Error::Api { transient: true, .. } => ActionError::Transient(e.to_string()),
        other => ActionError::Fatal(other.to_string()),
    }
}

impl RealActions {
    fn datastore(&self, step: &StepSpec) -> Result<(&str, &drctl_core::topology::Datastore), ActionError> {
        let name = param(step, "datastore").unwrap_or(&step.entity);
        let id = self.topo.entity_id(name).ok_or_else(|| ActionError::Fatal(format!("no datastore {name}")))?;
        match &self.topo.entity(id).spec {
            EntitySpec::Datastore(d) => Ok((&self.topo.entity(id).name, d)),
            EntitySpec::Service(_) => Err(ActionError::Fatal(format!("{name} is a service, not a datastore"))),
        }
    }

    fn to_zone<'a>(&self, step: &'a StepSpec) -> Result<&'a str, ActionError> {
        param(step, "to_zone")
            .or(step.to_zone.as_deref())
            .ok_or_else(|| ActionError::Fatal("no zone to fail over to".into()))
    }

    fn wait_for(step: &StepSpec) -> Duration {
        step.timeout.unwrap_or(Duration::from_secs(600))
    }

    /// Points a service's route53 record at the zones outside the scope.
    async fn switch_route(&self, route: &drctl_core::topology::Route, wait: Duration) -> Result<String, ActionError> {
        let values: Vec<String> = route
            .records
            .iter()
            .filter(|(z, _)| !self.lost_zones.contains(&self.topo.zones[*z].name))
            .map(|(_, v)| v.clone())
            .collect();
        if values.is_empty() {
            return Err(ActionError::Fatal(format!("every zone of {} is lost: no record to answer with", route.name)));
        }
        if route.kind == RouteKind::LabDns {
            let server = route
                .server
                .as_deref()
                .ok_or_else(|| ActionError::Fatal("the lab-dns route has no `server`".into()))?;
            let zone = route.zone_id.clone().unwrap_or_else(|| drctl_providers::dns::parent_zone(&route.name));
            let timeout = wait.min(Duration::from_secs(10));
            return drctl_providers::dns::replace_a(server, &zone, &route.name, route.ttl as u32, &values, timeout)
                .await
                .map_err(|e| match e {
                    drctl_providers::Error::Refused(m) => ActionError::Fatal(m),
                    other => ActionError::Transient(other.to_string()),
                });
        }
        let zone_id = route.zone_id.as_deref().ok_or_else(|| ActionError::Fatal("the route has no zone_id".into()))?;
        let client = drctl_aws::route53::client(self.clients.sdk().await);
        drctl_aws::route53::upsert(&client, zone_id, &route.name, &route.record_type, route.ttl as i64, &values, wait)
            .await
            .map_err(aws_error)
    }

    /// The route a `route53.*` step means: its `service`, else the service
    /// whose route has this zone and name, else the step's own entity.
    fn route_for(&self, step: &StepSpec) -> Option<drctl_core::topology::Route> {
        let routes = self.topo.services().filter_map(|(_, e, s)| s.route.clone().map(|r| (e.name.clone(), r)));
        let by_service = param(step, "service").or(Some(&step.entity));
        let (zone_id, name) = (param(step, "zone_id"), param(step, "name"));
        let all: Vec<(String, drctl_core::topology::Route)> = routes.collect();
        all.iter()
            .find(|(_, r)| {
                zone_id.is_some()
                    && r.zone_id.as_deref() == zone_id
                    && Some(r.name.trim_end_matches('.')) == name.map(|n| n.trim_end_matches('.'))
            })
            .or_else(|| all.iter().find(|(svc, _)| Some(svc.as_str()) == by_service))
            .map(|(_, r)| r.clone())
    }

    async fn health(&self, url: &str, within: Duration, interval: Duration) -> Result<Note, ActionError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match http::check(self.clients.http(), url, Duration::from_secs(5)).await {
                Ok(()) => return Ok(Some(format!("{url} healthy"))),
                Err(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(ActionError::Transient(format!("not healthy within {}s: {why}", within.as_secs_f64())))
                }
                Err(_) => tokio::time::sleep(interval).await,
            }
        }
    }

    async fn promote(&self, step: &StepSpec) -> Result<Note, ActionError> {
        let name = param(step, "datastore").unwrap_or(&step.entity);
        let (members, _) = pg_members(&self.topo, name)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
        let to = param(step, "to_zone")
            .or(step.to_zone.as_deref())
            .ok_or_else(|| ActionError::Fatal("no zone to promote in".into()))?;
        let target = members
            .iter()
            .find(|m| m.zone == to)
            .ok_or_else(|| ActionError::Fatal(format!("`{name}` has no member in {to}")))?;
        // Fence before promote: never two writable primaries.
        let mut notes = Vec::new();
        for m in members.iter().filter(|m| m.zone != to) {
            match postgres::fence(&m.url, Duration::from_secs(5)).await {
                Ok(what) => notes.push(format!("{}: {what}", m.zone)),
                Err(drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. }) => {
                    notes.push(format!("{}: unreachable, not fenced", m.zone))
                }
                Err(e) => return Err(ActionError::Fatal(format!("fencing {} failed, not promoting: {e}", m.zone))),
            }
        }
        let what = postgres::promote(&target.url, step.timeout.unwrap_or(Duration::from_secs(60)))
            .await
            .map_err(provider_error)?;
        self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
        notes.push(format!("{to}: {what}"));
        Ok(Some(notes.join("; ")))
    }
}

impl Actions for RealActions {
    fn run<'a>(&'a self, _execution: &'a str, step: &'a StepSpec) -> BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            let Some(action) = Action::parse(&step.action) else {
                return Err(ActionError::Fatal(format!("unknown action `{}`", step.action)));
            };
            match action {
                Action::Wait => {
                    let d = duration_param(step, "for", Duration::ZERO)?;
                    tokio::time::sleep(d).await;
                    Ok(Some(format!("waited {}", drctl_core::duration::format_duration(d))))
                }
                Action::Exec => {
                    let argv: Vec<String> = step
                        .with
                        .get("command")
                        .and_then(|c| c.as_array())
                        .map(|a| {
                            a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect()
                        })
                        .unwrap_or_default();
                    let (prog, args) = argv
                        .split_first()
                        .ok_or_else(|| ActionError::Fatal("`command` must be a non-empty list".into()))?;
                    let mut cmd = tokio::process::Command::new(prog);
                    cmd.args(args).kill_on_drop(true);
                    if let Some(dir) = param(step, "cwd") {
                        cmd.current_dir(dir);
                    }
                    if let Some(env) = step.with.get("env").and_then(|e| e.as_object()) {
                        for (k, v) in env {
                            cmd.env(k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                        }
                    }
                    let out = cmd.output().await.map_err(|e| ActionError::Fatal(format!("cannot run {prog}: {e}")))?;
                    if out.status.success() {
                        Ok(Some(format!("{prog} exited 0")))
                    } else {
                        let err = String::from_utf8_lossy(&out.stderr);
                        let tail: String = err
                            .lines()
                            .rev()
                            .take(3)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join(" | ");
                        Err(ActionError::Fatal(format!("{prog} exited {}: {tail}", out.status.code().unwrap_or(-1))))
                    }
                }
                Action::HttpHealth => {
                    let url = param(step, "url").ok_or_else(|| ActionError::Fatal("`url` is required".into()))?;
                    let within = duration_param(step, "within", Duration::from_secs(60))?;
                    let interval = duration_param(step, "interval", Duration::from_millis(500))?;
                    self.health(url, within, interval).await
                }
                Action::HttpRequest | Action::Notify => {
                    let url = param(step, "url").ok_or_else(|| ActionError::Fatal("`url` is required".into()))?;
                    let client = self.clients.http();
                    let method = if step.action == "notify" { "POST" } else { param(step, "method").unwrap_or("GET") };
                    let mut req = client.request(
                        reqwest::Method::from_bytes(method.as_bytes())
                            .map_err(|e| ActionError::Fatal(e.to_string()))?,
                        url,
                    );
                    if step.action == "notify" {
                        let text = param(step, "text").unwrap_or("drctl");
                        let mut body = serde_json::json!({ "text": text });
                        if let Some(c) = param(step, "channel") {
                            body["channel"] = c.into();
                        }
                        req = req.json(&body);
                    } else if let Some(b) = step.with.get("body") {
                        req = if b.is_string() {
                            req.body(b.as_str().unwrap_or_default().to_string())
                        } else {
                            req.json(b)
                        };
                    }
                    if let Some(h) = step.with.get("headers").and_then(|h| h.as_object()) {
                        for (k, v) in h {
                            req = req.header(k, v.as_str().unwrap_or_default());
                        }
                    }
                    let resp = req
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .map_err(|e| ActionError::Transient(format!("{url}: {e}")))?;
                    let status = resp.status().as_u16();
                    let expected = step.with.get("expect_status").and_then(|v| v.as_u64());
                    let ok = expected.map_or((200..300).contains(&status), |e| e == u64::from(status));
                    match (ok, status) {
                        (true, _) => Ok(Some(format!("{method} {url}: {status}"))),
                        (false, s) if s >= 500 || s == 429 => {
                            Err(ActionError::Transient(format!("{method} {url}: {s}")))
                        }
                        (false, s) => Err(ActionError::Fatal(format!("{method} {url}: {s}"))),
                    }
                }
                Action::PostgresFence => {
                    let name = param(step, "datastore").unwrap_or(&step.entity);
                    let (members, _) = pg_members(&self.topo, name)
                        .ok_or_else(|| ActionError::Fatal(format!("`{name}` is not a postgres datastore")))?;
                    let zone = param(step, "zone").or(step.from_zone.as_deref());
                    let m = members
                        .iter()
                        .find(|m| Some(m.zone.as_str()) == zone)
                        .or(members.first())
                        .ok_or_else(|| ActionError::Fatal("no member".into()))?;
                    match postgres::fence(&m.url, Duration::from_secs(5)).await {
                        Ok(what) => Ok(Some(what)),
                        Err(drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. }) => {
                            Ok(Some(format!(
                                "the old primary in {} is unreachable: skipped (it cannot accept writes either)",
                                m.zone
                            )))
                        }
                        Err(e) => Err(ActionError::Fatal(e.to_string())),
                    }
                }
                Action::PostgresPromote => self.promote(step).await,
                Action::RdsPromoteReadReplica => {
                    let (name, ds) = self.datastore(step)?;
                    let to = self.to_zone(step)?;
                    let instance = ds
                        .replicas
                        .iter()
                        .find(|m| self.topo.zones[m.zone].name == to)
                        .and_then(|m| match &m.location {
                            Location::RdsInstance { instance } => Some(instance.clone()),
                            _ => None,
                        })
                        .ok_or_else(|| ActionError::Fatal(format!("{name} has no replica instance in {to}")))?;
                    let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
                    let what = drctl_aws::rds::promote_read_replica(&client, &instance, Self::wait_for(step))
                        .await
                        .map_err(aws_error)?;
                    self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
                    Ok(Some(what))
                }
                Action::RdsFailoverDbCluster => {
                    let (name, ds) = self.datastore(step)?;
                    let cluster =
                        ds.cluster.clone().ok_or_else(|| ActionError::Fatal(format!("{name} has no cluster")))?;
                    let client = drctl_aws::rds::Rds::new(self.clients.sdk().await, ds.region.as_deref());
                    let zones = crate::live::zone_map(&self.topo);
                    let members =
                        drctl_aws::rds::cluster_members(&client, &cluster, &zones).await.map_err(aws_error)?;
                    let writer = members.iter().find(|(_, w, _)| *w).map(|(i, _, z)| (i.id.clone(), z.clone()));
                    // A targeted cluster moves off its writer; on a zone loss it
                    // moves only when the writer is in a lost zone.
                    let targeted = self.targets.iter().any(|t| t == name);
                    if let Some((id, zone)) = &writer {
                        if !targeted && !self.lost_zones.contains(zone) {
                            self.state.set_placement(name, zone).map_err(|e| ActionError::Transient(e.to_string()))?;
                            return Ok(Some(format!("{id} in {zone} already writes, outside the lost zones")));
                        }
                    }
                    let wanted = param(step, "to_zone").or(step.to_zone.as_deref());
                    let candidates: Vec<_> = members
                        .iter()
                        .filter(|(i, _, z)| {
                            !self.lost_zones.contains(z) && writer.as_ref().is_none_or(|(w, _)| *w != i.id)
                        })
                        .collect();
                    let target = candidates
                        .iter()
                        .find(|(_, _, z)| wanted.is_none_or(|w| w == z))
                        .or(candidates.first())
                        .ok_or_else(|| {
                            ActionError::Fatal(format!("{cluster} has no other member outside the lost zones"))
                        })?;
                    let what =
                        drctl_aws::rds::failover_cluster(&client, &cluster, &target.0.id, &zones, Self::wait_for(step))
                            .await
                            .map_err(aws_error)?;
                    self.state.set_placement(name, &target.2).map_err(|e| ActionError::Transient(e.to_string()))?;
                    Ok(Some(what))
                }
                Action::S3PromoteReplica => {
                    let (name, ds) = self.datastore(step)?;
                    let to = self.to_zone(step)?;
                    // Any bucket of the datastore but the current primary's: after a
                    // failover, failing back promotes the topology's own primary bucket.
                    if !ds.primary.iter().chain(&ds.replicas).any(|m| self.topo.zones[m.zone].name == to) {
                        return Err(ActionError::Fatal(format!("{name} has no bucket in {to}")));
                    }
                    self.state.set_placement(name, to).map_err(|e| ActionError::Transient(e.to_string()))?;
                    Ok(Some(format!("the bucket in {to} is now the primary; replication copies from it")))
                }
                Action::Route53Upsert => {
                    let zone_id =
                        param(step, "zone_id").ok_or_else(|| ActionError::Fatal("`zone_id` is required".into()))?;
                    let name = param(step, "name").ok_or_else(|| ActionError::Fatal("`name` is required".into()))?;
                    let values: Vec<String> = step
                        .with
                        .get("values")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
                        })
                        .unwrap_or_default();
                    let rtype = param(step, "type").unwrap_or("A");
                    let ttl = step.with.get("ttl").and_then(|t| t.as_i64()).unwrap_or(60);
                    let client = drctl_aws::route53::client(self.clients.sdk().await);
                    drctl_aws::route53::upsert(&client, zone_id, name, rtype, ttl, &values, Self::wait_for(step))
                        .await
                        .map(Some)
                        .map_err(aws_error)
                }
                Action::Route53Failover => {
                    let route = self.route_for(step).ok_or_else(|| {
                        ActionError::Fatal("no service route matches this step's zone_id and name".into())
                    })?;
                    self.switch_route(&route, Self::wait_for(step)).await.map(Some)
                }
                Action::DnsFailover => {
                    let name = param(step, "service").unwrap_or(&step.entity);
                    let route = self
                        .topo
                        .entity_id(name)
                        .and_then(|i| match &self.topo.entity(i).spec {
                            EntitySpec::Service(svc) => svc.route.clone(),
                            EntitySpec::Datastore(_) => None,
                        })
                        .filter(|r| r.kind == RouteKind::LabDns)
                        .ok_or_else(|| ActionError::Fatal(format!("service `{name}` has no lab-dns route")))?;
                    self.switch_route(&route, Self::wait_for(step)).await.map(Some)
                }
                Action::ServiceFailover => {
                    let name = param(step, "service").unwrap_or(&step.entity);
                    let e = self.topo.entity(
                        self.topo.entity_id(name).ok_or_else(|| ActionError::Fatal(format!("no service {name}")))?,
                    );
                    let EntitySpec::Service(svc) = &e.spec else {
                        return Err(ActionError::Fatal(format!("{name} is not a service")));
                    };
                    let mut notes = Vec::new();
                    if let Some(route) = &svc.route {
                        notes.push(self.switch_route(route, Self::wait_for(step)).await?);
                    }
                    if let Some(h) = &svc.health {
                        if let Some(n) =
                            self.health(&h.url, Duration::from_secs(60), Duration::from_millis(250)).await?
                        {
                            notes.push(n);
                        }
                    }
                    if notes.is_empty() {
                        notes.push("no route or health check to act on".into());
                    }
                    Ok(Some(notes.join("; ")))
                }
                // The engine waits for approvals itself; one never reaches here.
                Action::Approval => Err(ActionError::Fatal("an approval is the engine's to wait for".into())),
            }
        })
    }
}

/// RFC 3339 in UTC, seconds with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// SPEC §6's `show` JSON, with the measured RTO of each entity: seconds from
/// the declaration to its last step's success.
pub fn report(topo: Option<&Topology>, state: &State, id: &str) -> Result<serde_json::Value, Error> {
    let row = state.execution(id)?;
    let steps = state.steps(id)?;
    let since = |t: SystemTime| t.duration_since(row.declared_at).unwrap_or_default().as_secs_f64();
    let mut entities: Vec<serde_json::Value> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for s in &steps {
        if !names.contains(&s.entity.as_str()) {
            names.push(&s.entity);
        }
    }
    for name in names {
        let mine: Vec<_> = steps.iter().filter(|s| s.entity == name).collect();
        let done = mine.iter().all(|s| s.state == drctl_state::journal::StepState::Succeeded);
        let rto = done.then(|| mine.iter().filter_map(|s| s.finished_at).map(since).fold(0.0, f64::max));
        let target = topo.and_then(|t| t.entity(t.entity_id(name)?).targets.rto).map(|d| d.as_secs_f64());
        let meets = match (rto, target) {
            (Some(r), Some(t)) => r <= t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        entities.push(serde_json::json!({ "name": name, "rto_s": rto, "rto_target_s": target, "meets_rto": meets }));
    }
    let rto = row.finished_at.filter(|_| row.state == exec_state::SUCCEEDED).map(since);
    Ok(serde_json::json!({
        "id": row.id,
        "state": row.state,
        "reason": row.reason,
        "declared_at": rfc3339(row.declared_at),
        "finished_at": row.finished_at.map(rfc3339),
        "rto_s": rto,
        "entities": entities,
        "steps": steps.iter().map(|s| serde_json::json!({
            "id": s.id, "entity": s.entity, "action": s.action, "state": s.state.as_str(), "attempts": s.attempts,
            "started_at": s.started_at.map(rfc3339), "finished_at": s.finished_at.map(rfc3339),
            "error": s.error, "note": s.note,
        })).collect::<Vec<_>>(),
    }))
}
