//! The failover a drill declares and runs in its own process, owned by the
//! drill so that it never outlives it.
//!
//! A drill that ends normally waits for its failover or asks it to stop
//! (`Drill::stop_execution`). A drill that is aborted instead (its future
//! dropped: a controller past its shutdown deadline, a runtime shutting
//! down) takes its failover with it: the task is cancelled, the engine
//! gives its lease up as its run is dropped, and the execution is aborted
//! through the journal as a commander's abort is: the steps not done are
//! closed with a note saying so, the execution ends `aborted`, its
//! entities are unlocked. Never left running, and never left `running` in
//! the journal with nobody running it.

use drctl_control::declare::{self, Actor, Declarer};
use drctl_engine::Ended;
use drctl_state::State;
use std::sync::Arc;
use tokio::task::JoinHandle;

type Outcome = Result<Ended, drctl_control::Error>;

/// The running failover; dropping it cancels it (see the module documentation).
pub(super) struct Failover {
    task: JoinHandle<Outcome>,
}

impl Failover {
    /// Runs execution `id` (recorded already) through `declarer`.
    pub(super) fn start(declarer: Declarer, state: Arc<State>, id: String) -> Failover {
        let task = tokio::spawn(async move {
            // Declared before the run, so dropped after it: by then the
            // engine has given its lease up and the abort closes the journal.
            let mut closer = AbortWhenDropped { state, id: id.clone(), armed: true };
            let run = std::pin::pin!(declarer.run(&id));
            let outcome = run.await;
            closer.armed = false;
            outcome
        });
        Failover { task }
    }

    pub(super) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The task, to await its outcome (the failover stays owned meanwhile).
    pub(super) fn task(&mut self) -> &mut JoinHandle<Outcome> {
        &mut self.task
    }
}

impl Drop for Failover {
    fn drop(&mut self) {
        // Nothing when it finished; otherwise its run is dropped on the runtime.
        self.task.abort();
    }
}

/// Aborts the execution through the journal when the run is dropped before it ended.
struct AbortWhenDropped {
    state: Arc<State>,
    id: String,
    armed: bool,
}

impl Drop for AbortWhenDropped {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let who = Actor::new("drill", "controller");
        match declare::abort(&*self.state, &self.id, &who) {
            Ok(state) => {
                tracing::warn!(execution = %self.id, state, "the drill was aborted: its failover was aborted with it")
            }
            Err(e) => {
                tracing::error!(execution = %self.id, error = %e, "the drill was aborted but its failover could not be aborted in the journal: abort it with `drctl abort`")
            }
        }
    }
}
