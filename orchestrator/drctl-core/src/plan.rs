//! The failover plan (docs/reference/cli.md): which entities a disaster affects, the steps
//! that recover them in dependency order, when each step would run, and
//! whether each entity's estimated RTO meets its target.
//!
//! Planning is pure: it reads the checked topology, the disaster scope and
//! what is known about the world right now ([`Observations`]: measured lag,
//! where primaries are after earlier failovers, discovered cluster members)
//! and does no I/O, so the same function serves `drctl plan`, `--dry-run`,
//! the engine and the benchmarks.

use crate::runbook::RunbookStep;
use crate::schedule::{self, Policy, Task};
use crate::topology::{EntityId, EntitySpec, Topology, ZoneId};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// What is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub zones: Vec<String>,
    pub regions: Vec<String>,
    pub targets: Vec<String>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.regions.is_empty() && self.targets.is_empty()
    }
}

/// Where a datastore's copies are right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub primary: ZoneId,
    pub replicas: Vec<ZoneId>,
}

/// What is known about the world beyond the topology file.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Measured replication lag per (datastore, replica zone).
    pub lag: HashMap<(EntityId, ZoneId), Duration>,
    /// Current placement of datastores whose primary moved since the file
    /// was written, or whose members were discovered (RDS clusters).
    pub placement: HashMap<EntityId, Placement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub entity: String,
    pub action: String,
    pub from_zone: Option<String>,
    pub to_zone: Option<String>,
    pub after: Vec<String>,
    pub estimate_s: f64,
    pub start_s: f64,
    pub finish_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntity {
    pub name: String,
    pub kind: String,
    pub tier: Option<String>,
    pub rto_estimate_s: f64,
    pub rto_target_s: Option<f64>,
    pub meets_rto: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unrecoverable {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scope: Scope,
    pub parallel: Option<usize>,
    /// In a topological order: every step after those in its `after`.
    pub steps: Vec<Step>,
    pub critical_path: Vec<String>,
    pub critical_path_s: f64,
    pub makespan_s: f64,
    pub entities: Vec<PlanEntity>,
    pub unrecoverable: Vec<Unrecoverable>,
}

impl Plan {
    /// True when every affected entity is recoverable and meets its RTO target.
    pub fn meets_objectives(&self) -> bool {
        self.unrecoverable.is_empty() && self.entities.iter().all(|e| e.meets_rto)
    }
}

/// The plan plus what the engine needs and JSON does not show.
#[derive(Debug, Clone)]
pub struct DetailedPlan {
    pub plan: Plan,
    /// Per step: its entity, and its runbook step when it has one.
    pub step_entities: Vec<EntityId>,
    pub runbook_steps: Vec<Option<usize>>,
    /// Per step: the scheduling input (durations in microseconds).
    pub tasks: Vec<Task>,
    pub from_zones: Vec<Option<ZoneId>>,
    pub to_zones: Vec<Option<ZoneId>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Unaffected,
    Affected { from: Option<ZoneId>, to: Option<ZoneId> },
    Unrecoverable(String),
}

/// Plans with the prioritised scheduler.
pub fn plan(topo: &Topology, scope: &Scope, obs: &Observations, parallel: Option<usize>) -> Result<Plan, Error> {
    plan_with(topo, scope, obs, parallel, Policy::Prioritised).map(|d| d.plan)
}

/// Plans with a chosen scheduling policy (the baseline exists for comparison).
pub fn plan_with(
    topo: &Topology,
    scope: &Scope,
    obs: &Observations,
    parallel: Option<usize>,
    policy: Policy,
) -> Result<DetailedPlan, Error> {
    if parallel == Some(0) {
        return Err(Error::ZeroParallel);
    }
    let lost_zone = resolve_scope(topo, scope)?;
    let targeted = targeted(topo, scope)?;
    let fate = fates(topo, obs, &lost_zone, &targeted);
    let Steps { mut steps, tasks, step_entities, runbook_steps, from_zones, to_zones } = steps(topo, &fate);

    let asap = schedule::schedule(&tasks, None, policy);
    let (path, path_len) = schedule::critical_path(&tasks, &asap);
    let sched = match parallel {
        None => asap,
        Some(_) => schedule::schedule(&tasks, parallel, policy),
    };
    for (i, s) in steps.iter_mut().enumerate() {
        s.start_s = secs(sched.start[i]);
        s.finish_s = secs(sched.finish[i]);
    }
    let (entities, unrecoverable) = outcomes(topo, &fate, &step_entities, &sched.finish);
    let makespan = sched.makespan();
    let plan = Plan {
        scope: dedup_scope(scope),
        parallel,
        critical_path: path.iter().map(|&i| steps[i].id.clone()).collect(),
        critical_path_s: secs(path_len),
        makespan_s: secs(makespan),
        steps,
        entities,
        unrecoverable,
    };
    Ok(DetailedPlan { plan, step_entities, runbook_steps, tasks, from_zones, to_zones })
}

/// Microseconds, as the scheduler counts, in seconds, as a plan shows.
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Per entity: whether the scope names it as a target.
fn targeted(topo: &Topology, scope: &Scope) -> Result<Vec<bool>, Error> {
    let mut t = vec![false; topo.entities.len()];
    for name in &scope.targets {
        let id = topo.entity_id(name).ok_or_else(|| Error::UnknownTarget {
            name: name.clone(),
            hint: crate::diag::closest_name(name, topo.entities.iter().map(|e| e.name.as_str())).map(str::to_string),
        })?;
        t[id] = true;
    }
    Ok(t)
}

/// What the disaster does to each entity, in topological order (a
/// service's fate depends on its dependencies').
fn fates(topo: &Topology, obs: &Observations, lost_zone: &[bool], targeted: &[bool]) -> Vec<Fate> {
    let single_region = {
        let first = topo.zones.first().map(|z| z.region.as_str());
        topo.zones.iter().all(|z| Some(z.region.as_str()) == first).then_some(first).flatten()
    };
    let mut fate: Vec<Fate> = vec![Fate::Unaffected; topo.entities.len()];
    for &e in &topo.order {
        fate[e] = match &topo.entities[e].spec {
            EntitySpec::Datastore(ds) => datastore_fate(topo, obs, e, ds, lost_zone, targeted, single_region),
            EntitySpec::Service(svc) => service_fate(topo, e, svc, lost_zone, targeted, &fate),
        };
    }
    fate
}

/// A datastore fails over when its primary is lost (or it is a target), to
/// the replica outside the scope with the lowest measured lag.
fn datastore_fate(
    topo: &Topology,
    obs: &Observations,
    e: EntityId,
    ds: &crate::topology::Datastore,
    lost_zone: &[bool],
    targeted: &[bool],
    single_region: Option<&str>,
) -> Fate {
    let ent = &topo.entities[e];
    let placement = obs.placement.get(&e).cloned().or_else(|| {
        ds.primary
            .as_ref()
            .map(|p| Placement { primary: p.zone, replicas: ds.replicas.iter().map(|r| r.zone).collect() })
    });
    match placement {
        Some(pl) if lost_zone[pl.primary] || targeted[e] => {
            let best = pl
                .replicas
                .iter()
                .copied()
                .filter(|&z| !lost_zone[z] && z != pl.primary)
                .min_by_key(|&z| (obs.lag.get(&(e, z)).copied().unwrap_or(Duration::ZERO), z));
            match best {
                Some(to) => Fate::Affected { from: Some(pl.primary), to: Some(to) },
                None if pl.replicas.is_empty() => {
                    Fate::Unrecoverable(format!("{} has no replica to fail over to", ent.name))
                }
                None => Fate::Unrecoverable(format!("every replica of {} is in the disaster scope", ent.name)),
            }
        }
        Some(_) => Fate::Unaffected,
        None => {
            // An RDS cluster whose members are not discovered yet:
            // AWS moves its writer between zones by itself, so only a
            // target or the loss of its whole region concerns drctl.
            let region = ds.region.as_deref().or(single_region);
            let region_lost = region.is_some_and(|r| {
                topo.zones.iter().enumerate().filter(|(_, z)| z.region == r).all(|(i, _)| lost_zone[i])
            });
            match region {
                Some(r) if region_lost => {
                    Fate::Unrecoverable(format!("every member of {} is in the lost region {r}", ent.name))
                }
                _ if targeted[e] => Fate::Affected { from: None, to: None },
                _ => Fate::Unaffected,
            }
        }
    }
}

/// A service moves when one of its zones is lost, it is a target, or
/// something it depends on moves; it cannot when it has nowhere to go or a
/// dependency cannot recover.
fn service_fate(
    topo: &Topology,
    e: EntityId,
    svc: &crate::topology::Service,
    lost_zone: &[bool],
    targeted: &[bool],
    fate: &[Fate],
) -> Fate {
    let ent = &topo.entities[e];
    // `from`: the zone it leaves (a lost one, or its first when targeted);
    // `to`: its first zone that is neither lost nor the one it leaves.
    let from = svc
        .zones
        .iter()
        .copied()
        .find(|&z| lost_zone[z])
        .or_else(|| svc.zones.first().copied().filter(|_| targeted[e]));
    let to = svc.zones.iter().copied().find(|&z| !lost_zone[z] && Some(z) != from);
    let hit = from.is_some();
    let blockers: Vec<&str> = ent
        .depends_on
        .iter()
        .filter(|&&d| matches!(fate[d], Fate::Unrecoverable(_)))
        .map(|&d| topo.entities[d].name.as_str())
        .collect();
    let dep_affected = ent.depends_on.iter().any(|&d| matches!(fate[d], Fate::Affected { .. }));
    if hit && to.is_none() {
        Fate::Unrecoverable(if svc.zones.iter().all(|&z| lost_zone[z]) {
            format!("every zone of {} is in the disaster scope", ent.name)
        } else {
            format!("{} runs in no other zone to move to", ent.name)
        })
    } else if !blockers.is_empty() {
        Fate::Unrecoverable(format!("blocked by {}", blockers.join(", ")))
    } else if hit || targeted[e] || dep_affected {
        Fate::Affected { from, to }
    } else {
        Fate::Unaffected
    }
}

/// The steps of every affected entity and their scheduling input, index
/// for index.
struct Steps {
    steps: Vec<Step>,
    tasks: Vec<Task>,
    step_entities: Vec<EntityId>,
    runbook_steps: Vec<Option<usize>>,
    from_zones: Vec<Option<ZoneId>>,
    to_zones: Vec<Option<ZoneId>>,
}

/// Steps, in the entities' topological order: a runbook's steps, or one
/// failover step; each entity's first steps after its dependencies' last.
fn steps(topo: &Topology, fate: &[Fate]) -> Steps {
    let mut steps: Vec<Step> = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut step_entities = Vec::new();
    let mut runbook_steps = Vec::new();
    let mut from_zones = Vec::new();
    let mut to_zones = Vec::new();
    // Per entity: the indices of its last steps (those no other of its steps needs).
    let mut sinks: Vec<Vec<usize>> = vec![Vec::new(); topo.entities.len()];
    let zone_name = |z: Option<ZoneId>| z.map(|z| topo.zones[z].name.clone());
    for &e in &topo.order {
        let Fate::Affected { from, to } = fate[e] else {
            continue;
        };
        let ent = &topo.entities[e];
        let entry_preds: Vec<usize> = ent.depends_on.iter().flat_map(|&d| sinks[d].iter().copied()).collect();
        let deadline = ent.targets.rto.map(|d| d.as_micros() as u64);
        let tier = ent.effective_tier;
        let base = steps.len();
        let mut push = |id: String, action: &str, estimate: Duration, preds: Vec<usize>, rb: Option<usize>| {
            steps.push(Step {
                id,
                entity: ent.name.clone(),
                action: action.to_string(),
                from_zone: zone_name(from),
                to_zone: zone_name(to),
                after: Vec::new(),
                estimate_s: estimate.as_secs_f64(),
                start_s: 0.0,
                finish_s: 0.0,
            });
            tasks.push(Task { duration: estimate.as_micros() as u64, preds, deadline, tier });
            step_entities.push(e);
            runbook_steps.push(rb);
            from_zones.push(from);
            to_zones.push(to);
            steps.len() - 1
        };
        match &ent.failover.runbook {
            Some(rb) => {
                let order = runbook_order(&rb.steps);
                let mut index_of = vec![0usize; rb.steps.len()];
                for (k, &i) in order.iter().enumerate() {
                    index_of[i] = base + k;
                }
                for &i in &order {
                    let st: &RunbookStep = &rb.steps[i];
                    let preds = if st.needs.is_empty() {
                        entry_preds.clone()
                    } else {
                        st.needs.iter().map(|&n| index_of[n]).collect()
                    };
                    push(format!("{}/{}", ent.name, st.id), st.action.name(), st.estimate, preds, Some(i));
                }
                let needed: Vec<bool> =
                    (0..rb.steps.len()).map(|i| rb.steps.iter().any(|s| s.needs.contains(&i))).collect();
                sinks[e] = (0..rb.steps.len()).filter(|&i| !needed[i]).map(|i| index_of[i]).collect();
            }
            None => {
                let action = match &ent.spec {
                    EntitySpec::Datastore(ds) => ds.kind.promote_action(),
                    EntitySpec::Service(_) => crate::action::Action::ServiceFailover,
                };
                let action = action.name();
                let i = push(format!("{}/failover", ent.name), action, ent.failover.estimate, entry_preds, None);
                sinks[e] = vec![i];
            }
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        steps[i].after = t.preds.iter().map(|&p| steps[p].id.clone()).collect();
    }
    Steps { steps, tasks, step_entities, runbook_steps, from_zones, to_zones }
}

/// Per affected entity its RTO estimate against its target (when its
/// last step finishes), and every entity that cannot recover, with why.
fn outcomes(
    topo: &Topology,
    fate: &[Fate],
    step_entities: &[EntityId],
    finish: &[u64],
) -> (Vec<PlanEntity>, Vec<Unrecoverable>) {
    let mut finish_of: HashMap<EntityId, u64> = HashMap::new();
    for (i, &e) in step_entities.iter().enumerate() {
        let f = finish_of.entry(e).or_insert(0);
        *f = (*f).max(finish[i]);
    }
    let mut entities = Vec::new();
    let mut unrecoverable = Vec::new();
    for (e, ent) in topo.entities.iter().enumerate() {
        match &fate[e] {
            Fate::Unaffected => {}
            Fate::Unrecoverable(reason) => {
                unrecoverable.push(Unrecoverable { name: ent.name.clone(), reason: reason.clone() })
            }
            Fate::Affected { .. } => {
                let est = finish_of.get(&e).copied().unwrap_or(0);
                let target = ent.targets.rto.map(|d| d.as_micros() as u64);
                entities.push(PlanEntity {
                    name: ent.name.clone(),
                    kind: ent.kind_name().to_string(),
                    tier: ent.effective_tier.map(|t| topo.tiers[t].name.clone()),
                    rto_estimate_s: secs(est),
                    rto_target_s: target.map(secs),
                    meets_rto: target.is_none_or(|t| est <= t),
                });
            }
        }
    }
    (entities, unrecoverable)
}

/// Marks the zones a scope loses, or names the first zone or region that does not exist.
fn resolve_scope(topo: &Topology, scope: &Scope) -> Result<Vec<bool>, Error> {
    let mut lost = vec![false; topo.zones.len()];
    let zone_names = || topo.zones.iter().map(|z| z.name.as_str());
    for z in &scope.zones {
        let id = topo.zone_id(z).ok_or_else(|| Error::UnknownZone {
            name: z.clone(),
            known: zone_names().collect::<Vec<_>>().join(", "),
            hint: crate::diag::closest_name(z, zone_names()).map(str::to_string),
        })?;
        lost[id] = true;
    }
    for r in &scope.regions {
        let mut found = false;
        for (i, zone) in topo.zones.iter().enumerate() {
            if &zone.region == r {
                lost[i] = true;
                found = true;
            }
        }
        if !found {
            let mut regions: Vec<&str> = topo.zones.iter().map(|z| z.region.as_str()).collect();
            regions.dedup();
            let hint = crate::diag::closest_name(r, regions.iter().copied()).map(str::to_string);
            return Err(Error::UnknownRegion { name: r.clone(), known: regions.join(", "), hint });
        }
    }
    Ok(lost)
}

fn dedup_scope(scope: &Scope) -> Scope {
    fn dedup(v: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in v {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }
    Scope { zones: dedup(&scope.zones), regions: dedup(&scope.regions), targets: dedup(&scope.targets) }
}

/// A topological order of a runbook's steps (needs first), file order on ties.
fn runbook_order(steps: &[RunbookStep]) -> Vec<usize> {
    let mut done = vec![false; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    while order.len() < steps.len() {
        let before = order.len();
        for i in 0..steps.len() {
            if !done[i] && steps[i].needs.iter().all(|&n| done[n]) {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // Validation rejects cycles; never loop forever regardless.
            order.extend((0..steps.len()).filter(|&i| !done[i]));
            break;
        }
    }
    order
}
