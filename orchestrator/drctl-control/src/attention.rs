//! What in the executions waits for a person: a paused execution (a step
//! failed; nothing goes on until someone retries, skips, marks it done or
//! aborts), and an approval waiting longer than its `remind_after`. The
//! controller tells the operators' channels of each once
//! (docs/readiness.md); this module only finds them, from the journal.

use crate::failover;
use drctl_state::journal::{exec_state, StepState};
use drctl_state::State;
use std::time::SystemTime;

/// One thing waiting for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    /// Stable while the situation is the same (tell once per key).
    pub key: String,
    /// `execution.paused` or `approval.waiting`.
    pub kind: &'static str,
    pub execution: String,
    /// The failed steps, or the approval step.
    pub steps: Vec<String>,
    /// A few words (a mail's subject).
    pub title: String,
    /// One line for a person, with the commands that go on.
    pub summary: String,
}

/// Everything waiting for a person at `now`.
pub fn waiting(state: &State, now: SystemTime) -> Vec<Waiting> {
    let mut out = Vec::new();
    for row in state.executions().unwrap_or_default() {
        if exec_state::is_final(&row.state) {
            continue;
        }
        let steps = state.steps(&row.id).unwrap_or_default();
        let id = &row.id;
        if row.state == exec_state::PAUSED {
            let failed: Vec<_> = steps.iter().filter(|s| s.state == StepState::Failed).collect();
            let names: Vec<String> = failed.iter().map(|s| s.id.clone()).collect();
            let attempts: Vec<String> = failed.iter().map(|s| format!("{}#{}", s.id, s.attempts)).collect();
            let first = names.first().cloned().unwrap_or_default();
            out.push(Waiting {
                key: format!("paused:{id}:{}", attempts.join(",")),
                kind: "execution.paused",
                execution: id.clone(),
                title: format!("execution {id} is PAUSED: {} failed", names.join(", ")),
                summary: format!(
                    "execution {id} is PAUSED: {} failed; nothing goes on until someone decides: `drctl retry {id} {first}`, `drctl skip {id} {first}`, `drctl approve {id} {first} --done` or `drctl abort {id}`",
                    names.join(", ")
                ),
                steps: names,
            });
        }
        for s in steps.iter().filter(|s| s.state == StepState::WaitingApproval) {
            let Some(since) = s.started_at else { continue };
            let waited = now.duration_since(since).unwrap_or_default();
            if waited < failover::remind_after_of(&row, &s.id) {
                continue;
            }
            out.push(Waiting {
                key: format!("approval:{id}:{}:{}", s.id, s.attempts),
                kind: "approval.waiting",
                execution: id.clone(),
                title: format!("execution {id} waits for approval of {}", s.id),
                steps: vec![s.id.clone()],
                summary: format!(
                    "execution {id} has waited {} for approval of {}: `drctl approve {id} {}`",
                    crate::lag::human(waited.as_secs_f64()),
                    s.id,
                    s.id
                ),
            });
        }
    }
    out
}
