//! drctl's operations, wired together from the providers: measuring live
//! status (docs/lag-and-rpo.md) and running replication (passes and schedules).
//!
//! This is the one place that knows which provider serves which datastore
//! kind; the CLI and the controller (`drctl serve`) both call it, so they
//! measure and copy in exactly the same way.

mod actions;
mod actor;
pub mod attention;
pub mod declaration;
pub mod declare;
pub mod erasure;
pub mod failover;
pub mod fence;
pub mod lag;
pub mod live;
pub mod overrides;
pub mod policy;
mod preflight;
pub mod readiness;
pub mod replicate;
pub mod returned;
pub mod schedule;
pub mod times;

use drctl_core::diag::Code;

/// Errors of drctl's operations. Which variant says whose fault it is:
/// [`Error::Request`] is the caller's (exit 2, HTTP 422); the others are
/// the world's or drctl's own (exit 1, HTTP 5xx).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name, scope or decision that does not fit the topology or the journal.
    #[error(transparent)]
    Request(#[from] Request),
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

/// A request refused because of what it asks, each kind with a stable code
/// ([`Request::code`]) that scripts and the operator API's error bodies
/// carry, and a hint ([`Code::hint`]).
#[derive(Debug, thiserror::Error)]
pub enum Request {
    #[error("`{name}` is not a datastore of the topology")]
    NotADatastore { name: String },
    #[error("`{name}` is not replicated by drctl (only s3 datastores with `replication: {{ by: drctl }}` are)")]
    NotReplicatedByDrctl { name: String },
    #[error("`{name}` has no buckets")]
    NoBuckets { name: String },
    #[error("`{name}` has no bucket in zone `{zone}`")]
    NoBucketInZone { name: String, zone: String },
    #[error("{zone} holds the primary bucket of `{name}`: its objects are not in conflict")]
    PrimaryHasNoConflicts { name: String, zone: String },
    #[error("{key} in {bucket} ({zone}): {why}")]
    UnreadableObject { key: String, bucket: String, zone: String, why: String },
    #[error("say what is lost: zones, regions or targets")]
    EmptyScope,
    #[error(transparent)]
    Scope(#[from] drctl_core::Error),
    #[error("execution {execution} was planned from a different topology; restore the file it was declared with to resume it")]
    TopologyChanged { execution: String },
    #[error("execution {execution} has no step `{step}`")]
    NoSuchStep { execution: String, step: String },
    #[error("step `{step}` is an approval: approve it without --done (--done is for a step a crash interrupted)")]
    ApprovalIsNotDone { step: String },
    #[error("step `{step}` ({action}) is {state}, not waiting for a decision: only approval steps and steps a crash interrupted can be approved")]
    NotWaiting { step: String, action: String, state: String },
    #[error("step `{step}` is for {needs} to approve (its runbook's `role`); {who} is {has}")]
    NotYourApproval { step: String, needs: &'static str, who: String, has: &'static str },
    /// A request body or flag value that is not what it must be.
    #[error("`{field}` {why}")]
    BadRequest { field: String, why: String },
    /// A step failed: approving it means nothing; the decisions are named.
    #[error("step `{step}` of {execution} failed: `drctl retry {execution} {step}` runs it again, `drctl approve {execution} {step} --done` records it as done by hand")]
    FailedNotWaiting { execution: String, step: String },
    /// A decision the execution's state does not allow (not paused, the
    /// step did not fail, the execution already ended).
    #[error("{why}")]
    NotDecidable { why: String },
}

/// An engine error as the caller meets it: a decision that does not fit
/// the journal is the caller's (exit 2, 422); the rest is the world's.
pub(crate) fn engine_error(execution: &str, e: drctl_engine::Error) -> Error {
    use drctl_engine::Error as E;
    match e {
        E::State(s) => Error::State(s),
        E::NoSuchStep { execution, step } => Request::NoSuchStep { execution, step }.into(),
        e @ (E::NotPaused { .. } | E::StepNotFailed { .. } | E::AlreadyEnded { .. }) => {
            Request::NotDecidable { why: e.to_string() }.into()
        }
        other => Error::Engine { execution: execution.to_string(), source: other },
    }
}

impl Request {
    /// The stable code of this kind of refusal.
    pub fn code(&self) -> Code {
        match self {
            Request::NotADatastore { .. } | Request::NoBucketInZone { .. } => Code::NotInTopology,
            Request::NotReplicatedByDrctl { .. } | Request::NoBuckets { .. } => Code::NotReplicated,
            Request::PrimaryHasNoConflicts { .. } | Request::UnreadableObject { .. } => Code::NoSuchObject,
            Request::EmptyScope => Code::EmptyScope,
            Request::Scope(_) => Code::BadScope,
            Request::TopologyChanged { .. } => Code::TopologyChanged,
            Request::NoSuchStep { .. } => Code::NoSuchStep,
            Request::ApprovalIsNotDone { .. } | Request::NotWaiting { .. } => Code::NotWaiting,
            Request::NotYourApproval { .. } => Code::NotYourApproval,
            Request::BadRequest { .. } => Code::BadValue,
            Request::FailedNotWaiting { .. } | Request::NotDecidable { .. } => Code::NotWaiting,
        }
    }
}
