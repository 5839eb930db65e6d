//! What the controller (`drctl serve`) remembers: API tokens (only their
//! hashes), the audit log, incidents and maintenance for the status page,
//! daily uptime counters, and drill results.
//!
//! The audit log is append-only twice over: SQLite triggers refuse UPDATE
//! and DELETE, and every entry carries the SHA-256 of its content chained
//! with the previous entry's hash, so an edit made behind drctl's back
//! (the triggers dropped, the file patched) breaks the chain at that entry
//! and `drctl audit verify` names it.

use super::{corrupt, Sqlite};
use crate::error::{Error, Result};
use crate::model::controller::*;
use crate::model::times::millis;
use crate::model::times::time;
use rusqlite::{params, OptionalExtension};
use std::time::SystemTime;

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role: {
            let raw: String = r.get(2)?;
            Role::parse(&raw).ok_or_else(|| corrupt(2, format!("unknown role `{raw}`")))?
        },
        hash: r.get(3)?,
        created_at: time(r.get(4)?),
        revoked_at: r.get::<_, Option<i64>>(5)?.map(time),
        last_used_at: r.get::<_, Option<i64>>(6)?.map(time),
        customer: r.get(7)?,
    })
}

fn list(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

impl Controller for Sqlite {
    // ---- tokens ----

    fn create_token(&self, name: &str, role: Role, customer: Option<&str>) -> Result<String> {
        crate::blocking::offload(|| {
            check_token_name(name)?;
            check_customer(role, customer)?;
            let secret = new_token_secret()?;
            let conn = self.conn();
            let exists: Option<i64> =
                conn.query_row("SELECT id FROM tokens WHERE name = ?1", params![name], |r| r.get(0)).optional()?;
            if exists.is_some() {
                return Err(Error::Invalid(format!("a token named `{name}` exists: revoke it or choose another name")));
            }
            conn.execute(
                "INSERT INTO tokens (name, role, hash, created_ms, customer) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, role.as_str(), token_hash(&secret), millis(self.now()), customer],
            )?;
            Ok(secret)
        })
    }

    fn tokens(&self) -> Result<Vec<Token>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, name, role, hash, created_ms, revoked_ms, last_used_ms, customer FROM tokens ORDER BY id",
            )?;
            let rows = st.query_map([], token_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn authenticate(&self, secret: &str) -> Result<Option<Token>> {
        crate::blocking::offload(|| {
            // Found by the index of its hash, never by reading every token.
            let presented = token_hash(secret);
            let found = self
                .conn()
                .query_row(
                    "SELECT id, name, role, hash, created_ms, revoked_ms, last_used_ms, customer FROM tokens
                     WHERE hash = ?1 AND revoked_ms IS NULL",
                    params![presented],
                    token_row,
                )
                .optional()?;
            if let Some(t) = &found {
                self.conn()
                    .execute("UPDATE tokens SET last_used_ms = ?1 WHERE id = ?2", params![millis(self.now()), t.id])?;
            }
            Ok(found)
        })
    }

    fn revoke_token(&self, name_or_id: &str) -> Result<Token> {
        crate::blocking::offload(|| {
            let t = self
                .tokens()?
                .into_iter()
                .find(|t| t.name == name_or_id || t.id.to_string() == name_or_id)
                .ok_or_else(|| Error::NotFound(format!("no token `{name_or_id}` (see `drctl token list`)")))?;
            self.conn().execute(
                "UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?1) WHERE id = ?2",
                params![millis(self.now()), t.id],
            )?;
            Ok(t)
        })
    }

    // ---- audit ----

    fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        request: &serde_json::Value,
    ) -> Result<AuditEntry> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let last: Option<(i64, String)> = tx
                .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (seq, prev) = match last {
                Some((s, h)) => (s + 1, h),
                None => (1, "0".repeat(64)),
            };
            let at = self.now();
            let at_ms = millis(at);
            let request = request.to_string();
            let hash =
                self.seal.hash([&seq.to_string(), &at_ms.to_string(), actor, source, action, target, &request, &prev]);
            tx.execute(
                "INSERT INTO audit (seq, at_ms, actor, source, action, target, request, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![seq, at_ms, actor, source, action, target, request, prev, hash],
            )?;
            tx.commit()?;
            let entry = AuditEntry {
                seq,
                at: time(at_ms),
                actor: actor.into(),
                source: source.into(),
                action: action.into(),
                target: target.into(),
                request,
                prev_hash: prev,
                hash,
            };
            self.seal.record_head(&entry)?;
            Ok(entry)
        })
    }

    fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT seq, at_ms, actor, source, action, target, request, prev_hash, hash FROM audit ORDER BY seq",
            )?;
            let rows = st.query_map([], |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: time(r.get(1)?),
                    actor: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    request: r.get(6)?,
                    prev_hash: r.get(7)?,
                    hash: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn verify_audit(&self) -> Result<Verified> {
        crate::blocking::offload(|| verify_chain(&self.seal, &self.audit_entries()?))
    }

    // ---- incidents and maintenance ----

    fn create_incident(
        &self,
        title: &str,
        status: &str,
        body: &str,
        services: &[String],
        execution: Option<&str>,
    ) -> Result<i64> {
        crate::blocking::offload(|| {
            check_status(status)?;
            let now = millis(self.now());
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO incidents (title, status, services, created_ms, updated_ms, resolved_ms, execution_id) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                params![title, status, serde_json::to_string(services).unwrap_or_default(), now, (status == "resolved").then_some(now), execution],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO incident_updates (incident_id, at_ms, status, body) VALUES (?1, ?2, ?3, ?4)",
                params![id, now, status, body],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn update_incident(&self, id: i64, status: &str, body: &str) -> Result<()> {
        crate::blocking::offload(|| {
            check_status(status)?;
            let now = millis(self.now());
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let n = tx.execute(
                "UPDATE incidents SET status = ?1, updated_ms = ?2, resolved_ms = CASE WHEN ?1 = 'resolved' THEN ?2 ELSE NULL END WHERE id = ?3",
                params![status, now, id],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("no incident {id}")));
            }
            tx.execute(
                "INSERT INTO incident_updates (incident_id, at_ms, status, body) VALUES (?1, ?2, ?3, ?4)",
                params![id, now, status, body],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn incidents(&self) -> Result<Vec<Incident>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, title, status, services, created_ms, updated_ms, resolved_ms, execution_id FROM incidents ORDER BY id DESC",
            )?;
            let mut out: Vec<Incident> = st
                .query_map([], |r| {
                    let status: String = r.get(2)?;
                    Ok(Incident {
                        id: r.get(0)?,
                        title: shown_title(r.get(1)?, &status),
                        status,
                        services: list(&r.get::<_, String>(3)?),
                        created_at: time(r.get(4)?),
                        updated_at: time(r.get(5)?),
                        resolved_at: r.get::<_, Option<i64>>(6)?.map(time),
                        execution_id: r.get(7)?,
                        updates: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st =
                conn.prepare("SELECT id, incident_id, at_ms, status, body FROM incident_updates ORDER BY id DESC")?;
            let updates = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(1)?,
                    IncidentUpdate { id: r.get(0)?, at: time(r.get(2)?), status: r.get(3)?, body: r.get(4)? },
                ))
            })?;
            for u in updates {
                let (iid, u) = u?;
                if let Some(i) = out.iter_mut().find(|i| i.id == iid) {
                    i.updates.push(u);
                }
            }
            Ok(out)
        })
    }

    fn incident_of_execution(&self, execution: &str) -> Result<Option<i64>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT id FROM incidents WHERE execution_id = ?1 ORDER BY id DESC LIMIT 1",
                    params![execution],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn create_maintenance(
        &self,
        title: &str,
        body: &str,
        services: &[String],
        starts: SystemTime,
        ends: SystemTime,
    ) -> Result<i64> {
        crate::blocking::offload(|| {
            if ends <= starts {
                return Err(Error::Invalid("maintenance must end after it starts".into()));
            }
            let conn = self.conn();
            conn.execute(
                "INSERT INTO maintenance (title, body, services, starts_ms, ends_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![title, body, serde_json::to_string(services).unwrap_or_default(), millis(starts), millis(ends), millis(self.now())],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn maintenance(&self) -> Result<Vec<Maintenance>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, title, body, services, starts_ms, ends_ms, created_ms FROM maintenance ORDER BY starts_ms",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Maintenance {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    body: r.get(2)?,
                    services: list(&r.get::<_, String>(3)?),
                    starts_at: time(r.get(4)?),
                    ends_at: time(r.get(5)?),
                    created_at: time(r.get(6)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---- uptime ----

    fn record_health(&self, at: SystemTime, checks: &[(String, bool)]) -> Result<()> {
        crate::blocking::offload(|| {
            let day = millis(at) / 86_400_000;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for (service, healthy) in checks {
                tx.execute(
                    "INSERT INTO uptime_days (service, day, checks, healthy) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (service, day) DO UPDATE SET checks = checks + 1, healthy = healthy + ?3",
                    params![service, day, *healthy as i64],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn uptime(&self, service: &str, since_day: i64) -> Result<Vec<UptimeDay>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT day, checks, healthy FROM uptime_days WHERE service = ?1 AND day >= ?2 ORDER BY day",
            )?;
            let rows = st.query_map(params![service, since_day], |r| {
                Ok(UptimeDay { day: r.get(0)?, checks: r.get(1)?, healthy: r.get(2)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---- aggregates for /metrics ----

    fn replication_totals(&self) -> Result<Vec<(String, crate::model::samples::RunTotals)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT datastore, SUM(copied), SUM(bytes), SUM(skipped), SUM(failed) FROM replication_runs GROUP BY datastore ORDER BY datastore",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    crate::model::samples::RunTotals {
                        copied: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        skipped: r.get::<_, i64>(3)? as u64,
                        failed: r.get::<_, i64>(4)? as u64,
                    },
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn step_durations(&self) -> Result<Vec<(String, f64, u64)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT action, SUM(finished_ms - started_ms) / 1000.0, COUNT(*) FROM execution_steps
                 WHERE started_ms IS NOT NULL AND finished_ms IS NOT NULL GROUP BY action ORDER BY action",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn execution_counts(&self) -> Result<Vec<(String, u64)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT state, COUNT(*) FROM executions GROUP BY state ORDER BY state")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---- drills ----

    fn begin_drill(&self, id: &str, experiment: &str) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT INTO drills (id, experiment, started_ms) VALUES (?1, ?2, ?3)",
                params![id, experiment, millis(self.now())],
            )?;
            Ok(())
        })
    }

    fn record_drill(
        &self,
        id: &str,
        experiment: &str,
        started: SystemTime,
        objectives_met: bool,
        report: &str,
    ) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO drills (id, experiment, started_ms, finished_ms, objectives_met, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, experiment, millis(started), millis(self.now()), objectives_met as i64, report],
            )?;
            Ok(())
        })
    }

    fn finish_drill(&self, id: &str, objectives_met: Option<bool>, report: Option<&str>) -> Result<()> {
        crate::blocking::offload(|| {
            self.conn().execute(
                "UPDATE drills SET finished_ms = ?1, objectives_met = ?2, report = ?3 WHERE id = ?4",
                params![millis(self.now()), objectives_met.map(|b| b as i64), report, id],
            )?;
            Ok(())
        })
    }

    fn drills(&self) -> Result<Vec<DrillRow>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, experiment, started_ms, finished_ms, objectives_met, report FROM drills ORDER BY started_ms DESC",
            )?;
            let rows = st.query_map([], |r| {
                Ok(DrillRow {
                    id: r.get(0)?,
                    experiment: r.get(1)?,
                    started_at: time(r.get(2)?),
                    finished_at: r.get::<_, Option<i64>>(3)?.map(time),
                    objectives_met: r.get::<_, Option<i64>>(4)?.map(|v| v != 0),
                    report: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn key() -> Vec<u8> {
        b"0123456789abcdef0123456789abcdef-audit".to_vec()
    }

    /// Someone who can write the database but has no key rewrites an entry
    /// and every hash after it, consistently: the keyed chain still fails.
    #[test]
    fn a_keyed_chain_cannot_be_rewritten_without_the_key() {
        let dir = std::env::temp_dir().join(format!("drctl-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let heads = dir.join("heads");
        let s = Sqlite::in_memory().unwrap().sealed(AuditSeal::new(Some(key()), Some(heads.clone())));
        for n in 0..3 {
            s.audit("ann", "cli", "token.create", &format!("token t{n}"), &serde_json::json!({"n": n})).unwrap();
        }
        let Verified::Intact { entries: 3, head, .. } = s.verify_audit().unwrap() else { panic!("not intact") };
        let lines = std::fs::read_to_string(&heads).unwrap();
        assert_eq!(lines.lines().count(), 3, "a head per entry: {lines}");
        assert_eq!(last_head(&heads).unwrap(), Some(head));

        // The rewrite, with the unkeyed hash anyone can compute (and the
        // append-only triggers dropped, as someone with the file can).
        s.conn().execute_batch("DROP TRIGGER audit_is_append_only_update").unwrap();
        let forged = AuditSeal::default();
        let mut entries = s.audit_entries().unwrap();
        entries[1].target = "token innocent".into();
        let mut prev = entries[0].hash.clone();
        for e in entries.iter_mut().skip(1) {
            e.prev_hash = prev.clone();
            e.hash = forged.hash([
                &e.seq.to_string(),
                &millis(e.at).to_string(),
                &e.actor,
                &e.source,
                &e.action,
                &e.target,
                &e.request,
                &e.prev_hash,
            ]);
            prev = e.hash.clone();
            s.conn()
                .execute(
                    "UPDATE audit SET target = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                    params![e.target, e.prev_hash, e.hash, e.seq],
                )
                .unwrap();
        }
        assert!(
            matches!(verify_chain(&forged, &entries).unwrap(), Verified::Broken { seq: 1, .. }),
            "unkeyed, the keyed first entry does not verify either"
        );
        match s.verify_audit().unwrap() {
            Verified::Broken { seq: 2, why } => assert!(why.contains("keyed"), "{why}"),
            other => panic!("the forged chain verified: {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_head_that_cannot_be_written_fails_the_audit_call() {
        let s = Sqlite::in_memory().unwrap().sealed(AuditSeal::new(None, Some("/nonexistent/drctl/heads".into())));
        let err = s.audit("ann", "cli", "x", "y", &serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("its head could not be written"), "{err}");
        assert!(!format!("{:?}", AuditSeal::new(Some(key()), None)).contains("0123"), "Debug never shows the key");
    }

    #[test]
    fn tokens_are_stored_as_hashes_and_revocable() {
        let s = Sqlite::in_memory().unwrap();
        let secret = s.create_token("ci", Role::Operator, None).unwrap();
        assert!(secret.starts_with("drctl_") && secret.len() == 70);
        let t = s.authenticate(&secret).unwrap().expect("valid");
        assert_eq!((t.name.as_str(), t.role), ("ci", Role::Operator));
        assert!(s.tokens().unwrap().iter().all(|t| t.hash != secret), "only the hash is kept");
        assert!(s.authenticate("drctl_nope").unwrap().is_none());
        assert!(s.create_token("ci", Role::Admin, None).is_err(), "names are unique");
        s.revoke_token("ci").unwrap();
        assert!(s.authenticate(&secret).unwrap().is_none(), "revoked");
        assert!(Role::Commander > Role::Operator && Role::Operator > Role::Viewer);
    }

    #[test]
    fn the_audit_chain_verifies_and_an_edit_is_named() {
        let s = Sqlite::in_memory().unwrap();
        for i in 0..5 {
            s.audit("alice", "127.0.0.1", "incident.create", &format!("incident {i}"), &serde_json::json!({"i": i}))
                .unwrap();
        }
        let Verified::Intact { entries, head, .. } = s.verify_audit().unwrap() else { panic!("intact") };
        assert_eq!(entries, 5);
        assert_eq!(head, s.audit_entries().unwrap()[4].hash);
        // The triggers refuse edits...
        assert!(s.conn().execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3", []).is_err());
        assert!(s.conn().execute("DELETE FROM audit WHERE seq = 5", []).is_err());
        // ...and an edit behind them breaks the chain where it was made.
        s.conn()
            .execute_batch("DROP TRIGGER audit_is_append_only_update; UPDATE audit SET actor = 'mallory' WHERE seq = 3")
            .unwrap();
        assert!(matches!(s.verify_audit().unwrap(), Verified::Broken { seq: 3, .. }));
    }

    #[test]
    fn incidents_keep_their_update_timeline() {
        let s = Sqlite::in_memory().unwrap();
        let id = s.create_incident("Checkout down", "investigating", "looking", &["checkout".into()], None).unwrap();
        s.update_incident(id, "identified", "az1 lost").unwrap();
        s.update_incident(id, "resolved", "back").unwrap();
        let i = &s.incidents().unwrap()[0];
        assert_eq!(i.status, "resolved");
        assert!(i.resolved_at.is_some());
        assert_eq!(
            i.updates.iter().map(|u| u.status.as_str()).collect::<Vec<_>>(),
            ["resolved", "identified", "investigating"]
        );
        assert!(s.update_incident(id, "fixed", "").is_err(), "statuses are checked");
        assert!(s.update_incident(99, "resolved", "").is_err());
    }

    #[test]
    fn uptime_is_counted_per_day() {
        let s = Sqlite::in_memory().unwrap();
        let day = UNIX_EPOCH + Duration::from_secs(86_400 * 100 + 5);
        s.record_health(day, &[("api".into(), true)]).unwrap();
        s.record_health(day, &[("api".into(), false)]).unwrap();
        assert_eq!(s.uptime("api", 0).unwrap(), vec![UptimeDay { day: 100, checks: 2, healthy: 1 }]);
    }
}
