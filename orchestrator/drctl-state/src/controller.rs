//! What the controller (`drctl serve`) remembers: API tokens (only their
//! hashes), the audit log, incidents and maintenance for the status page,
//! daily uptime counters, and drill results.
//!
//! The audit log is append-only twice over: SQLite triggers refuse UPDATE
//! and DELETE, and every entry carries the SHA-256 of its content chained
//! with the previous entry's hash, so an edit made behind drctl's back
//! (the triggers dropped, the file patched) breaks the chain at that entry
//! and `drctl audit verify` names it.

use crate::store::Controller;
use crate::{millis, Error, Result, Sqlite};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Roles, each including the ones before it (SPEC §9), and below them
/// all a customer's (SPEC §12): it sees its own contract page and nothing
/// else of the operator API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Viewer,
    Operator,
    Commander,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Customer, Role::Viewer, Role::Operator, Role::Commander, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Commander => "commander",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The customer a `customer` token sees (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(skip)]
    pub hash: String,
    pub created_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
}

/// A new secret token: `drctl_` and 32 random bytes in hex.
pub fn new_token_secret() -> Result<String> {
    Ok(format!("drctl_{}", hex(&random_bytes("a token")?)))
}

/// 32 bytes from the operating system's randomness, for `what` (in the error).
pub(crate) fn random_bytes(what: &str) -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Invalid(format!("no randomness for {what}: {e}")))?;
    Ok(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored of a token.
pub fn token_hash(secret: &str) -> String {
    sha256_hex(secret.as_bytes())
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    /// The request, as JSON (secrets never included).
    pub request: String,
    pub prev_hash: String,
    pub hash: String,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// How the audit log is sealed: the key its entries are chained with, and
/// the file its head is written to besides the store.
///
/// Unkeyed, each entry's hash is SHA-256 of its fields and the previous
/// hash: that shows an edit, but whoever can write the store can rewrite
/// the whole chain consistently. Keyed, it is HMAC-SHA256 under a key the
/// store never holds, so rewriting needs the key too. The head file (one
/// `SEQ HASH` line appended per entry, fsynced) lives where the store's
/// writers need not reach, so a rewritten or truncated log no longer
/// contains the last head there (`drctl audit verify --head-file`).
#[derive(Clone, Default)]
pub struct AuditSeal {
    /// (id, key), oldest first; entries are written under the last one and
    /// verified under any (a rotated key still verifies what it chained).
    keys: Vec<(String, std::sync::Arc<[u8]>)>,
    head_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for AuditSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("AuditSeal").field("keys", &self.key_ids()).field("head_file", &self.head_file).finish()
    }
}

impl AuditSeal {
    pub fn new(key: Option<Vec<u8>>, head_file: Option<std::path::PathBuf>) -> AuditSeal {
        let keys: Vec<(String, std::sync::Arc<[u8]>)> = key
            .map(|k| {
                let id = hex(&Sha256::digest([b"drctl key id:".as_slice(), &k].concat())[..4]);
                vec![(id, k.into())]
            })
            .unwrap_or_default();
        AuditSeal { keys, head_file }
    }

    /// Fills what was not chosen from the store's own key folder: the
    /// audit key ring there (made on first use) and its head file.
    pub fn or_defaults(mut self, paths: &crate::seal::KeyPaths) -> Result<AuditSeal> {
        if self.keys.is_empty() {
            let ring = crate::seal::Keyring::load_or_create(&paths.audit_key())?;
            self.keys = ring.keys().map(|(id, k)| (id.to_string(), std::sync::Arc::from(k.as_slice()))).collect();
        }
        if self.head_file.is_none() {
            crate::seal::private_dir(&paths.dir)?;
            self.head_file = Some(paths.audit_head());
        }
        Ok(self)
    }

    pub fn keyed(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The ids of the keys entries are chained with, oldest first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The file every new head is appended to, if any.
    pub fn head_file(&self) -> Option<&std::path::Path> {
        self.head_file.as_deref()
    }

    fn text(fields: [&str; 8]) -> String {
        let mut text = String::new();
        for f in fields {
            text.push_str(&format!("{}:{f};", f.len()));
        }
        text
    }

    fn mac(key: &[u8], text: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash of an entry: its fields, length-prefixed (no two different
    /// entries hash the same text), ending with the previous entry's hash;
    /// under the current key when keyed.
    pub(crate) fn hash(&self, fields: [&str; 8]) -> String {
        let text = Self::text(fields);
        match self.keys.last() {
            None => sha256_hex(text.as_bytes()),
            Some((_, key)) => Self::mac(key, &text),
        }
    }

    /// Which key an entry's hash was made with: `Some(Some(id))` a key of
    /// the ring, `Some(None)` no key (plain SHA-256), `None` neither.
    pub(crate) fn matches(&self, fields: [&str; 8], hash: &str) -> Option<Option<String>> {
        let text = Self::text(fields);
        for (id, key) in self.keys.iter().rev() {
            if Self::mac(key, &text) == hash {
                return Some(Some(id.clone()));
            }
        }
        (sha256_hex(text.as_bytes()) == hash).then_some(None)
    }

    /// Appends a new head to the head file, durably, before the change it
    /// records is answered as done.
    pub(crate) fn record_head(&self, entry: &AuditEntry) -> Result<()> {
        use std::io::Write;
        let Some(path) = &self.head_file else { return Ok(()) };
        let write = || -> std::io::Result<()> {
            let mut open = std::fs::OpenOptions::new();
            open.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
            let mut f = open.open(path)?;
            writeln!(f, "{} {}", entry.seq, entry.hash)?;
            f.sync_data()
        };
        write().map_err(|e| {
            Error::Backend(format!(
                "audit entry {} is in the log but its head could not be written to {}: {e}",
                entry.seq,
                path.display()
            ))
        })
    }
}

/// The last head a head file holds (`SEQ HASH` lines, newest last).
pub fn last_head(path: &std::path::Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().rev().find_map(|l| l.split_whitespace().nth(1)).map(str::to_string))
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// `keys`: the ids of the audit keys the entries were chained with
    /// (empty: none was, anyone able to write the store could rewrite it).
    Intact {
        entries: i64,
        head: String,
        keys: Vec<String>,
    },
    Broken {
        seq: i64,
        why: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub services: Vec<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub resolved_at: Option<SystemTime>,
    pub execution_id: Option<String>,
    pub updates: Vec<IncidentUpdate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentUpdate {
    pub id: i64,
    pub at: SystemTime,
    pub status: String,
    pub body: String,
}

pub const INCIDENT_STATUSES: [&str; 4] = ["investigating", "identified", "monitoring", "resolved"];

#[derive(Debug, Clone, Serialize)]
pub struct Maintenance {
    pub id: i64,
    pub title: String,
    pub body: String,
    pub services: Vec<String>,
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UptimeDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub checks: i64,
    pub healthy: i64,
}

#[derive(Debug, Clone)]
pub struct DrillRow {
    pub id: String,
    pub experiment: String,
    pub started_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub objectives_met: Option<bool>,
    pub report: Option<String>,
}

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<Token> {
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        role: {
            let raw: String = r.get(2)?;
            Role::parse(&raw).ok_or_else(|| crate::corrupt(2, format!("unknown role `{raw}`")))?
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
        crate::offload(|| {
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
        crate::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, name, role, hash, created_ms, revoked_ms, last_used_ms, customer FROM tokens ORDER BY id",
            )?;
            let rows = st.query_map([], token_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn authenticate(&self, secret: &str) -> Result<Option<Token>> {
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| verify_chain(&self.seal, &self.audit_entries()?))
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT id, title, status, services, created_ms, updated_ms, resolved_ms, execution_id FROM incidents ORDER BY id DESC",
            )?;
            let mut out: Vec<Incident> = st
                .query_map([], |r| {
                    Ok(Incident {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        status: r.get(2)?,
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
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
        crate::offload(|| {
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

    fn replication_totals(&self) -> Result<Vec<(String, crate::RunTotals)>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare(
                "SELECT datastore, SUM(copied), SUM(bytes), SUM(skipped), SUM(failed) FROM replication_runs GROUP BY datastore ORDER BY datastore",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    crate::RunTotals {
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
        crate::offload(|| {
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
        crate::offload(|| {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT state, COUNT(*) FROM executions GROUP BY state ORDER BY state")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---- drills ----

    fn begin_drill(&self, id: &str, experiment: &str) -> Result<()> {
        crate::offload(|| {
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
        crate::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO drills (id, experiment, started_ms, finished_ms, objectives_met, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, experiment, millis(started), millis(self.now()), objectives_met as i64, report],
            )?;
            Ok(())
        })
    }

    fn finish_drill(&self, id: &str, objectives_met: Option<bool>, report: Option<&str>) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "UPDATE drills SET finished_ms = ?1, objectives_met = ?2, report = ?3 WHERE id = ?4",
                params![millis(self.now()), objectives_met.map(|b| b as i64), report, id],
            )?;
            Ok(())
        })
    }

    fn drills(&self) -> Result<Vec<DrillRow>> {
        crate::offload(|| {
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

/// Token names: 1-64 letters, digits, `-`, `_`, `.` or `@`.
pub(crate) fn check_token_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        return Err(Error::Invalid(format!("token name `{name}`: use 1-64 letters, digits, `-`, `_`, `.` or `@`")));
    }
    Ok(())
}

/// A customer token names its customer; no other token names one.
pub(crate) fn check_customer(role: Role, customer: Option<&str>) -> Result<()> {
    match (role, customer) {
        (Role::Customer, None) => {
            Err(Error::Invalid("a customer token needs the customer it sees (`--customer NAME`)".into()))
        }
        (Role::Customer, Some(c)) if c.is_empty() || c.len() > 128 || c.chars().any(char::is_control) => {
            Err(Error::Invalid(format!("customer name `{c}`: use 1-128 printable characters")))
        }
        (Role::Customer, Some(_)) => Ok(()),
        (_, Some(_)) => Err(Error::Invalid(format!(
            "only a customer token names a customer; a {} token sees every customer",
            role.as_str()
        ))),
        (_, None) => Ok(()),
    }
}

/// Recomputes an audit chain, oldest first; names the first entry that does not match.
pub(crate) fn verify_chain(seal: &AuditSeal, entries: &[AuditEntry]) -> Result<Verified> {
    let mut prev = "0".repeat(64);
    let mut used: Vec<String> = Vec::new();
    let mut keyed_since: Option<i64> = None;
    for (expected_seq, e) in (1..).zip(entries.iter()) {
        if e.seq != expected_seq {
            return Ok(Verified::Broken {
                seq: expected_seq,
                why: format!("entry {expected_seq} is missing (the next one is {})", e.seq),
            });
        }
        if e.prev_hash != prev {
            return Ok(Verified::Broken { seq: e.seq, why: "it does not chain to the entry before it".into() });
        }
        let fields = [
            &e.seq.to_string(),
            &millis(e.at).to_string(),
            &e.actor,
            &e.source,
            &e.action,
            &e.target,
            &e.request,
            &e.prev_hash,
        ];
        match seal.matches(fields.map(String::as_str), &e.hash) {
            Some(Some(id)) => {
                keyed_since.get_or_insert(e.seq);
                if !used.contains(&id) {
                    used.push(id);
                }
            }
            // A plain hash after keyed entries, or where this verifier holds
            // the key: recomputed by someone without it.
            Some(None) if keyed_since.is_some() || seal.keyed() => {
                return Ok(Verified::Broken {
                    seq: e.seq,
                    why: "it is chained without the audit key while the log is keyed: rewritten by someone who does not hold the key".into(),
                });
            }
            Some(None) => {}
            None => {
                let why = if seal.keyed() {
                    "it matches none of the audit keys: edited, or chained with a key this verifier does not hold (DRCTL_AUDIT_KEY_FILE)"
                } else {
                    "its content does not match its hash (edited, or written with an audit key: verify with DRCTL_AUDIT_KEY_FILE)"
                };
                return Ok(Verified::Broken { seq: e.seq, why: why.into() });
            }
        }
        prev = e.hash.clone();
    }
    Ok(Verified::Intact { entries: entries.len() as i64, head: prev, keys: used })
}

fn check_status(status: &str) -> Result<()> {
    if INCIDENT_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("incident status `{status}`: use one of {}", INCIDENT_STATUSES.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
