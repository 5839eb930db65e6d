//! The one path every declaration takes, whoever makes it.
//!
//! The CLI (`drctl declare`), the operator API (`POST /api/v1/declare`) and
//! drills used to carry their own copies of "plan, check, journal, lock,
//! execute, record", and the copies drifted: a refusal was journaled by one,
//! only audited by another, and neither by a drill; only the API opened the
//! public incident docs/guide/controller.md promises. Now they all call [`Declarer`] and
//! differ only in how they show progress.
//!
//! A declaration is two calls, because a human may stand between them:
//! [`Declarer::propose`] plans and runs every check that can refuse the run
//! (changing nothing), and [`Declarer::record`] decides: a refused or dry
//! run is journaled and audited and goes no further; an accepted one is
//! journaled, its entities locked, its incident opened and the request
//! audited. [`Declarer::run`] then executes it (or resumes it) and records
//! the outcome on its incident.
//!
//! The rest of a declaration's life is here too: the raw request checked
//! into a [`Declaration`] ([`DeclarationRequest`]: unknown fields refused,
//! lengths bounded), and the commander's decisions on a paused execution
//! ([`Declarer::retry`], [`Declarer::skip`], [`Declarer::done`], [`abort`]),
//! each audited before it is journaled, with [`PauseView`] saying what
//! failed, what is already switched and which commands go on.

pub use crate::actor::{audit, login_name, Actor};
use crate::failover::{self, Declaration, Prepared};
use crate::live::Clients;
use crate::overrides::Overrides;
use crate::{Error, Request};
use drctl_core::action::Approver;
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_runtime::{Clock, SystemClock};
use drctl_state::controller::Role;
use drctl_state::journal::{exec_state, StepState};
use drctl_state::State;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The most characters a declaration's reason may have.
pub const MAX_REASON: usize = 1_000;
/// The most names a declaration's scope may list, and each name's length.
pub const MAX_NAMES: usize = 100;
pub const MAX_NAME: usize = 200;

/// A declaration as a client sends it (the operator API's body, a drill's
/// scope): raw, every field optional but the reason, unknown fields
/// refused, so `{"dryrun": true}` is an error and never a real failover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarationRequest {
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    pub reason: String,
    #[serde(default)]
    pub dry_run: bool,
    /// `--force`: `accept_lag` and `skip_catch_up`, never a fence.
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub overrides: Overrides,
    #[serde(default)]
    pub parallel: Option<usize>,
}

impl DeclarationRequest {
    /// Reads a JSON body; an unknown or mistyped field is named.
    pub fn from_json(body: &serde_json::Value) -> Result<DeclarationRequest, Request> {
        DeclarationRequest::deserialize(body).map_err(|e| body_error(&e.to_string()))
    }

    /// Checks the request into a declaration, and whether it is a dry run.
    pub fn check(self) -> Result<(Declaration, bool), Request> {
        let bad = |field: &str, why: String| Request::BadRequest { field: field.into(), why };
        if self.reason.trim().is_empty() {
            return Err(bad("reason", "is empty: say why the scope is declared lost".into()));
        }
        if self.reason.chars().count() > MAX_REASON {
            return Err(bad("reason", format!("is over {MAX_REASON} characters")));
        }
        for (field, names) in [("zones", &self.zones), ("regions", &self.regions), ("targets", &self.targets)] {
            if names.len() > MAX_NAMES {
                return Err(bad(field, format!("lists more than {MAX_NAMES} names")));
            }
            if let Some(n) = names.iter().find(|n| n.is_empty() || n.chars().count() > MAX_NAME) {
                return Err(bad(field, format!("has a name that is empty or over {MAX_NAME} characters: `{n}`")));
            }
        }
        if self.parallel == Some(0) {
            return Err(bad("parallel", "must be at least 1".into()));
        }
        self.overrides.check()?;
        let mut overrides = self.overrides;
        if self.force {
            overrides.merge(&Overrides::force());
        }
        let decl = Declaration {
            zones: self.zones,
            regions: self.regions,
            targets: self.targets,
            reason: self.reason,
            overrides,
            parallel: self.parallel,
        };
        if decl.scope().is_empty() {
            return Err(Request::EmptyScope);
        }
        Ok((decl, self.dry_run))
    }
}

