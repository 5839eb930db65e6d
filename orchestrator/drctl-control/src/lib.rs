//! drctl's operations, wired together from the providers: measuring live
//! status (SPEC §4) and running replication (passes and schedules).
//!
//! This is the one place that knows which provider serves which datastore
//! kind; the CLI and the controller (`drctl serve`) both call it, so they
//! measure and copy in exactly the same way.

mod actions;
pub mod declare;
pub mod failover;
mod fence;
pub mod live;
pub mod policy;
mod preflight;
pub mod replicate;
pub mod schedule;

/// Errors of drctl's operations. Which variant says whose fault it is:
/// [`Error::BadRequest`] is the caller's (exit 2, HTTP 4xx); the others are
/// the world's or drctl's own (exit 1, HTTP 5xx).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name, scope or request that does not fit the topology.
    #[error("{0}")]
    BadRequest(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] drctl_state::Error),
    /// The journal holds something this drctl cannot read back.
    #[error("execution {execution}: the journal is damaged: {why}")]
    CorruptJournal { execution: String, why: String },
    /// An AWS call failed while acting (not the caller's fault).
    #[error(transparent)]
    Aws(#[from] drctl_aws::Error),
    /// The engine stopped an execution before its end.
    #[error("execution {execution}: {source}")]
    Engine { execution: String, source: drctl_engine::Error },
}
