//! A declaration's plan, its checks, its journal and its execution.
//!
//! Order of business, and why: plan from the world as drctl last recorded
//! it (primaries moved by earlier failovers); run every check that can
//! refuse the run (a replica behind `max_lag`, an unreachable standby, an
//! AWS resource that does not answer: [`crate::preflight`]) before anything
//! in the world changes, so a refused run leaves the world as it found it;
//! then journal the execution, lock its entities, and let the engine run
//! it through the actions ([`crate::actions`]). Callers go through
//! [`crate::declare::Declarer`], the one path of every declaration.

pub use crate::declaration::{Check, Declaration};
use crate::live::Clients;
use crate::overrides::{self, Overrides};
pub use crate::times::rfc3339;
use crate::Error;
use drctl_core::action::{Action, Approver, Call};
use drctl_core::plan::{plan_with, DetailedPlan, Observations, Placement};
use drctl_core::runbook::{OnFailure, RunbookStep};
use drctl_core::schedule::Policy;
use drctl_core::topology::{EntitySpec, RouteKind, Topology};
use drctl_engine::{Ended, Engine, StepSpec};
use drctl_providers::postgres;
use drctl_state::journal::{exec_state, ExecutionRow};
use drctl_state::State;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
            let checks_the_world = Action::parse(&s.action).is_some_and(|a| a.checks_the_world());
            // The runbook's own `on_failure` wins over its entity's.
            let on_failure = match (rb.is_some(), entity.failover.runbook.as_ref()) {
                (true, Some(r)) if r.on_failure != OnFailure::Pause => r.on_failure,
                _ => entity.failover.on_failure.unwrap_or_default(),
            };
            let rerun_safe = checks_the_world || rb.is_some_and(|st| st.idempotent);
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
                rerun_safe,
                continue_on_failure: on_failure == OnFailure::Continue,
            }
        })
        .collect()
}

/// Plans and runs every check that can refuse the run, at `now` on the
/// declarer's clock (the age of a recorded lag). Changes nothing.
pub async fn prepare(
    topo: &Topology,
    state: &State,
    clients: &Clients,
    decl: &Declaration,
    incident: &str,
    now: SystemTime,
) -> Result<Prepared, Error> {
    let mut obs = observations(topo, state)?;
    let mut checks = Vec::new();
    crate::preflight::discover_clusters(topo, clients, decl, &mut obs, &mut checks).await;
    let plan =
        plan_with(topo, &decl.scope(), &obs, decl.parallel, Policy::Prioritised).map_err(crate::Request::Scope)?;
    let specs = steps(topo, &plan, incident);
    for s in &specs {
        checks.extend(step_checks(topo, state, decl, s, now).await?);
    }
    crate::preflight::aws_preflight(topo, clients, decl, &specs, &mut checks).await;
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

/// The checks of one step that can refuse the run (an unknown action, a
/// lab DNS server that does not answer, a postgres promote's fence and lag
/// checks): what [`prepare`] runs for each step, and readiness for each
/// step of every scope, concurrently. Changes nothing.
pub(crate) async fn step_checks(
    topo: &Topology,
    state: &State,
    decl: &Declaration,
    s: &StepSpec,
    now: SystemTime,
) -> Result<Vec<Check>, Error> {
    let mut checks = Vec::new();
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
                checks.push(crate::preflight::lab_dns_check(&s.id, route).await);
            }
        }
    }
    if action == Some(Action::PostgresPromote) {
        let name = s.with.get("datastore").and_then(|v| v.as_str()).unwrap_or(&s.entity);
        let Some((members, max_lag, _)) = crate::fence::pg_datastore(topo, name) else { return Ok(checks) };
        // The standby that will really be promoted: a runbook's `to_zone` wins.
        let Some(to) = s.with.get("to_zone").and_then(|v| v.as_str()).or(s.to_zone.as_deref()) else {
            return Ok(checks);
        };
        checks.extend(pg_promote_checks(state, now, decl, &s.id, name, &members, max_lag, to).await?);
    }
    Ok(checks)
}

