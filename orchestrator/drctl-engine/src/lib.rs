//! The execution engine: runs a failover plan's steps for real.
//!
//! Steps start when every step they come after has succeeded, at most
//! `parallel` at once, in the plan's priority order (its prioritised
//! schedule's start times). Every attempt is journaled before its effect
//! (`running`) and after it (`succeeded`/`failed`), so a controller killed
//! at any moment resumes from the journal: finished steps are never run
//! again. A step caught `running` is run again only when that is safe
//! ([`StepSpec::rerun_safe`]: its action checks the world first, or its
//! runbook says `idempotent: true`); any other waits as
//! `waiting_approval` until a commander says to run it again or that its
//! effect happened (`drctl approve --done`), because nobody knows whether
//! it took effect before the crash.
//!
//! One process runs an execution's steps at a time: the engine holds a
//! lease on the execution in the state store, renews it while it runs,
//! and stops starting steps the moment it loses it.
//!
//! Failures are classified by the action: transient ones (network,
//! throttling, 5xx) are retried with exponential backoff and jitter up to
//! the step's attempts, each attempt under its timeout; others fail the
//! step at once. A failed step pauses the execution: steps already running
//! finish, nothing new starts, and the execution waits as `paused` for a
//! commander to retry the step, give it up (skip), record it as done by
//! hand, or abort. Half a failover that carries on by itself after a
//! failure is how an estate ends up split across zones with nobody having
//! decided it; a step whose runbook or entity says `on_failure: continue`
//! lets the branches that do not need it go on first. What needs a failed
//! step waits with it; what needs a step given up is skipped.
//! `approval` steps wait for `drctl approve`; an abort request stops new
//! steps, lets running ones finish and skips the rest.

use drctl_runtime::{Backoff, Clock, SystemClock};
use drctl_state::journal::{exec_state, StepRow, StepState, Transition};
use drctl_state::{Claim, State};
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;
use tracing::Instrument;

/// One step as the engine runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub id: String,
    pub entity: String,
    pub action: String,
    /// Indices of the steps that must succeed first.
    pub after: Vec<usize>,
    /// Lower runs first among ready steps (the plan's scheduled start).
    pub priority: f64,
    /// Per attempt; none means no limit.
    pub timeout: Option<Duration>,
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub backoff: Duration,
    /// The action's parameters, templates already filled in.
    pub with: serde_json::Value,
    /// The zones the step moves its entity from and to, when known.
    pub from_zone: Option<String>,
    pub to_zone: Option<String>,
    /// Running the step again after a crash caught it mid-effect does no
    /// harm (the action checks the world first, or the runbook declares
    /// it `idempotent`). When false, such a step waits for a commander.
    pub rerun_safe: bool,
    /// `on_failure: continue`: when this step fails, steps that do not
    /// need it still start; otherwise its failure stops new steps at once.
    pub continue_on_failure: bool,
}

/// Why an action failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The network, throttling, a 5xx, a resource still changing state.
    #[error("{0}")]
    Transient(String),
    /// A refusal, a permission, bad input: trying again will not help.
    #[error("{0}")]
    Fatal(String),
}

/// What a step's action did, in a few words for the journal.
pub type Note = Option<String>;

/// Runs actions. The real implementation talks to PostgreSQL, AWS and HTTP;
/// tests use a model of the world.
pub trait Actions: Send + Sync {
    /// Runs attempt `attempt` (1 for the first) of a step.
    fn run<'a>(
        &'a self,
        execution: &'a str,
        attempt: u32,
        step: &'a StepSpec,
    ) -> BoxFuture<'a, Result<Note, ActionError>>;
}

/// How long an engine's lease on an execution lasts without renewal; it
/// renews every third of it.
pub const LEASE: Duration = Duration::from_secs(15);

/// The note of a step a crash caught running, whose effect nobody knows.
pub fn interrupted_note(execution: &str, step: &str) -> String {
    use drctl_core::hint::drctl;
    format!(
        "a crash interrupted this step while it ran: its effect may or may not have happened. \
         `{}` runs it again; `{}` records it as done without running it",
        drctl(&format!("approve {execution} {step}")),
        drctl(&format!("approve {execution} {step} --done"))
    )
}