/// A serde error about a request body as a refusal naming the field
/// (`unknown field `dryrun`, expected one of ...`).
pub fn body_error(serde_says: &str) -> Request {
    let field = serde_says
        .split('`')
        .nth(1)
        .filter(|_| serde_says.starts_with("unknown field") || serde_says.starts_with("missing field"))
        .unwrap_or("body")
        .to_string();
    Request::BadRequest { field, why: format!("is refused: {serde_says}") }
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
               "dry_run": dry_run, "overrides": d.overrides, "parallel": d.parallel})
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
    pub async fn propose(&self, mut decl: Declaration, id: Option<String>) -> Result<Proposal, Error> {
        // The reason is free text, kept and shown everywhere: redacted like
        // every other input (a pasted URL with its password, a token).
        decl.reason = drctl_core::redact::text(&decl.reason);
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
            request["outcome"] = json!("refused");
            audit(&*self.state, who, "declare.refused", &format!("execution {}", p.id), &request)?;
            tracing::warn!(execution = %p.id, actor = %who.name, source = %who.source, ?refusals, dry_run, "declaration refused by the preflight");
            if !dry_run {
                failover::create(&*self.state, &p.id, &p.decl, &p.prepared, self.clock.now(), &who.name)?;
                self.state.set_execution_state(&p.id, exec_state::REFUSED, Some(self.clock.now()))?;
            }
            return Ok(Recorded::Refused);
        }
        if dry_run {
            audit(&*self.state, who, "declare.dry_run", "plan", &p.request(true))?;
            return Ok(Recorded::DryRun);
        }
        audit(&*self.state, who, "declare", &format!("execution {}", p.id), &p.request(false))?;
        failover::create(&*self.state, &p.id, &p.decl, &p.prepared, self.clock.now(), &who.name)?;
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
            &format!("{}{scope}", drctl_state::controller::FAILOVER_TITLE),
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
            Ok(Ended::Paused) => (
                "identified",
                format!("The failover is paused while operators look at a step that failed (execution {id})."),
            ),
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
        if matches!(result, Ok(Ended::Succeeded)) {
            self.erasures_after(id).await;
        }
        result
    }

    /// A promoted standby may never have received an erasure made on the
    /// old primary: every request not verified there is run again on it
    /// (docs/guide/erasure.md). What fails here is logged and left to the
    /// controller's next erasure pass; the failover itself is done.
    async fn erasures_after(&self, id: &str) {
        if self.topology.erasure.is_none() {
            return;
        }
        let mut moved: Vec<String> = self.state.steps(id).unwrap_or_default().into_iter().map(|s| s.entity).collect();
        moved.sort();
        moved.dedup();
        let eraser = crate::erasure::Eraser::new(self.topology.clone(), self.state.clone(), self.clients.clone())
            .with_clock(self.clock.clone());
        for ds in
            moved.iter().filter(|d| self.topology.entity_id(d).is_some_and(|e| !self.topology.entity(e).is_service()))
        {
            match eraser.after_failover(ds).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(execution = id, datastore = %ds, requests = n, "erasures run again on the new primary")
                }
                Err(e) => {
                    tracing::warn!(execution = id, datastore = %ds, error = %e, "erasures not re-run after the failover; the controller's pass goes on")
                }
            }
        }
    }

    /// Resumes an unfinished execution (audited); `Ok(None)` when it had
    /// already ended. A paused execution is not run: only a commander's
    /// decision moves it (`Ok(Some(Ended::Paused))`, see [`PauseView`]).
    pub async fn resume(&self, id: &str, who: &Actor) -> Result<Option<Ended>, Error> {
        let row = self.state.execution(id)?;
        if exec_state::is_final(&row.state) {
            return Ok(None);
        }
        if row.state == exec_state::PAUSED {
            return Ok(Some(Ended::Paused));
        }
        audit(&*self.state, who, "resume", &format!("execution {id}"), &json!({}))?;
        self.run(id).await.map(Some)
    }
}

impl Declarer {
    /// Runs a paused execution's failed step again, with `overrides` added
    /// to the declaration's (journaled with who added them). Audited first;
    /// [`Declarer::run`] then carries the execution on.
    pub fn retry(&self, id: &str, step: &str, overrides: &Overrides, who: &Actor) -> Result<(), Error> {
        overrides.check()?;
        // Checked before the audit: a refused decision changes nothing.
        self.failed_step(id, step)?;
        let request = json!({"step": step, "overrides": overrides});
        audit(&*self.state, who, "retry", &format!("execution {id} step {step}"), &request)?;
        let flags = overrides.flags();
        let detail = if flags.is_empty() {
            format!("retried by {}", who.name)
        } else {
            format!("retried by {} with {}", who.name, flags.join(" "))
        };
        drctl_engine::decide::retry(&*self.state, id, step, &detail, self.clock.now())
            .map_err(|e| crate::engine_error(id, e))
    }

