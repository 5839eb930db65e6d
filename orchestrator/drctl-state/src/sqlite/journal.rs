//! The execution journal: a failover's steps and every transition, written
//! before and after each effect, so a controller killed at any moment can
//! resume without running a finished step's effect twice.
//!
//! Step rows hold the current state; `execution_events` is the append-only
//! history. A transition and its event are one transaction. Entities are
//! locked by an execution until it ends, so two executions never touch the
//! same entity at once.

use super::{corrupt, Sqlite};
use crate::error::{Error, Result};
use crate::model::journal::{
    exec_state, Approval, Claim, Event, ExecutionRow, Journal, StepRow, StepState, Transition,
};
use crate::model::times::millis;
use rusqlite::{params, OptionalExtension};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn time(ms: Option<i64>) -> Option<SystemTime> {
    ms.map(crate::model::times::time)
}

fn exec_row(r: &rusqlite::Row) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        id: r.get(0)?,
        declared_at: time(Some(r.get(1)?)).unwrap_or(UNIX_EPOCH),
        finished_at: time(r.get(2)?),
        state: r.get(3)?,
        reason: r.get(4)?,
        plan: r.get(5)?,
        options: r.get(6)?,
    })
}

impl Journal for Sqlite {
    fn create_execution(
        &self,
        row: &ExecutionRow,
        steps: &[(String, String, String)],
        entities: &[String],
    ) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for e in entities {
                let holder: Option<String> = tx
                    .query_row("SELECT execution_id FROM entity_locks WHERE entity = ?1", params![e], |r| r.get(0))
                    .optional()?;
                if let Some(execution) = holder {
                    return Err(Error::Locked { entity: e.clone(), execution });
                }
            }
            tx.execute(
                "INSERT INTO executions (id, declared_ms, finished_ms, state, reason, plan, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![row.id, millis(row.declared_at), row.finished_at.map(millis), row.state, row.reason, row.plan, row.options],
            )?;
            for (i, (id, entity, action)) in steps.iter().enumerate() {
                tx.execute(
                    "INSERT INTO execution_steps (execution_id, idx, id, entity, action, state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
                    params![row.id, i as i64, id, entity, action],
                )?;
            }
            if !exec_state::is_final(&row.state) {
                for e in entities {
                    tx.execute("INSERT INTO entity_locks (entity, execution_id) VALUES (?1, ?2)", params![e, row.id])?;
                }
            }
            tx.execute(
                "INSERT INTO execution_events (execution_id, at_ms, kind, detail) VALUES (?1, ?2, 'declared', ?3)",
                params![row.id, millis(row.declared_at), row.reason],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn execution(&self, id: &str) -> Result<ExecutionRow> {
        crate::blocking::offload(|| {
            self.conn()
                .query_row(
                    "SELECT id, declared_ms, finished_ms, state, reason, plan, options FROM executions WHERE id = ?1",
                    params![id],
                    exec_row,
                )
                .optional()?
                .ok_or_else(|| Error::NoSuchExecution(id.to_string()))
        })
    }

    fn executions(&self) -> Result<Vec<ExecutionRow>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT id, declared_ms, finished_ms, state, reason, plan, options FROM executions ORDER BY declared_ms DESC, id DESC")?;
            let rows = stmt.query_map([], exec_row)?.collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn steps(&self, execution: &str) -> Result<Vec<StepRow>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT idx, id, entity, action, state, attempts, started_ms, finished_ms, error, note, ran_by
                 FROM execution_steps WHERE execution_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt
                .query_map(params![execution], |r| {
                    Ok(StepRow {
                        idx: r.get::<_, i64>(0)? as usize,
                        id: r.get(1)?,
                        entity: r.get(2)?,
                        action: r.get(3)?,
                        state: {
                            let raw: String = r.get(4)?;
                            StepState::parse(&raw).ok_or_else(|| corrupt(4, format!("unknown step state `{raw}`")))?
                        },
                        attempts: r.get::<_, i64>(5)? as u32,
                        started_at: time(r.get(6)?),
                        finished_at: time(r.get(7)?),
                        error: r.get(8)?,
                        note: r.get(9)?,
                        ran_by: r.get(10)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn transition(&self, execution: &str, idx: usize, step: &str, t: &Transition) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE execution_steps SET state = ?3, attempts = ?4, started_ms = ?5, finished_ms = ?6, error = ?7, note = ?8,
                 ran_by = COALESCE(?9, ran_by)
                 WHERE execution_id = ?1 AND idx = ?2",
                params![execution, idx as i64, t.state.as_str(), t.attempts as i64, t.started_at.map(millis), t.finished_at.map(millis), t.error, t.note, t.ran_by],
            )?;
            let detail = t.error.or(t.note);
            tx.execute(
                "INSERT INTO execution_events (execution_id, at_ms, step, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![execution, millis(t.at), step, t.state.as_str(), detail],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn set_execution_state(&self, execution: &str, state: &str, finished: Option<SystemTime>) -> Result<()> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE executions SET state = ?2, finished_ms = ?3 WHERE id = ?1",
                params![execution, state, finished.map(millis)],
            )?;
            if exec_state::is_final(state) {
                tx.execute("DELETE FROM entity_locks WHERE execution_id = ?1", params![execution])?;
            }
            tx.execute(
                "INSERT INTO execution_events (execution_id, at_ms, kind) VALUES (?1, ?2, ?3)",
                params![execution, millis(finished.unwrap_or_else(|| self.now())), state],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn approve(&self, execution: &str, step: &str, by: &str, done: bool) -> Result<bool> {
        crate::blocking::offload(|| {
            self.execution(execution)?;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let attempt: i64 = tx
                .query_row(
                    "SELECT attempts FROM execution_steps WHERE execution_id = ?1 AND id = ?2",
                    params![execution, step],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let n = tx.execute(
                "INSERT OR IGNORE INTO approvals (execution_id, step, attempt, by, at_ms, done) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![execution, step, attempt, by, millis(self.now()), done],
            )?;
            if n > 0 {
                let detail = if done { format!("{by} (recorded as done, not run)") } else { by.to_string() };
                tx.execute(
                    "INSERT INTO execution_events (execution_id, at_ms, step, kind, detail) VALUES (?1, ?2, ?3, 'approved', ?4)",
                    params![execution, millis(self.now()), step, detail],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn approved_by(&self, execution: &str, step: &str, attempt: u32) -> Result<Option<Approval>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT by, done FROM approvals WHERE execution_id = ?1 AND step = ?2 AND attempt >= ?3
                     ORDER BY attempt DESC LIMIT 1",
                    params![execution, step, attempt],
                    |r| Ok(Approval { by: r.get(0)?, done: r.get(1)? }),
                )
                .optional()?)
        })
    }

    fn claim_execution(&self, execution: &str, owner: &str, now: SystemTime, ttl: Duration) -> Result<Claim> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            // IMMEDIATE: two processes claiming at once serialize here.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held: Option<(String, i64)> = tx
                .query_row(
                    "SELECT owner, until_ms FROM execution_owners WHERE execution_id = ?1",
                    params![execution],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((by, until)) = held {
                if by != owner && until > millis(now) {
                    return Ok(Claim::Held { by, until: time(Some(until)).unwrap_or(now) });
                }
            }
            tx.execute(
                "INSERT INTO execution_owners (execution_id, owner, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (execution_id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms",
                params![execution, owner, millis(now + ttl)],
            )?;
            tx.commit()?;
            Ok(Claim::Ours)
        })
    }

    fn execution_owner(&self, execution: &str, now: SystemTime) -> Result<Option<(String, SystemTime)>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT owner, until_ms FROM execution_owners WHERE execution_id = ?1 AND until_ms > ?2",
                    params![execution, millis(now)],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?
                .map(|(o, until)| (o, time(Some(until)).unwrap_or(now))))
        })
    }

