//! Live status (docs/lag-and-rpo.md): what each datastore would lose and each service
//! would take right now, against its targets.
//!
//! The types and the arithmetic live here, free of I/O; providers (in other
//! crates) only measure replicas. Keeping the rule "RPO now = the lag of the
//! replica a failover would promote" in one place means `status`, `serve`
//! and the planner agree on it.

use crate::topology::{EntitySpec, Topology};
use serde::{Deserialize, Serialize};

/// One replica as measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub zone: String,
    pub healthy: bool,
    /// Seconds of writes this replica is behind: for PostgreSQL, the age of
    /// the oldest write it has not received (data at risk); `None` when unknown.
    pub lag_s: Option<f64>,
    /// PostgreSQL: the age of the oldest write it received but has not
    /// replayed yet. Promotion replays it, so it costs failover time, not data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_s: Option<f64>,
    /// PostgreSQL: the WAL positions the lag was judged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalPositions>,
    /// Why it is unhealthy or unmeasured.
    pub error: Option<String>,
    /// What was seen, in a few words (e.g. "streaming", "replay paused").
    pub detail: Option<String>,
}

/// The WAL positions behind a PostgreSQL standby's lag: the primary's
/// current position, and what the standby received (flushed to its disk)
/// and replayed. What is received survives a promotion; what the primary
/// wrote past `received` is what a failover now would lose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPositions {
    pub primary: String,
    pub received: Option<String>,
    pub replayed: Option<String>,
    /// Whether the standby's WAL receiver is streaming from the primary.
    pub streaming: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatastoreStatus {
    pub name: String,
    pub kind: String,
    pub primary_zone: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
    pub rpo_s: Option<f64>,
    pub rpo_target_s: Option<f64>,
    pub meets_rpo: bool,
    pub error: Option<String>,
    /// More than one member takes writes now: an emergency, whatever
    /// drctl did to them before.
    pub split_brain: bool,
    /// S3: objects the last replication pass left alone because they may be
    /// the only copy of a write (docs/guide/safety.md), until an operator resolves them.
    pub conflicts: Vec<StatusConflict>,
}

/// One object replication would not overwrite or delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusConflict {
    pub zone: String,
    pub key: String,
    pub reason: String,
}

/// How a measurement's error begins when more than one member takes writes.
pub const SPLIT_BRAIN: &str = "split brain:";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub healthy: bool,
    pub rto_estimate_s: Option<f64>,
    pub rto_target_s: Option<f64>,
    pub meets_rto: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// RFC 3339, UTC.
    pub at: String,
    pub datastores: Vec<DatastoreStatus>,
    pub services: Vec<ServiceStatus>,
}

impl StatusReport {
    pub fn meets_objectives(&self) -> bool {
        self.datastores.iter().all(|d| d.meets_rpo) && self.services.iter().all(|s| s.meets_rto)
    }
}

/// What a provider found for one datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The zone the primary is in now (may differ from the file after a failover).
    pub primary_zone: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
    /// The datastore as a whole could not be measured (primary unreachable, ...).
    pub error: Option<String>,
}

/// RPO now: the lag of the replica a failover would promote, i.e. the
/// healthy replica with the least lag, or, when none is healthy, the least
/// lag of the others (a standby cut off from its primary still has a lag,
/// growing, and it is what a failover now would lose). `None` only when no
/// replica has a known lag.
pub fn rpo_of(replicas: &[ReplicaStatus]) -> Option<f64> {
    let best =
        |healthy: bool| replicas.iter().filter(|r| r.healthy == healthy).filter_map(|r| r.lag_s).min_by(f64::total_cmp);
    best(true).or_else(|| best(false))
}

/// Whether an RPO meets its target. An unknown RPO never meets a target;
/// with no target, a datastore measured without an error meets it.
fn meets_rpo(rpo: Option<f64>, target: Option<f64>, measured_cleanly: bool) -> bool {
    match (rpo, target) {
        (_, None) => measured_cleanly,
        (Some(r), Some(t)) => r <= t,
        (None, Some(_)) => false,
    }
}