    /// The steps that need `step` (directly or not): what [`Declarer::skip`]
    /// gives up with it, for the commander to read before deciding.
    pub fn needing(&self, id: &str, step: &str) -> Result<Vec<String>, Error> {
        let (_, specs) = failover::journaled(&self.topology, &*self.state, id)?;
        let idx = specs
            .iter()
            .position(|s| s.id == step)
            .ok_or_else(|| Request::NoSuchStep { execution: id.to_string(), step: step.to_string() })?;
        Ok(drctl_engine::decide::needing(&specs, idx).into_iter().map(|i| specs[i].id.clone()).collect())
    }

    /// Gives a paused execution's failed step up, and every step that needs
    /// it; answers those. Audited first; [`Declarer::run`] carries the rest on.
    pub fn skip(&self, id: &str, step: &str, who: &Actor) -> Result<Vec<String>, Error> {
        self.failed_step(id, step)?;
        let (_, specs) = failover::journaled(&self.topology, &*self.state, id)?;
        let needing = self.needing(id, step)?;
        let request = json!({"step": step, "gives_up": needing});
        audit(&*self.state, who, "skip", &format!("execution {id} step {step}"), &request)?;
        let detail = format!("given up by {}", who.name);
        drctl_engine::decide::skip(&*self.state, id, &specs, step, &detail, self.clock.now())
            .map_err(|e| crate::engine_error(id, e))
    }

    /// Records a paused execution's failed step as done by hand.
    pub fn done(&self, id: &str, step: &str, who: &Actor) -> Result<(), Error> {
        done(&*self.state, id, step, who, self.clock.now())
    }

    fn failed_step(&self, id: &str, step: &str) -> Result<(), Error> {
        failed_step(&*self.state, id, step)
    }
}

/// Refuses a decision that does not fit the journal, before it is audited.
fn failed_step(state: &State, id: &str, step: &str) -> Result<(), Error> {
    let row = state.execution(id)?;
    let steps = state.steps(id)?;
    let Some(s) = steps.iter().find(|s| s.id == step) else {
        return Err(Request::NoSuchStep { execution: id.to_string(), step: step.to_string() }.into());
    };
    if row.state != exec_state::PAUSED || s.state != StepState::Failed {
        let e = if row.state != exec_state::PAUSED {
            drctl_engine::Error::NotPaused { execution: id.into(), state: row.state }
        } else {
            drctl_engine::Error::StepNotFailed {
                execution: id.into(),
                step: step.into(),
                state: s.state.as_str().into(),
            }
        };
        return Err(crate::engine_error(id, e));
    }
    Ok(())
}

fn done(state: &State, id: &str, step: &str, who: &Actor, at: std::time::SystemTime) -> Result<(), Error> {
    failed_step(state, id, step)?;
    audit(state, who, "approve --done", &format!("execution {id} step {step}"), &json!({"step": step, "done": true}))?;
    let detail = format!("done by hand, as {} recorded; not run by drctl", who.name);
    drctl_engine::decide::done(state, id, step, &detail, at).map_err(|e| crate::engine_error(id, e))
}

/// A failed step of a paused execution, as the commander reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedStep {
    pub id: String,
    pub entity: String,
    pub error: String,
    /// The overrides its error names (`--accept-lag`, ...): a retry with
    /// them lifts the check that failed it.
    pub overrides: Vec<String>,
    /// The steps that wait for it (and are given up with it by `skip`).
    pub needed_by: Vec<String>,
}

/// Where a paused execution left the estate: what failed, what is
/// switched already, and what is not; read from the journal alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PauseView {
    pub execution: String,
    pub failed: Vec<FailedStep>,
    /// Entities every step of which succeeded.
    pub switched: Vec<String>,
    /// Entities some steps of which succeeded: (entity, those steps).
    pub partly: Vec<(String, Vec<String>)>,
    /// Entities no step of which took effect.
    pub not_switched: Vec<String>,
}