/// The action name the engine handles itself.
pub const APPROVAL: &str = "approval";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] drctl_state::Error),
    /// A fail point stopped the engine dead (builds with `failpoints` only).
    #[error("simulated crash (fail point)")]
    Crashed,
    /// Another process runs this execution's steps now.
    #[error("execution {execution} is being run by {by} (its lease runs until {until}); wait for it to finish, or, if that process is gone, run this again after that time")]
    Owned { execution: String, by: String, until: String },
    /// The lease was lost mid-run (this process stalled past it): another
    /// process may have taken over, so this one stopped starting steps.
    #[error("execution {execution}: this process lost its lease to {by} and stopped; `{}` says where it is", drctl_core::hint::drctl(&format!("show {execution}")))]
    LostLease { execution: String, by: String },
    /// A decision ([`decide`]) asked of an execution that is not paused.
    #[error("execution {execution} is {state}, not paused: only a paused execution's failed step can be retried, skipped or recorded as done")]
    NotPaused { execution: String, state: String },
    /// A decision about a step the execution does not have.
    #[error("execution {execution} has no step `{step}`")]
    NoSuchStep { execution: String, step: String },
    /// A decision about a step that did not fail.
    #[error("step `{step}` of {execution} is {state}, not failed: only a failed step can be retried, skipped or recorded as done")]
    StepNotFailed { execution: String, step: String, state: String },
    /// An abort asked of an execution that has already ended.
    #[error("execution {execution} already ended ({state})")]
    AlreadyEnded { execution: String, state: String },
}

pub mod decide;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    /// Every step ended, but some were given up (`drctl skip`).
    Failed,
    Aborted,
    /// A step failed: the execution waits for a commander's decision.
    Paused,
}

#[derive(Clone)]
pub struct Engine {
    pub state: Arc<State>,
    pub actions: Arc<dyn Actions>,
    /// Steps at once; `None` is no cap.
    pub parallel: Option<usize>,
    /// How often approvals and abort requests are looked for.
    pub poll: Duration,
    /// Where time comes from: journal timestamps, polls, retry backoff.
    pub clock: Arc<dyn Clock>,
    /// Fail point: stop dead after this many journal writes, as a killed
    /// controller would. Compiled in only with the `failpoints` feature
    /// (the crash-model tests); never part of a release build's API.
    #[cfg(feature = "failpoints")]
    pub crash_after_writes: Option<usize>,
    /// Who this engine is, in the execution's lease (host, pid, a nonce).
    pub owner: String,
    writes: Arc<AtomicUsize>,
}

static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process in owner ids and in each step's `ran_by` (a highly
/// available controller passes its `--id`); the host name otherwise. The
/// first call wins.
pub fn identify_as(name: &str) {
    let _ = IDENTITY.set(name.to_string());
}

