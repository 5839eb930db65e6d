//! The execution journal on the key-value space: an execution's head
//! (`exec/ID`), its steps in chunks (`steps/ID/CHUNK`), its events
//! (`event/ID/UNIQUE`), approvals, the lease on it (`owner/ID`), entity
//! locks (`locks`) and placements.

use super::{decode, encode, prefix_end, seg, Check, Kv, KvStore, Op, Txn, CONTROLLER_OWNER};
use crate::error::{Error, Result};
use crate::model::journal::{
    exec_state, Approval, Claim, Event, ExecutionRow, Journal, StepRow, StepState, Transition,
};
use crate::model::times::{millis, time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An execution's head: what it is and its state. Its steps live in
/// chunks of [`STEPS_PER_CHUNK`] and its events each under a key of their
/// own, so a transition writes one small document and one event, whatever
/// the size of the plan (etcd bounds a request at 1.5 MiB and 128 operations).
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct ExecDoc {
    id: String,
    declared_ms: i64,
    finished_ms: Option<i64>,
    pub(super) state: String,
    reason: String,
    plan: String,
    options: String,
    entities: Vec<String>,
    steps: usize,
}

/// How many steps one stored chunk holds.
const STEPS_PER_CHUNK: usize = 64;

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct StepDoc {
    pub(super) id: String,
    pub(super) entity: String,
    pub(super) action: String,
    pub(super) state: String,
    pub(super) attempts: u32,
    pub(super) started_ms: Option<i64>,
    pub(super) finished_ms: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) note: Option<String>,
    pub(super) ran_by: Option<String>,
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

impl<K: Kv> KvStore<K> {
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

    pub(super) fn all_execs(&self) -> Result<Vec<ExecDoc>> {
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