impl PauseView {
    /// The view of `id` when it is paused; `None` otherwise. `needing`
    /// gives the steps that need a step (from the plan), when known.
    pub fn of(state: &State, id: &str, needing: impl Fn(&str) -> Vec<String>) -> Result<Option<PauseView>, Error> {
        let row = state.execution(id)?;
        if row.state != exec_state::PAUSED {
            return Ok(None);
        }
        let steps = state.steps(id)?;
        let mut entities: Vec<&str> = Vec::new();
        for s in &steps {
            if !entities.contains(&s.entity.as_str()) {
                entities.push(&s.entity);
            }
        }
        let (mut switched, mut partly, mut not_switched) = (Vec::new(), Vec::new(), Vec::new());
        for e in entities {
            let mine: Vec<_> = steps.iter().filter(|s| s.entity == e).collect();
            let done: Vec<String> =
                mine.iter().filter(|s| s.state == StepState::Succeeded).map(|s| s.id.clone()).collect();
            if done.len() == mine.len() {
                switched.push(e.to_string());
            } else if done.is_empty() {
                not_switched.push(e.to_string());
            } else {
                partly.push((e.to_string(), done));
            }
        }
        let failed = steps
            .iter()
            .filter(|s| s.state == StepState::Failed)
            .map(|s| {
                let error = s.error.clone().unwrap_or_default();
                FailedStep {
                    id: s.id.clone(),
                    entity: s.entity.clone(),
                    overrides: crate::overrides::named_in(&error),
                    error,
                    needed_by: needing(&s.id),
                }
            })
            .collect();
        Ok(Some(PauseView { execution: id.to_string(), failed, switched, partly, not_switched }))
    }

    /// The commands that go on, each typed exactly as shown, with what it
    /// does. `file`: the `-f FILE` the commander declared with, if any.
    pub fn commands(&self) -> Vec<(String, String)> {
        let id = &self.execution;
        let mut out = Vec::new();
        for s in &self.failed {
            let step = shell_word(&s.id);
            if !s.overrides.is_empty() {
                out.push((
                    drctl_core::hint::drctl(&format!("retry {id} {step} {}", s.overrides.join(" "))),
                    format!("runs it again, lifting the check its error names ({})", s.overrides.join(" ")),
                ));
            }
            out.push((drctl_core::hint::drctl(&format!("retry {id} {step}")), "runs it again as it is".to_string()));
            let gives_up = if s.needed_by.is_empty() {
                "gives it up; the rest goes on".to_string()
            } else {
                format!("gives it up, and what needs it: {}", s.needed_by.join(", "))
            };
            out.push((drctl_core::hint::drctl(&format!("skip {id} {step}")), gives_up));
            out.push((
                drctl_core::hint::drctl(&format!("approve {id} {step} --done")),
                "you did it by hand: it counts as done and what needs it goes on".to_string(),
            ));
        }
        out.push((drctl_core::hint::drctl(&format!("abort {id}")), "stops here: nothing more changes".to_string()));
        out
    }
}

/// A word as a POSIX shell reads it back: quoted when it must be.
pub fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Decides on a waiting step; `Ok(false)` when that attempt was already
/// decided. An `approval` step is approved, by someone whose `role` is at
/// least the one its runbook names (`role: admin`); a step a crash caught
/// running (docs/guide/safety.md) is run again, or, with `done`, recorded as done
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
    if s.state == StepState::Failed {
        // A paused execution's failed step: `--done` records it as done by
        // hand; approving it otherwise means nothing (`retry` runs it again).
        if !done {
            return Err(Request::FailedNotWaiting { execution: id.to_string(), step: step.to_string() }.into());
        }
        self::done(state, id, step, who, std::time::SystemTime::now())?;
        return Ok(true);
    }
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
            let request = json!({"step": step, "needs": needs.as_str(), "role": role.as_str(), "outcome": "refused"});
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
    // This attempt already decided: nothing changes, so nothing is audited.
    if state.approved_by(id, step, s.attempts)?.is_some() {
        return Ok(false);
    }
    let what = if done { "approve --done" } else { "approve" };
    audit(state, who, what, &format!("execution {id} step {step}"), &json!({"step": step, "done": done}))?;
    Ok(state.approve(id, step, &who.name, done)?)
}

/// Aborts an execution; answers its state now. A running one is asked to
/// stop (`aborting`: its steps running finish, the rest is skipped); one
/// nothing runs (paused, or its process gone) is closed in the journal at
/// once (`aborted`), which needs no topology. An ended one stays as it is.
pub fn abort(state: &State, id: &str, who: &Actor) -> Result<String, Error> {
    let row = state.execution(id)?;
    if exec_state::is_final(&row.state) {
        return Ok(row.state);
    }
    audit(state, who, "abort", &format!("execution {id}"), &json!({}))?;
    let detail = format!("aborted by {}", who.name);
    match drctl_engine::decide::abort(state, id, &detail, std::time::SystemTime::now()) {
        Ok(drctl_engine::decide::Aborted::Requested) => Ok(exec_state::ABORTING.to_string()),
        Ok(drctl_engine::decide::Aborted::Closed) => Ok(exec_state::ABORTED.to_string()),
        Err(drctl_engine::Error::AlreadyEnded { state, .. }) => Ok(state),
        Err(e) => Err(crate::engine_error(id, e)),
    }
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
