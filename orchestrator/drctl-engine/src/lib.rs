//! The execution engine: runs a failover plan's steps for real.
//!
//! Steps start when every step they come after has succeeded, at most
//! `parallel` at once, in the plan's priority order (its prioritised
//! schedule's start times). Every attempt is journaled before its effect
//! (`running`) and after it (`succeeded`/`failed`), so a controller killed
//! at any moment resumes from the journal: finished steps are never run
//! again, and a step caught `running` is run again, which is safe because
//! every action checks the world first and does no harm twice.
//!
//! Failures are classified by the action: transient ones (network,
//! throttling, 5xx) are retried with exponential backoff and jitter up to
//! the step's attempts, each attempt under its timeout; others fail the
//! step at once. A failed step skips what depends on it, independent
//! branches go on, and the journal says exactly which steps took effect.
//! `approval` steps wait for `drctl approve`; an abort request stops new
//! steps, lets running ones finish and skips the rest.

use drctl_runtime::{Backoff, Clock, SystemClock};
use drctl_state::journal::{exec_state, StepState, Transition};
use drctl_state::State;
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
    fn run<'a>(&'a self, execution: &'a str, step: &'a StepSpec) -> BoxFuture<'a, Result<Note, ActionError>>;
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
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Aborted,
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
    writes: Arc<AtomicUsize>,
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
            writes: Arc::default(),
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
        let rows = self.state.steps(execution)?;
        let mut states: Vec<StepState> = rows.iter().map(|r| r.state).collect();
        let mut attempts: Vec<u32> = rows.iter().map(|r| r.attempts).collect();
        // A step caught mid-flight by a crash runs again (actions are idempotent).
        for s in states.iter_mut() {
            if matches!(s, StepState::Running | StepState::WaitingApproval) {
                *s = StepState::Pending;
            }
        }
        let cap = self.parallel.unwrap_or(usize::MAX).max(1);
        let mut running: JoinSet<(usize, Result<StepState, Error>, u32)> = JoinSet::new();
        let mut in_flight: HashSet<usize> = HashSet::new();
        let mut aborting = false;
        loop {
            if self.crashed() {
                return Err(Error::Crashed);
            }
            if !aborting && self.state.execution(execution)?.state == exec_state::ABORTING {
                aborting = true;
            }
            // Skip what can no longer run.
            for i in 0..specs.len() {
                if states[i] != StepState::Pending || in_flight.contains(&i) {
                    continue;
                }
                let blocked =
                    specs[i].after.iter().find(|&&d| matches!(states[d], StepState::Failed | StepState::Skipped));
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
                    };
                    self.write(execution, i, &specs[i].id, &t)?;
                }
            }
            // Start ready steps, most urgent first.
            let mut ready: Vec<usize> = (0..specs.len())
                .filter(|&i| states[i] == StepState::Pending && !in_flight.contains(&i))
                .filter(|&i| specs[i].after.iter().all(|&d| states[d] == StepState::Succeeded))
                .collect();
            ready.sort_by(|&a, &b| specs[a].priority.total_cmp(&specs[b].priority).then(a.cmp(&b)));
            for i in ready {
                if aborting || in_flight.len() >= cap {
                    break;
                }
                in_flight.insert(i);
                let engine = self.clone();
                let spec = specs[i].clone();
                let execution = execution.to_string();
                let done = attempts[i];
                let span = tracing::info_span!("step", execution = %execution, step = %spec.id, entity = %spec.entity);
                running.spawn(
                    async move {
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
        let ended = if states.contains(&StepState::Failed) {
            Ended::Failed
        } else if aborting || states.iter().any(|s| *s != StepState::Succeeded) {
            Ended::Aborted
        } else {
            Ended::Succeeded
        };
        let final_state = match ended {
            Ended::Succeeded => exec_state::SUCCEEDED,
            Ended::Failed => exec_state::FAILED,
            Ended::Aborted => exec_state::ABORTED,
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
            };
            if let Err(e) = self.write(execution, idx, &spec.id, &running) {
                return (Err(e), attempts);
            }
            tracing::info!(execution, step = %spec.id, entity = %spec.entity, action = %spec.action, attempt = attempts, "step started");
            let outcome = if spec.action == APPROVAL {
                self.await_approval(execution, idx, spec, attempts, started).await
            } else {
                let fut = self.actions.run(execution, spec);
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
        let waiting = Transition {
            at: self.clock.now(),
            state: StepState::WaitingApproval,
            attempts,
            started_at: Some(started),
            finished_at: None,
            error: None,
            note: Some(prompt),
        };
        self.write(execution, idx, &spec.id, &waiting).map_err(|e| ActionError::Fatal(e.to_string()))?;
        loop {
            match self.state.approved_by(execution, &spec.id) {
                Ok(Some(by)) => return Ok(Some(format!("approved by {by}"))),
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
}
