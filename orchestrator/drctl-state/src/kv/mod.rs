//! The store on a transactional key-value space: what a consensus store
//! (etcd) needs to hold drctl's whole state.
//!
//! [`KvStore`] implements every [`Store`](crate::Store) method on the few
//! operations etcd's v3 API gives — get, range, and a transaction of puts
//! and deletes guarded by compares of each key's version — so a backend is
//! only a [`Kv`]: the etcd one lives in `drctl-etcd` (its gRPC client stays
//! out of the core crates), [`MemKv`] here runs the same code in the unit
//! tests.
//!
//! Every read-modify-write is optimistic: read the keys with their
//! versions, commit only if none changed, otherwise read again. Writes
//! made by the leader's work (the journal, samples, replication
//! bookkeeping) are marked [`Txn::leader_only`]: a backend that knows
//! leadership (etcd) adds "the leader key is still mine" to the compare,
//! so a deposed leader's late write fails instead of landing. Operator
//! writes (approvals, aborts, tokens, the audit log, incidents) are not:
//! they go on through any controller.
//!
//! Layout under the prefix (each user-given segment escaped so `/` in a
//! step id never reads as a folder): `exec/ID` (an execution's head),
//! `steps/ID/CHUNK` (its steps, 64 a document), `event/ID/UNIQUE` (its
//! events, in the order written), `approval/ID/STEP/ATTEMPT`, `owner/ID`,
//! `locks` (entity → execution), `placement/DS`, `token/N`, `token-name/NAME`, `token-hash/HASH`,
//! `audit/SEQ` with `audit-head`, `incident/N`, `maintenance/N`,
//! `uptime/DAY`, `rpo/DS/MS-N` (30 days kept), `lag/DS/ZONE`,
//! `run/N`, `run-last/DS`, `run-totals/DS`, `multipart/DS/ZONE/KEY`,
//! `replicated/DS/ZONE/KEY`, `conflict/DS/ZONE/KEY`, `drill/ID`,
//! `published/NAME`, `seq/NAME` (counters) and `schema`.

//! The store's parts, a file each by what they keep: [`journal`]
//! (executions, steps, events, approvals, leases, locks, placements),
//! [`controller`] (tokens, audit, incidents, maintenance, uptime, drills),
//! [`samples`] (RPO, lag, replication bookkeeping, published documents),
//! [`audience`], [`evidence`], [`erasure`]; [`MemKv`] in [`mem`].

use crate::error::{Error, Result};
use crate::model::controller::AuditSeal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, SystemTime};

mod audience;
mod controller;
mod erasure;
mod evidence;
mod journal;
mod mem;
mod samples;

pub use mem::MemKv;

/// A stored value and its version (etcd's mod revision: changes on every write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: i64,
}

/// What a transaction requires before it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The key does not exist.
    Absent(String),
    /// The key exists at this version.
    Version(String, i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    /// Every key in `[start, end)`.
    DeleteRange(String, String),
}

/// Puts and deletes applied together when every check holds.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub checks: Vec<Check>,
    pub ops: Vec<Op>,
    /// Leader's work: fails with [`Error::NotLeader`] when this process
    /// does not lead (a backend without leadership ignores it).
    pub leader_only: bool,
}

/// The most operations one transaction carries (etcd's default
/// `--max-txn-ops` is 128; the rest of the room is for checks).
pub const MAX_OPS: usize = 100;

/// A transactional key-value space; see the module documentation.
pub trait Kv: Send + Sync {
    /// Where it is, for messages (`etcd://host:port/prefix`).
    fn location(&self) -> &str;

    fn get(&self, key: &str) -> Result<Option<Versioned>>;

    /// Every key in `[start, end)`, in key order.
    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>>;

    /// How many keys `[start, end)` holds. A backend that can count without
    /// reading the values does (a cap checked on every request must not
    /// read every row it caps).
    fn count(&self, start: &str, end: &str) -> Result<usize> {
        Ok(self.scan(start, end)?.len())
    }

    /// Applies `txn` when its checks hold: `Ok(false)` when one did not
    /// (another writer came first; read again and retry).
    fn commit(&self, txn: Txn) -> Result<bool>;

    /// Whether this process leads an election now (a backend without one: never).
    fn leads(&self) -> bool {
        false
    }
}

/// Owner ids of the engines that highly available controllers run start
/// with it (`controller:ID:pid…`). Such an owner runs only while its
/// controller leads and every write it makes is fenced by that, so the
/// leader takes an execution over from one at once, without waiting for
/// its lease; a CLI process's lease is always waited for.
pub const CONTROLLER_OWNER: &str = "controller:";

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_default();
        }
    }
    "\u{7f}".into()
}

/// One path segment: `%` and `/` escaped, so segments never run together.
pub(crate) fn seg(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, v: &Versioned) -> Result<T> {
    serde_json::from_slice(&v.value).map_err(|e| Error::Corrupt(format!("`{key}` does not parse: {e}")))
}

/// How long RPO samples are kept on a key-value store (SQLite keeps all).
pub const RPO_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The schema of the documents below; a newer one is refused.
const SCHEMA: i64 = 1;

/// Every [`Store`](crate::Store) method on a [`Kv`]; see the module documentation.
pub struct KvStore<K: Kv> {
    kv: K,
    prefix: String,
    location: String,
    /// Makes RPO sample keys unique within one millisecond.
    sample_seq: std::sync::atomic::AtomicU64,
    seal: AuditSeal,
    /// Seals subscriptions and deliveries (addresses, signing secrets,
    /// links) before they leave the process.
    sealer: crate::seal::Sealer,
    /// Where the times it records come from: the caller's clock.
    clock: std::sync::Arc<dyn drctl_runtime::Clock>,
}