/// A postgres promote's checks: every other member can be fenced, and the
/// standby to promote answers, is a standby and is within `max_lag`, as
/// [`crate::lag`] judges it (measured now when the primary answers, else
/// from the evidence in `state`, at `now` on the declarer's clock). This
/// look is recorded as evidence too.
#[allow(clippy::too_many_arguments)]
async fn pg_promote_checks(
    state: &State,
    now: SystemTime,
    decl: &Declaration,
    subject: &str,
    name: &str,
    members: &[postgres::Member],
    max_lag: Option<Duration>,
    to: &str,
) -> Result<Vec<Check>, Error> {
    let mut checks = crate::fence::fence_checks(&decl.overrides, subject, name, members, to).await;
    let (look, measured) = postgres::standby_lag(members, to, Duration::from_secs(5)).await;
    // This look is evidence like any sample: a primary seen dark now
    // dates the darkness for the promote-time check and later declarations.
    let samples = crate::lag::wal_samples(measured.primary_zone.as_deref(), &measured.replicas, now);
    if measured.primary_zone.is_some() || matches!(look, postgres::LagCheck::PrimaryUnreachable) {
        state.record_wal_samples(name, &samples)?;
    }
    let judged = match look {
        postgres::LagCheck::Measured(l) => crate::lag::judge_measured(to, l, max_lag, decl.accepts_lag()),
        postgres::LagCheck::PrimaryUnreachable => {
            let evidence = state.lag_evidence(name, to)?;
            crate::lag::judge_dark(to, evidence.as_ref(), now, max_lag, decl.accepts_lag(), None)
        }
        postgres::LagCheck::StandbyUnreachable(why) => {
            checks.push(Check {
                subject: subject.into(),
                ok: false,
                detail: format!("the standby in {to} cannot be promoted: {why}"),
            });
            return Ok(checks);
        }
        postgres::LagCheck::NotAStandby(why) => {
            // Not even --force: this would silently lose data.
            checks.push(Check {
                subject: subject.into(),
                ok: false,
                detail: format!("the member in {to} is not a standby ({why})"),
            });
            return Ok(checks);
        }
    };
    let (ok, detail) = match judged.refusal {
        Some(why) => (false, format!("{why}; nothing was changed")),
        None => (true, judged.words),
    };
    checks.push(Check { subject: subject.into(), ok, detail });
    Ok(checks)
}

/// What in the declared scope still looks alive: a PostgreSQL primary in a
/// lost zone that answers and takes writes, a service passing its health
/// check in one. Shown before the confirmation, so that a typo does not
/// fail a healthy zone over (docs/guide/safety.md, the tired commander).
pub async fn still_alive(topo: &Topology, state: &State, clients: &Clients, decl: &Declaration) -> Vec<String> {
    let lost = decl.lost_zones(topo);
    if lost.is_empty() {
        return Vec::new();
    }
    let placements = state.placements().unwrap_or_default();
    let mut alive = Vec::new();
    for (_, e, d) in topo.datastores() {
        if d.kind != drctl_core::topology::DatastoreKind::Postgres {
            continue;
        }
        let members = crate::live::postgres_members(topo, d);
        let primary_zone = placements
            .iter()
            .find(|(ds, _)| *ds == e.name)
            .map(|(_, z)| z.clone())
            .or_else(|| d.primary.as_ref().map(|m| topo.zones[m.zone].name.clone()));
        let Some(m) = members.iter().find(|m| Some(&m.zone) == primary_zone.as_ref() && lost.contains(&m.zone)) else {
            continue;
        };
        if postgres::is_open_primary(&m.url, Duration::from_secs(2)).await {
            alive.push(format!("{}: the primary in {} answers and takes writes", e.name, m.zone));
        }
    }
    let checks: Vec<(String, String, Duration)> = topo
        .services()
        .flat_map(|(_, e, s)| zone_health(topo, s, &lost).into_iter().map(|(url, t)| (e.name.clone(), url, t)))
        .collect();
    let results = futures::future::join_all(
        checks
            .iter()
            .map(|(_, url, t)| drctl_providers::http::check(clients.http(), url, (*t).min(Duration::from_secs(2)))),
    )
    .await;
    for ((name, url, _), r) in checks.iter().zip(results) {
        if r.is_ok() {
            alive.push(format!("{name}: passes its health check ({url})"));
        }
    }
    alive
}

