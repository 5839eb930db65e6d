//! Measurements and replication bookkeeping: RPO samples, each standby's
//! lag, replication runs and their totals, multipart-copy checkpoints, the
//! objects replication accounts for and the conflicts it found, and the
//! documents the leader publishes.

use crate::error::Result;
use std::time::SystemTime;

/// One RPO measurement of one datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct RpoSample {
    pub datastore: String,
    pub at: SystemTime,
    pub rpo_s: Option<f64>,
    pub target_s: Option<f64>,
    pub error: Option<String>,
}

/// Totals of one replication pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub copied: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// An unfinished multipart copy: where it was, so it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartCheckpoint {
    pub upload_id: String,
    pub source_etag: String,
    pub part_size: u64,
    /// (part number, ETag) of every part already uploaded.
    pub parts: Vec<(i32, String)>,
}

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

    /// When each run of a datastore that began and has not finished began,
    /// oldest first (a run in progress, or one whose process died).
    fn open_replication_runs(&self, datastore: &str) -> Result<Vec<SystemTime>>;

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
