//! Every background task has an owner.
//!
//! A bare `tokio::spawn` is a task nobody waits for: it outlives the work
//! that started it (a failover still acting while a drill heals), and at
//! shutdown nobody can say it is still running. A [`TaskCenter`] owns each
//! task under a name, hands it a [`CancellationToken`] (a child of the
//! center's), and applies its [`OnFailure`] policy when it panics.
//! [`TaskCenter::shutdown`] cancels every token, waits up to a deadline,
//! aborts what is left and names it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What happens when a task panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Logged; the task stays ended (one-off work: an execution, a drill).
    Log,
    /// Logged, then started again after the pause (a sampler, a scheduler),
    /// until the center shuts down.
    Restart(Duration),
}

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Entry {
    name: String,
    handle: JoinHandle<()>,
}

/// Owns named background tasks; see the module documentation.
#[derive(Clone)]
pub struct TaskCenter {
    root: CancellationToken,
    tasks: Arc<Mutex<Vec<Entry>>>,
}

impl Default for TaskCenter {
    fn default() -> Self {
        TaskCenter::new()
    }
}

impl TaskCenter {
    pub fn new() -> TaskCenter {
        TaskCenter { root: CancellationToken::new(), tasks: Arc::default() }
    }

    /// Cancelled when the center shuts down.
    pub fn token(&self) -> CancellationToken {
        self.root.clone()
    }

    /// Runs `make(token)` under `name`. The token is cancelled at shutdown
    /// (or by the task's own caller through [`TaskCenter::token`]); the
    /// task should finish promptly when it is.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, on_failure: OnFailure, make: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let token = self.root.child_token();
        let label = name.clone();
        let handle = tokio::spawn(async move {
            loop {
                // Aborting this task (a shutdown past its deadline, a lost
                // leadership) must stop the work too, not only the watcher.
                let mut work = AbortOnDrop(tokio::spawn(make(token.clone())));
                let run = (&mut work.0).await;
                match run {
                    Err(e) if e.is_panic() && !token.is_cancelled() => match on_failure {
                        OnFailure::Log => {
                            tracing::error!(task = %label, "task panicked; not restarted");
                            return;
                        }
                        OnFailure::Restart(pause) => {
                            tracing::error!(task = %label, pause_ms = pause.as_millis() as u64, "task panicked; restarting");
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
                                _ = token.cancelled() => return,
                            }
                        }
                    },
                    _ => return,
                }
            }
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|e| !e.handle.is_finished());
        tasks.push(Entry { name, handle });
    }

    /// The names of the tasks still running.
    pub fn running(&self) -> Vec<String> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter().filter(|e| !e.handle.is_finished()).map(|e| e.name.clone()).collect()
    }

    /// Cancels every task and waits up to `deadline` for them to end; the
    /// ones still running then are aborted and named.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        self.root.cancel();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = self.running();
            if left.is_empty() {
                return left;
            }
            if tokio::time::Instant::now() >= until {
                let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                for e in tasks.iter().filter(|e| !e.handle.is_finished()) {
                    tracing::warn!(task = %e.name, "still running at the shutdown deadline; aborted");
                    e.handle.abort();
                }
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_aborted_at_the_deadline_stops_its_work_too() {
        let center = TaskCenter::new();
        let beats = Arc::new(AtomicU32::new(0));
        let b = beats.clone();
        center.spawn("stubborn", OnFailure::Log, move |_ignored| {
            let b = b.clone();
            async move {
                loop {
                    b.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(center.shutdown(Duration::from_millis(100)).await, ["stubborn"]);
        // An abort lands at the task's next turn.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let at_abort = beats.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(beats.load(Ordering::SeqCst), at_abort, "the aborted work kept running");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_every_task_and_names_the_ones_that_do_not_stop() {
        let center = TaskCenter::new();
        center.spawn("polite", OnFailure::Log, |token| async move { token.cancelled().await });
        center.spawn("stubborn", OnFailure::Log, |_| async move {
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        let mut running = center.running();
        running.sort();
        assert_eq!(running, ["polite", "stubborn"]);
        let left = center.shutdown(Duration::from_secs(5)).await;
        assert_eq!(left, ["stubborn"], "the one that ignored its token is named");
        tokio::task::yield_now().await;
        assert!(center.running().is_empty(), "and aborted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarting_task_comes_back_after_a_panic_until_shutdown() {
        let center = TaskCenter::new();
        let starts = Arc::new(AtomicU32::new(0));
        let s = starts.clone();
        center.spawn("sampler", OnFailure::Restart(Duration::from_secs(1)), move |token| {
            let s = s.clone();
            async move {
                if s.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bad sample");
                }
                token.cancelled().await;
            }
        });
        while starts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(center.running(), ["sampler"]);
        assert!(center.shutdown(Duration::from_secs(1)).await.is_empty());
        assert_eq!(starts.load(Ordering::SeqCst), 3, "two panics, two restarts, then a clean stop");
    }
}