/// The health checks that speak for a service in the lost zones alone:
/// each lost zone's own URL (`health: { zones: ... }`), or its one URL
/// when the service runs in one zone only, and that zone is lost. A URL
/// shared by several zones (a front door, a load balancer) answers from
/// whichever zone is left, so it passing says nothing about the declared
/// zone and listing it would alarm on every declaration.
fn zone_health(topo: &Topology, s: &drctl_core::topology::Service, lost: &[String]) -> Vec<(String, Duration)> {
    let Some(h) = s.health.as_ref() else { return Vec::new() };
    let is_lost = |z: usize| lost.contains(&topo.zones[z].name);
    if !h.zones.is_empty() {
        return h.zones.iter().filter(|(z, _)| is_lost(*z)).map(|(_, u)| (u.clone(), h.timeout)).collect();
    }
    match (s.zones.as_slice(), &h.url) {
        ([only], Some(url)) if is_lost(*only) => vec![(url.clone(), h.timeout)],
        _ => Vec::new(),
    }
}

/// A new execution id: time-ordered and readable (`20261125-225301-7f3a`).
pub fn new_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), (nanos ^ std::process::id()) & 0xffff)
}

/// Journals the execution and locks its entities; `by` declared it.
pub fn create(
    state: &State,
    id: &str,
    decl: &Declaration,
    prepared: &Prepared,
    at: SystemTime,
    by: &str,
) -> Result<(), Error> {
    let row = ExecutionRow {
        id: id.to_string(),
        declared_at: at,
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: decl.reason.clone(),
        plan: serde_json::to_string(&prepared.plan.plan).unwrap_or_default(),
        options: stored_options(decl, &prepared.specs, by),
    };
    let steps: Vec<(String, String, String)> =
        prepared.specs.iter().map(|s| (s.id.clone(), s.entity.clone(), s.action.clone())).collect();
    let mut entities: Vec<String> = prepared.specs.iter().map(|s| s.entity.clone()).collect();
    entities.dedup();
    state.create_execution(&row, &steps, &entities)?;
    Ok(())
}

/// The declaration as the journal keeps it, with who may approve each
/// approval step (`approvers`): an approval is decided from the journal
/// alone, without the topology, which may have changed since.
fn stored_options(decl: &Declaration, specs: &[StepSpec], by: &str) -> String {
    let mut options = serde_json::to_value(decl).unwrap_or_default();
    if let Some(o) = options.as_object_mut() {
        o.insert("declared_by".into(), by.into());
    }
    let approvers: serde_json::Map<String, serde_json::Value> = specs
        .iter()
        .filter(|s| s.action == drctl_engine::APPROVAL)
        .map(|s| (s.id.clone(), approver(s).as_str().into()))
        .collect();
    let reminders: serde_json::Map<String, serde_json::Value> = specs
        .iter()
        .filter(|s| s.action == drctl_engine::APPROVAL)
        .map(|s| (s.id.clone(), remind_after(s).as_secs_f64().into()))
        .collect();
    if let Some(o) = options.as_object_mut() {
        o.insert("approvers".into(), approvers.into());
        o.insert("remind_after".into(), reminders.into());
    }
    options.to_string()
}

/// How long an approval step may wait before the operators are reminded.
fn remind_after(spec: &StepSpec) -> Duration {
    match Call::decode(Action::Approval, spec.with.as_object().unwrap_or(&serde_json::Map::new())) {
        Ok(Call::Approval { remind_after, .. }) => remind_after,
        _ => drctl_core::action::DEFAULT_REMIND_AFTER,
    }
}

/// How long approval step `step` of an execution may wait before the
/// operators are reminded, from its journaled options (5 min when not kept).
pub fn remind_after_of(row: &ExecutionRow, step: &str) -> Duration {
    serde_json::from_str::<serde_json::Value>(&row.options)
        .ok()
        .and_then(|o| o["remind_after"][step].as_f64())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(drctl_core::action::DEFAULT_REMIND_AFTER)
}

/// Who may approve an approval step, as its runbook says.
fn approver(spec: &StepSpec) -> Approver {
    match Call::decode(Action::Approval, spec.with.as_object().unwrap_or(&serde_json::Map::new())) {
        Ok(Call::Approval { role, .. }) => role,
        _ => Approver::Commander,
    }
}

