//! What the controller (`drctl serve`) remembers: API tokens (only their
//! hashes), the audit log, incidents and maintenance for the status page,
//! daily uptime counters, and drill results; and the rules both backends
//! apply to them (token names, incident statuses, the audit chain).
//!
//! Every audit entry carries the SHA-256 (or, keyed, the HMAC) of its
//! content chained with the previous entry's hash, so an edit made behind
//! drctl's back breaks the chain at that entry and `drctl audit verify`
//! names it.

use crate::error::{Error, Result};
use crate::model::samples::RunTotals;
use crate::model::times::millis;
use crate::seal::{hex, random_bytes};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Roles, each including the ones before it (docs/guide/controller.md), and below them
/// all a customer's (docs/customers.md): it sees its own contract page and nothing
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
    /// The customer a `customer` token sees (docs/customers.md).
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

/// How the incident a declaration opens is titled while it runs.
pub const FAILOVER_TITLE: &str = "Failover in progress: ";
/// How that incident is titled once resolved.
pub const FAILED_OVER_TITLE: &str = "Failed over: ";

/// An incident's title as its readers see it: a declaration's "Failover in
/// progress: Z" reads "Failed over: Z" once the incident is resolved (and
/// again "in progress" if it is reopened). Customers saw the first stay on
/// a resolved incident; deriving it from the status when an incident is
/// read keeps every face (page, feed, notification, report) in step.
pub fn shown_title(title: String, status: &str) -> String {
    match title.strip_prefix(FAILOVER_TITLE) {
        Some(scope) if status == "resolved" => format!("{FAILED_OVER_TITLE}{scope}"),
        _ => title,
    }
}

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

/// An incident status must be one of [`INCIDENT_STATUSES`].
pub(crate) fn check_status(status: &str) -> Result<()> {
    if INCIDENT_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("incident status `{status}`: use one of {}", INCIDENT_STATUSES.join(", "))))
    }
}

/// What the controller keeps: tokens, the audit log, incidents,
/// maintenance, uptime counters, drill results, and the counters behind
/// its metrics.
pub trait Controller: Send + Sync {
    /// Stores a token (its hash only) and returns the secret, shown once.
    /// A new token's secret (shown once); `customer` names the customer a
    /// `customer` token sees, and only such a token names one.
    fn create_token(&self, name: &str, role: Role, customer: Option<&str>) -> Result<String>;

    fn tokens(&self) -> Result<Vec<Token>>;

    /// The live token a secret is, compared in constant time against
    /// every stored hash (no early exit on the first differing byte).
    fn authenticate(&self, secret: &str) -> Result<Option<Token>>;

    /// Revokes by name or id; returns the token revoked.
    fn revoke_token(&self, name_or_id: &str) -> Result<Token>;

    /// Appends an entry, chained to the previous one.
    fn audit(
        &self,
        actor: &str,
        source: &str,
        action: &str,
        target: &str,
        request: &serde_json::Value,
    ) -> Result<AuditEntry>;

    fn audit_entries(&self) -> Result<Vec<AuditEntry>>;

    /// Recomputes the chain; the first entry that does not match is named.
    fn verify_audit(&self) -> Result<Verified>;

    fn create_incident(
        &self,
        title: &str,
        status: &str,
        body: &str,
        services: &[String],
        execution: Option<&str>,
    ) -> Result<i64>;

    fn update_incident(&self, id: i64, status: &str, body: &str) -> Result<()>;

    /// Incidents, newest first, each with its updates (newest first).
    fn incidents(&self) -> Result<Vec<Incident>>;

    /// The open incident tied to an execution, if any.
    fn incident_of_execution(&self, execution: &str) -> Result<Option<i64>>;

    fn create_maintenance(
        &self,
        title: &str,
        body: &str,
        services: &[String],
        starts: SystemTime,
        ends: SystemTime,
    ) -> Result<i64>;

    fn maintenance(&self) -> Result<Vec<Maintenance>>;

    /// Counts one health check of each service in its UTC day.
    fn record_health(&self, at: SystemTime, checks: &[(String, bool)]) -> Result<()>;

    /// Per-day counters of a service from `since_day` on (days with no check are absent).
    fn uptime(&self, service: &str, since_day: i64) -> Result<Vec<UptimeDay>>;

    /// Replication totals per datastore since the state began.
    fn replication_totals(&self) -> Result<Vec<(String, RunTotals)>>;

    /// (action, total seconds, count) of finished steps.
    fn step_durations(&self) -> Result<Vec<(String, f64, u64)>>;

    /// Executions per state.
    fn execution_counts(&self) -> Result<Vec<(String, u64)>>;

    fn begin_drill(&self, id: &str, experiment: &str) -> Result<()>;

    /// Records a drill that ran elsewhere (the CLI), whole.
    fn record_drill(
        &self,
        id: &str,
        experiment: &str,
        started: SystemTime,
        objectives_met: bool,
        report: &str,
    ) -> Result<()>;

    /// Drills, newest first.
    fn drills(&self) -> Result<Vec<DrillRow>>;

    fn finish_drill(&self, id: &str, objectives_met: Option<bool>, report: Option<&str>) -> Result<()>;
}