/// An owner id for this process: readable, and unique per engine.
fn owner_id() -> String {
    let nonce = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let who = IDENTITY.get().cloned().unwrap_or_else(hostname);
    format!("{who}:pid{}:{:x}{}", std::process::id(), nonce, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// This host's name, as owner ids carry it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// Whether an owner id names a process on this host that no longer runs:
/// its lease can be taken at once instead of waiting for it to expire.
fn owner_is_dead_here(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else { return false };
    let Some(pid) = pid.strip_prefix("pid").and_then(|p| p.parse::<u32>().ok()) else { return false };
    h == hostname() && pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The lease a run holds, and the task that renews it: owned by the run,
/// so the renewal stops, and the lease is given up, when the run ends or
/// when its future is dropped (its owner cancelled it: a controller past
/// its shutdown deadline, a drill that was aborted). A dropped run never
/// keeps renewing a lease for work nobody does, and whoever aborts or
/// resumes the execution next finds it free at once.
struct Lease<'a> {
    renewer: tokio::task::JoinHandle<()>,
    engine: &'a Engine,
    execution: &'a str,
    /// Another owner took the lease: not ours to give up.
    lost: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.renewer.abort();
        if !self.lost {
            let _ = self.engine.state.release_execution(self.execution, &self.engine.owner);
        }
    }
}

/// Each step's state and attempts as the journal left them. A step caught
/// mid-flight by a crash is pending again: run again when that is safe,
/// otherwise held for a commander (its effect may have happened), which
/// the returned set names.
fn recovered(rows: &[StepRow], specs: &[StepSpec]) -> (Vec<StepState>, Vec<u32>, HashSet<usize>) {
    let mut states: Vec<StepState> = rows.iter().map(|r| r.state).collect();
    let attempts: Vec<u32> = rows.iter().map(|r| r.attempts).collect();
    let mut gated: HashSet<usize> = HashSet::new();
    for (i, s) in states.iter_mut().enumerate() {
        let Some(spec) = specs.get(i) else { continue };
        let interrupted = match s {
            StepState::Running => spec.action != APPROVAL && !spec.rerun_safe,
            // An action step waits only when an earlier resume held it.
            StepState::WaitingApproval => spec.action != APPROVAL,
            _ => false,
        };
        if matches!(s, StepState::Running | StepState::WaitingApproval) {
            *s = StepState::Pending;
        }
        if interrupted {
            gated.insert(i);
        }
    }
    (states, attempts, gated)
}

/// The steps that may start now (pending, every step they need
/// succeeded), most urgent first.
fn ready(specs: &[StepSpec], states: &[StepState], in_flight: &HashSet<usize>) -> Vec<usize> {
    let mut ready: Vec<usize> = (0..specs.len())
        .filter(|&i| states[i] == StepState::Pending && !in_flight.contains(&i))
        .filter(|&i| specs[i].after.iter().all(|&d| states[d] == StepState::Succeeded))
        .collect();
    ready.sort_by(|&a, &b| specs[a].priority.total_cmp(&specs[b].priority).then(a.cmp(&b)));
    ready
}

impl Engine {
    pub fn new(state: Arc<State>, actions: Arc<dyn Actions>, parallel: Option<usize>) -> Engine {
        Engine {
            state,
            actions,
            parallel,
            poll: Duration::from_millis(200),
            clock: Arc::new(SystemClock),
            #[cfg(feature = "failpoints")]
            crash_after_writes: None,
            owner: owner_id(),
            writes: Arc::default(),
        }
    }

    /// Takes the execution's lease, or says who holds it.
    fn claim(&self, execution: &str) -> Result<(), Error> {
        match self.state.claim_execution(execution, &self.owner, self.clock.now(), LEASE)? {
            Claim::Ours => Ok(()),
            Claim::Held { by, .. } if owner_is_dead_here(&by) => {
                tracing::warn!(execution, previous = %by, "taking over the lease of a process that is gone");
                self.state.release_execution(execution, &by)?;
                self.claim(execution)
            }
            Claim::Held { by, until } => {
                Err(Error::Owned { execution: execution.to_string(), by, until: chrono_like(until) })
            }
        }
    }

    /// The same engine on another clock (tests control time with it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// Writes a transition, then "dies" if the crash hook says so.
    fn write(&self, execution: &str, idx: usize, step: &str, t: &Transition) -> Result<(), Error> {
        self.state.transition(execution, idx, step, t)?;
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_point(n) {
            return Err(Error::Crashed);
        }
        Ok(())
    }

    #[cfg(feature = "failpoints")]
    fn crash_point(&self, writes: usize) -> bool {
        self.crash_after_writes.is_some_and(|k| writes >= k)
    }

    #[cfg(not(feature = "failpoints"))]
    fn crash_point(&self, _writes: usize) -> bool {
        false
    }

    fn crashed(&self) -> bool {
        self.crash_point(self.writes.load(Ordering::SeqCst))
    }

    /// Runs (or resumes) an execution until it ends.
    pub async fn run(&self, execution: &str, specs: &[StepSpec]) -> Result<Ended, Error> {
        self.claim(execution)?;
        let lost: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let renewer = {
            let (engine, execution, lost) = (self.clone(), execution.to_string(), lost.clone());
            tokio::spawn(async move {
                loop {
                    engine.clock.sleep(LEASE / 3).await;
                    match engine.state.claim_execution(&execution, &engine.owner, engine.clock.now(), LEASE) {
                        Ok(Claim::Ours) => {}
                        Ok(Claim::Held { by, .. }) => {
                            *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(by);
                            return;
                        }
                        // The store hiccuped: try again at the next beat, well within the lease.
                        Err(e) => tracing::warn!(execution, error = %e, "could not renew the execution's lease"),
                    }
                }
            })
        };
        let mut lease = Lease { renewer, engine: self, execution, lost: false };
        let result = self.run_owned(execution, specs, &lost).await;
        lease.lost = matches!(result, Err(Error::LostLease { .. }));
        drop(lease);
        result
    }

    async fn run_owned(
        &self,
        execution: &str,
        specs: &[StepSpec],
        lost: &std::sync::Mutex<Option<String>>,
    ) -> Result<Ended, Error> {
        if let Some(ended) = self.ended_already(execution)? {
            return Ok(ended);
        }
        let (mut states, mut attempts, mut gated) = recovered(&self.state.steps(execution)?, specs);
        let cap = self.parallel.unwrap_or(usize::MAX).max(1);
        let mut running: JoinSet<(usize, Result<StepState, Error>, u32)> = JoinSet::new();
        let mut in_flight: HashSet<usize> = HashSet::new();
        let mut aborting = false;
        loop {
            if self.crashed() {
                return Err(Error::Crashed);
            }
            if let Some(by) = lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                // Dropping the set stops the steps in flight: another owner runs them now.
                tracing::error!(execution, by = %by, "lost the execution's lease; stopping");
                return Err(Error::LostLease { execution: execution.to_string(), by });
            }
            if !aborting && self.state.execution(execution)?.state == exec_state::ABORTING {
                aborting = true;
            }
            // A failed step stops new steps, unless it may fail alone.
            let halted = (0..specs.len()).any(|i| states[i] == StepState::Failed && !specs[i].continue_on_failure);
            self.skip_what_cannot_run(execution, specs, &mut states, &attempts, &in_flight, aborting)?;
            for i in ready(specs, &states, &in_flight) {
                if aborting || halted || in_flight.len() >= cap {
                    break;
                }
                in_flight.insert(i);
                let engine = self.clone();
                let spec = specs[i].clone();
                let execution = execution.to_string();
                let done = attempts[i];
                let hold = gated.remove(&i);
                let span = tracing::info_span!("step", execution = %execution, step = %spec.id, entity = %spec.entity);
                running.spawn(
                    async move {
                        if hold {
                            if let Some(decided) = engine.held_step(&execution, i, &spec, done).await {
                                return (i, decided, done);
                            }
                        }
                        let (result, attempts) = engine.run_step(&execution, i, &spec, done).await;
                        (i, result, attempts)
                    }
                    .instrument(span),
                );
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { continue };
                    let (i, result, n) = joined.unwrap_or_else(|e| panic!("a step task panicked: {e}"));
                    in_flight.remove(&i);
                    attempts[i] = n;
                    states[i] = result?;
                }
                _ = self.clock.sleep(self.poll) => {}
            }
        }
        self.finish(execution, specs, &states, aborting)
    }

    /// Only a commander moves a paused execution (retry, skip, done,
    /// abort); an ended one stays as it ended.
    fn ended_already(&self, execution: &str) -> Result<Option<Ended>, Error> {
        Ok(match self.state.execution(execution)?.state.as_str() {
            exec_state::PAUSED => Some(Ended::Paused),
            exec_state::SUCCEEDED => Some(Ended::Succeeded),
            exec_state::FAILED => Some(Ended::Failed),
            s if exec_state::is_final(s) => Some(Ended::Aborted),
            _ => None,
        })
    }

    /// Skips what can no longer run: what needs a step given up, and
    /// everything not started once the execution is aborting. What needs a
    /// failed step waits with it for the commander's decision.
    fn skip_what_cannot_run(
        &self,
        execution: &str,
        specs: &[StepSpec],
        states: &mut [StepState],
        attempts: &[u32],
        in_flight: &HashSet<usize>,
        aborting: bool,
    ) -> Result<(), Error> {
        for i in 0..specs.len() {
            if states[i] != StepState::Pending || in_flight.contains(&i) {
                continue;
            }
            let blocked = specs[i].after.iter().find(|&&d| states[d] == StepState::Skipped);
            let why = match blocked {
                Some(&d) => Some(format!("{} did not succeed", specs[d].id)),
                None if aborting => Some("the execution was aborted".to_string()),
                None => None,
            };
            if let Some(why) = why {
                states[i] = StepState::Skipped;
                let now = self.clock.now();
                let t = Transition {
                    at: self.clock.now(),
                    state: StepState::Skipped,
                    attempts: attempts[i],
                    started_at: None,
                    finished_at: Some(now),
                    error: None,
                    note: Some(&why),
                    ran_by: None,
                };
                self.write(execution, i, &specs[i].id, &t)?;
            }
        }
        Ok(())
    }

    /// A step a crash interrupted, held for a commander: recorded as done,
    /// or closed by an abort (`Some`), or to be run again (`None`).
    async fn held_step(
        &self,
        execution: &str,
        i: usize,
        spec: &StepSpec,
        done: u32,
    ) -> Option<Result<StepState, Error>> {
        let (state, note) = match self.await_decision(execution, i, spec, done).await {
            Ok(Decision::RunAgain) => return None,
            Ok(Decision::Done(by)) => (StepState::Succeeded, format!("recorded as done by {by}, not run again")),
            Ok(Decision::Aborted) => {
                (StepState::Skipped, "the execution was aborted while this step waited for a decision".to_string())
            }
            Err(e) => return Some(Err(e)),
        };
        let t = Transition {
            at: self.clock.now(),
            state,
            attempts: done,
            started_at: None,
            finished_at: Some(self.clock.now()),
            error: None,
            note: Some(&note),
            ran_by: None,
        };
        Some(self.write(execution, i, &spec.id, &t).map(|()| state))
    }

    /// Records how the run ended. Paused is not final: the entities stay
    /// locked to this execution until a commander decides, so no other
    /// declaration moves them meanwhile.
    fn finish(
        &self,
        execution: &str,
        specs: &[StepSpec],
        states: &[StepState],
        aborting: bool,
    ) -> Result<Ended, Error> {
        let ended = if aborting {
            Ended::Aborted
        } else if states.contains(&StepState::Failed) {
            Ended::Paused
        } else if states.iter().all(|s| *s == StepState::Succeeded) {
            Ended::Succeeded
        } else {
            Ended::Failed
        };
        if ended == Ended::Paused {
            self.state.set_execution_state(execution, exec_state::PAUSED, None)?;
            let failed: Vec<&str> =
                (0..specs.len()).filter(|&i| states[i] == StepState::Failed).map(|i| specs[i].id.as_str()).collect();
            tracing::warn!(execution, failed = ?failed, "execution paused: a step failed; waiting for a commander");
            return Ok(ended);
        }
        let final_state = match ended {
            Ended::Succeeded => exec_state::SUCCEEDED,
            Ended::Failed => exec_state::FAILED,
            Ended::Aborted | Ended::Paused => exec_state::ABORTED,
        };
        self.state.set_execution_state(execution, final_state, Some(self.clock.now()))?;
        tracing::info!(execution, state = final_state, "execution ended");
        Ok(ended)
    }

    /// Runs one step through its attempts; returns its final state and attempts used.
    async fn run_step(
        &self,
        execution: &str,
        idx: usize,
        spec: &StepSpec,
        mut attempts: u32,
    ) -> (Result<StepState, Error>, u32) {
        let started = self.clock.now();
        let backoff = Backoff::new(spec.attempts, spec.backoff);
        loop {
            attempts += 1;
            let running = Transition {
                at: self.clock.now(),
                state: StepState::Running,
                attempts,
                started_at: Some(started),
                finished_at: None,
                error: None,
                note: None,
                ran_by: Some(&self.owner),
            };
            if let Err(e) = self.write(execution, idx, &spec.id, &running) {
                return (Err(e), attempts);
            }
            tracing::info!(execution, step = %spec.id, entity = %spec.entity, action = %spec.action, attempt = attempts, "step started");
            let outcome = if spec.action == APPROVAL {
                self.await_approval(execution, idx, spec, attempts, started).await
            } else {
                let fut = self.actions.run(execution, attempts, spec);
                match spec.timeout {
                    Some(t) => match tokio::time::timeout(t, fut).await {
                        Ok(r) => r,
                        Err(_) => Err(ActionError::Transient(format!("no result within {}s", t.as_secs_f64()))),
                    },
                    None => fut.await,
                }
            };
            if self.crashed() {
                return (Err(Error::Crashed), attempts);
            }
            if spec.action == APPROVAL && outcome.is_err() && self.aborting(execution) {
                // Not a failure: the commander stopped the run.
                let t = Transition {
                    at: self.clock.now(),
                    state: StepState::Skipped,
                    attempts,
                    started_at: Some(started),
                    finished_at: Some(self.clock.now()),
                    error: None,
                    note: Some("the execution was aborted while waiting for approval"),
                    ran_by: None,
                };
                return (self.write(execution, idx, &spec.id, &t).map(|()| StepState::Skipped), attempts);
            }
            match outcome {
                Ok(note) => {
                    tracing::info!(execution, step = %spec.id, entity = %spec.entity, attempt = attempts, note = note.as_deref().unwrap_or(""), "step succeeded");
                    let t = Transition {
                        at: self.clock.now(),
                        state: StepState::Succeeded,
                        attempts,
                        started_at: Some(started),
                        finished_at: Some(self.clock.now()),
                        error: None,
                        note: note.as_deref(),
                        ran_by: None,
                    };
                    return (self.write(execution, idx, &spec.id, &t).map(|()| StepState::Succeeded), attempts);
                }
                Err(ActionError::Transient(why)) if backoff.pause_after(attempts, idx as u64).is_some() => {
                    tracing::warn!(execution, step = %spec.id, entity = %spec.entity, attempt = attempts, error = %why, "step failed; will retry");
                    let _ = self.state.transition(
                        execution,
                        idx,
                        &spec.id,
                        &Transition {
                            at: self.clock.now(),
                            state: StepState::Running,
                            attempts,
                            started_at: Some(started),
                            finished_at: None,
                            error: Some(&why),
                            note: Some("will retry"),
                            ran_by: None,
                        },
                    );
                    self.clock.sleep(backoff.pause_after(attempts, idx as u64).unwrap_or_default()).await;
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!(execution, step = %spec.id, entity = %spec.entity, attempt = attempts, error = %why, "step failed");
                    let t = Transition {
                        at: self.clock.now(),
                        state: StepState::Failed,
                        attempts,
                        started_at: Some(started),
                        finished_at: Some(self.clock.now()),
                        error: Some(&why),
                        note: None,
                        ran_by: None,
                    };
                    return (self.write(execution, idx, &spec.id, &t).map(|()| StepState::Failed), attempts);
                }
            }
        }
    }

    fn aborting(&self, execution: &str) -> bool {
        self.state.execution(execution).map(|e| e.state == exec_state::ABORTING).unwrap_or(false)
    }

    async fn await_approval(
        &self,
        execution: &str,
        idx: usize,
        spec: &StepSpec,
        attempts: u32,
        started: SystemTime,
    ) -> Result<Note, ActionError> {
        let prompt = spec.with.get("prompt").and_then(|p| p.as_str()).unwrap_or("approve to continue");
        // Whoever reads `drctl show` should know whom to call.
        let prompt = match spec.with.get("role").and_then(|r| r.as_str()) {
            Some("admin") => format!("{prompt} (for an admin to approve)"),
            _ => prompt.to_string(),
        };
        let waiting = Transition {
            at: self.clock.now(),
            state: StepState::WaitingApproval,
            attempts,
            started_at: Some(started),
            finished_at: None,
            error: None,
            note: Some(&prompt),
            ran_by: None,
        };
        self.write(execution, idx, &spec.id, &waiting).map_err(|e| ActionError::Fatal(e.to_string()))?;
        loop {
            // Any attempt's approval counts: an approval given before a crash still holds.
            match self.state.approved_by(execution, &spec.id, 0) {
                Ok(Some(a)) => return Ok(Some(format!("approved by {}", a.by))),
                Ok(None) => {}
                Err(e) => return Err(ActionError::Transient(e.to_string())),
            }
            if self.aborting(execution) {
                return Err(ActionError::Fatal("the execution was aborted while waiting for approval".into()));
            }
            if self.crashed() {
                return Err(ActionError::Fatal("crashed".into()));
            }
            self.clock.sleep(self.poll).await;
        }
    }

    /// Holds a step a crash caught running until a commander decides:
    /// run it again, or record it as done. `attempt` is the one caught.
    async fn await_decision(
        &self,
        execution: &str,
        idx: usize,
        spec: &StepSpec,
        attempt: u32,
    ) -> Result<Decision, Error> {
        let note = interrupted_note(execution, &spec.id);
        let waiting = Transition {
            at: self.clock.now(),
            state: StepState::WaitingApproval,
            attempts: attempt,
            started_at: None,
            finished_at: None,
            error: None,
            note: Some(&note),
            ran_by: None,
        };
        self.write(execution, idx, &spec.id, &waiting)?;
        tracing::warn!(execution, step = %spec.id, attempt, "step interrupted by a crash; waiting for a commander");
        loop {
            if let Some(a) = self.state.approved_by(execution, &spec.id, attempt.max(1))? {
                return Ok(if a.done { Decision::Done(a.by) } else { Decision::RunAgain });
            }
            if self.aborting(execution) {
                return Ok(Decision::Aborted);
            }
            if self.crashed() {
                return Err(Error::Crashed);
            }
            self.clock.sleep(self.poll).await;
        }
    }
}

/// What a commander decided about an interrupted step.
enum Decision {
    RunAgain,
    Done(String),
    Aborted,
}

/// A time in RFC 3339 (UTC, seconds), for messages.
fn chrono_like(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