/// Who may approve step `step` of an execution, from its journaled
/// options; an execution journaled before approvers were kept, or a step
/// that is not an approval, is any commander's.
pub fn approver_of(row: &ExecutionRow, step: &str) -> Approver {
    serde_json::from_str::<serde_json::Value>(&row.options)
        .ok()
        .and_then(|o| o["approvers"][step].as_str().and_then(Approver::parse))
        .unwrap_or(Approver::Commander)
}

/// An execution's declaration and steps, planned again exactly as they
/// were declared (a changed topology that plans other steps is refused).
pub fn journaled(topo: &Topology, state: &State, id: &str) -> Result<(Declaration, Vec<StepSpec>), Error> {
    let row = state.execution(id)?;
    let mut decl: Declaration = serde_json::from_str(&row.options)
        .map_err(|e| Error::CorruptJournal { execution: id.to_string(), why: format!("its declaration: {e}") })?;
    // Overrides a commander added with `retry`, journaled with who added them.
    for e in state.events(id)? {
        if e.kind == drctl_engine::decide::kind::RETRIED {
            decl.overrides.merge(&overrides_in(e.detail.as_deref().unwrap_or("")));
        }
    }
    // Re-plan exactly as declared; placements recorded by this very run are
    // ignored so the steps come out the same on resume.
    let plan =
        plan_with(topo, &decl.scope(), &observations_before(topo, state, &row)?, decl.parallel, Policy::Prioritised)
            .map_err(crate::Request::Scope)?;
    let specs = steps(topo, &plan, id);
    let recorded = state.steps(id)?;
    if recorded.len() != specs.len() || recorded.iter().zip(&specs).any(|(r, s)| r.id != s.id) {
        return Err(crate::Request::TopologyChanged { execution: id.to_string() }.into());
    }
    Ok((decl, specs))
}

/// The overrides a journaled retry names (its detail lists the flags).
pub(crate) fn overrides_in(detail: &str) -> Overrides {
    let mut o = Overrides::default();
    for flag in overrides::named_in(detail) {
        match flag.as_str() {
            overrides::ACCEPT_LAG => o.accept_lag = true,
            overrides::SKIP_CATCH_UP => o.skip_catch_up = true,
            f => o.unfenced.extend(f.strip_prefix("--unfenced ").map(str::to_string)),
        }
    }
    o
}

/// Runs (or resumes) an execution to its end, or until it pauses.
pub async fn execute(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    clock: Arc<dyn drctl_runtime::Clock>,
    id: &str,
) -> Result<Ended, Error> {
    let (decl, specs) = journaled(&topo, &*state, id)?;
    let lost_zones = decl.lost_zones(&topo);
    let actions = Arc::new(crate::actions::RealActions {
        topo: topo.clone(),
        state: state.clone(),
        clients,
        lost_zones,
        targets: decl.targets.clone(),
        overrides: decl.overrides.clone(),
        clock: clock.clone(),
    });
    let engine = Engine::new(state.clone(), actions, decl.parallel).with_clock(clock);
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
            match obs.placement.get_mut(&id) {
                Some(p) if p.primary != from => {
                    let old = p.primary;
                    p.primary = from;
                    p.replicas.retain(|&z| z != from);
                    p.replicas.push(old);
                }
                Some(_) => {}
                // A placement seen only at declare time (an RDS cluster's
                // writer, asked of AWS): the plan recorded it.
                None => {
                    let to = s.to_zone.as_deref().and_then(|z| topo.zone_id(z));
                    obs.placement.insert(id, Placement { primary: from, replicas: to.into_iter().collect() });
                }
            }
        }
    }
    Ok(obs)
}

