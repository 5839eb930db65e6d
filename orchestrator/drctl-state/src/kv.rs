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

use crate::controller::{
    new_token_secret, token_hash, AuditEntry, DrillRow, Incident, IncidentUpdate, Maintenance, Role, Token, UptimeDay,
    Verified, INCIDENT_STATUSES,
};
use crate::journal::{exec_state, Event, ExecutionRow, StepRow, StepState, Transition};
use crate::store::{Approval, Claim, Controller, Journal, ReplicatedObject, Samples};
use crate::{millis, Error, MultipartCheckpoint, Result, RpoSample, RunTotals};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
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

/// An execution's head: what it is and its state. Its steps live in
/// chunks of [`STEPS_PER_CHUNK`] and its events each under a key of their
/// own, so a transition writes one small document and one event, whatever
/// the size of the plan (etcd bounds a request at 1.5 MiB and 128 operations).
#[derive(Serialize, Deserialize, Clone)]
struct ExecDoc {
    id: String,
    declared_ms: i64,
    finished_ms: Option<i64>,
    state: String,
    reason: String,
    plan: String,
    options: String,
    entities: Vec<String>,
    steps: usize,
}

/// How many steps one stored chunk holds.
const STEPS_PER_CHUNK: usize = 64;

#[derive(Serialize, Deserialize, Clone)]
struct StepDoc {
    id: String,
    entity: String,
    action: String,
    state: String,
    attempts: u32,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    error: Option<String>,
    note: Option<String>,
    ran_by: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct EventDoc {
    at_ms: i64,
    step: Option<String>,
    kind: String,
    detail: Option<String>,
}

impl ExecDoc {
    fn row(&self) -> ExecutionRow {
        ExecutionRow {
            id: self.id.clone(),
            declared_at: time(self.declared_ms),
            finished_at: self.finished_ms.map(time),
            state: self.state.clone(),
            reason: self.reason.clone(),
            plan: self.plan.clone(),
            options: self.options.clone(),
        }
    }
}

fn event(at: SystemTime, step: Option<&str>, kind: &str, detail: Option<&str>) -> EventDoc {
    EventDoc {
        at_ms: millis(at),
        step: step.map(str::to_string),
        kind: kind.into(),
        detail: detail.map(str::to_string),
    }
}

#[derive(Serialize, Deserialize)]
struct ApprovalDoc {
    by: String,
    done: bool,
    at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct OwnerDoc {
    owner: String,
    until_ms: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct TokenDoc {
    id: i64,
    name: String,
    role: String,
    hash: String,
    created_ms: i64,
    revoked_ms: Option<i64>,
    last_used_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct AuditDoc {
    seq: i64,
    at_ms: i64,
    actor: String,
    source: String,
    action: String,
    target: String,
    request: String,
    prev_hash: String,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct HeadDoc {
    seq: i64,
    hash: String,
}

#[derive(Serialize, Deserialize, Clone)]
struct IncidentDoc {
    id: i64,
    title: String,
    status: String,
    services: Vec<String>,
    created_ms: i64,
    updated_ms: i64,
    resolved_ms: Option<i64>,
    execution_id: Option<String>,
    /// Oldest first.
    updates: Vec<UpdateDoc>,
}

#[derive(Serialize, Deserialize, Clone)]
struct UpdateDoc {
    id: i64,
    at_ms: i64,
    status: String,
    body: String,
}

#[derive(Serialize, Deserialize)]
struct MaintenanceDoc {
    id: i64,
    title: String,
    body: String,
    services: Vec<String>,
    starts_ms: i64,
    ends_ms: i64,
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct SampleDoc {
    at_ms: i64,
    rpo_s: Option<f64>,
    target_s: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct LagDoc {
    at_ms: i64,
    lag_s: f64,
}

#[derive(Serialize, Deserialize, Default, Clone, Copy)]
struct TotalsDoc {
    copied: u64,
    bytes: u64,
    skipped: u64,
    failed: u64,
}

impl From<TotalsDoc> for RunTotals {
    fn from(t: TotalsDoc) -> RunTotals {
        RunTotals { copied: t.copied, bytes: t.bytes, skipped: t.skipped, failed: t.failed }
    }
}

#[derive(Serialize, Deserialize)]
struct RunDoc {
    datastore: String,
    started_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct LastRunDoc {
    finished_ms: i64,
    totals: TotalsDoc,
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct MultipartDoc {
    upload_id: String,
    source_etag: String,
    part_size: u64,
    parts: BTreeMap<i32, String>,
}

#[derive(Serialize, Deserialize)]
struct ReplicatedDoc {
    key: String,
    etag: String,
    source_etag: String,
    kept: bool,
}

#[derive(Serialize, Deserialize)]
struct ConflictDoc {
    key: String,
    etag: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct DrillDoc {
    id: String,
    experiment: String,
    started_ms: i64,
    finished_ms: Option<i64>,
    objectives_met: Option<bool>,
    report: Option<String>,
}

/// Every [`Store`](crate::Store) method on a [`Kv`]; see the module documentation.
pub struct KvStore<K: Kv> {
    kv: K,
    prefix: String,
    location: String,
    /// Makes RPO sample keys unique within one millisecond.
    sample_seq: std::sync::atomic::AtomicU64,
    seal: crate::controller::AuditSeal,
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
    pub fn sealed(mut self, seal: crate::controller::AuditSeal) -> KvStore<K> {
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

    fn exec_key(&self, id: &str) -> String {
        self.key(&format!("exec/{}", seg(id)))
    }

    fn chunk_key(&self, id: &str, chunk: usize) -> String {
        self.key(&format!("steps/{}/{chunk:06}", seg(id)))
    }

    /// A key for one more event; events read back in the order they were
    /// written (their version), so the key need only be unique.
    fn event_op(&self, execution: &str, e: &EventDoc) -> Op {
        use std::sync::atomic::Ordering;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = self.key(&format!(
            "event/{}/{nonce:x}-{}-{}",
            seg(execution),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Op::Put(key, encode(e))
    }

    fn exec_doc(&self, id: &str) -> Result<(ExecDoc, i64)> {
        self.get_doc(&self.exec_key(id))?.ok_or_else(|| Error::NoSuchExecution(id.to_string()))
    }

    fn all_execs(&self) -> Result<Vec<ExecDoc>> {
        self.scan_docs(&self.key("exec/"))
    }

    fn step_docs(&self, execution: &str) -> Result<Vec<StepDoc>> {
        let chunks: Vec<Vec<StepDoc>> = self.scan_docs(&self.key(&format!("steps/{}/", seg(execution))))?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// Entity locks: one document, entity → execution, changed whole.
    fn locks_key(&self) -> String {
        self.key("locks")
    }

    fn set_state(&self, execution: &str, state: &str, finished: Option<SystemTime>, leader_only: bool) -> Result<()> {
        let key = self.exec_key(execution);
        let locks_key = self.locks_key();
        self.retry(|| {
            let (mut doc, version) = self.exec_doc(execution)?;
            doc.state = state.to_string();
            doc.finished_ms = finished.map(millis);
            let e = event(finished.unwrap_or_else(|| self.now()), None, state, None);
            let mut ops = vec![Op::Put(key.clone(), encode(&doc)), self.event_op(execution, &e)];
            let mut checks = vec![Check::Version(key.clone(), version)];
            if exec_state::is_final(state) {
                if let Some((mut locks, lv)) = self.get_doc::<BTreeMap<String, String>>(&locks_key)? {
                    let before = locks.len();
                    locks.retain(|_, held_by| held_by != execution);
                    if locks.len() != before {
                        checks.push(Check::Version(locks_key.clone(), lv));
                        ops.push(Op::Put(locks_key.clone(), encode(&locks)));
                    }
                }
            }
            Ok(self.kv.commit(Txn { checks, ops, leader_only })?.then_some(()))
        })
    }
}

fn step_row(idx: usize, s: &StepDoc) -> Result<StepRow> {
    Ok(StepRow {
        idx,
        id: s.id.clone(),
        entity: s.entity.clone(),
        action: s.action.clone(),
        state: StepState::parse(&s.state)
            .ok_or_else(|| Error::Corrupt(format!("step `{}`: unknown step state `{}`", s.id, s.state)))?,
        attempts: s.attempts,
        started_at: s.started_ms.map(time),
        finished_at: s.finished_ms.map(time),
        error: s.error.clone(),
        note: s.note.clone(),
        ran_by: s.ran_by.clone(),
    })
}

impl<K: Kv> Journal for KvStore<K> {
    fn create_execution(
        &self,
        row: &ExecutionRow,
        steps: &[(String, String, String)],
        entities: &[String],
    ) -> Result<()> {
        let key = self.exec_key(&row.id);
        let locks_key = self.locks_key();
        let doc = ExecDoc {
            id: row.id.clone(),
            declared_ms: millis(row.declared_at),
            finished_ms: row.finished_at.map(millis),
            state: row.state.clone(),
            reason: row.reason.clone(),
            plan: row.plan.clone(),
            options: row.options.clone(),
            entities: entities.to_vec(),
            steps: steps.len(),
        };
        if self.kv.get(&key)?.is_some() {
            return Err(Error::Invalid(format!("execution `{}` exists", row.id)));
        }
        // The steps first: nothing reads them before the head exists, which
        // the last transaction writes with the locks, all or nothing.
        let chunks: Vec<Op> = steps
            .chunks(STEPS_PER_CHUNK)
            .enumerate()
            .map(|(n, chunk)| {
                let docs: Vec<StepDoc> = chunk
                    .iter()
                    .map(|(id, entity, action)| StepDoc {
                        id: id.clone(),
                        entity: entity.clone(),
                        action: action.clone(),
                        state: StepState::Pending.as_str().into(),
                        attempts: 0,
                        started_ms: None,
                        finished_ms: None,
                        error: None,
                        note: None,
                        ran_by: None,
                    })
                    .collect();
                Op::Put(self.chunk_key(&row.id, n), encode(&docs))
            })
            .collect();
        self.put_chunked(chunks, true)?;
        let declared = event(row.declared_at, None, "declared", Some(&row.reason));
        self.retry(|| {
            let mut checks = vec![Check::Absent(key.clone())];
            let mut ops = vec![Op::Put(key.clone(), encode(&doc)), self.event_op(&row.id, &declared)];
            if !exec_state::is_final(&row.state) && !entities.is_empty() {
                let held = self.get_doc::<BTreeMap<String, String>>(&locks_key)?;
                checks.push(Self::unchanged(&locks_key, held.as_ref().map(|(_, v)| *v)));
                let mut locks = held.map(|(l, _)| l).unwrap_or_default();
                for e in entities {
                    if let Some(execution) = locks.get(e) {
                        return Err(Error::Locked { entity: e.clone(), execution: execution.clone() });
                    }
                }
                for e in entities {
                    locks.insert(e.clone(), row.id.clone());
                }
                ops.push(Op::Put(locks_key.clone(), encode(&locks)));
            }
            Ok(self.kv.commit(Txn { checks, ops, leader_only: true })?.then_some(()))
        })
    }

    fn execution(&self, id: &str) -> Result<ExecutionRow> {
        Ok(self.exec_doc(id)?.0.row())
    }

    fn executions(&self) -> Result<Vec<ExecutionRow>> {
        let mut rows: Vec<ExecutionRow> = self.all_execs()?.iter().map(ExecDoc::row).collect();
        rows.sort_by(|a, b| b.declared_at.cmp(&a.declared_at).then_with(|| b.id.cmp(&a.id)));
        Ok(rows)
    }

    fn steps(&self, execution: &str) -> Result<Vec<StepRow>> {
        if self.kv.get(&self.exec_key(execution))?.is_none() {
            return Ok(Vec::new());
        }
        self.step_docs(execution)?.iter().enumerate().map(|(i, s)| step_row(i, s)).collect()
    }

    fn transition(&self, execution: &str, idx: usize, step: &str, t: &Transition) -> Result<()> {
        let key = self.chunk_key(execution, idx / STEPS_PER_CHUNK);
        let e = event(t.at, Some(step), t.state.as_str(), t.error.or(t.note));
        self.retry(|| {
            let Some((mut chunk, version)) = self.get_doc::<Vec<StepDoc>>(&key)? else {
                return Err(Error::Invalid(format!("execution {execution} has no step {idx}")));
            };
            let Some(s) = chunk.get_mut(idx % STEPS_PER_CHUNK) else {
                return Err(Error::Invalid(format!("execution {execution} has no step {idx}")));
            };
            s.state = t.state.as_str().into();
            s.attempts = t.attempts;
            s.started_ms = t.started_at.map(millis);
            s.finished_ms = t.finished_at.map(millis);
            s.error = t.error.map(str::to_string);
            s.note = t.note.map(str::to_string);
            if let Some(by) = t.ran_by {
                s.ran_by = Some(by.to_string());
            }
            let ok = self.kv.commit(Txn {
                checks: vec![Check::Version(key.clone(), version)],
                ops: vec![Op::Put(key.clone(), encode(&chunk)), self.event_op(execution, &e)],
                leader_only: true,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn set_execution_state(&self, execution: &str, state: &str, finished: Option<SystemTime>) -> Result<()> {
        self.set_state(execution, state, finished, true)
    }

    fn approve(&self, execution: &str, step: &str, by: &str, done: bool) -> Result<bool> {
        self.exec_doc(execution)?;
        let attempt = self.step_docs(execution)?.iter().find(|s| s.id == step).map_or(0, |s| s.attempts);
        let akey = self.key(&format!("approval/{}/{}/{attempt:010}", seg(execution), seg(step)));
        let now = self.now();
        let detail = if done { format!("{by} (recorded as done, not run)") } else { by.to_string() };
        let approval = ApprovalDoc { by: by.into(), done, at_ms: millis(now) };
        let e = event(now, Some(step), "approved", Some(&detail));
        self.kv.commit(Txn {
            checks: vec![Check::Absent(akey.clone())],
            ops: vec![Op::Put(akey, encode(&approval)), self.event_op(execution, &e)],
            leader_only: false,
        })
    }

    fn approved_by(&self, execution: &str, step: &str, attempt: u32) -> Result<Option<Approval>> {
        let prefix = self.key(&format!("approval/{}/{}/", seg(execution), seg(step)));
        let start = format!("{prefix}{attempt:010}");
        let found: Vec<ApprovalDoc> = self.scan_from(&prefix, &start)?;
        Ok(found.into_iter().last().map(|a| Approval { by: a.by, done: a.done }))
    }

    fn claim_execution(&self, execution: &str, owner: &str, now: SystemTime, ttl: Duration) -> Result<Claim> {
        let key = self.key(&format!("owner/{}", seg(execution)));
        self.retry(|| {
            let held = self.get_doc::<OwnerDoc>(&key)?;
            let version = held.as_ref().map(|(_, v)| *v);
            if let Some((h, _)) = &held {
                let deposed = self.kv.leads() && h.owner.starts_with(CONTROLLER_OWNER);
                if h.owner != owner && h.until_ms > millis(now) && !deposed {
                    return Ok(Some(Claim::Held { by: h.owner.clone(), until: time(h.until_ms) }));
                }
            }
            let doc = OwnerDoc { owner: owner.into(), until_ms: millis(now + ttl) };
            let ok = self.kv.commit(Txn {
                checks: vec![Self::unchanged(&key, version)],
                ops: vec![Op::Put(key.clone(), encode(&doc))],
                leader_only: true,
            })?;
            Ok(ok.then_some(Claim::Ours))
        })
    }

    fn execution_owner(&self, execution: &str, now: SystemTime) -> Result<Option<(String, SystemTime)>> {
        let key = self.key(&format!("owner/{}", seg(execution)));
        Ok(self
            .get_doc::<OwnerDoc>(&key)?
            .filter(|(h, _)| h.until_ms > millis(now))
            .map(|(h, _)| (h.owner, time(h.until_ms))))
    }

    fn release_execution(&self, execution: &str, owner: &str) -> Result<()> {
        let key = self.key(&format!("owner/{}", seg(execution)));
        if let Some((h, version)) = self.get_doc::<OwnerDoc>(&key)? {
            if h.owner == owner {
                self.kv.commit(Txn {
                    checks: vec![Check::Version(key.clone(), version)],
                    ops: vec![Op::Delete(key)],
                    leader_only: false,
                })?;
            }
        }
        Ok(())
    }

    fn request_abort(&self, execution: &str) -> Result<String> {
        let row = self.execution(execution)?;
        if exec_state::is_final(&row.state) {
            return Ok(row.state);
        }
        // An operator's request: through any controller, leader or not.
        self.set_state(execution, exec_state::ABORTING, None, false)?;
        Ok(exec_state::ABORTING.to_string())
    }

    fn events(&self, execution: &str) -> Result<Vec<Event>> {
        let prefix = self.key(&format!("event/{}/", seg(execution)));
        let mut rows = self.kv.scan(&prefix, &prefix_end(&prefix))?;
        rows.sort_by_key(|(_, v)| v.version);
        rows.iter()
            .map(|(k, v)| {
                let e: EventDoc = decode(k, v)?;
                Ok(Event { at: time(e.at_ms), step: e.step, kind: e.kind, detail: e.detail })
            })
            .collect()
    }

    fn record_event(
        &self,
        execution: &str,
        at: SystemTime,
        step: Option<&str>,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        self.exec_doc(execution)?;
        let e = event(at, step, kind, detail);
        self.kv.commit(Txn { checks: vec![], ops: vec![self.event_op(execution, &e)], leader_only: false })?;
        Ok(())
    }

    fn set_placement(&self, datastore: &str, primary_zone: &str) -> Result<()> {
        let key = self.key(&format!("placement/{}", seg(datastore)));
        let doc = (datastore.to_string(), primary_zone.to_string());
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Put(key, encode(&doc))], leader_only: true })?;
        Ok(())
    }

    fn placements(&self) -> Result<Vec<(String, String)>> {
        self.scan_docs(&self.key("placement/"))
    }
}

fn check_status(status: &str) -> Result<()> {
    if INCIDENT_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("incident status `{status}`: use one of {}", INCIDENT_STATUSES.join(", "))))
    }
}

fn token_of(d: TokenDoc) -> Result<Token> {
    Ok(Token {
        id: d.id,
        role: Role::parse(&d.role)
            .ok_or_else(|| Error::Corrupt(format!("token {}: unknown role `{}`", d.id, d.role)))?,
        name: d.name,
        hash: d.hash,
        created_at: time(d.created_ms),
        revoked_at: d.revoked_ms.map(time),
        last_used_at: d.last_used_ms.map(time),
        customer: d.customer,
    })
}

fn incident_of(d: IncidentDoc) -> Incident {
    Incident {
        id: d.id,
        title: crate::controller::shown_title(d.title, &d.status),
        status: d.status,
        services: d.services,
        created_at: time(d.created_ms),
        updated_at: time(d.updated_ms),
        resolved_at: d.resolved_ms.map(time),
        execution_id: d.execution_id,
        updates: d
            .updates
            .into_iter()
            .rev()
            .map(|u| IncidentUpdate { id: u.id, at: time(u.at_ms), status: u.status, body: u.body })
            .collect(),
    }
}

impl<K: Kv> KvStore<K> {
    fn token_docs(&self) -> Result<Vec<TokenDoc>> {
        self.scan_docs(&self.key("token/"))
    }

    fn token_key(&self, id: i64) -> String {
        self.key(&format!("token/{id:012}"))
    }

    fn token_hash_key(&self, hash: &str) -> String {
        self.key(&format!("token-hash/{hash}"))
    }

    fn audit_docs(&self) -> Result<Vec<AuditDoc>> {
        self.scan_docs(&self.key("audit/"))
    }
}

impl<K: Kv> Controller for KvStore<K> {
    fn create_token(&self, name: &str, role: Role, customer: Option<&str>) -> Result<String> {
        crate::controller::check_token_name(name)?;
        crate::controller::check_customer(role, customer)?;
        let secret = new_token_secret()?;
        let name_key = self.key(&format!("token-name/{}", seg(name)));
        self.retry(|| {
            if self.kv.get(&name_key)?.is_some() {
                return Err(Error::Invalid(format!("a token named `{name}` exists: revoke it or choose another name")));
            }
            let (id, check, op) = self.next_seq("token")?;
            let doc = TokenDoc {
                id,
                name: name.into(),
                role: role.as_str().into(),
                hash: token_hash(&secret),
                created_ms: millis(self.now()),
                revoked_ms: None,
                last_used_ms: None,
                customer: customer.map(str::to_string),
            };
            let ok = self.kv.commit(Txn {
                checks: vec![check, Check::Absent(name_key.clone())],
                ops: vec![
                    op,
                    Op::Put(name_key.clone(), encode(&id)),
                    Op::Put(self.token_hash_key(&doc.hash), encode(&id)),
                    Op::Put(self.token_key(id), encode(&doc)),
                ],
                leader_only: false,
            })?;
            Ok(ok.then_some(()))
        })?;
        Ok(secret)
    }

    fn tokens(&self) -> Result<Vec<Token>> {
        self.token_docs()?.into_iter().map(token_of).collect()
    }

    fn authenticate(&self, secret: &str) -> Result<Option<Token>> {
        // Found by the index of its hash: one read, whatever the number of
        // tokens (the hash of a wrong secret tells nothing of a right one).
        let presented = token_hash(secret);
        let index = self.token_hash_key(&presented);
        let Some(v) = self.kv.get(&index)? else { return Ok(None) };
        let id: i64 = decode(&index, &v)?;
        let found = self
            .get_doc::<TokenDoc>(&self.token_key(id))?
            .map(|(t, _)| t)
            .filter(|t| t.hash == presented && t.revoked_ms.is_none());
        let Some(t) = found else { return Ok(None) };
        // When it was last used is a hint: one try, a lost race is fine.
        let key = self.token_key(t.id);
        if let Some((mut doc, version)) = self.get_doc::<TokenDoc>(&key)? {
            doc.last_used_ms = Some(millis(self.now()));
            self.kv.commit(Txn {
                checks: vec![Check::Version(key.clone(), version)],
                ops: vec![Op::Put(key, encode(&doc))],
                leader_only: false,
            })?;
        }
        Ok(Some(token_of(t)?))
    }

    fn revoke_token(&self, name_or_id: &str) -> Result<Token> {
        let t = self
            .token_docs()?
            .into_iter()
            .find(|t| t.name == name_or_id || t.id.to_string() == name_or_id)
            .ok_or_else(|| Error::NotFound(format!("no token `{name_or_id}` (see `drctl token list`)")))?;
        let now = millis(self.now());
        self.update::<TokenDoc, ()>(&self.token_key(t.id), false, |doc| {
            let mut doc = doc.ok_or_else(|| Error::NotFound(format!("no token `{name_or_id}`")))?;
            doc.revoked_ms = doc.revoked_ms.or(Some(now));
            Ok((Some(doc), ()))
        })?;
        token_of(t)
    }

    fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        request: &serde_json::Value,
    ) -> Result<AuditEntry> {
        let head_key = self.key("audit-head");
        let request = request.to_string();
        let entry = self.retry(|| {
            let head = self.get_doc::<HeadDoc>(&head_key)?;
            let version = head.as_ref().map(|(_, v)| *v);
            let (seq, prev) = match head {
                Some((h, _)) => (h.seq + 1, h.hash),
                None => (1, "0".repeat(64)),
            };
            let at_ms = millis(self.now());
            let hash =
                self.seal.hash([&seq.to_string(), &at_ms.to_string(), actor, source, action, target, &request, &prev]);
            let doc = AuditDoc {
                seq,
                at_ms,
                actor: actor.into(),
                source: source.into(),
                action: action.into(),
                target: target.into(),
                request: request.clone(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            let entry_key = self.key(&format!("audit/{seq:012}"));
            let ok = self.kv.commit(Txn {
                checks: vec![Self::unchanged(&head_key, version), Check::Absent(entry_key.clone())],
                ops: vec![
                    Op::Put(head_key.clone(), encode(&HeadDoc { seq, hash: hash.clone() })),
                    Op::Put(entry_key, encode(&doc)),
                ],
                leader_only: false,
            })?;
            Ok(ok.then(|| AuditEntry {
                seq,
                at: time(at_ms),
                actor: doc.actor.clone(),
                source: doc.source.clone(),
                action: doc.action.clone(),
                target: doc.target.clone(),
                request: doc.request.clone(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            }))
        })?;
        self.seal.record_head(&entry)?;
        Ok(entry)
    }

    fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        Ok(self
            .audit_docs()?
            .into_iter()
            .map(|d| AuditEntry {
                seq: d.seq,
                at: time(d.at_ms),
                actor: d.actor,
                source: d.source,
                action: d.action,
                target: d.target,
                request: d.request,
                prev_hash: d.prev_hash,
                hash: d.hash,
            })
            .collect())
    }

    fn verify_audit(&self) -> Result<Verified> {
        crate::controller::verify_chain(&self.seal, &self.audit_entries()?)
    }

    fn create_incident(
        &self,
        title: &str,
        status: &str,
        body: &str,
        services: &[String],
        execution: Option<&str>,
    ) -> Result<i64> {
        check_status(status)?;
        self.retry(|| {
            let now = millis(self.now());
            let (id, c1, o1) = self.next_seq("incident")?;
            let (uid, c2, o2) = self.next_seq("incident-update")?;
            let doc = IncidentDoc {
                id,
                title: title.into(),
                status: status.into(),
                services: services.to_vec(),
                created_ms: now,
                updated_ms: now,
                resolved_ms: (status == "resolved").then_some(now),
                execution_id: execution.map(str::to_string),
                updates: vec![UpdateDoc { id: uid, at_ms: now, status: status.into(), body: body.into() }],
            };
            let key = self.key(&format!("incident/{id:012}"));
            let ok = self.kv.commit(Txn {
                checks: vec![c1, c2, Check::Absent(key.clone())],
                ops: vec![o1, o2, Op::Put(key, encode(&doc))],
                leader_only: false,
            })?;
            Ok(ok.then_some(id))
        })
    }

    fn update_incident(&self, id: i64, status: &str, body: &str) -> Result<()> {
        check_status(status)?;
        let key = self.key(&format!("incident/{id:012}"));
        self.retry(|| {
            let Some((mut doc, version)) = self.get_doc::<IncidentDoc>(&key)? else {
                return Err(Error::NotFound(format!("no incident {id}")));
            };
            let now = millis(self.now());
            let (uid, c, o) = self.next_seq("incident-update")?;
            doc.status = status.into();
            doc.updated_ms = now;
            doc.resolved_ms = (status == "resolved").then_some(now);
            doc.updates.push(UpdateDoc { id: uid, at_ms: now, status: status.into(), body: body.into() });
            let ok = self.kv.commit(Txn {
                checks: vec![c, Check::Version(key.clone(), version)],
                ops: vec![o, Op::Put(key.clone(), encode(&doc))],
                leader_only: false,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn incidents(&self) -> Result<Vec<Incident>> {
        let docs: Vec<IncidentDoc> = self.scan_docs(&self.key("incident/"))?;
        Ok(docs.into_iter().rev().map(incident_of).collect())
    }

    fn incident_of_execution(&self, execution: &str) -> Result<Option<i64>> {
        Ok(self.incidents()?.into_iter().find(|i| i.execution_id.as_deref() == Some(execution)).map(|i| i.id))
    }

    fn create_maintenance(
        &self,
        title: &str,
        body: &str,
        services: &[String],
        starts: SystemTime,
        ends: SystemTime,
    ) -> Result<i64> {
        if ends <= starts {
            return Err(Error::Invalid("maintenance must end after it starts".into()));
        }
        self.retry(|| {
            let (id, check, op) = self.next_seq("maintenance")?;
            let doc = MaintenanceDoc {
                id,
                title: title.into(),
                body: body.into(),
                services: services.to_vec(),
                starts_ms: millis(starts),
                ends_ms: millis(ends),
                created_ms: millis(self.now()),
            };
            let key = self.key(&format!("maintenance/{id:012}"));
            let ok = self.kv.commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, encode(&doc))],
                leader_only: false,
            })?;
            Ok(ok.then_some(id))
        })
    }

    fn maintenance(&self) -> Result<Vec<Maintenance>> {
        let docs: Vec<MaintenanceDoc> = self.scan_docs(&self.key("maintenance/"))?;
        let mut out: Vec<Maintenance> = docs
            .into_iter()
            .map(|d| Maintenance {
                id: d.id,
                title: d.title,
                body: d.body,
                services: d.services,
                starts_at: time(d.starts_ms),
                ends_at: time(d.ends_ms),
                created_at: time(d.created_ms),
            })
            .collect();
        out.sort_by_key(|m| m.starts_at);
        Ok(out)
    }

    fn record_health(&self, at: SystemTime, checks: &[(String, bool)]) -> Result<()> {
        let day = millis(at) / 86_400_000;
        let key = self.key(&format!("uptime/{day:08}"));
        self.update::<BTreeMap<String, (i64, i64)>, ()>(&key, true, |doc| {
            let mut doc = doc.unwrap_or_default();
            for (service, healthy) in checks {
                let c = doc.entry(service.clone()).or_default();
                c.0 += 1;
                c.1 += *healthy as i64;
            }
            Ok((Some(doc), ()))
        })
    }

    fn uptime(&self, service: &str, since_day: i64) -> Result<Vec<UptimeDay>> {
        let prefix = self.key("uptime/");
        let start = format!("{prefix}{:08}", since_day.max(0));
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(&start, &prefix_end(&prefix))? {
            let day: i64 = k[prefix.len()..].parse().map_err(|_| Error::Corrupt(format!("`{k}`: not a day")))?;
            let counts: BTreeMap<String, (i64, i64)> = decode(&k, &v)?;
            if let Some(&(checks, healthy)) = counts.get(service) {
                out.push(UptimeDay { day, checks, healthy });
            }
        }
        Ok(out)
    }

    fn replication_totals(&self) -> Result<Vec<(String, RunTotals)>> {
        let prefix = self.key("run-totals/");
        let docs: Vec<(String, TotalsDoc)> = self.scan_docs(&prefix)?;
        Ok(docs.into_iter().map(|(ds, t)| (ds, t.into())).collect())
    }

    fn step_durations(&self) -> Result<Vec<(String, f64, u64)>> {
        let mut by: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        let chunks: Vec<Vec<StepDoc>> = self.scan_docs(&self.key("steps/"))?;
        for chunk in chunks {
            for s in &chunk {
                if let (Some(a), Some(b)) = (s.started_ms, s.finished_ms) {
                    let e = by.entry(s.action.clone()).or_default();
                    e.0 += (b - a) as f64 / 1000.0;
                    e.1 += 1;
                }
            }
        }
        Ok(by.into_iter().map(|(a, (s, n))| (a, s, n)).collect())
    }

    fn execution_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for doc in self.all_execs()? {
            *by.entry(doc.state).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }

    fn begin_drill(&self, id: &str, experiment: &str) -> Result<()> {
        let key = self.key(&format!("drill/{}", seg(id)));
        let doc = DrillDoc {
            id: id.into(),
            experiment: experiment.into(),
            started_ms: millis(self.now()),
            finished_ms: None,
            objectives_met: None,
            report: None,
        };
        if !self.kv.commit(Txn {
            checks: vec![Check::Absent(key.clone())],
            ops: vec![Op::Put(key, encode(&doc))],
            leader_only: false,
        })? {
            return Err(Error::Invalid(format!("drill `{id}` exists")));
        }
        Ok(())
    }

    fn record_drill(
        &self,
        id: &str,
        experiment: &str,
        started: SystemTime,
        objectives_met: bool,
        report: &str,
    ) -> Result<()> {
        let key = self.key(&format!("drill/{}", seg(id)));
        let doc = DrillDoc {
            id: id.into(),
            experiment: experiment.into(),
            started_ms: millis(started),
            finished_ms: Some(millis(self.now())),
            objectives_met: Some(objectives_met),
            report: Some(report.into()),
        };
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Put(key, encode(&doc))], leader_only: false })?;
        Ok(())
    }

    fn drills(&self) -> Result<Vec<DrillRow>> {
        let docs: Vec<DrillDoc> = self.scan_docs(&self.key("drill/"))?;
        let mut out: Vec<DrillRow> = docs
            .into_iter()
            .map(|d| DrillRow {
                id: d.id,
                experiment: d.experiment,
                started_at: time(d.started_ms),
                finished_at: d.finished_ms.map(time),
                objectives_met: d.objectives_met,
                report: d.report,
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.started_at));
        Ok(out)
    }

    fn finish_drill(&self, id: &str, objectives_met: Option<bool>, report: Option<&str>) -> Result<()> {
        let key = self.key(&format!("drill/{}", seg(id)));
        self.update::<DrillDoc, ()>(&key, false, |doc| {
            let Some(mut doc) = doc else { return Ok((None, ())) };
            doc.finished_ms = Some(millis(self.now()));
            doc.objectives_met = objectives_met;
            doc.report = report.map(str::to_string);
            Ok((Some(doc), ()))
        })
    }
}

impl<K: Kv> KvStore<K> {
    fn object_key(&self, table: &str, datastore: &str, zone: &str, key: &str) -> String {
        self.key(&format!("{table}/{}/{}/{}", seg(datastore), seg(zone), seg(key)))
    }

    fn zone_prefix(&self, table: &str, datastore: &str, zone: &str) -> String {
        self.key(&format!("{table}/{}/{}/", seg(datastore), seg(zone)))
    }
}

impl<K: Kv> Samples for KvStore<K> {
    fn location(&self) -> &str {
        &self.location
    }

    fn schema_version(&self) -> Result<i64> {
        let key = self.key("schema");
        Ok(self.get_doc::<i64>(&key)?.map_or(0, |(v, _)| v))
    }

    fn record_rpo_samples(&self, samples: &[RpoSample]) -> Result<()> {
        use std::sync::atomic::Ordering;
        let mut ops = Vec::new();
        let mut oldest: HashMap<&str, i64> = HashMap::new();
        for s in samples {
            let n = self.sample_seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
            let key = self.key(&format!("rpo/{}/{:015}-{n:06}", seg(&s.datastore), millis(s.at)));
            let doc = SampleDoc { at_ms: millis(s.at), rpo_s: s.rpo_s, target_s: s.target_s, error: s.error.clone() };
            ops.push(Op::Put(key, encode(&doc)));
            let cutoff = millis(s.at) - RPO_RETENTION.as_millis() as i64;
            oldest.insert(&s.datastore, cutoff);
        }
        // The bounded history: what is older than the retention goes.
        for (ds, cutoff) in oldest {
            let prefix = self.key(&format!("rpo/{}/", seg(ds)));
            ops.push(Op::DeleteRange(prefix.clone(), format!("{prefix}{:015}", cutoff.max(0))));
        }
        self.put_chunked(ops, true)
    }

    fn rpo_samples(&self, datastore: &str, since: SystemTime) -> Result<Vec<RpoSample>> {
        let prefix = self.key(&format!("rpo/{}/", seg(datastore)));
        let start = format!("{prefix}{:015}", millis(since));
        let docs: Vec<SampleDoc> = self.scan_from(&prefix, &start)?;
        Ok(docs
            .into_iter()
            .map(|d| RpoSample {
                datastore: datastore.into(),
                at: time(d.at_ms),
                rpo_s: d.rpo_s,
                target_s: d.target_s,
                error: d.error,
            })
            .collect())
    }

    fn record_replica_lags(&self, datastore: &str, at: SystemTime, lags: &[(String, Option<f64>)]) -> Result<()> {
        // Only the last known lag of each standby is read back.
        let ops = lags
            .iter()
            .filter_map(|(zone, lag)| {
                lag.map(|lag_s| {
                    let key = self.key(&format!("lag/{}/{}", seg(datastore), seg(zone)));
                    Op::Put(key, encode(&LagDoc { at_ms: millis(at), lag_s }))
                })
            })
            .collect();
        self.put_chunked(ops, true)
    }

    fn last_replica_lag(&self, datastore: &str, zone: &str) -> Result<Option<(SystemTime, f64)>> {
        let key = self.key(&format!("lag/{}/{}", seg(datastore), seg(zone)));
        Ok(self.get_doc::<LagDoc>(&key)?.map(|(d, _)| (time(d.at_ms), d.lag_s)))
    }

    fn begin_replication_run(&self, datastore: &str, at: SystemTime) -> Result<i64> {
        self.retry(|| {
            let (id, check, op) = self.next_seq("run")?;
            let key = self.key(&format!("run/{id:012}"));
            let doc = RunDoc { datastore: datastore.into(), started_ms: millis(at) };
            let ok = self.kv.commit(Txn {
                checks: vec![check, Check::Absent(key.clone())],
                ops: vec![op, Op::Put(key, encode(&doc))],
                leader_only: true,
            })?;
            Ok(ok.then_some(id))
        })
    }

    fn finish_replication_run(&self, id: i64, at: SystemTime, totals: RunTotals, error: Option<&str>) -> Result<()> {
        let run_key = self.key(&format!("run/{id:012}"));
        self.retry(|| {
            let Some((run, run_version)) = self.get_doc::<RunDoc>(&run_key)? else { return Ok(Some(())) };
            let totals_key = self.key(&format!("run-totals/{}", seg(&run.datastore)));
            let current = self.get_doc::<(String, TotalsDoc)>(&totals_key)?;
            let version = current.as_ref().map(|(_, v)| *v);
            let mut sum = current.map(|((_, t), _)| t).unwrap_or_default();
            sum.copied += totals.copied;
            sum.bytes += totals.bytes;
            sum.skipped += totals.skipped;
            sum.failed += totals.failed;
            let t = TotalsDoc {
                copied: totals.copied,
                bytes: totals.bytes,
                skipped: totals.skipped,
                failed: totals.failed,
            };
            let last = LastRunDoc { finished_ms: millis(at), totals: t, error: error.map(str::to_string) };
            let last_key = self.key(&format!("run-last/{}", seg(&run.datastore)));
            let ok = self.kv.commit(Txn {
                checks: vec![Check::Version(run_key.clone(), run_version), Self::unchanged(&totals_key, version)],
                ops: vec![
                    Op::Delete(run_key.clone()),
                    Op::Put(totals_key.clone(), encode(&(run.datastore.clone(), sum))),
                    Op::Put(last_key, encode(&last)),
                ],
                leader_only: true,
            })?;
            Ok(ok.then_some(()))
        })
    }

    fn last_replication_run(&self, datastore: &str) -> Result<Option<(SystemTime, RunTotals, Option<String>)>> {
        let key = self.key(&format!("run-last/{}", seg(datastore)));
        Ok(self.get_doc::<LastRunDoc>(&key)?.map(|(d, _)| (time(d.finished_ms), d.totals.into(), d.error)))
    }

    fn multipart_checkpoint(&self, datastore: &str, zone: &str, key: &str) -> Result<Option<MultipartCheckpoint>> {
        let k = self.object_key("multipart", datastore, zone, key);
        Ok(self.get_doc::<MultipartDoc>(&k)?.map(|(d, _)| MultipartCheckpoint {
            upload_id: d.upload_id,
            source_etag: d.source_etag,
            part_size: d.part_size,
            parts: d.parts.into_iter().collect(),
        }))
    }

    fn start_multipart(&self, datastore: &str, zone: &str, key: &str, cp: &MultipartCheckpoint) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        let doc = MultipartDoc {
            upload_id: cp.upload_id.clone(),
            source_etag: cp.source_etag.clone(),
            part_size: cp.part_size,
            parts: BTreeMap::new(),
        };
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Put(k, encode(&doc))], leader_only: true })?;
        Ok(())
    }

    fn record_part(&self, datastore: &str, zone: &str, key: &str, part: i32, etag: &str) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        self.update::<MultipartDoc, ()>(&k, true, |doc| {
            let Some(mut doc) = doc else { return Ok((None, ())) };
            doc.parts.insert(part, etag.to_string());
            Ok((Some(doc), ()))
        })
    }

    fn clear_multipart(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        let k = self.object_key("multipart", datastore, zone, key);
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Delete(k)], leader_only: true })?;
        Ok(())
    }

    fn record_replicated(&self, datastore: &str, rows: &[ReplicatedObject]) -> Result<()> {
        let ops = rows
            .iter()
            .map(|r| {
                let doc = ReplicatedDoc {
                    key: r.key.clone(),
                    etag: r.etag.clone(),
                    source_etag: r.source_etag.clone(),
                    kept: r.kept,
                };
                Op::Put(self.object_key("replicated", datastore, &r.zone, &r.key), encode(&doc))
            })
            .collect();
        self.put_chunked(ops, true)
    }

    fn replicated(&self, datastore: &str, zone: &str) -> Result<HashMap<String, ReplicatedObject>> {
        let docs: Vec<ReplicatedDoc> = self.scan_docs(&self.zone_prefix("replicated", datastore, zone))?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let row = ReplicatedObject {
                    zone: zone.into(),
                    key: d.key.clone(),
                    etag: d.etag,
                    source_etag: d.source_etag,
                    kept: d.kept,
                };
                (d.key, row)
            })
            .collect())
    }

