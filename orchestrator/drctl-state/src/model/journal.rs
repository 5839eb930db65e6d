//! The execution journal's records: a failover's steps and every
//! transition, written before and after each effect, so a controller killed
//! at any moment can resume without running a finished step's effect twice.
//! Entities are locked by an execution until it ends, so two executions
//! never touch the same entity at once.

use crate::error::Result;
use std::time::{Duration, SystemTime};

/// docs/declaring.md step states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    WaitingApproval,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::WaitingApproval => "waiting_approval",
        }
    }

    /// Reads a stored state back. Strict: a state this drctl does not know
    /// (a newer drctl's, a damaged row) is an error, never `pending`, which
    /// would run a step whose effect may already have happened.
    pub fn parse(s: &str) -> Option<StepState> {
        Some(match s {
            "pending" => StepState::Pending,
            "running" => StepState::Running,
            "succeeded" => StepState::Succeeded,
            "failed" => StepState::Failed,
            "skipped" => StepState::Skipped,
            "waiting_approval" => StepState::WaitingApproval,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Failed | StepState::Skipped)
    }
}

/// An execution's overall state.
pub mod exec_state {
    pub const RUNNING: &str = "running";
    pub const ABORTING: &str = "aborting";
    /// A step failed: nothing new starts until a commander retries, skips,
    /// marks it done or aborts. Not final: its entities stay locked.
    pub const PAUSED: &str = "paused";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const ABORTED: &str = "aborted";
    pub const REFUSED: &str = "refused";

    pub fn is_final(s: &str) -> bool {
        matches!(s, SUCCEEDED | FAILED | ABORTED | REFUSED)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub id: String,
    pub declared_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub state: String,
    pub reason: String,
    /// The plan executed, as JSON.
    pub plan: String,
    /// The declaration's options (scope, force, parallel), as JSON.
    pub options: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub idx: usize,
    pub id: String,
    pub entity: String,
    pub action: String,
    pub state: StepState,
    pub attempts: u32,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub error: Option<String>,
    pub note: Option<String>,
    /// The controller (or CLI process) that last ran it.
    pub ran_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: SystemTime,
    pub step: Option<String>,
    pub kind: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// When it happened, on the caller's clock (the event's timestamp).
    pub at: SystemTime,
    pub state: StepState,
    pub attempts: u32,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub error: Option<&'a str>,
    pub note: Option<&'a str>,
    /// Who runs the step (set when it starts running; None keeps the last).
    pub ran_by: Option<&'a str>,
}

/// A commander's decision on a waiting step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    /// Recorded as done without running (`drctl approve --done`).
    pub done: bool,
}

/// The answer to [`Journal::claim_execution`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the execution until its lease runs out.
    Ours,
    /// Another process does, until `until`.
    Held { by: String, until: SystemTime },
}

/// The execution journal: executions, their steps and events, entity
/// locks, approvals, abort requests, and where each primary is now.
pub trait Journal: Send + Sync {
    /// Records a new execution and its steps, and locks its entities.
    fn create_execution(
        &self,
        row: &ExecutionRow,
        steps: &[(String, String, String)],
        entities: &[String],
    ) -> Result<()>;

    fn execution(&self, id: &str) -> Result<ExecutionRow>;

    /// Every execution, newest first.
    fn executions(&self) -> Result<Vec<ExecutionRow>>;

    fn steps(&self, execution: &str) -> Result<Vec<StepRow>>;

    /// Writes a step's new state and its event in one transaction.
    fn transition(&self, execution: &str, idx: usize, step: &str, t: &Transition) -> Result<()>;

    /// Sets an execution's state; a final state releases its entity locks.
    fn set_execution_state(&self, execution: &str, state: &str, finished: Option<SystemTime>) -> Result<()>;

    /// Records a commander's decision on a waiting step, for the step's
    /// current attempt; false when that attempt was already decided.
    /// `done`: the step's effect happened, record it without running it.
    fn approve(&self, execution: &str, step: &str, by: &str, done: bool) -> Result<bool>;

    /// The decision on a step made at or after `attempt` (0: any).
    fn approved_by(&self, execution: &str, step: &str, attempt: u32) -> Result<Option<Approval>>;

    /// Takes (or renews) the lease that makes `owner` the only process
    /// running the execution's steps until `now + ttl`. Another owner's
    /// lease that has not expired wins: [`Claim::Held`].
    fn claim_execution(&self, execution: &str, owner: &str, now: SystemTime, ttl: Duration) -> Result<Claim>;

    /// Who holds the execution's lease now, and until when (expired leases: none).
    fn execution_owner(&self, execution: &str, now: SystemTime) -> Result<Option<(String, SystemTime)>>;

    /// Gives the lease up (the run ended); a lease held by another is left.
    fn release_execution(&self, execution: &str, owner: &str) -> Result<()>;

    /// Asks a running execution to stop; the engine notices and winds down.
    fn request_abort(&self, execution: &str) -> Result<String>;

    fn events(&self, execution: &str) -> Result<Vec<Event>>;

    /// Appends an event that is not a step transition: a commander's
    /// retry or skip and its overrides, a `wait` step's deadline.
    fn record_event(
        &self,
        execution: &str,
        at: SystemTime,
        step: Option<&str>,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<()>;

    /// Records where a datastore's primary is after a failover.
    fn set_placement(&self, datastore: &str, primary_zone: &str) -> Result<()>;

    /// Every recorded placement: (datastore, primary zone).
    fn placements(&self) -> Result<Vec<(String, String)>>;
}
