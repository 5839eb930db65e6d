//! The one path every declaration takes, whoever makes it.
//!
//! The CLI (`drctl declare`), the operator API (`POST /api/v1/declare`) and
//! drills used to carry their own copies of "plan, check, journal, lock,
//! execute, record", and the copies drifted: a refusal was journaled by one,
//! only audited by another, and neither by a drill; only the API opened the
//! public incident SPEC §9 promises. Now they all call [`Declarer`] and
//! differ only in how they show progress.
//!
//! A declaration is two calls, because a human may stand between them:
//! [`Declarer::propose`] plans and runs every check that can refuse the run
//! (changing nothing), and [`Declarer::record`] decides: a refused or dry
//! run is journaled and audited and goes no further; an accepted one is
//! journaled, its entities locked, its incident opened and the request
//! audited. [`Declarer::run`] then executes it (or resumes it) and records
//! the outcome on its incident.

use crate::failover::{self, Declaration, Prepared};
use crate::live::Clients;
use crate::Error;
use drctl_core::action::Approver;
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_runtime::{Clock, SystemClock};
use drctl_state::controller::Role;
use drctl_state::journal::exec_state;
use drctl_state::State;
use serde_json::json;
use std::sync::Arc;

/// Who asks, and through what: kept with every audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, an OS user, `scheduler`, `drill`.
    pub name: String,
    /// `cli`, a client address, `controller`.
    pub source: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Actor {
        Actor { name: name.into(), source: source.into() }
    }

    /// The person at this terminal.
    pub fn cli() -> Actor {
        Actor::new(std::env::var("USER").unwrap_or_else(|_| "unknown".into()), "cli")
    }
}

/// Writes one audit entry. A change whose entry cannot be written does not
/// happen: callers write the entry before they act and stop on an error.
pub fn audit(state: &State, who: &Actor, action: &str, target: &str, request: &serde_json::Value) -> Result<(), Error> {
    state.audit(&who.name, &who.source, action, target, request)?;
    Ok(())
}

/// What customers are told about a declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentPolicy {
    /// Open a public incident for it (a real declaration).
    Open,
    /// Nothing public: a drill announces itself with its own incident.
    None,
}

/// A planned and checked declaration, not yet recorded.
pub struct Proposal {
    pub id: String,
    pub decl: Declaration,
    pub prepared: Prepared,
}

impl Proposal {
    pub fn refused(&self) -> bool {
        self.prepared.refused()
    }

    /// The failed checks, one line each.
    pub fn refusals(&self) -> Vec<String> {
        self.prepared.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.subject, c.detail)).collect()
    }

    fn request(&self, dry_run: bool) -> serde_json::Value {
        let d = &self.decl;
        json!({"zones": d.zones, "regions": d.regions, "targets": d.targets, "reason": d.reason,
               "dry_run": dry_run, "force": d.force, "accept_lag": d.accept_lag, "parallel": d.parallel})
    }
}

/// What [`Declarer::record`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A check failed: journaled as `refused`, audited; nothing changed.
    Refused,
    /// Every check passed, and nothing was meant to change: audited only.
    DryRun,
    /// Journaled and locked; [`Declarer::run`] executes it. A scope that
    /// moves nothing is journaled too (an execution of no steps): the
    /// declaration happened, and the record says so.
    Accepted { incident: Option<i64> },
}

/// Plans, checks, journals, locks, executes and records declarations.
#[derive(Clone)]
pub struct Declarer {
    pub topology: Arc<Topology>,
    pub state: Arc<State>,
    pub clients: Arc<Clients>,
    /// When a declaration is made and refused, and the engine's time.
    pub clock: Arc<dyn Clock>,
}

impl Declarer {
    pub fn new(topology: Arc<Topology>, state: Arc<State>, clients: Arc<Clients>) -> Declarer {
        Declarer { topology, state, clients, clock: Arc::new(SystemClock) }
    }