impl DatastoreStatus {
    /// After its replicas' lags were tightened (by evidence the measurement
    /// did not have): the RPO and its verdict again, by the same rules.
    pub fn replica_lags_changed(&mut self) {
        if !self.split_brain {
            self.rpo_s = rpo_of(&self.replicas);
        }
        self.meets_rpo = meets_rpo(self.rpo_s, self.rpo_target_s, self.error.is_none());
    }
}

/// Builds a datastore's status from a measurement and its targets. An
/// unknown RPO never meets a target: what cannot be measured cannot be promised.
pub fn datastore_status(topo: &Topology, id: usize, m: Measurement) -> DatastoreStatus {
    let e = topo.entity(id);
    // A measurement with an error may still know a standby's lag (its
    // primary dark, the standby answering): the RPO is null only when no
    // member answers, or when two primaries make it meaningless.
    let split_brain = m.error.as_deref().is_some_and(|e| e.starts_with(SPLIT_BRAIN));
    let rpo = if split_brain { None } else { rpo_of(&m.replicas) };
    let target = e.targets.rpo.map(|d| d.as_secs_f64());
    let meets = meets_rpo(rpo, target, m.error.is_none());
    let error = m
        .error
        .map(|e| crate::redact::text(&e))
        .or_else(|| (rpo.is_none() && !m.replicas.is_empty()).then(|| "no replica with a measured lag".to_string()));
    // Served without a token: no member's error may carry a secret.
    let replicas = m
        .replicas
        .into_iter()
        .map(|r| ReplicaStatus { error: r.error.map(|e| crate::redact::text(&e)), ..r })
        .collect();
    DatastoreStatus {
        split_brain,
        conflicts: Vec::new(),
        name: e.name.clone(),
        kind: e.kind_name().to_string(),
        primary_zone: m.primary_zone,
        replicas,
        rpo_s: rpo,
        rpo_target_s: target,
        meets_rpo: meets,
        error,
    }
}

/// A service's status given its health and its plan-estimated RTO for the
/// loss of its preferred zone (the estimate `status` shows).
pub fn service_status(
    topo: &Topology,
    id: usize,
    healthy: bool,
    error: Option<String>,
    rto_estimate_s: Option<f64>,
) -> ServiceStatus {
    let e = topo.entity(id);
    debug_assert!(matches!(e.spec, EntitySpec::Service(_)));
    let target = e.targets.rto.map(|d| d.as_secs_f64());
    let meets = match (rto_estimate_s, target) {
        (Some(est), Some(t)) => est <= t,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    let error = error.map(|e| crate::redact::text(&e));
    ServiceStatus { name: e.name.clone(), healthy, rto_estimate_s, rto_target_s: target, meets_rto: meets, error }
}

/// A datastore's backups as readiness judges them: the backup RPO against
/// its restore target, and the last restore test. Read by whoever drives
/// the backup tool (drctl-backup), judged by readiness (drctl-control).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupStatus {
    pub datastore: String,
    /// Now minus the latest restorable point.
    pub rpo_s: Option<f64>,
    /// `restore: { rpo }` of its tier or its own.
    pub rpo_target_s: Option<f64>,
    /// Why its backups could not be read, when they could not.
    pub error: Option<String>,
    /// The last restore test: when it ended, and whether it passed.
    pub last_test: Option<(std::time::SystemTime, bool)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(healthy: bool, lag: Option<f64>) -> ReplicaStatus {
        ReplicaStatus { zone: "z".into(), healthy, lag_s: lag, ..Default::default() }
    }

    #[test]
    fn rpo_is_the_best_healthy_replica_else_the_best_cut_off_one() {
        assert_eq!(rpo_of(&[r(true, Some(3.0)), r(true, Some(0.5)), r(false, Some(0.0))]), Some(0.5));
        // A standby that stopped receiving still has a (growing) lag: it is the RPO.
        assert_eq!(rpo_of(&[r(false, Some(12.0)), r(false, None)]), Some(12.0));
        assert_eq!(rpo_of(&[r(false, None)]), None);
        assert_eq!(rpo_of(&[]), None);
    }
}
