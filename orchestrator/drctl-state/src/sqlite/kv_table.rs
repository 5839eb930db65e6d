//! What SQLite keeps in its `kv` table: the parts of the store written
//! once on the key-value space (subscriptions, the outbox, reports, lag
//! evidence, erasures), reached through [`Sqlite::kv_part`].

use super::Sqlite;
use crate::error::Result;
use crate::kv::{Check, Kv, Op, Txn, Versioned};
use crate::model::audience::*;
use crate::model::erasure::{ErasureRequest, Erasures};
use crate::model::evidence::{Evidence, LagEvidence, WalSample};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// SQLite as a key-value space, for the parts of the store written once
/// on [`Kv`] (see the module documentation). Versions come from one
/// counter, so a key deleted and written again never repeats a version a
/// reader may hold.
pub struct SqliteKv {
    conn: Arc<Mutex<Connection>>,
    location: String,
}

impl SqliteKv {
    pub(crate) fn new(conn: Arc<Mutex<Connection>>, location: String) -> SqliteKv {
        SqliteKv { conn, location }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for SqliteKv {
    fn location(&self) -> &str {
        &self.location
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>> {
        crate::blocking::offload(|| {
            Ok(self
                .conn()
                .query_row("SELECT value, version FROM kv WHERE key = ?1", params![key], |r| {
                    Ok(Versioned { value: r.get(0)?, version: r.get(1)? })
                })
                .optional()?)
        })
    }

    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st =
                conn.prepare_cached("SELECT key, value, version FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")?;
            let rows = st.query_map(params![start, end], |r| {
                Ok((r.get(0)?, Versioned { value: r.get(1)?, version: r.get(2)? }))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn count(&self, start: &str, end: &str) -> Result<usize> {
        crate::blocking::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare_cached("SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < ?2")?;
            let n: i64 = st.query_row(params![start, end], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn commit(&self, txn: Txn) -> Result<bool> {
        crate::blocking::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for check in &txn.checks {
                let (key, want) = match check {
                    Check::Absent(k) => (k, None),
                    Check::Version(k, v) => (k, Some(*v)),
                };
                let found: Option<i64> =
                    tx.query_row("SELECT version FROM kv WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
                if found != want {
                    return Ok(false);
                }
            }
            let version: i64 = tx.query_row("UPDATE kv_revision SET n = n + 1 RETURNING n", [], |r| r.get(0))?;
            for op in &txn.ops {
                match op {
                    Op::Put(k, v) => {
                        tx.execute(
                            "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
                            params![k, v, version],
                        )?;
                    }
                    Op::Delete(k) => {
                        tx.execute("DELETE FROM kv WHERE key = ?1", params![k])?;
                    }
                    Op::DeleteRange(a, b) => {
                        tx.execute("DELETE FROM kv WHERE key >= ?1 AND key < ?2", params![a, b])?;
                    }
                }
            }
            tx.commit()?;
            Ok(true)
        })
    }
}

impl Audience for Sqlite {
    fn keyed_hash(&self, purpose: &str, value: &[u8]) -> String {
        self.sealer().index(purpose, value)
    }

    fn subscribe(
        &self,
        channel: Channel,
        target: &str,
        services: &[String],
        lang: &str,
        now: SystemTime,
    ) -> Result<NewSubscription> {
        self.kv_part().subscribe(channel, target, services, lang, now)
    }
    fn confirm_subscription(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        self.kv_part().confirm_subscription(token, now)
    }
    fn unsubscribe(&self, token: &str, now: SystemTime) -> Result<Option<Subscription>> {
        self.kv_part().unsubscribe(token, now)
    }
    fn subscriptions(&self) -> Result<Vec<Subscription>> {
        self.kv_part().subscriptions()
    }
    fn subscription(&self, id: i64) -> Result<Option<Subscription>> {
        self.kv_part().subscription(id)
    }
    fn expire_pending(&self, now: SystemTime) -> Result<usize> {
        self.kv_part().expire_pending(now)
    }
    fn enqueue(&self, n: &Notification, to: Option<i64>, now: SystemTime) -> Result<usize> {
        self.kv_part().enqueue(n, to, now)
    }
    fn due_deliveries(&self, now: SystemTime, limit: usize) -> Result<Vec<Delivery>> {
        self.kv_part().due_deliveries(now, limit)
    }
    fn record_attempt(&self, delivery: i64, attempt: &Attempt, now: SystemTime) -> Result<()> {
        self.kv_part().record_attempt(delivery, attempt, now)
    }
    fn deliveries(&self) -> Result<Vec<Delivery>> {
        self.kv_part().deliveries()
    }
    fn report(&self, incident: i64) -> Result<Option<IncidentReport>> {
        self.kv_part().report(incident)
    }
    fn draft_report(&self, incident: i64, body: &str, now: SystemTime) -> Result<bool> {
        self.kv_part().draft_report(incident, body, now)
    }
    fn edit_report(&self, incident: i64, body: &str, by: &str, now: SystemTime) -> Result<IncidentReport> {
        self.kv_part().edit_report(incident, body, by, now)
    }
    fn publish_report(&self, incident: i64, by: &str, now: SystemTime) -> Result<IncidentReport> {
        self.kv_part().publish_report(incident, by, now)
    }
    fn create_customer_link(
        &self,
        customer: &str,
        by: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<NewCustomerLink> {
        self.kv_part().create_customer_link(customer, by, expires, now)
    }
    fn customer_links(&self) -> Result<Vec<CustomerLink>> {
        self.kv_part().customer_links()
    }
    fn customer_link(&self, secret: &str) -> Result<Option<CustomerLink>> {
        self.kv_part().customer_link(secret)
    }
    fn open_link_session(&self, link_secret: &str, now: SystemTime) -> Result<Option<(CustomerLink, String)>> {
        self.kv_part().open_link_session(link_secret, now)
    }
    fn link_session(&self, session: &str, now: SystemTime) -> Result<Option<CustomerLink>> {
        self.kv_part().link_session(session, now)
    }
    fn revoke_customer_link(&self, id: &str, now: SystemTime) -> Result<CustomerLink> {
        self.kv_part().revoke_customer_link(id, now)
    }
}

impl Evidence for Sqlite {
    fn record_wal_samples(&self, datastore: &str, samples: &[WalSample]) -> Result<()> {
        self.kv_part().record_wal_samples(datastore, samples)
    }

    fn lag_evidence(&self, datastore: &str, zone: &str) -> Result<Option<LagEvidence>> {
        self.kv_part().lag_evidence(datastore, zone)
    }
}

impl Erasures for Sqlite {
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
    use crate::error::Error;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Requests at once near the cap of unconfirmed subscriptions: exactly
    /// as many pass as there are places left (the SQLite store, which
    /// counts them in the database).
    #[test]
    fn the_pending_cap_holds_under_concurrent_subscribers() {
        let sqlite = crate::Sqlite::in_memory().unwrap();
        let s = &sqlite;
        for i in 0..MAX_PENDING - 10 {
            s.subscribe(Channel::Email, &format!("p{i}@example.org"), &[], "en", at(1_000)).unwrap();
        }
        let (made, full) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|w| {
                    scope.spawn(move || {
                        let (mut made, mut full) = (0, 0);
                        for i in 0..5 {
                            match s.subscribe(Channel::Email, &format!("w{w}-{i}@example.org"), &[], "en", at(2_000)) {
                                Ok(_) => made += 1,
                                Err(Error::Full(_)) => full += 1,
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (made, full)
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!((made, full), (10, 30));
        let pending = s.subscriptions().unwrap().iter().filter(|x| x.state == SubscriptionState::Pending).count();
        assert_eq!(pending, MAX_PENDING);
    }

    #[test]
    fn the_sqlite_file_holds_no_identifier_in_clear() {
        let dir = std::env::temp_dir().join(format!("drctl-erasure-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("state.db");
        let store = crate::Sqlite::open(&format!("sqlite://{}", db.display())).unwrap();
        let r = store.create_erasure(&crate::model::erasure::sample_request("person-8d1f-identifier")).unwrap();
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
