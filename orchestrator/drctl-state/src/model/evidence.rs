//! The evidence a standby's lag is judged on when its primary is gone.
//!
//! Why it is kept: a primary that died cannot be asked how far ahead of
//! its standby it was. What can be known is what the standby lacked the
//! last time the primary was seen answering, and how long after that the
//! primary was first seen dark (the writes it may have taken in between
//! are unknown). Every look at a PostgreSQL datastore, whichever process
//! took it (`serve`'s sampler, the running lab's, a `status`, a
//! declaration's own preflight), is folded into one small document per
//! standby: the last sample with the primary answering (its WAL position,
//! the standby's received position and lag), the first time the primary was
//! seen dark after it, and how often samples come. The judgement itself
//! (refuse or not) lives in drctl-control; this module only keeps the facts.
//!

//! One implementation, on the key-value space
//! ([`KvStore`](crate::kv::KvStore)), serves both backends, so a
//! declaration from the CLI sees what a controller sampled into the same
//! store.

use crate::error::Result;
use std::time::{Duration, SystemTime};

/// A gap between samples longer than this is not a sampling interval (a
/// person running `status` now and then): it does not widen the window a
/// lag may still be judged in.
pub const MAX_SAMPLING_INTERVAL: Duration = Duration::from_secs(300);

/// One look at one standby of a PostgreSQL datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct WalSample {
    /// The standby's zone.
    pub zone: String,
    pub at: SystemTime,
    /// The zone of the primary that answered; `None`: no primary answered
    /// (dead, or cut off from the process that looked).
    pub primary_zone: Option<String>,
    /// The primary's WAL position when it answered.
    pub primary_lsn: Option<u64>,
    /// What the standby had received (flushed to its disk).
    pub received_lsn: Option<u64>,
    /// Seconds of writes the standby had not received (`None`: unknown).
    pub lag_s: Option<f64>,
    /// Seconds of received writes it had not replayed.
    pub replay_lag_s: Option<f64>,
    pub streaming: bool,
}

impl WalSample {
    /// Whether this look saw the primary answering and the standby's lag.
    pub(crate) fn primary_seen(&self) -> bool {
        self.primary_zone.is_some() && self.lag_s.is_some()
    }
}

/// What is known about one standby's lag.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LagEvidence {
    /// The last look with the primary answering.
    pub last_seen: Option<WalSample>,
    /// The first look after `last_seen` with no primary answering.
    pub dark_since: Option<SystemTime>,
    /// The interval between the last two looks with the primary answering
    /// (at most [`MAX_SAMPLING_INTERVAL`]).
    pub interval: Option<Duration>,
    /// The newest look of any kind.
    pub last_sample: Option<SystemTime>,
    /// The primary's WAL position at recent looks (time, position), oldest first.
    pub marks: Vec<(SystemTime, u64)>,
}

impl LagEvidence {
    /// The last time the primary was seen at or before `received`: every
    /// write past it came later, so what a standby that has received
    /// `received` lacks is at most that old.
    pub fn last_at_or_before(&self, received: u64) -> Option<SystemTime> {
        self.marks.iter().rev().find(|(_, lsn)| *lsn <= received).map(|(at, _)| *at)
    }
}

/// Keeps and reads the evidence.
pub trait Evidence: Send + Sync {
    /// Folds looks at the standbys of `datastore` into their evidence.
    fn record_wal_samples(&self, datastore: &str, samples: &[WalSample]) -> Result<()>;

    /// What is known about the standby of `datastore` in `zone`.
    fn lag_evidence(&self, datastore: &str, zone: &str) -> Result<Option<LagEvidence>>;
}