    /// The same declarer on `clock` (a controller's or a test's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Declarer {
        self.clock = clock;
        self
    }

    /// Plans the declaration and runs every check that can refuse it. Changes nothing.
    /// `id` names the execution (a drill's id); a fresh one is made otherwise.
    pub async fn propose(&self, decl: Declaration, id: Option<String>) -> Result<Proposal, Error> {
        if decl.scope().is_empty() {
            return Err(crate::Request::EmptyScope.into());
        }
        let id = id.unwrap_or_else(failover::new_id);
        let prepared =
            failover::prepare(&self.topology, &*self.state, &self.clients, &decl, &id, self.clock.now()).await?;
        Ok(Proposal { id, decl, prepared })
    }

    /// What in the proposal's scope still looks alive (see
    /// [`failover::still_alive`]); for the confirmation.
    pub async fn still_alive(&self, p: &Proposal) -> Vec<String> {
        failover::still_alive(&self.topology, &*self.state, &self.clients, &p.decl).await
    }

    /// Records the decision on a proposal; see [`Recorded`].
    pub fn record(
        &self,
        p: &Proposal,
        who: &Actor,
        dry_run: bool,
        incident: IncidentPolicy,
    ) -> Result<Recorded, Error> {
        if p.refused() {
            // Audited before it is journaled: an entry that cannot be
            // written stops the request, and a refusal changes nothing.
            let refusals = p.refusals();
            let mut request = p.request(dry_run);
            request["refused"] = json!(refusals);
            audit(&*self.state, who, "declare.refused", &format!("execution {}", p.id), &request)?;
            tracing::warn!(execution = %p.id, actor = %who.name, source = %who.source, ?refusals, dry_run, "declaration refused by the preflight");
            if !dry_run {
                failover::create(&*self.state, &p.id, &p.decl, &p.prepared, self.clock.now())?;
                self.state.set_execution_state(&p.id, exec_state::REFUSED, Some(self.clock.now()))?;
            }
            return Ok(Recorded::Refused);
        }
        if dry_run {
            audit(&*self.state, who, "declare.dry_run", "plan", &p.request(true))?;
            return Ok(Recorded::DryRun);
        }
        audit(&*self.state, who, "declare", &format!("execution {}", p.id), &p.request(false))?;
        failover::create(&*self.state, &p.id, &p.decl, &p.prepared, self.clock.now())?;
        tracing::info!(execution = %p.id, actor = %who.name, source = %who.source, zones = ?p.decl.zones, targets = ?p.decl.targets, steps = p.prepared.specs.len(), "declared");
        let incident = match incident {
            IncidentPolicy::None => None,
            IncidentPolicy::Open => Some(self.open_incident(p)?),
        };
        Ok(Recorded::Accepted { incident })
    }

    fn open_incident(&self, p: &Proposal) -> Result<i64, Error> {
        let topo = &self.topology;
        let mut services: Vec<String> = Vec::new();
        for s in &p.prepared.specs {
            if topo.services().any(|(_, e, _)| e.name == s.entity) && !services.contains(&s.entity) {
                services.push(s.entity.clone());
            }
        }
        let scope = p.decl.lost_zones(topo).into_iter().chain(p.decl.targets.clone()).collect::<Vec<_>>().join(", ");
        Ok(self.state.create_incident(
            &format!("Failover in progress: {scope}"),
            "identified",
            // The declaration's reason is internal (the journal and the audit
            // log keep it); customers read a plain statement, which operators
            // can follow with their own updates.
            "We have moved affected services to our other zones and are restoring them now.",
            &services,
            Some(&p.id),
        )?)
    }

    /// Executes (or resumes) a recorded execution to its end, then says on
    /// its incident how it ended.
    pub async fn run(&self, id: &str) -> Result<Ended, Error> {
        use tracing::Instrument;
        let run =
            failover::execute(self.topology.clone(), self.state.clone(), self.clients.clone(), self.clock.clone(), id);
        let result = run.instrument(tracing::info_span!("execution", execution = %id)).await;
        let (status, body) = match &result {
            Ok(Ended::Succeeded) => {
                let took = self
                    .state
                    .execution(id)
                    .ok()
                    .and_then(|r| r.finished_at.and_then(|f| f.duration_since(r.declared_at).ok()))
                    .unwrap_or_default();
                (
                    "monitoring",
                    format!(
                        "Failover completed in {:.1} s (execution {id}); we are watching the recovered services.",
                        took.as_secs_f64()
                    ),
                )
            }
            Ok(ended) => {
                ("identified", format!("The failover ended: {ended:?} (execution {id}); operators are on it."))
            }
            // Another process runs it now (a new leader, a lease holder):
            // customers hear how it ends from that one.
            Err(e) if handed_over(e) => return result,
            Err(e) => ("identified", format!("The failover stopped: {e} (execution {id}); operators are on it.")),
        };
        if let Some(incident) = self.state.incident_of_execution(id)? {
            self.state.update_incident(incident, status, &body)?;
        }
        result
    }

    /// Resumes an unfinished execution (audited); `Ok(None)` when it had already ended.
    pub async fn resume(&self, id: &str, who: &Actor) -> Result<Option<Ended>, Error> {
        let row = self.state.execution(id)?;
        if exec_state::is_final(&row.state) {
            return Ok(None);
        }
        audit(&*self.state, who, "resume", &format!("execution {id}"), &json!({}))?;
        self.run(id).await.map(Some)
    }
}

