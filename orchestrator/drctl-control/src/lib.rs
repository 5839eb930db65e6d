//! drctl's operations, wired together from the providers: measuring live
//! status (SPEC §4) and running replication (passes and schedules).
//!
//! This is the one place that knows which provider serves which datastore
//! kind; the CLI and the controller (`drctl serve`) both call it, so they
//! measure and copy in exactly the same way.

pub mod failover;
pub mod live;
pub mod replicate;
pub mod schedule;

/// Errors of operations that cannot even start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A datastore named on the command line does not exist or does not fit.
    #[error("{0}")]
    BadRequest(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] drctl_state::Error),
}