/// Every override an execution ran with, who gave it and when: those of
/// the declaration, then those each `retry` added.
pub fn overrides_used(state: &State, row: &ExecutionRow) -> Result<Vec<serde_json::Value>, Error> {
    let options: serde_json::Value = serde_json::from_str(&row.options).unwrap_or_default();
    let mut declared: Overrides = serde_json::from_value(options["overrides"].clone()).unwrap_or_default();
    // A restore's `--replace` keeps its `--unfenced` members in its request.
    for u in options["restore"]["unfenced"].as_array().into_iter().flatten().filter_map(|u| u.as_str()) {
        declared.unfenced.push(u.to_string());
    }
    let by = options["declared_by"].as_str().unwrap_or("unknown");
    let mut out: Vec<serde_json::Value> = declared
        .flags()
        .into_iter()
        .map(|f| serde_json::json!({"override": f, "by": by, "at": rfc3339(row.declared_at), "with": "declare"}))
        .collect();
    for e in state.events(&row.id)? {
        if e.kind != drctl_engine::decide::kind::RETRIED {
            continue;
        }
        let detail = e.detail.as_deref().unwrap_or("");
        let who = detail.strip_prefix("retried by ").and_then(|r| r.split_whitespace().next()).unwrap_or("unknown");
        for f in overrides_in(detail).flags() {
            out.push(serde_json::json!({
                "override": f, "by": who, "at": rfc3339(e.at),
                "with": format!("retry {}", e.step.as_deref().unwrap_or("")),
            }));
        }
    }
    Ok(out)
}

/// docs/declaring.md `show` JSON, with the measured RTO of each entity: seconds from
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
    let overrides = overrides_used(state, &row)?;
    // Old primaries found back after the failover, with what they hold
    // that the new primaries do not.
    let old_primaries: Vec<serde_json::Value> = state
        .events(id)?
        .into_iter()
        .filter(|e| e.kind == crate::returned::KIND)
        .map(|e| serde_json::json!({ "at": rfc3339(e.at), "step": e.step, "detail": e.detail }))
        .collect();
    Ok(serde_json::json!({
        "old_primaries": old_primaries,
        "id": row.id,
        "state": row.state,
        "reason": row.reason,
        "declared_at": rfc3339(row.declared_at),
        "finished_at": row.finished_at.map(rfc3339),
        "rto_s": rto,
        "overrides": overrides,
        "entities": entities,
        "steps": steps.iter().map(|s| serde_json::json!({
            "id": s.id, "entity": s.entity, "action": s.action, "state": s.state.as_str(), "attempts": s.attempts,
            "started_at": s.started_at.map(rfc3339), "finished_at": s.finished_at.map(rfc3339),
            "error": s.error, "note": s.note, "ran_by": s.ran_by,
        })).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, action: &str, with: serde_json::Value) -> StepSpec {
        StepSpec {
            id: id.into(),
            entity: "checkout".into(),
            action: action.into(),
            after: vec![],
            priority: 0.0,
            timeout: None,
            attempts: 1,
            backoff: Duration::ZERO,
            with,
            from_zone: None,
            to_zone: None,
            rerun_safe: false,
            continue_on_failure: false,
        }
    }

    /// Who may approve is journaled with the declaration, so a changed
    /// topology cannot loosen it; an execution journaled before it was
    /// kept, or a role drctl does not enforce, is any commander's.
    #[test]
    fn who_may_approve_travels_with_the_journaled_declaration() {
        let decl = Declaration {
            zones: vec!["az1".into()],
            regions: vec![],
            targets: vec![],
            reason: "drill".into(),
            overrides: Overrides::default(),
            parallel: None,
        };
        let specs = [
            spec("c/admin", "approval", serde_json::json!({"role": "admin"})),
            spec("c/any", "approval", serde_json::json!({"role": "dba-lead"})),
            spec("c/fence", "postgres.fence", serde_json::json!({"datastore": "db"})),
        ];
        let mut row = ExecutionRow {
            id: "x".into(),
            declared_at: SystemTime::UNIX_EPOCH,
            finished_at: None,
            state: "running".into(),
            reason: "drill".into(),
            plan: "{}".into(),
            options: stored_options(&decl, &specs, "alice"),
        };
        assert_eq!(approver_of(&row, "c/admin"), Approver::Admin);
        assert_eq!(approver_of(&row, "c/any"), Approver::Commander);
        assert_eq!(approver_of(&row, "c/fence"), Approver::Commander);
        let back: Declaration = serde_json::from_str(&row.options).unwrap();
        assert_eq!(back.zones, ["az1"], "the declaration still reads back for resume");
        row.options = serde_json::to_string(&decl).unwrap();
        assert_eq!(approver_of(&row, "c/admin"), Approver::Commander, "journaled before approvers were kept");
    }
}