/// How many times a read-modify-write is tried before contention is an error.
const TRIES: usize = 100;

impl<K: Kv> KvStore<K> {
    /// The store under `prefix` (e.g. `/drctl/`); refuses a newer schema.
    /// Seals the audit log this store writes (a key, a head file).
    pub fn sealed(mut self, seal: AuditSeal) -> KvStore<K> {
        self.seal = seal;
        self
    }

    /// Seals what it must keep secret under `sealer`'s keys (without one: a
    /// key nobody keeps, for tests).
    pub fn with_sealer(mut self, sealer: crate::seal::Sealer) -> KvStore<K> {
        self.sealer = sealer;
        self
    }

    pub fn sealer(&self) -> &crate::seal::Sealer {
        &self.sealer
    }

    /// `v` encoded and sealed.
    pub(crate) fn seal_doc<T: Serialize>(&self, v: &T) -> Vec<u8> {
        self.sealer.seal(&encode(v))
    }

    /// A sealed document opened and decoded.
    pub(crate) fn open_doc<T: DeserializeOwned>(&self, key: &str, v: &Versioned) -> Result<T> {
        let value = self.sealer.open(&v.value).map_err(|e| Error::Corrupt(format!("`{key}`: {e}")))?;
        decode(key, &Versioned { value, version: v.version })
    }

    /// Takes the times it records from `clock` instead of the machine's.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn drctl_runtime::Clock>) -> KvStore<K> {
        self.clock = clock;
        self
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn new(kv: K, prefix: &str) -> Result<KvStore<K>> {
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let location = kv.location().to_string();
        let store = KvStore {
            kv,
            prefix,
            location,
            sample_seq: Default::default(),
            seal: Default::default(),
            sealer: crate::seal::Sealer::ephemeral(),
            clock: std::sync::Arc::new(drctl_runtime::SystemClock),
        };
        let key = store.key("schema");
        match store.kv.get(&key)? {
            Some(v) => {
                let found: i64 = decode(&key, &v)?;
                if found > SCHEMA {
                    return Err(Error::TooNew { found, known: SCHEMA });
                }
            }
            None => {
                store.kv.commit(Txn {
                    checks: vec![Check::Absent(key.clone())],
                    ops: vec![Op::Put(key, encode(&SCHEMA))],
                    leader_only: false,
                })?;
            }
        }
        Ok(store)
    }

    /// The key-value space underneath (leadership lives there too).
    pub fn kv(&self) -> &K {
        &self.kv
    }

    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub(crate) fn get_doc<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, i64)>> {
        match self.kv.get(key)? {
            Some(v) => Ok(Some((decode(key, &v)?, v.version))),
            None => Ok(None),
        }
    }

    pub(crate) fn scan_docs<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        self.scan_from(prefix, prefix)
    }

    /// Documents under `prefix` from the key `start` on.
    fn scan_from<T: DeserializeOwned>(&self, prefix: &str, start: &str) -> Result<Vec<T>> {
        self.kv.scan(start, &prefix_end(prefix))?.iter().map(|(k, v)| decode(k, v)).collect()
    }

    /// The check that a key read at `version` (None: absent) is unchanged.
    fn unchanged(key: &str, version: Option<i64>) -> Check {
        match version {
            Some(v) => Check::Version(key.to_string(), v),
            None => Check::Absent(key.to_string()),
        }
    }

    /// Retries `attempt` until it commits (`Some`) or gives up.
    pub(crate) fn retry<R>(&self, mut attempt: impl FnMut() -> Result<Option<R>>) -> Result<R> {
        for _ in 0..TRIES {
            if let Some(r) = attempt()? {
                return Ok(r);
            }
        }
        Err(Error::Backend(format!("{}: too many concurrent writers; try again", self.location)))
    }

    /// Replaces one document, read and written whole; `change` returns
    /// the result, or an error that leaves it as it was.
    pub(crate) fn update<T, R>(
        &self,
        key: &str,
        leader_only: bool,
        mut change: impl FnMut(Option<T>) -> Result<(Option<T>, R)>,
    ) -> Result<R>
    where
        T: Serialize + DeserializeOwned,
    {
        self.retry(|| {
            let current = self.get_doc::<T>(key)?;
            let version = current.as_ref().map(|(_, v)| *v);
            let (next, r) = change(current.map(|(d, _)| d))?;
            let op = match next {
                Some(d) => Op::Put(key.to_string(), encode(&d)),
                None => Op::Delete(key.to_string()),
            };
            let ok = self.kv.commit(Txn { checks: vec![Self::unchanged(key, version)], ops: vec![op], leader_only })?;
            Ok(ok.then_some(r))
        })
    }

    /// The next number of a counter, with the check and op that take it.
    pub(crate) fn next_seq(&self, name: &str) -> Result<(i64, Check, Op)> {
        let key = self.key(&format!("seq/{name}"));
        let (n, version) = match self.get_doc::<i64>(&key)? {
            Some((n, v)) => (n + 1, Some(v)),
            None => (1, None),
        };
        Ok((n, Self::unchanged(&key, version), Op::Put(key, encode(&n))))
    }

    /// Commits puts in chunks that fit a transaction (atomic per chunk).
    fn put_chunked(&self, mut ops: Vec<Op>, leader_only: bool) -> Result<()> {
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(MAX_OPS));
            self.kv.commit(Txn { checks: vec![], ops, leader_only })?;
            ops = rest;
        }
        Ok(())
    }
}
