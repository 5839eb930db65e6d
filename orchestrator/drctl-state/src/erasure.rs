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
//!
//! One implementation, on the key-value space ([`KvStore`]), serves both
//! backends. Key: `erasure/SEQ` (twelve digits, so keys sort by age).

use crate::kv::{Check, Kv, KvStore, Op, Txn};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        s.serialize_i64(crate::millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(super::time(i64::deserialize(d)?))
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&crate::millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(super::time))
    }
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
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

fn seq_of(id: &str) -> Result<u64> {
    id.strip_prefix("er-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("`{id}` is not an erasure id (they look like er-12)")))
}

impl<K: Kv> KvStore<K> {
    fn erasure_key(&self, seq: u64) -> String {
        self.key(&format!("erasure/{seq:012}"))
    }
}

impl<K: Kv> Erasures for KvStore<K> {
    fn create_erasure(&self, draft: &ErasureRequest) -> Result<ErasureRequest> {
        self.retry(|| {
            let (n, check, op) = self.next_seq("erasure")?;
            let mut req = draft.clone();
            req.id = format!("er-{n}");
            let key = self.erasure_key(n as u64);
            let ok = self.kv().commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, self.seal_doc(&req))],
                leader_only: false,
            })?;
            Ok(ok.then_some(req))
        })
    }

    fn erasure(&self, id: &str) -> Result<Option<ErasureRequest>> {
        let key = self.erasure_key(seq_of(id)?);
        match self.kv().get(&key)? {
            Some(v) => Ok(Some(self.open_doc(&key, &v)?)),
            None => Ok(None),
        }
    }

    fn erasures(&self) -> Result<Vec<ErasureRequest>> {
        let prefix = self.key("erasure/");
        self.kv().scan(&prefix, &crate::kv::prefix_end(&prefix))?.iter().map(|(k, v)| self.open_doc(k, v)).collect()
    }

    fn update_erasure(&self, id: &str, change: &mut dyn FnMut(&mut ErasureRequest)) -> Result<ErasureRequest> {
        let key = self.erasure_key(seq_of(id)?);
        self.retry(|| {
            let Some(v) = self.kv().get(&key)? else {
                return Err(Error::Invalid(format!("there is no erasure request {id}")));
            };
            let mut req: ErasureRequest = self.open_doc(&key, &v)?;
            change(&mut req);
            let ok = self.kv().commit(Txn {
                checks: vec![Check::Version(key.clone(), v.version)],
                ops: vec![Op::Put(key.clone(), self.seal_doc(&req))],
                leader_only: false,
            })?;
            Ok(ok.then_some(req))
        })
    }
}

impl Erasures for crate::Sqlite {
    fn create_erasure(&self, draft: &ErasureRequest) -> Result<ErasureRequest> {
        self.kv_part().create_erasure(draft)
    }

    fn erasure(&self, id: &str) -> Result<Option<ErasureRequest>> {
        self.kv_part().erasure(id)
    }

    fn erasures(&self) -> Result<Vec<ErasureRequest>> {
        self.kv_part().erasures()
    }

    fn update_erasure(&self, id: &str, change: &mut dyn FnMut(&mut ErasureRequest)) -> Result<ErasureRequest> {
        self.kv_part().update_erasure(id, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    fn draft(subject: &str) -> ErasureRequest {
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

    #[test]
    fn requests_are_numbered_sealed_and_updated_whole() {
        let store = KvStore::new(MemKv::default(), "/t/").unwrap();
        let a = store.create_erasure(&draft("customer-4711")).unwrap();
        let b = store.create_erasure(&draft("customer-4712")).unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("er-1", "er-2"));
        for (_, v) in store.kv().scan("/t/erasure/", "/t/erasure0").unwrap() {
            assert!(crate::seal::Sealer::is_sealed(&v.value));
            assert!(!v.value.windows(8).any(|w| w == b"customer"), "no identifier in clear");
        }
        let now = a.requested_at + Duration::from_secs(5);
        let after = store
            .update_erasure("er-1", &mut |r| {
                r.copies[0].verified_at = Some(now);
                r.forget(now);
            })
            .unwrap();
        assert!(after.verified() && after.subject.is_none());
        assert_eq!(store.erasure("er-1").unwrap().unwrap(), after);
        assert_eq!(store.erasures().unwrap().len(), 2);
        assert!(!after.overdue(after.due_at + Duration::from_secs(1)), "verified in time");
        assert!(b.overdue(b.due_at + Duration::from_secs(1)));
        assert!(store.erasure("er-x").is_err());
    }

    #[test]
    fn the_sqlite_file_holds_no_identifier_in_clear() {
        let dir = std::env::temp_dir().join(format!("drctl-erasure-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("state.db");
        let store = crate::Sqlite::open(&format!("sqlite://{}", db.display())).unwrap();
        let r = store.create_erasure(&draft("person-8d1f-identifier")).unwrap();
        assert_eq!(store.erasure(&r.id).unwrap().unwrap().subject.as_deref(), Some("person-8d1f-identifier"));
        drop(store);
        // The file as anyone holding a copy of it reads it.
        let out = std::process::Command::new("sqlite3").arg(&db).arg(".dump").output().expect("sqlite3 is installed");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(dump.contains("erasure/"), "the ledger is in the file");
        assert!(!dump.contains("person-8d1f"), "the identifier is sealed");
        assert!(!dump.contains("ticket 7"), "so is the request's reason");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sqlite_keeps_the_store_contract() {
        crate::conformance::check(&*<dyn crate::Store>::in_memory().unwrap());
    }
}
