//! The erasure ledger: every request to erase a person's data, written
//! before anything is destroyed.
//!
//! Why a ledger: an erasure done once on a primary is not done everywhere.
//! A replica that was down, a failover to a standby that never received
//! the delete, a restore from a backup taken before the request: each
//! brings the person back unless something remembers the request and
//! runs it again. This is that memory: per request, who asked, when, why,
//! the deadline, and per copy (a datastore's member) when it was erased
//! and when it was verified clean, with the position (a PostgreSQL WAL
//! LSN) a replica must have replayed before its check means anything.
//!
//! The subject's identifier is personal data. Each request is stored as
//! one document sealed with AES-256-GCM under the store's data key (see
//! [`crate::seal`]), which lives beside the store, never in it: a copy of
//! the SQLite file or of etcd's keys holds no identifier in clear. Once the
//! last backup older than a request has expired, nothing can bring the
//! subject back, and [`ErasureRequest::forget`] drops the identifier.

//! One implementation, on the key-value space
//! ([`KvStore`](crate::kv::KvStore)), serves both backends. Key:
//! `erasure/SEQ` (twelve digits, so keys sort by age).

use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One copy of the data an erasure must reach: a member of a datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyState {
    pub datastore: String,
    pub zone: String,
    /// The copy the erasure ran on (a datastore's primary); the others are verified.
    pub primary: bool,
    /// When the erasure ran on this copy (primaries, and copies it was re-run on).
    #[serde(default, with = "opt_ms")]
    pub erased_at: Option<SystemTime>,
    /// When this copy was last seen clean.
    #[serde(default, with = "opt_ms")]
    pub verified_at: Option<SystemTime>,
    /// PostgreSQL: the WAL position after the erasure, which this copy
    /// must have replayed before its check counts (`0/3000060`).
    #[serde(default)]
    pub position: Option<String>,
    /// Why it is not verified yet (never the subject's data).
    #[serde(default)]
    pub pending: Option<String>,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// `er-N`, given by the store.
    pub id: String,
    #[serde(with = "ms")]
    pub requested_at: SystemTime,
    #[serde(with = "ms")]
    pub due_at: SystemTime,
    /// Who asked (`cli:USER@HOST`, a token's name).
    pub who: String,
    pub reason: String,
    /// The identifier; `None` once forgotten.
    pub subject: Option<String>,
    /// When every primary was erased.
    #[serde(default, with = "opt_ms")]
    pub erased_at: Option<SystemTime>,
    /// When the identifier was forgotten (the last older backup expired).
    #[serde(default, with = "opt_ms")]
    pub forgotten_at: Option<SystemTime>,
    pub copies: Vec<CopyState>,
}

impl ErasureRequest {
    /// Whether every copy has been seen clean.
    pub fn verified(&self) -> bool {
        !self.copies.is_empty() && self.copies.iter().all(|c| c.verified_at.is_some())
    }

    /// When the last copy was verified, once every one is.
    pub fn verified_at(&self) -> Option<SystemTime> {
        if !self.verified() {
            return None;
        }
        self.copies.iter().filter_map(|c| c.verified_at).max()
    }

    /// Not clean everywhere by its deadline: a copy unverified past it, or verified after it.
    pub fn overdue(&self, now: SystemTime) -> bool {
        match self.verified_at() {
            Some(at) => at > self.due_at,
            None => now > self.due_at,
        }
    }

    /// Drops the identifier: nothing can bring the subject back any more.
    pub fn forget(&mut self, now: SystemTime) {
        self.subject = None;
        self.forgotten_at.get_or_insert(now);
    }

    pub fn copy_mut(&mut self, datastore: &str, zone: &str) -> Option<&mut CopyState> {
        self.copies.iter_mut().find(|c| c.datastore == datastore && c.zone == zone)
    }
}

mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(crate::model::times::millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(crate::model::times::time(i64::deserialize(d)?))
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&crate::model::times::millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(crate::model::times::time))
    }
}

/// Keeps the ledger.
pub trait Erasures: Send + Sync {
    /// Records a new request (its `id` is ignored and given here); returns it as stored.
    fn create_erasure(&self, draft: &ErasureRequest) -> Result<ErasureRequest>;

    fn erasure(&self, id: &str) -> Result<Option<ErasureRequest>>;

    /// Every request, oldest first.
    fn erasures(&self) -> Result<Vec<ErasureRequest>>;

    /// Changes one request, read and written whole (retried when another
    /// writer got there first); returns it as stored.
    fn update_erasure(&self, id: &str, change: &mut dyn FnMut(&mut ErasureRequest)) -> Result<ErasureRequest>;
}

/// A request as `drctl erase` drafts it, for the backends' unit tests.
#[cfg(test)]
pub(crate) fn sample_request(subject: &str) -> ErasureRequest {
    use std::time::{Duration, UNIX_EPOCH};
    let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    ErasureRequest {
        id: String::new(),
        requested_at: now,
        due_at: now + Duration::from_secs(30 * 86_400),
        who: "cli:alice@host".into(),
        reason: "ticket 7".into(),
        subject: Some(subject.into()),
        erased_at: None,
        forgotten_at: None,
        copies: vec![CopyState {
            datastore: "orders-db".into(),
            zone: "az1".into(),
            primary: true,
            erased_at: None,
            verified_at: None,
            position: None,
            pending: None,
        }],
    }
}
