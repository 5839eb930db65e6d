//! Erasure: a person's data gone from every copy, proven, and kept gone.
//!
//! The one owner of the operation; the CLI, the operator API, the
//! controller's periodic pass, failovers and restores all come here and
//! differ only in how they show it. A request goes through three phases:
//!
//! 1. **record** ([`Eraser::request`]): the ledger gets the request (the
//!    subject sealed, see `drctl_state::erasure`) and the audit log gets
//!    its id, before anything is destroyed: an erasure cut short by a crash
//!    is finished by the next pass, never forgotten;
//! 2. **erase** ([`Eraser::run`]): each `locate` entry runs on its
//!    datastore's primary as it is now (a failover moves it): the SQL with
//!    the subject as `$1`, noting the WAL position after it; for S3 every
//!    version under the prefix, on the primary bucket and on every replica;
//! 3. **verify** ([`Eraser::verify`]): each copy is checked: a PostgreSQL
//!    standby once it has replayed past that position, each bucket by
//!    listing its versions. A copy that does not answer stays unverified
//!    and is checked again by the next pass (`drctl serve` runs one
//!    periodically), so a replica that was down is verified when it is back.
//!
//! A primary that is not the one the erasure ran on (a failover since, to
//! a standby that may never have received the delete) gets the erasure run
//! again. Backups are not edited: restores replay the ledger
//! ([`Eraser::replay_on`]), and the identifier is forgotten once the last
//! backup older than the request has expired ([`Eraser::forget_expired`]).
//!
//! Nothing written here (ledger notes, errors, audit entries) holds the
//! subject: messages that could echo it (a database's error) are scrubbed.

use crate::actor::Actor;
use crate::live::Clients;
use crate::{Error, Request};
use drctl_aws::s3_erasure;
use drctl_core::topology::backup::Backup;
use drctl_core::topology::erasure::{Erasure, Find};
use drctl_core::topology::{Datastore, DatastoreKind, EntityId, Location};
use drctl_core::Topology;
use drctl_providers::pg_erasure::{self, Checked, Client};
use drctl_providers::postgres::Lsn;
use drctl_runtime::Clock;
use drctl_state::{CopyState, ErasureRequest, State};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A replication pass open longer than this is taken for one whose process
/// died (its record is never finished), not one still copying.
const STALE_PASS: Duration = Duration::from_secs(24 * 3600);
/// The longest identifier accepted (an id, an e-mail address, a UUID).
const MAX_SUBJECT: usize = 512;

/// Runs erasures for one topology.
pub struct Eraser {
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    clock: Arc<dyn Clock>,
    /// Connections by URL, kept for the eraser's life: thousands of
    /// requests (a backlog, a restore's replay) reuse them.
    pg: tokio::sync::Mutex<HashMap<String, Arc<Client>>>,
    /// The backup sets each datastore's backup tool reports now, where the
    /// caller read them ([`Eraser::with_backups`]); a datastore absent here
    /// is estimated from its retention.
    backups: std::sync::Mutex<HashMap<String, Vec<BackupSet>>>,
}

/// A backup set a datastore's repository holds now, as its backup tool
/// reports it (pgBackRest's `info`), with when it is expected to expire.
/// Read by the caller (drctl-backup knows pgBackRest; this crate does not).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSet {
    pub label: String,
    /// When the backup started copying: anything on the primary then may be in it.
    pub started: SystemTime,
    /// When retention will expire it; `None` while nothing newer lets it expire.
    pub expires_at: Option<SystemTime>,
}

/// A backup that may still hold a request's subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub datastore: String,
    /// The backup set, as its tool names it; `None` for an estimate from
    /// the retention (RDS, or a repository that could not be read).
    pub backup: Option<String>,
    /// `None`: not known yet (no newer full backup lets it expire).
    pub expires_at: Option<SystemTime>,
}

impl Holding {
    /// Whether it may still hold the subject at `now`: a set the tool still
    /// lists does, whatever its expected expiry; an estimate until it passes.
    pub fn holds(&self, now: SystemTime) -> bool {
        self.backup.is_some() || self.expires_at.is_none_or(|t| t > now)
    }
}

/// Whether a datastore's primary copy has been erased (a replica bucket
/// erased before it may be written to again by replication from it).
fn primary_erased(req: &ErasureRequest, datastore: &str) -> bool {
    req.copies.iter().any(|c| c.datastore == datastore && c.primary && c.erased_at.is_some())
}

/// Replaces the subject wherever a message repeats it.
fn scrub(text: &str, subject: &str) -> String {
    if subject.is_empty() {
        return text.to_string();
    }
    text.replace(subject, "***")
}

fn bad(field: &str, why: impl Into<String>) -> Error {
    Request::BadRequest { field: field.into(), why: why.into() }.into()
}

/// One copy's place: which datastore, which zone, how to reach it.
#[derive(Debug, Clone)]
enum Reach {
    Postgres { url: String },
    Bucket { bucket: String, endpoint: Option<String>, region: Option<String> },
}

