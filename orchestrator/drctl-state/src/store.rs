//! The state store as a trait: what drctl must remember, not how.
//!
//! Everything durable goes through [`Store`]: the execution journal and its
//! entity locks, approvals, placements, RPO samples, replication
//! bookkeeping, tokens, the audit log, incidents, maintenance and drills.
//! Callers hold an `Arc<State>` (`State` is `dyn Store`) and never know
//! the backend; the URL picks it ([`open`](State::open)). The embedded
//! SQLite file ([`Sqlite`](crate::Sqlite)) is the default because a DR tool
//! must work on the worst day without a database of its own to fail over
//! first; a consensus store (etcd) for highly available controllers
//! implements the same trait.
//!
//! Contract every backend keeps: a method's writes are atomic; reads see
//! every write that returned before them; stored states parse strictly (an
//! unknown value is an error, never a default that could run a step twice).

use crate::controller::{AuditEntry, DrillRow, Incident, Maintenance, Role, Token, UptimeDay, Verified};
use crate::journal::{Event, ExecutionRow, StepRow, Transition};
use crate::{MultipartCheckpoint, Result, RpoSample, RunTotals};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An object replication accounts for in one zone's bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedObject {
    pub zone: String,
    pub key: String,
    /// The object's ETag in that bucket.
    pub etag: String,
    /// The ETag of the source it is a copy of.
    pub source_etag: String,
    /// An operator kept it as it is, in a conflict: left alone, not reported.
    pub kept: bool,
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

/// What the controller keeps: tokens, the audit log, incidents,
/// maintenance, uptime counters, drill results, and the counters behind
/// its metrics.
pub trait Controller: Send + Sync {
    /// Stores a token (its hash only) and returns the secret, shown once.
    /// A new token's secret (shown once); `customer` names the customer a
    /// `customer` token sees, and only such a token names one.
    fn create_token(&self, name: &str, role: Role, customer: Option<&str>) -> Result<String>;

    fn tokens(&self) -> Result<Vec<Token>>;

    /// The live token a secret is, compared in constant time against
    /// every stored hash (no early exit on the first differing byte).
    fn authenticate(&self, secret: &str) -> Result<Option<Token>>;

    /// Revokes by name or id; returns the token revoked.
    fn revoke_token(&self, name_or_id: &str) -> Result<Token>;

    /// Appends an entry, chained to the previous one.
    fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        request: &serde_json::Value,
    ) -> Result<AuditEntry>;

    fn audit_entries(&self) -> Result<Vec<AuditEntry>>;

    /// Recomputes the chain; the first entry that does not match is named.
    fn verify_audit(&self) -> Result<Verified>;

    fn create_incident(
        &self,
        title: &str,
        status: &str,
        body: &str,
        services: &[String],
        execution: Option<&str>,
    ) -> Result<i64>;

    fn update_incident(&self, id: i64, status: &str, body: &str) -> Result<()>;

    /// Incidents, newest first, each with its updates (newest first).
    fn incidents(&self) -> Result<Vec<Incident>>;

    /// The open incident tied to an execution, if any.
    fn incident_of_execution(&self, execution: &str) -> Result<Option<i64>>;

    fn create_maintenance(
        &self,
        title: &str,
        body: &str,
        services: &[String],
        starts: SystemTime,
        ends: SystemTime,
    ) -> Result<i64>;

    fn maintenance(&self) -> Result<Vec<Maintenance>>;

    /// Counts one health check of each service in its UTC day.
    fn record_health(&self, at: SystemTime, checks: &[(String, bool)]) -> Result<()>;

    /// Per-day counters of a service from `since_day` on (days with no check are absent).
    fn uptime(&self, service: &str, since_day: i64) -> Result<Vec<UptimeDay>>;

    /// Replication totals per datastore since the state began.
    fn replication_totals(&self) -> Result<Vec<(String, crate::RunTotals)>>;

    /// (action, total seconds, count) of finished steps.
    fn step_durations(&self) -> Result<Vec<(String, f64, u64)>>;

    /// Executions per state.
    fn execution_counts(&self) -> Result<Vec<(String, u64)>>;

    fn begin_drill(&self, id: &str, experiment: &str) -> Result<()>;

    /// Records a drill that ran elsewhere (the CLI), whole.
    fn record_drill(
        &self,
        id: &str,
        experiment: &str,
        started: SystemTime,
        objectives_met: bool,
        report: &str,
    ) -> Result<()>;

    /// Drills, newest first.
    fn drills(&self) -> Result<Vec<DrillRow>>;

    fn finish_drill(&self, id: &str, objectives_met: Option<bool>, report: Option<&str>) -> Result<()>;
}