    fn forget_replicated(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        let k = self.object_key("replicated", datastore, zone, key);
        self.kv.commit(Txn { checks: vec![], ops: vec![Op::Delete(k)], leader_only: true })?;
        Ok(())
    }

    fn replace_conflicts(&self, datastore: &str, zone: &str, rows: &[(String, String, String)]) -> Result<()> {
        // Deletes of the keys no longer in conflict, puts of the rest (a
        // transaction may not delete and put the same key).
        let prefix = self.zone_prefix("conflict", datastore, zone);
        let mut ops = Vec::new();
        let fresh: std::collections::HashSet<String> =
            rows.iter().map(|(key, _, _)| self.object_key("conflict", datastore, zone, key)).collect();
        for (k, _) in self.kv.scan(&prefix, &prefix_end(&prefix))? {
            if !fresh.contains(&k) {
                ops.push(Op::Delete(k));
            }
        }
        for (key, etag, reason) in rows {
            let doc = ConflictDoc { key: key.clone(), etag: etag.clone(), reason: reason.clone() };
            ops.push(Op::Put(self.object_key("conflict", datastore, zone, key), encode(&doc)));
        }
        self.put_chunked(ops, true)
    }

    fn conflicts(&self, datastore: &str) -> Result<Vec<(String, String, String, String)>> {
        let prefix = self.key(&format!("conflict/{}/", seg(datastore)));
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(&prefix, &prefix_end(&prefix))? {
            let d: ConflictDoc = decode(&k, &v)?;
            let zone = k[prefix.len()..].split('/').next().unwrap_or_default();
            let zone = zone.replace("%2F", "/").replace("%25", "%");
            out.push((zone, d.key, d.etag, d.reason));
        }
        out.sort();
        Ok(out)
    }