/// Decides on a waiting step; `Ok(false)` when that attempt was already
/// decided. An `approval` step is approved, by someone whose `role` is at
/// least the one its runbook names (`role: admin`); a step a crash caught
/// running (SPEC §6a) is run again, or, with `done`, recorded as done
/// without running. Needs no topology: the journal knows the step and who
/// may approve it.
///
/// `role` is the approver's: a token's through the operator API; the CLI,
/// which opens the state store itself, passes [`Role::Admin`] (whoever can
/// write the store can do anything the store allows).
pub fn approve(state: &State, id: &str, step: &str, done: bool, who: &Actor, role: Role) -> Result<bool, Error> {
    let row = state.execution(id)?;
    let steps = state.steps(id)?;
    let Some(s) = steps.iter().find(|s| s.id == step) else {
        return Err(crate::Request::NoSuchStep { execution: id.to_string(), step: step.to_string() }.into());
    };
    let approval = s.action == drctl_engine::APPROVAL;
    if approval && done {
        return Err(crate::Request::ApprovalIsNotDone { step: step.to_string() }.into());
    }
    if approval {
        let needs = failover::approver_of(&row, step);
        let least = match needs {
            Approver::Commander => Role::Commander,
            Approver::Admin => Role::Admin,
        };
        if role < least {
            // Refused, and kept: who tried to approve what they may not is
            // for the security team to see.
            let request = json!({"step": step, "needs": needs.as_str(), "role": role.as_str()});
            audit(state, who, "approve.refused", &format!("execution {id} step {step}"), &request)?;
            return Err(crate::Request::NotYourApproval {
                step: step.to_string(),
                needs: needs.as_str(),
                who: who.name.clone(),
                has: role.as_str(),
            }
            .into());
        }
    }
    if !approval && s.state != drctl_state::journal::StepState::WaitingApproval {
        return Err(crate::Request::NotWaiting {
            step: step.to_string(),
            action: s.action.clone(),
            state: s.state.as_str().to_string(),
        }
        .into());
    }
    let what = if done { "approve --done" } else { "approve" };
    audit(state, who, what, &format!("execution {id} step {step}"), &json!({"step": step, "done": done}))?;
    Ok(state.approve(id, step, &who.name, done)?)
}

/// Asks a running execution to stop; answers its state now.
pub fn abort(state: &State, id: &str, who: &Actor) -> Result<String, Error> {
    state.execution(id)?;
    audit(state, who, "abort", &format!("execution {id}"), &json!({}))?;
    Ok(state.request_abort(id)?)
}

/// Whether a run stopped because another process runs the execution now
/// (its lease was taken, or this controller no longer leads).
pub fn handed_over(e: &Error) -> bool {
    use drctl_engine::Error as E;
    match e {
        Error::Engine { source, .. } => {
            matches!(source, E::Owned { .. } | E::LostLease { .. } | E::State(drctl_state::Error::NotLeader(_)))
        }
        Error::State(drctl_state::Error::NotLeader(_)) => true,
        _ => false,
    }
}