    fn release_execution(&self, execution: &str, owner: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "DELETE FROM execution_owners WHERE execution_id = ?1 AND owner = ?2",
                params![execution, owner],
            )?;
            Ok(())
        })
    }

    fn request_abort(&self, execution: &str) -> Result<String> {
        crate::blocking::offload(|| {
            let row = self.execution(execution)?;
            if exec_state::is_final(&row.state) {
                return Ok(row.state);
            }
            self.set_execution_state(execution, exec_state::ABORTING, None)?;
            Ok(exec_state::ABORTING.to_string())
        })
    }

    fn events(&self, execution: &str) -> Result<Vec<Event>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT at_ms, step, kind, detail FROM execution_events WHERE execution_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![execution], |r| {
                    Ok(Event {
                        at: time(Some(r.get(0)?)).unwrap_or(UNIX_EPOCH),
                        step: r.get(1)?,
                        kind: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn record_event(
        &self,
        execution: &str,
        at: SystemTime,
        step: Option<&str>,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        crate::blocking::offload(|| {
            self.execution(execution)?;
            self.conn().execute(
                "INSERT INTO execution_events (execution_id, at_ms, step, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![execution, millis(at), step, kind, detail],
            )?;
            Ok(())
        })
    }

    fn set_placement(&self, datastore: &str, primary_zone: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO placements (datastore, primary_zone, updated_ms) VALUES (?1, ?2, ?3)",
                params![datastore, primary_zone, millis(self.now())],
            )?;
            Ok(())
        })
    }

    fn placements(&self) -> Result<Vec<(String, String)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT datastore, primary_zone FROM placements ORDER BY datastore")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str) -> ExecutionRow {
        ExecutionRow {
            id: id.into(),
            declared_at: UNIX_EPOCH + Duration::from_secs(100),
            finished_at: None,
            state: exec_state::RUNNING.into(),
            reason: "az1 is down".into(),
            plan: "{}".into(),
            options: "{}".into(),
        }
    }

    #[test]
    fn an_entity_is_locked_until_its_execution_ends() {
        let s = Sqlite::in_memory().unwrap();
        let steps = vec![("db/failover".to_string(), "db".to_string(), "postgres.promote".to_string())];
        s.create_execution(&exec("e1"), &steps, &["db".into()]).unwrap();
        let err = s.create_execution(&exec("e2"), &steps, &["db".into()]).unwrap_err();
        assert!(matches!(&err, Error::Locked { entity, execution } if entity == "db" && execution == "e1"), "{err}");
        s.set_execution_state("e1", exec_state::SUCCEEDED, Some(SystemTime::now())).unwrap();
        s.create_execution(&exec("e2"), &steps, &["db".into()]).unwrap();
    }

    #[test]
    fn an_unknown_stored_step_state_is_an_error_not_pending() {
        // Read as `pending`, a step whose effect may have happened would run again.
        let s = Sqlite::in_memory().unwrap();
        let steps = vec![("db/failover".to_string(), "db".to_string(), "postgres.promote".to_string())];
        s.create_execution(&exec("e1"), &steps, &["db".into()]).unwrap();
        s.conn().execute("UPDATE execution_steps SET state = 'half_done' WHERE execution_id = 'e1'", []).unwrap();
        let err = s.steps("e1").unwrap_err();
        assert!(err.to_string().contains("unknown step state `half_done`"), "{err}");
    }

    #[test]
    fn transitions_are_kept_with_their_history() {
        let s = Sqlite::in_memory().unwrap();
        let steps = vec![("a/x".to_string(), "a".to_string(), "wait".to_string())];
        s.create_execution(&exec("e1"), &steps, &["a".into()]).unwrap();
        let now = SystemTime::now();
        s.transition(
            "e1",
            0,
            "a/x",
            &Transition {
                at: SystemTime::now(),
                state: StepState::Running,
                attempts: 1,
                started_at: Some(now),
                finished_at: None,
                error: None,
                note: None,
                ran_by: Some("c1"),
            },
        )
        .unwrap();
        s.transition(
            "e1",
            0,
            "a/x",
            &Transition {
                at: SystemTime::now(),
                state: StepState::Succeeded,
                attempts: 1,
                started_at: Some(now),
                finished_at: Some(now),
                error: None,
                note: Some("done"),
                ran_by: None,
            },
        )
        .unwrap();
        let rows = s.steps("e1").unwrap();
        assert_eq!((rows[0].state, rows[0].attempts, rows[0].note.as_deref()), (StepState::Succeeded, 1, Some("done")));
        assert_eq!(rows[0].ran_by.as_deref(), Some("c1"), "who ran it is kept through later transitions");
        let kinds: Vec<String> = s.events("e1").unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["declared", "running", "succeeded"]);
        assert!(s.approve("e1", "a/x", "alice", false).unwrap());
        assert!(!s.approve("e1", "a/x", "bob", true).unwrap(), "deciding one attempt twice changes nothing");
        let decided = s.approved_by("e1", "a/x", 1).unwrap().unwrap();
        assert_eq!((decided.by.as_str(), decided.done), ("alice", false));
        assert_eq!(s.approved_by("e1", "a/x", 2).unwrap(), None, "a later attempt needs a decision of its own");
        assert!(matches!(s.approve("nope", "a/x", "x", false), Err(Error::NoSuchExecution(_))));
    }

    #[test]
    fn one_owner_at_a_time_until_its_lease_runs_out() {
        let s = Sqlite::in_memory().unwrap();
        s.create_execution(&exec("e1"), &[], &[]).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ttl = Duration::from_secs(10);
        assert_eq!(s.claim_execution("e1", "a", t0, ttl).unwrap(), Claim::Ours);
        assert_eq!(
            s.claim_execution("e1", "b", t0 + Duration::from_secs(5), ttl).unwrap(),
            Claim::Held { by: "a".into(), until: t0 + ttl }
        );
        assert_eq!(s.claim_execution("e1", "a", t0 + Duration::from_secs(5), ttl).unwrap(), Claim::Ours, "renewal");
        assert!(matches!(s.claim_execution("e1", "b", t0 + Duration::from_secs(14), ttl).unwrap(), Claim::Held { .. }));
        assert_eq!(
            s.claim_execution("e1", "b", t0 + Duration::from_secs(16), ttl).unwrap(),
            Claim::Ours,
            "an expired lease is taken over"
        );
        s.release_execution("e1", "a").unwrap();
        assert!(matches!(s.claim_execution("e1", "a", t0 + Duration::from_secs(17), ttl).unwrap(), Claim::Held { .. }));
        s.release_execution("e1", "b").unwrap();
        assert_eq!(s.claim_execution("e1", "a", t0 + Duration::from_secs(17), ttl).unwrap(), Claim::Ours);
    }
}
