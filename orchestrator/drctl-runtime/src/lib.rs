//! The ground drctl's long-running work stands on.
//!
//! - [`clock`]: where time comes from. The engine, the schedulers, retries,
//!   samplers and drills ask a [`Clock`](clock::Clock) instead of the
//!   system, so tests run hours of schedules and backoffs in milliseconds,
//!   with timestamps that agree with the waits.
//! - [`tasks`]: who owns a background task. Every task is spawned through a
//!   [`TaskCenter`](tasks::TaskCenter) under a name, with a cancellation
//!   token and a policy for when it fails; shutdown cancels them all and
//!   waits up to a deadline, then names the ones still running. A
//!   controller that loses its leadership cancels its leader-only work the
//!   same way.
//! - [`retry`]: the one backoff policy for retried work.
//! - [`leader`]: who leads, when several controllers share one state.

pub mod clock;
pub mod leader;
pub mod retry;
pub mod tasks;

pub use clock::{Clock, MockClock, SystemClock};
pub use leader::{Leader, Leadership};
pub use retry::Backoff;
pub use tasks::{OnFailure, TaskCenter};
pub use tokio_util::sync::CancellationToken;