/// Measurements and replication bookkeeping: RPO samples, replication
/// runs and multipart-copy checkpoints.
pub trait Samples: Send + Sync {
    /// Where the state lives, for messages.
    fn location(&self) -> &str;

    fn schema_version(&self) -> Result<i64>;

    fn record_rpo_samples(&self, samples: &[RpoSample]) -> Result<()>;

    /// Samples of one datastore since `since`, oldest first.
    fn rpo_samples(&self, datastore: &str, since: SystemTime) -> Result<Vec<RpoSample>>;

    /// Records each standby's own lag: (zone, lag in seconds, None when unknown).
    fn record_replica_lags(&self, datastore: &str, at: SystemTime, lags: &[(String, Option<f64>)]) -> Result<()>;

    /// The last known lag of the standby in `zone` and when it was measured.
    fn last_replica_lag(&self, datastore: &str, zone: &str) -> Result<Option<(SystemTime, f64)>>;

    /// Starts a replication run; returns its id.
    fn begin_replication_run(&self, datastore: &str, at: SystemTime) -> Result<i64>;

    fn finish_replication_run(&self, id: i64, at: SystemTime, totals: RunTotals, error: Option<&str>) -> Result<()>;

    /// The last finished run of a datastore: (finished at, totals, error).
    fn last_replication_run(&self, datastore: &str) -> Result<Option<(SystemTime, RunTotals, Option<String>)>>;

    fn multipart_checkpoint(&self, datastore: &str, zone: &str, key: &str) -> Result<Option<MultipartCheckpoint>>;

    fn start_multipart(&self, datastore: &str, zone: &str, key: &str, cp: &MultipartCheckpoint) -> Result<()>;

    fn record_part(&self, datastore: &str, zone: &str, key: &str, part: i32, etag: &str) -> Result<()>;

    fn clear_multipart(&self, datastore: &str, zone: &str, key: &str) -> Result<()>;

    /// Records objects replication accounts for, one row per (zone, key):
    /// the ETag of the object drctl copied into that zone's bucket, or
    /// copied out of it, and the source ETag it is a copy of (equal, but for
    /// SSE-KMS, whose ETags are not digests). An object in a bucket that no
    /// row accounts for was written there and never replicated:
    /// replication never overwrites or deletes it.
    fn record_replicated(&self, datastore: &str, rows: &[ReplicatedObject]) -> Result<()>;

    /// What replication accounts for in one zone's bucket, by key.
    fn replicated(&self, datastore: &str, zone: &str) -> Result<std::collections::HashMap<String, ReplicatedObject>>;

    /// Forgets one object (replication deleted it).
    fn forget_replicated(&self, datastore: &str, zone: &str, key: &str) -> Result<()>;

    /// Replaces the conflicts the last pass found in one zone's bucket:
    /// (key, ETag, reason).
    fn replace_conflicts(&self, datastore: &str, zone: &str, rows: &[(String, String, String)]) -> Result<()>;

    /// Every conflict recorded for a datastore: (zone, key, ETag, reason).
    fn conflicts(&self, datastore: &str) -> Result<Vec<(String, String, String, String)>>;

    /// Marks a conflicting object as kept: replication leaves it alone
    /// while it has this ETag, and stops reporting it.
    fn keep_replicated(&self, datastore: &str, zone: &str, key: &str, etag: &str) -> Result<()>;

    /// Stores a small document every controller reads (the leader's latest
    /// status measurement, which followers serve), replacing the last one.
    fn publish(&self, name: &str, value: &str) -> Result<()>;

    fn published(&self, name: &str) -> Result<Option<String>>;
}

/// Everything a state backend stores; see the module documentation.
pub trait Store: Journal + Controller + Samples + crate::Audience + crate::Evidence + crate::Erasures {}

impl<T: Journal + Controller + Samples + crate::Audience + crate::Evidence + crate::Erasures> Store for T {}

/// The state store, whatever its backend.
pub type State = dyn Store;

impl dyn Store {
    /// Opens (creating when absent) the store at `url`: `sqlite://PATH`,
    /// relative to the current folder unless absolute (`sqlite:///abs/path`).
    pub fn open(url: &str) -> Result<Arc<State>> {
        Self::open_sealed(url, Default::default())
    }

    /// Opens like [`open`](State::open), with the audit log sealed as `seal` says.
    pub fn open_sealed(url: &str, seal: crate::controller::AuditSeal) -> Result<Arc<State>> {
        let store = crate::Sqlite::open(url)?;
        let seal = match store.key_paths() {
            Some(paths) => seal.or_defaults(paths)?,
            None => seal,
        };
        Ok(Arc::new(store.sealed(seal)))
    }

    /// A private in-memory store (tests, dry runs).
    pub fn in_memory() -> Result<Arc<State>> {
        Ok(Arc::new(crate::Sqlite::in_memory()?))
    }
}
