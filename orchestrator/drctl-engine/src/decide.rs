//! A commander's decisions about a paused execution, written to the
//! journal: the engine's own state machine, so that the CLI, the operator
//! API and a drill move a paused execution in exactly the same way (and
//! the model tests check those moves against the engine).
//!
//! Each decision only rewrites the journal; running the execution on is
//! the caller's next step ([`Engine::run`](crate::Engine::run)), because
//! who runs it (this terminal, a controller) is the caller's choice.

use crate::{Error, StepSpec};
use drctl_state::journal::{exec_state, StepRow, StepState, Transition};
use drctl_state::State;
use std::time::SystemTime;

/// The event kinds decisions leave in the journal (beside the transitions).
pub mod kind {
    pub const RETRIED: &str = "retried";
    pub const GIVEN_UP: &str = "given_up";
    pub const DONE_BY_HAND: &str = "done_by_hand";
    pub const ABORTED_BY: &str = "abort_requested";
}

fn paused_step(state: &State, execution: &str, step: &str) -> Result<StepRow, Error> {
    let row = state.execution(execution)?;
    if row.state != exec_state::PAUSED {
        return Err(Error::NotPaused { execution: execution.into(), state: row.state });
    }
    let steps = state.steps(execution)?;
    let s = steps
        .into_iter()
        .find(|s| s.id == step)
        .ok_or_else(|| Error::NoSuchStep { execution: execution.into(), step: step.into() })?;
    if s.state != StepState::Failed {
        return Err(Error::StepNotFailed {
            execution: execution.into(),
            step: step.into(),
            state: s.state.as_str().into(),
        });
    }
    Ok(s)
}

/// Every step that needs `idx`, directly or through others, in plan order.
pub fn needing(specs: &[StepSpec], idx: usize) -> Vec<usize> {
    let mut gone = vec![false; specs.len()];
    if idx < specs.len() {
        gone[idx] = true;
    }
    let mut out = Vec::new();
    // Steps come after what they need (the plan's order), so one pass does.
    for i in 0..specs.len() {
        if i != idx && specs[i].after.iter().any(|&d| gone[d]) {
            gone[i] = true;
            out.push(i);
        }
    }
    out
}

/// Puts a failed step back to `pending` and the execution back to
/// `running`; `detail` (who, with which overrides) goes into the journal.
pub fn retry(state: &State, execution: &str, step: &str, detail: &str, at: SystemTime) -> Result<(), Error> {
    let s = paused_step(state, execution, step)?;
    state.record_event(execution, at, Some(step), kind::RETRIED, Some(detail))?;
    let t = Transition {
        at,
        state: StepState::Pending,
        attempts: s.attempts,
        started_at: None,
        finished_at: None,
        error: None,
        note: Some(detail),
        ran_by: None,
    };
    state.transition(execution, s.idx, step, &t)?;
    state.set_execution_state(execution, exec_state::RUNNING, None)?;
    Ok(())
}

/// Gives a failed step up: it and every step that needs it are skipped
/// (the engine skips those when it runs on); the rest goes on. Answers
/// the ids of the steps that need it.
pub fn skip(
    state: &State,
    execution: &str,
    specs: &[StepSpec],
    step: &str,
    detail: &str,
    at: SystemTime,
) -> Result<Vec<String>, Error> {
    let s = paused_step(state, execution, step)?;
    let needs: Vec<String> = needing(specs, s.idx).into_iter().map(|i| specs[i].id.clone()).collect();
    state.record_event(execution, at, Some(step), kind::GIVEN_UP, Some(detail))?;
    let t = Transition {
        at,
        state: StepState::Skipped,
        attempts: s.attempts,
        started_at: s.started_at,
        finished_at: Some(at),
        error: s.error.as_deref(),
        note: Some(detail),
        ran_by: None,
    };
    state.transition(execution, s.idx, step, &t)?;
    state.set_execution_state(execution, exec_state::RUNNING, None)?;
    Ok(needs)
}

/// Records a failed step as done by hand: it counts as succeeded, and what
/// needs it goes on when the execution runs on.
pub fn done(state: &State, execution: &str, step: &str, detail: &str, at: SystemTime) -> Result<(), Error> {
    let s = paused_step(state, execution, step)?;
    state.record_event(execution, at, Some(step), kind::DONE_BY_HAND, Some(detail))?;
    let t = Transition {
        at,
        state: StepState::Succeeded,
        attempts: s.attempts,
        started_at: s.started_at,
        finished_at: Some(at),
        error: None,
        note: Some(detail),
        ran_by: None,
    };
    state.transition(execution, s.idx, step, &t)?;
    state.set_execution_state(execution, exec_state::RUNNING, None)?;
    Ok(())
}

/// How an abort went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aborted {
    /// A process runs the execution: it was asked to stop and winds down
    /// (running steps finish, the rest is skipped).
    Requested,
    /// Nothing ran it (paused, or its process is gone): the journal was
    /// closed here, every step that had not ended skipped.
    Closed,
}

/// Aborts an execution. One a live process runs is asked to stop; one
/// nothing runs (paused, detached, crashed) is closed in the journal at
/// once, so `abort` never needs a topology or an engine to finish.
/// `detail` says who aborted it.
pub fn abort(state: &State, execution: &str, detail: &str, at: SystemTime) -> Result<Aborted, Error> {
    let row = state.execution(execution)?;
    if exec_state::is_final(&row.state) {
        return Err(Error::AlreadyEnded { execution: execution.into(), state: row.state });
    }
    state.record_event(execution, at, None, kind::ABORTED_BY, Some(detail))?;
    let owner = state.execution_owner(execution, at)?;
    if owner.is_some_and(|(by, _)| !crate::owner_is_dead_here(&by)) {
        state.request_abort(execution)?;
        return Ok(Aborted::Requested);
    }
    for s in state.steps(execution)? {
        let note = match s.state {
            StepState::Pending => "the execution was aborted before this step started",
            StepState::WaitingApproval => "the execution was aborted while this step waited for a decision",
            StepState::Running => {
                "the execution was aborted after this step was interrupted while it ran: its effect may or may not have happened"
            }
            _ => continue,
        };
        let t = Transition {
            at,
            state: StepState::Skipped,
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: Some(at),
            error: None,
            note: Some(note),
            ran_by: None,
        };
        state.transition(execution, s.idx, &s.id, &t)?;
    }
    state.set_execution_state(execution, exec_state::ABORTED, Some(at))?;
    Ok(Aborted::Closed)
}