    fn keep_replicated(&self, datastore: &str, zone: &str, key: &str, etag: &str) -> Result<()> {
        let k = self.object_key("replicated", datastore, zone, key);
        self.update::<ReplicatedDoc, ()>(&k, false, |doc| {
            let source_etag = doc.map_or_else(|| etag.to_string(), |d| d.source_etag);
            Ok((Some(ReplicatedDoc { key: key.into(), etag: etag.into(), source_etag, kept: true }), ()))
        })
    }

    fn publish(&self, name: &str, value: &str) -> Result<()> {
        let key = self.key(&format!("published/{}", seg(name)));
        self.kv.commit(Txn {
            checks: vec![],
            ops: vec![Op::Put(key, value.as_bytes().to_vec())],
            leader_only: true,
        })?;
        Ok(())
    }

    fn published(&self, name: &str) -> Result<Option<String>> {
        let key = self.key(&format!("published/{}", seg(name)));
        Ok(self.kv.get(&key)?.map(|v| String::from_utf8_lossy(&v.value).into_owned()))
    }
}

/// An in-process [`Kv`] for the unit tests: the store's logic without a
/// server. Never a stand-in for etcd in the HA tests, which run on etcd.
#[derive(Default)]
pub struct MemKv {
    inner: Mutex<(BTreeMap<String, Versioned>, i64)>,
}

impl Kv for MemKv {
    fn location(&self) -> &str {
        "memory"
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.get(key).cloned())
    }

    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.0.range(start.to_string()..end.to_string()).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn commit(&self, txn: Txn) -> Result<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let holds = txn.checks.iter().all(|c| match c {
            Check::Absent(k) => !inner.0.contains_key(k),
            Check::Version(k, v) => inner.0.get(k).is_some_and(|x| x.version == *v),
        });
        if !holds {
            return Ok(false);
        }
        inner.1 += 1;
        let rev = inner.1;
        for op in txn.ops {
            match op {
                Op::Put(k, value) => {
                    inner.0.insert(k, Versioned { value, version: rev });
                }
                Op::Delete(k) => {
                    inner.0.remove(&k);
                }
                Op::DeleteRange(a, b) => {
                    let doomed: Vec<String> = inner.0.range(a..b).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        inner.0.remove(&k);
                    }
                }
            }
        }
        Ok(true)
    }
}
