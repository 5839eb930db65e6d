//! What the controller keeps, on the key-value space: tokens (`token/N`,
//! found by `token-name/NAME` and `token-hash/HASH`), the audit log
//! (`audit/SEQ` and `audit-head`), incidents, maintenance, uptime counters
//! and drills.

use super::journal::StepDoc;
use super::samples::TotalsDoc;
use super::{decode, encode, prefix_end, seg, Check, Kv, KvStore, Op, Txn};
use crate::error::{Error, Result};
use crate::model::controller::{
    check_customer, check_status, check_token_name, new_token_secret, shown_title, token_hash, verify_chain,
    AuditEntry, Controller, DrillRow, Incident, IncidentUpdate, Maintenance, Role, Token, UptimeDay, Verified,
};
use crate::model::samples::RunTotals;
use crate::model::times::{millis, time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

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
struct DrillDoc {
    id: String,
    experiment: String,
    started_ms: i64,
    finished_ms: Option<i64>,
    objectives_met: Option<bool>,
    report: Option<String>,
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
        title: shown_title(d.title, &d.status),
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
        check_token_name(name)?;
        check_customer(role, customer)?;
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
        verify_chain(&self.seal, &self.audit_entries()?)
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