impl Eraser {
    pub fn new(topo: Arc<Topology>, state: Arc<State>, clients: Arc<Clients>) -> Eraser {
        Eraser {
            topo,
            state,
            clients,
            clock: Arc::new(drctl_runtime::SystemClock),
            pg: Default::default(),
            backups: Default::default(),
        }
    }

    /// The backup sets each datastore's repository holds now (by datastore
    /// name), read by the caller from the backup tool: which backups hold a
    /// request, and until when, come from them instead of the retention.
    pub fn with_backups(self, backups: HashMap<String, Vec<BackupSet>>) -> Eraser {
        self.set_backups(backups);
        self
    }

    /// [`Eraser::with_backups`], for an eraser kept across passes: the sets
    /// read again replace those read before.
    pub fn set_backups(&self, backups: HashMap<String, Vec<BackupSet>>) {
        *self.backups.lock().unwrap_or_else(|p| p.into_inner()) = backups;
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Eraser {
        self.clock = clock;
        self
    }

    fn section(&self) -> Result<&Erasure, Error> {
        self.topo.erasure.as_ref().ok_or_else(|| {
            bad(
                "erasure",
                format!(
                    "is not configured in {}: add an `erasure:` section saying where a subject's data lives (see docs/guide/erasure.md)",
                    self.topo.file.display()
                ),
            )
        })
    }

    /// The datastores the section names, each once, in file order.
    fn datastores(&self) -> Vec<(EntityId, &str, &Datastore)> {
        let Some(e) = &self.topo.erasure else { return Vec::new() };
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for l in &e.locate {
            if seen.contains(&l.datastore) {
                continue;
            }
            seen.push(l.datastore);
            if let Some((_, ent, ds)) = self.topo.datastores().find(|(i, _, _)| *i == l.datastore) {
                out.push((l.datastore, ent.name.as_str(), ds));
            }
        }
        out
    }

    /// Every copy of a datastore: (zone, how to reach it, is the topology's primary).
    fn copies_of(&self, id: EntityId, ds: &Datastore) -> Vec<(String, Reach, bool)> {
        let zone = |z: usize| self.topo.zones[z].name.clone();
        match ds.kind {
            DatastoreKind::Postgres | DatastoreKind::S3 => ds
                .primary
                .iter()
                .map(|m| (m, true))
                .chain(ds.replicas.iter().map(|m| (m, false)))
                .filter_map(|(m, primary)| {
                    let reach = match &m.location {
                        Location::Postgres { url, .. } => Reach::Postgres { url: url.clone() },
                        Location::S3 { bucket, endpoint, region } => Reach::Bucket {
                            bucket: bucket.clone(),
                            endpoint: endpoint.clone(),
                            region: region.clone().or_else(|| ds.region.clone()),
                        },
                        Location::RdsInstance { .. } => return None,
                    };
                    Some((zone(m.zone), reach, primary))
                })
                .collect(),
            // RDS: reached by the entry's URL; its replicas follow by replication
            // and are not reachable by drctl, so the URL's database is the copy.
            DatastoreKind::RdsInstance | DatastoreKind::RdsCluster => {
                let url = self.topo.erasure.iter().flat_map(|e| e.of(id)).find_map(|l| match &l.how {
                    Find::Sql { url: Some(u), .. } => Some(u.clone()),
                    _ => None,
                });
                let z = ds.primary.as_ref().map(|m| zone(m.zone)).unwrap_or_else(|| "rds".into());
                url.map(|url| vec![(z, Reach::Postgres { url }, true)]).unwrap_or_default()
            }
        }
    }

    fn reach(&self, datastore: &str, zone: &str) -> Option<(EntityId, Reach)> {
        let id = self.topo.entity_id(datastore)?;
        let ds = self.datastores().into_iter().find(|(i, _, _)| *i == id)?.2;
        self.copies_of(id, ds).into_iter().find(|(z, _, _)| z == zone).map(|(_, r, _)| (id, r))
    }

    /// Records a request: the ledger first, then the audit log; nothing is
    /// destroyed yet ([`Eraser::run`] does that).
    pub fn request(&self, subject: &str, reason: &str, who: &Actor) -> Result<ErasureRequest, Error> {
        let section = self.section()?;
        if subject.trim().is_empty() {
            return Err(bad("subject", "is empty: give the identifier the `locate` entries use as $1"));
        }
        if subject.len() > MAX_SUBJECT || subject.chars().any(char::is_control) {
            return Err(bad(
                "subject",
                format!("must be at most {MAX_SUBJECT} bytes of text without control characters"),
            ));
        }
        if reason.trim().is_empty() {
            return Err(bad("reason", "is empty: say why (a ticket, the request's reference)"));
        }
        let now = self.clock.now();
        let mut copies = Vec::new();
        for (id, name, ds) in self.datastores() {
            for (zone, _, primary) in self.copies_of(id, ds) {
                copies.push(CopyState {
                    datastore: name.to_string(),
                    zone,
                    primary,
                    erased_at: None,
                    verified_at: None,
                    position: None,
                    pending: Some("not erased yet".into()),
                });
            }
        }
        let draft = ErasureRequest {
            id: String::new(),
            requested_at: now,
            due_at: now + section.deadline,
            who: format!("{}:{}", who.source, who.name),
            reason: reason.to_string(),
            subject: Some(subject.to_string()),
            erased_at: None,
            forgotten_at: None,
            copies,
        };
        let req = self.state.create_erasure(&draft)?;
        // The id, never the subject nor the reason: the audit log is read
        // by many and kept in clear, and a reason is free text that often
        // names the person ("request from Ada Lovelace"). Both stay in the
        // sealed ledger.
        crate::actor::audit(
            &*self.state,
            who,
            "erase",
            &format!("erasure {}", req.id),
            &json!({ "due_at": crate::live::rfc3339_secs(req.due_at) }),
        )?;
        Ok(req)
    }

    async fn client(&self, url: &str) -> Result<Arc<Client>, drctl_providers::Error> {
        let mut pool = self.pg.lock().await;
        if let Some(c) = pool.get(url).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(drctl_providers::postgres::connect(url, CONNECT_TIMEOUT).await?);
        pool.insert(url.to_string(), c.clone());
        Ok(c)
    }

    async fn bucket(
        &self,
        zone: &str,
        bucket: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> drctl_aws::s3::Bucket {
        drctl_aws::s3::Bucket {
            zone: zone.to_string(),
            name: bucket.to_string(),
            endpoint: endpoint.map(str::to_string),
            client: self.clients.s3(endpoint, region).await,
        }
    }

    /// Whether a PostgreSQL copy is an open primary now.
    async fn is_primary(&self, url: &str) -> bool {
        match self.client(url).await {
            Ok(c) => {
                c.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.map(|r| r.get::<_, bool>(0)).unwrap_or(false)
            }
            Err(_) => false,
        }
    }

    /// Erases on each datastore's primary as it is now (once per primary:
    /// a primary already erased is not erased again), then verifies.
    pub async fn run(&self, id: &str) -> Result<ErasureRequest, Error> {
        let req = self.load(id)?;
        let Some(subject) = req.subject.clone() else { return Ok(req) };
        let section = self.section()?;
        for (ds_id, name, ds) in self.datastores() {
            let copies = self.copies_of(ds_id, ds);
            match ds.kind {
                DatastoreKind::S3 => {
                    // Every bucket: the replicas keep old versions of their own.
                    // A bucket erased but not verified clean is erased again:
                    // replication that read an object (or planned a delete)
                    // before the erasure can land a copy or a delete marker
                    // after it, and only another erasure removes that.
                    for (zone, reach, _) in &copies {
                        let Reach::Bucket { bucket, endpoint, region } = reach else { continue };
                        if req.copies.iter().any(|c| c.datastore == name && &c.zone == zone && c.verified_at.is_some())
                        {
                            continue;
                        }
                        let b = self.bucket(zone, bucket, endpoint.as_deref(), region.as_deref()).await;
                        let mut outcome = Ok(0u64);
                        for l in section.of(ds_id) {
                            if let Find::Prefix(p) = &l.how {
                                match s3_erasure::erase_prefix(&b, &Find::prefix_for(p, &subject)).await {
                                    Ok(n) => outcome = outcome.map(|sum| sum + n),
                                    Err(e) => {
                                        outcome = Err(e);
                                        break;
                                    }
                                }
                            }
                        }
                        let now = self.clock.now();
                        if outcome.is_ok() {
                            self.forget_replicated(name, zone, ds_id, &subject);
                        }
                        self.note(id, name, zone, |c| match &outcome {
                            // When it was last erased of something: a replication
                            // pass begun before then may still write (see `verify`).
                            // Erasing nothing again moves nothing.
                            Ok(n) => {
                                if *n > 0 || c.erased_at.is_none() {
                                    c.erased_at = Some(now);
                                }
                                c.pending = Some("erased; not verified yet".into());
                            }
                            Err(e) => c.pending = Some(format!("erasing failed: {}", scrub(&e.to_string(), &subject))),
                        })?;
                    }
                }
                _ => {
                    // The primary now: the topology's, unless a failover moved it.
                    let mut primary = None;
                    for (zone, reach, _) in &copies {
                        let Reach::Postgres { url } = reach else { continue };
                        if ds.kind != DatastoreKind::Postgres || self.is_primary(url).await {
                            primary = Some((zone.clone(), url.clone()));
                            break;
                        }
                    }
                    let Some((zone, url)) = primary else {
                        self.note_all(id, name, |c| {
                            if c.erased_at.is_none() {
                                c.pending = Some("no primary answers: the erasure waits for one".into());
                            }
                        })?;
                        continue;
                    };
                    let current = self.load(id)?;
                    let done =
                        current.copies.iter().any(|c| c.datastore == name && c.zone == zone && c.erased_at.is_some());
                    if done {
                        continue;
                    }
                    match self.erase_pg(ds_id, &url, &subject).await {
                        Ok(lsn) => {
                            let now = self.clock.now();
                            let pos = lsn.to_string();
                            self.note_all(id, name, |c| {
                                // Standbys must replay past the newest erasure's position.
                                c.position = Some(pos.clone());
                                c.primary = c.zone == zone;
                                if c.zone == zone {
                                    c.erased_at = Some(now);
                                    c.pending = Some("erased; not verified yet".into());
                                } else if c.verified_at.is_none() {
                                    c.pending = Some(format!("waiting for replay past {pos}"));
                                }
                            })?;
                        }
                        Err(why) => {
                            let why = scrub(&why.to_string(), &subject);
                            self.note(id, name, &zone, |c| c.pending = Some(format!("erasing failed: {why}")))?;
                        }
                    }
                }
            }
        }
        let req = self.load(id)?;
        let primaries_done = self
            .datastores()
            .iter()
            .all(|(_, name, _)| req.copies.iter().filter(|c| c.datastore == *name).any(|c| c.erased_at.is_some()));
        if primaries_done && req.erased_at.is_none() {
            let now = self.clock.now();
            self.state.update_erasure(id, &mut |r| {
                r.erased_at.get_or_insert(now);
            })?;
        }
        self.verify(id).await
    }

    /// Forgets what drctl's replication recorded of the subject's keys in
    /// one zone's bucket (its record of what it copied, by key): the keys
    /// name the subject, and once they are erased nothing needs the record.
    /// Best effort: a row left is dropped by the next replication pass,
    /// which forgets keys neither bucket holds.
    fn forget_replicated(&self, datastore: &str, zone: &str, ds_id: EntityId, subject: &str) {
        let Ok(section) = self.section() else { return };
        let prefixes: Vec<String> = section
            .of(ds_id)
            .filter_map(|l| match &l.how {
                Find::Prefix(p) => Some(Find::prefix_for(p, subject)),
                _ => None,
            })
            .collect();
        let Ok(rows) = self.state.replicated(datastore, zone) else { return };
        for key in rows.keys().filter(|k| prefixes.iter().any(|p| k.starts_with(p.as_str()))) {
            if let Err(e) = self.state.forget_replicated(datastore, zone, key) {
                tracing::warn!(datastore, zone, error = %scrub(&e.to_string(), subject), "could not forget an erased key's replication record");
            }
        }
    }

    /// Runs every `sql` of a datastore on one database; the WAL position after.
    async fn erase_pg(&self, ds_id: EntityId, url: &str, subject: &str) -> Result<Lsn, drctl_providers::Error> {
        let client = self.client(url).await?;
        for l in self.section().map(|s| s.of(ds_id).collect::<Vec<_>>()).unwrap_or_default() {
            if let Find::Sql { sql, .. } = &l.how {
                pg_erasure::erase(&client, url, sql, subject).await?;
            }
        }
        pg_erasure::position(&client, url).await
    }

    fn load(&self, id: &str) -> Result<ErasureRequest, Error> {
        self.state
            .erasure(id)?
            .ok_or_else(|| bad("id", format!("`{id}` is not an erasure request (`drctl erasures` lists them)")))
    }

    fn note(&self, id: &str, datastore: &str, zone: &str, mut change: impl FnMut(&mut CopyState)) -> Result<(), Error> {
        self.state.update_erasure(id, &mut |r| {
            if let Some(c) = r.copy_mut(datastore, zone) {
                change(c)
            }
        })?;
        Ok(())
    }

    fn note_all(&self, id: &str, datastore: &str, mut change: impl FnMut(&mut CopyState)) -> Result<(), Error> {
        self.state.update_erasure(id, &mut |r| {
            r.copies.iter_mut().filter(|c| c.datastore == datastore).for_each(&mut change)
        })?;
        Ok(())
    }

    /// Checks every copy not yet verified; records what it saw.
    pub async fn verify(&self, id: &str) -> Result<ErasureRequest, Error> {
        let req = self.load(id)?;
        let Some(subject) = req.subject.clone() else { return Ok(req) };
        let section = self.section()?;
        for c in req.copies.iter().filter(|c| c.verified_at.is_none()) {
            let Some((ds_id, reach)) = self.reach(&c.datastore, &c.zone) else {
                let why = "this copy is no longer in the topology".to_string();
                self.note(id, &c.datastore, &c.zone, |x| x.pending = Some(why.clone()))?;
                continue;
            };
            let outcome: Result<Option<String>, String> = match reach {
                Reach::Postgres { url } => {
                    if !c.primary && c.position.is_none() {
                        Ok(Some("waiting for the primary to be erased".into()))
                    } else {
                        let after = c.position.as_deref().and_then(Lsn::parse);
                        self.check_pg(ds_id, &url, &subject, after, c.erased_at.is_some()).await
                    }
                }
                Reach::Bucket { .. } if !c.primary && !primary_erased(&req, &c.datastore) => {
                    Ok(Some("waiting for the primary bucket to be erased".into()))
                }
                Reach::Bucket { .. } if self.replicating_since_before(&c.datastore, c.erased_at).is_some() => {
                    let began = self.replicating_since_before(&c.datastore, c.erased_at).unwrap_or(UNIX_EPOCH);
                    Ok(Some(format!(
                        "waiting for the replication pass begun at {} (before this bucket was erased) to finish",
                        crate::live::rfc3339_secs(began)
                    )))
                }
                Reach::Bucket { bucket, endpoint, region } => {
                    let b = self.bucket(&c.zone, &bucket, endpoint.as_deref(), region.as_deref()).await;
                    let mut left = 0u64;
                    let mut err = None;
                    for l in section.of(ds_id) {
                        if let Find::Prefix(p) = &l.how {
                            match s3_erasure::versions_left(&b, &Find::prefix_for(p, &subject)).await {
                                Ok(n) => left += n,
                                Err(e) => err = Some(e.to_string()),
                            }
                        }
                    }
                    match (err, left) {
                        (Some(e), _) => Err(e),
                        (None, 0) if c.erased_at.is_some() => {
                            // Replication may have recorded the keys again meanwhile.
                            self.forget_replicated(&c.datastore, &c.zone, ds_id, &subject);
                            Ok(None)
                        }
                        (None, 0) => Ok(Some("not erased yet".into())),
                        (None, n) => Ok(Some(format!("{n} object versions left"))),
                    }
                }
            };
            let now = self.clock.now();
            self.note(id, &c.datastore, &c.zone, |x| match &outcome {
                Ok(None) => {
                    x.verified_at = Some(now);
                    x.pending = None;
                }
                Ok(Some(why)) => x.pending = Some(why.clone()),
                Err(why) => x.pending = Some(format!("unreachable: {}", scrub(why, &subject))),
            })?;
        }
        self.load(id)
    }

    /// When the oldest replication pass of `datastore` still running began,
    /// if it began before `erased_at`: such a pass may have read an object
    /// before the erasure (or seen a key the replica still held) and write
    /// its copy, or a delete marker, after it. A bucket is only verified
    /// once those passes are done (and erased again if one wrote there), as
    /// a standby is only checked once it has replayed past the erasure. A
    /// pass begun more than a day ago and never finished is taken for one
    /// whose process died.
    fn replicating_since_before(&self, datastore: &str, erased_at: Option<SystemTime>) -> Option<SystemTime> {
        let erased_at = erased_at?;
        let dead_before = self.clock.now().checked_sub(STALE_PASS).unwrap_or(UNIX_EPOCH);
        let open = self.state.open_replication_runs(datastore).ok()?;
        open.into_iter().find(|began| *began < erased_at && *began > dead_before)
    }

    /// `Ok(None)`: clean; `Ok(Some(why))`: not verified yet; `Err`: unreachable.
    async fn check_pg(
        &self,
        ds_id: EntityId,
        url: &str,
        subject: &str,
        after: Option<Lsn>,
        erased_here: bool,
    ) -> Result<Option<String>, String> {
        let client = self.client(url).await.map_err(|e| e.to_string())?;
        let mut left = 0;
        for l in self.section().map(|s| s.of(ds_id).collect::<Vec<_>>()).unwrap_or_default() {
            let Find::Sql { check, .. } = &l.how else { continue };
            match pg_erasure::check(&client, url, check, subject, after).await {
                Ok(Checked::NotReplayed { replayed }) => {
                    return Ok(Some(format!(
                        "replayed up to {} of {}",
                        replayed.map_or("nothing".into(), |r| r.to_string()),
                        after.map(|a| a.to_string()).unwrap_or_default()
                    )))
                }
                Ok(Checked::Left(n)) => left += n,
                Err(e) => {
                    self.pg.lock().await.remove(url);
                    return Err(e.to_string());
                }
            }
        }
        if left == 0 {
            return Ok(None);
        }
        // A copy that is a primary now and was never erased: run it there
        // on the next pass (see `run`); a standby past the position that
        // still has rows diverged from its primary.
        Ok(Some(if erased_here {
            format!("{left} rows left after the erasure")
        } else {
            format!("{left} rows left: this copy never received the erasure")
        }))
    }

    /// Records, erases and verifies, waiting up to `wait` for every copy.
    pub async fn erase(
        &self,
        subject: &str,
        reason: &str,
        who: &Actor,
        wait: Duration,
    ) -> Result<ErasureRequest, Error> {
        let req = self.request(subject, reason, who)?;
        self.run(&req.id).await?;
        self.wait(&req.id, wait).await
    }

    /// Runs again (erasing where a copy needs it: a bucket that replication
    /// wrote to after its erasure, a primary that changed) and verifies,
    /// until every copy is clean or `within` has passed.
    pub async fn wait(&self, id: &str, within: Duration) -> Result<ErasureRequest, Error> {
        let until = self.clock.now() + within;
        let mut first = true;
        loop {
            let req = if std::mem::take(&mut first) { self.verify(id).await? } else { self.run(id).await? };
            if req.verified() || req.subject.is_none() || self.clock.now() >= until {
                return Ok(req);
            }
            self.clock.sleep(Duration::from_millis(200)).await;
        }
    }

    /// The controller's pass: every request not verified everywhere is run
    /// again (a primary that changed gets it again; unverified copies are
    /// checked), and identifiers whose backups have all expired are forgotten.
    pub async fn pass(&self) -> Result<Summary, Error> {
        let mut s = Summary::default();
        for r in self.state.erasures()? {
            if r.subject.is_none() {
                continue;
            }
            if !r.verified() {
                let after = self.run(&r.id).await?;
                s.open += usize::from(!after.verified());
            }
        }
        s.forgotten = self.forget_expired()?;
        let now = self.clock.now();
        s.overdue = self.state.erasures()?.iter().filter(|r| r.overdue(now)).count();
        Ok(s)
    }

    /// After a failover of `datastore`: the new primary may never have
    /// received an erasure made on the old one. Every request not verified
    /// on the new primary is run there again.
    pub async fn after_failover(&self, datastore: &str) -> Result<usize, Error> {
        let mut n = 0;
        for r in self.state.erasures()? {
            // Verified on every copy, the new primary included: nothing to run again.
            if r.subject.is_none() || r.verified() || !r.copies.iter().any(|c| c.datastore == datastore) {
                continue;
            }
            // Forget which primary was erased: the one found now runs it unless verified.
            self.state.update_erasure(&r.id, &mut |x| {
                for c in x.copies.iter_mut().filter(|c| c.datastore == datastore && c.verified_at.is_none()) {
                    c.erased_at = None;
                }
            })?;
            self.run(&r.id).await?;
            n += 1;
        }
        Ok(n)
    }

    /// The backups that may hold a request's subject. Where the datastore's
    /// backup sets were read ([`Eraser::with_backups`]), each set started
    /// before the subject was erased on the primary holds it, until its tool
    /// expires it. Otherwise, estimated: backups taken before the request
    /// are kept at most their retention after it.
    pub fn backups_holding(&self, req: &ErasureRequest) -> Vec<Holding> {
        let mut out = Vec::new();
        let read = self.backups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (_, name, ds) in self.datastores() {
            if let Some(sets) = read.get(name) {
                let erased = req.erased_at.unwrap_or_else(|| self.clock.now());
                out.extend(sets.iter().filter(|s| s.started < erased).map(|s| Holding {
                    datastore: name.to_string(),
                    backup: Some(s.label.clone()),
                    expires_at: s.expires_at,
                }));
                continue;
            }
            let kept = match &ds.backup {
                Some(Backup::PgBackRest(p)) => p.retention,
                Some(Backup::Rds { retention }) => Some(*retention),
                // Every version under the prefix was destroyed: no S3 backup holds it.
                Some(Backup::S3Versions { .. }) | None => None,
            };
            if let Some(k) = kept {
                out.push(Holding { datastore: name.to_string(), backup: None, expires_at: Some(req.requested_at + k) });
            }
        }
        out
    }

    /// Drops the identifier of every verified request whose older backups
    /// have all expired: nothing can bring the subject back any more.
    pub fn forget_expired(&self) -> Result<usize, Error> {
        let now = self.clock.now();
        let mut n = 0;
        for r in self.state.erasures()? {
            if r.subject.is_none() || !r.verified() {
                continue;
            }
            if !self.backups_holding(&r).iter().any(|h| h.holds(now)) {
                self.state.update_erasure(&r.id, &mut |x| x.forget(now))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Replays, on a restored copy of `datastore` reachable at `url`, every
    /// request made after `point` (the moment the copy was restored to);
    /// returns how many were replayed and how many subjects the copy still
    /// holds afterwards (resurrected: 0 unless a replay failed).
    pub async fn replay_on(&self, datastore: &str, url: &str, point: SystemTime) -> Result<Replayed, Error> {
        let Some(ds_id) = self.topo.entity_id(datastore) else { return Ok(Replayed::default()) };
        let Some(section) = &self.topo.erasure else { return Ok(Replayed::default()) };
        let entries: Vec<_> = section
            .of(ds_id)
            .filter_map(|l| match &l.how {
                Find::Sql { sql, check, .. } => Some((sql.clone(), check.clone())),
                Find::Prefix(_) => None,
            })
            .collect();
        let mut out = Replayed::default();
        if entries.is_empty() {
            return Ok(out);
        }
        let client = drctl_providers::postgres::connect(url, CONNECT_TIMEOUT)
            .await
            .map_err(|e| bad("copy", format!("cannot reach the restored copy: {e}")))?;
        let reached = |e: drctl_providers::Error| bad("copy", format!("replaying the erasures: {e}"));
        let mut prepared = Vec::new();
        for (sql, check) in &entries {
            let erase = pg_erasure::prepare_in_copy(&client, url, sql).await.map_err(reached)?;
            let check = pg_erasure::prepare_in_copy(&client, url, check).await.map_err(reached)?;
            if let (Some(e), Some(c)) = (erase, check) {
                prepared.push((e, c));
            }
        }
        // A backup restored to before a request still holds its subject.
        let subjects: Vec<(String, String)> = self
            .state
            .erasures()?
            .into_iter()
            .filter(|r| r.requested_at >= point)
            .filter_map(|r| r.subject.map(|s| (r.id, s)))
            .collect();
        out.requests = subjects.len();
        if prepared.is_empty() {
            return Ok(out);
        }
        // Pipelined on the one connection: thousands of requests take seconds.
        for chunk in subjects.chunks(64) {
            let batch = chunk.iter().map(|(id, subject)| replay_one(&client, url, &prepared, id, subject));
            for left in futures::future::join_all(batch).await {
                out.resurrected += usize::from(left?);
            }
        }
        Ok(out)
    }
}

impl Eraser {
    /// How many requests were made at or after `point`: what a restore to
    /// `point` must replay before the copy serves.
    pub fn requests_after(&self, point: SystemTime) -> Result<usize, Error> {
        Ok(self.state.erasures()?.iter().filter(|r| r.requested_at >= point && r.subject.is_some()).count())
    }

    /// Replays, on a restored copy of S3 datastore `datastore` in bucket
    /// `copy`, every request made after `point`: every version under each
    /// subject's prefix is destroyed in the copy. The copy holds the
    /// source's keys under `from` at `to` instead (`"", ""` in place or for
    /// a whole-bucket copy). Returns how many requests were replayed and how
    /// many subjects still have a version in the copy afterwards.
    pub async fn replay_on_bucket(
        &self,
        datastore: &str,
        copy: &drctl_aws::s3::Bucket,
        from: &str,
        to: &str,
        point: SystemTime,
    ) -> Result<Replayed, Error> {
        let Some(ds_id) = self.topo.entity_id(datastore) else { return Ok(Replayed::default()) };
        let Some(section) = &self.topo.erasure else { return Ok(Replayed::default()) };
        let prefixes: Vec<String> = section
            .of(ds_id)
            .filter_map(|l| match &l.how {
                Find::Prefix(p) => Some(p.clone()),
                Find::Sql { .. } => None,
            })
            .collect();
        let mut out = Replayed::default();
        if prefixes.is_empty() {
            return Ok(out);
        }
        for r in self.state.erasures()?.into_iter().filter(|r| r.requested_at >= point) {
            let Some(subject) = r.subject else { continue };
            out.requests += 1;
            let mut left = 0;
            for p in &prefixes {
                let theirs = Find::prefix_for(p, &subject);
                // Where the subject's keys are in the copy, if the restore took them.
                let there = if let Some(rest) = theirs.strip_prefix(from) {
                    format!("{to}{rest}")
                } else if from.starts_with(&theirs) {
                    to.to_string()
                } else {
                    continue;
                };
                let gone = async {
                    s3_erasure::erase_prefix(copy, &there).await?;
                    s3_erasure::versions_left(copy, &there).await
                };
                left += gone.await.map_err(|e| bad("copy", scrub(&format!("replaying {}: {e}", r.id), &subject)))?;
            }
            out.resurrected += usize::from(left > 0);
        }
        Ok(out)
    }
}

/// One request replayed on a copy: whether the subject is still there after it.
async fn replay_one(
    client: &Client,
    url: &str,
    prepared: &[(pg_erasure::Prepared, pg_erasure::Prepared)],
    id: &str,
    subject: &str,
) -> Result<bool, Error> {
    let mut left = 0;
    for (erase, check) in prepared {
        pg_erasure::erase_prepared(client, url, erase, subject)
            .await
            .map_err(|e| bad("copy", format!("replaying {id}: {}", scrub(&e.to_string(), subject))))?;
        left += pg_erasure::count_prepared(client, url, check, subject).await.unwrap_or(1);
    }
    Ok(left > 0)
}

/// What a restore's replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Requests made after the restore's point, replayed on the copy.
    pub requests: usize,
    /// Of those, subjects the copy still holds after the replay.
    pub resurrected: usize,
}

/// What a controller pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests still not verified on every copy.
    pub open: usize,
    pub overdue: usize,
    pub forgotten: usize,
}

/// How erasure requests made since some time kept their deadline, in
/// counts only (what a customer's assurance page states; never an
/// identifier or a request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadlineRecord {
    /// Requests made in the period.
    pub requests: usize,
    /// Clean on every copy by their deadline.
    pub met: usize,
    /// Not clean everywhere yet, their deadline still ahead.
    pub open: usize,
    /// Past their deadline with a copy not clean, or made clean after it.
    pub missed: usize,
}

/// The deadline record of the requests made since `since`, at `now`.
pub fn deadline_record(state: &State, since: SystemTime, now: SystemTime) -> Result<DeadlineRecord, Error> {
    let mut r = DeadlineRecord::default();
    for e in state.erasures()?.into_iter().filter(|e| e.requested_at >= since) {
        r.requests += 1;
        if e.overdue(now) {
            r.missed += 1;
        } else if e.verified() {
            r.met += 1;
        } else {
            r.open += 1;
        }
    }
    Ok(r)
}

/// The counts `/metrics` shows: open (not verified everywhere) and overdue requests.
pub fn counts(state: &State, now: SystemTime) -> Result<(usize, usize), Error> {
    let all = state.erasures()?;
    let open = all.iter().filter(|r| !r.verified()).count();
    let overdue = all.iter().filter(|r| r.overdue(now)).count();
    Ok((open, overdue))
}

fn rfc(t: Option<SystemTime>) -> Value {
    t.map(|t| Value::String(crate::live::rfc3339_secs(t))).unwrap_or(Value::Null)
}

/// The `erasures` document (never the subject):
/// `{"erasures": [{id, requested_at, due_at, erased_at, copies, backups, overdue}]}`.
pub fn report(eraser: &Eraser, now: SystemTime) -> Result<(Value, bool), Error> {
    let mut list = Vec::new();
    let mut any_overdue = false;
    for r in eraser.state.erasures()? {
        let overdue = r.overdue(now);
        any_overdue |= overdue;
        let backups: Vec<Value> = if r.subject.is_some() {
            eraser
                .backups_holding(&r)
                .into_iter()
                .filter(|h| h.holds(now))
                .map(|h| json!({ "datastore": h.datastore, "backup": h.backup, "expires_at": rfc(h.expires_at) }))
                .collect()
        } else {
            Vec::new()
        };
        list.push(json!({
            "id": r.id,
            "requested_at": rfc(Some(r.requested_at)),
            "due_at": rfc(Some(r.due_at)),
            "erased_at": rfc(r.erased_at),
            "verified_at": rfc(r.verified_at()),
            "who": r.who,
            "copies": r.copies.iter().map(|c| json!({
                "datastore": c.datastore,
                "zone": c.zone,
                "primary": c.primary,
                "erased_at": rfc(c.erased_at),
                "verified_at": rfc(c.verified_at),
                "position": c.position,
                "pending": c.pending,
            })).collect::<Vec<_>>(),
            "backups": backups,
            "forgotten_at": rfc(r.forgotten_at),
            "overdue": overdue,
        }));
    }
    Ok((json!({ "erasures": list }), any_overdue))
}

impl Eraser {
    /// The `erasures` document and whether any request is overdue.
    pub fn report(&self) -> Result<(Value, bool), Error> {
        report(self, self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_runtime::MockClock;

    fn topo() -> Arc<Topology> {
        let yaml = "version: 1\nzones: [ { name: az1, region: r1 }, { name: az2, region: r1 }, { name: az3, region: r1 } ]\n\
            datastores:\n  - name: db\n    kind: postgres\n    primary: { zone: az1, url: \"postgres://u@127.0.0.1:1/d\" }\n    replicas: [ { zone: az2, url: \"postgres://u@127.0.0.1:2/d\" } ]\n\
            \x20   backup: { tool: pgbackrest, repo: { zone: az3, path: /r }, retention: 7d }\n\
            erasure:\n  deadline: 3d\n  locate: [ { datastore: db, sql: \"DELETE FROM t WHERE id = $1\", check: \"SELECT count(*) FROM t WHERE id = $1\" } ]\n";
        let l = drctl_core::load_str(yaml, std::path::Path::new("drctl.yaml"));
        Arc::new(l.topology.unwrap_or_else(|| panic!("{:?}", l.diagnostics)))
    }

    #[tokio::test(start_paused = true)]
    async fn overdue_past_the_deadline_and_forgotten_once_the_older_backups_expired() {
        let state = <dyn drctl_state::Store>::in_memory().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let clients = Arc::new(Clients::new(Default::default()));
        let at = |days: u64| {
            Eraser::new(topo(), state.clone(), clients.clone())
                .with_clock(Arc::new(MockClock::starting_at(t0 + Duration::from_secs(days * 86_400))))
        };
        let open = at(0).request("subject-1", "r", &Actor::new("a", "cli")).unwrap();
        let done = at(0).request("subject-2", "r", &Actor::new("a", "cli")).unwrap();
        assert_eq!(open.due_at, t0 + Duration::from_secs(3 * 86_400));
        state.update_erasure(&done.id, &mut |r| r.copies.iter_mut().for_each(|c| c.verified_at = Some(t0))).unwrap();
        let (json, overdue) = at(1).report().unwrap();
        assert!(!overdue, "{json}");
        assert_eq!(json["erasures"][1]["backups"][0]["expires_at"], "2030-03-24T17:46:40Z", "{json}");
        let (json, overdue) = at(4).report().unwrap();
        assert!(overdue && json["erasures"][0]["overdue"] == true && json["erasures"][1]["overdue"] == false, "{json}");
        assert_eq!(counts(&*state, t0 + Duration::from_secs(4 * 86_400)).unwrap(), (1, 1));

        assert_eq!(at(6).forget_expired().unwrap(), 0, "a backup older than the request is still kept");
        assert_eq!(at(8).forget_expired().unwrap(), 1, "only the verified request forgets");
        let all = state.erasures().unwrap();
        assert_eq!(all[0].subject.as_deref(), Some("subject-1"));
        assert_eq!(all[1].subject, None);
        let (json, _) = at(8).report().unwrap();
        assert!(
            json["erasures"][1]["forgotten_at"].is_string() && json["erasures"][1]["backups"] == json!([]),
            "{json}"
        );
    }
}
