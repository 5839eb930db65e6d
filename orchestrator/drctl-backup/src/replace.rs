//! `drctl restore DATASTORE --to TIME --replace` for PostgreSQL: the
//! restored copy put in the primary's place.
//!
//! A logical disaster (a `DELETE` without a `WHERE`, a bad migration) has
//! reached every replica within a second, so failing over does not help:
//! the way back is a copy restored to the moment before, serving where the
//! primary served. This module adds that to a restore's steps, in the
//! order that never leaves two writable primaries:
//!
//! 1. the copy is restored, promoted at the point and cleaned of the
//!    erasures made since, on a private socket no client can reach (the
//!    steps every restore has, [`crate::restore`]);
//! 2. `DS/fence`: every member is fenced through the same ladder a
//!    promote uses ([`drctl_control::fence::fence_all`]); a member that can
//!    be fenced neither way stops the run unless the commander named it
//!    `--unfenced DATASTORE/ZONE`;
//! 3. `DS/takeover`: the old primary (fenced) is stopped, which frees its
//!    address, and only once nothing listens there is the copy started on
//!    the primary's host and port, archiving into the repository again (a
//!    new timeline). The old data folder is kept, fenced, for forensics;
//! 4. `DS/standbys`: each standby's folder is replaced by a base backup of
//!    the new primary (`pg_basebackup -R`), keeping its own port, address
//!    and sockets, and started streaming from it;
//! 5. `DS/verify`: the primary's address takes a write, and every rebuilt
//!    standby streams from it.
//!
//! The mechanism needs drctl (and pgBackRest) on the primary's host: the
//! copy binds the primary's address there. The members' folders, ports and
//! sockets are read once, while they answer, and journaled with the
//! request, so a resume after a crash does exactly what the first run
//! would have. Every step checks the world first: a fence seen in place is
//! not fenced again, a copy already serving is left serving, a standby
//! rebuilt by this execution is only started.

use crate::postgres::Copy;
use crate::restore::{copy_of, fatal, PgRestore, Proposal, Request};
use crate::Error;
use drctl_control::declare::Actor;
use drctl_control::overrides::Overrides;
use drctl_core::topology::EntitySpec;
use drctl_core::Topology;
use drctl_engine::{ActionError, Ended, Note};
use drctl_state::State;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The actions a `--replace` adds to a restore.
pub const FENCE: &str = "restore.fence";
pub const TAKEOVER: &str = "restore.takeover";
pub const STANDBYS: &str = "restore.rebuild_standbys";
pub const VERIFY: &str = "restore.verify";

const TIMEOUT: Duration = Duration::from_secs(10);

/// One member as the restore found it: where clients reach it, and (when
/// it answered) where its data and sockets are on this host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seat {
    pub zone: String,
    pub url: String,
    /// The host and port of its URL: the address clients use.
    pub host: String,
    pub port: u16,
    pub data_directory: Option<String>,
    pub socket_dirs: Option<String>,
    pub listen_addresses: Option<String>,
    /// The port the server itself listens on, when it answered. It differs
    /// from the URL's where clients reach it through a proxy (the lab's
    /// fault proxies, a TCP load balancer): the copy binds the server's
    /// own address, and clients keep reaching it the way they did.
    #[serde(default)]
    pub server_port: Option<u16>,
}

impl Seat {
    /// Where the server itself listens: its own `listen_addresses` (one
    /// address) and port when it said, else the URL's host and port.
    pub fn bound(&self) -> (String, u16) {
        let host = self
            .listen_addresses
            .as_deref()
            .map(str::trim)
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_string)
            .unwrap_or_else(|| self.host.clone());
        (host, self.server_port.unwrap_or(self.port))
    }
}

/// The primary whose place the copy takes, and the standbys rebuilt from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOf {
    pub primary: Seat,
    pub standbys: Vec<Seat>,
}

/// The host and port a PostgreSQL URL points at (5432 when it names none).
fn address(url: &str) -> (String, u16) {
    let Ok(t) = drctl_providers::pg_tls::parse(url) else { return ("127.0.0.1".into(), 5432) };
    let host = t
        .config
        .get_hosts()
        .iter()
        .find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = t.config.get_ports().first().copied().unwrap_or(5432);
    (host, port)
}

/// Reads a member's folders and addresses while it answers.
async fn seat(m: &drctl_providers::postgres::Member) -> Seat {
    let (host, port) = address(&m.url);
    let mut s = Seat { zone: m.zone.clone(), url: m.url.clone(), host, port, ..Seat::default() };
    if let Ok(c) = drctl_providers::postgres::connect(&m.url, TIMEOUT).await {
        if let Ok(row) = c
            .query_one(
                "SELECT current_setting('data_directory'), current_setting('unix_socket_directories'), current_setting('listen_addresses'), current_setting('port')",
                &[],
            )
            .await
        {
            s.data_directory = Some(row.get(0));
            s.socket_dirs = Some(row.get(1));
            s.listen_addresses = Some(row.get(2));
            s.server_port = row.get::<_, String>(3).parse().ok();
        }
    }
    s
}

/// Whether this machine can listen on `host` (the primary's address must
/// be one of its own for the copy to take it).
fn is_local(host: &str) -> bool {
    std::net::TcpListener::bind((host, 0)).is_ok()
}

/// Plans a `--replace` restore and runs every check that can refuse it
/// (a backup holds the point; every member can be fenced or is named in
/// `unfenced`; the primary's address and folder are on this host).
/// Changes nothing: a refused proposal ([`Proposal::refused`]) says why in
/// its `checks`.
#[allow(clippy::too_many_arguments)]
pub async fn propose(
    topo: &Topology,
    site: &Path,
    state: &State,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    unfenced: &[String],
    now: SystemTime,
) -> Result<Proposal, Error> {
    let overrides = Overrides { unfenced: unfenced.to_vec(), ..Overrides::default() };
    overrides.check().map_err(|e| Error::BadRequest(e.to_string()))?;
    if let Some(other) = unfenced.iter().find(|u| !u.starts_with(&format!("{datastore}/"))) {
        return Err(Error::BadRequest(format!(
            "--unfenced {other} names another datastore; this restore replaces `{datastore}`'s primary"
        )));
    }
    let mut p = crate::restore::propose_copy(topo, site, state, datastore, to, into, false, now).await?;
    let ds = crate::pg_datastore_now(topo, state, datastore)?;
    let id = topo.entity_id(datastore).ok_or_else(|| Error::NotBackedUp(format!("no datastore `{datastore}`")))?;
    let EntitySpec::Datastore(d) = &topo.entity(id).spec else {
        return Err(Error::NotBackedUp(format!("`{datastore}` is not a datastore")));
    };
    let members = drctl_control::live::postgres_members(topo, d);
    let mut primary = None;
    let mut standbys = Vec::new();
    for m in &members {
        let s = seat(m).await;
        if m.zone == ds.primary_zone {
            primary = Some(s);
        } else {
            standbys.push(s);
        }
    }
    let primary =
        primary.ok_or_else(|| Error::NotBackedUp(format!("`{datastore}` has no member in {}", ds.primary_zone)))?;
    let subject = format!("{datastore}/takeover");
    let mut checks = drctl_control::fence::replace_checks(topo, datastore, &overrides, &format!("{datastore}/fence"))
        .await
        .unwrap_or_default();
    let here = |ok: bool, detail: String| drctl_control::failover::Check { subject: subject.clone(), ok, detail };
    checks.push(if is_local(&primary.host) {
        here(true, format!("the copy will take the primary's address {}:{} on this host", primary.host, primary.port))
    } else {
        here(
            false,
            format!(
                "the primary's address {} is not one of this machine's: run `drctl restore --replace` on the primary's host (docs/restore.md); nothing was changed",
                primary.host
            ),
        )
    });
    if let Some(dir) = &primary.data_directory {
        if !Path::new(dir).join("PG_VERSION").exists() {
            checks.push(here(
                false,
                format!("the primary's data folder {dir} is not on this host (or not readable here): run `drctl restore --replace` on the primary's host; nothing was changed"),
            ));
        }
    }
    for s in &standbys {
        checks.push(match &s.data_directory {
            Some(dir) if Path::new(dir).join("PG_VERSION").exists() => drctl_control::failover::Check {
                subject: format!("{datastore}/standbys"),
                ok: true,
                detail: format!("the standby in {} ({dir}) will be rebuilt from the restored copy", s.zone),
            },
            Some(dir) => drctl_control::failover::Check {
                subject: format!("{datastore}/standbys"),
                ok: true,
                detail: format!("the standby in {} keeps its data in {dir}, not on this host: rebuild it from the new primary by hand (pg_basebackup -R)", s.zone),
            },
            None => drctl_control::failover::Check {
                subject: format!("{datastore}/standbys"),
                ok: true,
                detail: format!("the standby in {} does not answer: it is not rebuilt; rebuild it from the new primary by hand (pg_basebackup -R)", s.zone),
            },
        });
    }
    let r = &mut p.request;
    r.replace = true;
    // The copy serves no one until it takes the primary's place.
    r.listen = None;
    r.unfenced = unfenced.to_vec();
    r.replace_of = Some(ReplaceOf { primary, standbys });
    p.checks = checks;
    Ok(p)
}

/// What a `--replace` restore will do, one line per step.
pub fn describe(site: &Path, r: &Request) -> Vec<String> {
    let ds = &r.datastore;
    let copy = copy_of(site, r);
    let Some(of) = &r.replace_of else { return Vec::new() };
    let p = &of.primary;
    let mut lines = vec![
        format!("{ds}/archive: close the primary's current WAL segment and wait for it in the repository"),
        format!(
            "{ds}/restore: pgbackrest restore --type=time --target={} into {} (a new data folder)",
            r.target,
            copy.data.display()
        ),
        format!("{ds}/start: start the copy on a private socket only (no client can reach it; archiving off) and promote it at the target"),
        format!("{ds}/erasures: replay the erasure requests made after the point on the copy, before it serves"),
        format!(
            "{ds}/fence: fence every member of {ds} (the primary in {} first of all): pg_hba.conf rejects every client, sessions ended, a write proves it; a member that does not answer by its `fence` command",
            p.zone
        ),
        format!(
            "{ds}/takeover: stop the fenced old primary{} and start the copy on {}:{}, the primary's address, archiving into the repository on a new timeline",
            p.data_directory.as_deref().map(|d| format!(" (its data stays in {d})")).unwrap_or_default(),
            p.host,
            p.port
        ),
    ];
    if of.standbys.is_empty() {
        lines.push(format!("{ds}/standbys: no standby to rebuild"));
    }
    for s in &of.standbys {
        lines.push(match &s.data_directory {
            Some(d) => format!(
                "{ds}/standbys: rebuild the standby in {} ({d}, port {}) from the new primary with pg_basebackup and start it streaming",
                s.zone, s.port
            ),
            None => format!("{ds}/standbys: the standby in {} did not answer: not rebuilt", s.zone),
        });
    }
    lines.push(format!("{ds}/verify: {}:{} takes a write, and every rebuilt standby streams from it", p.host, p.port));
    lines
}

/// A `--replace` restore started: audited, journaled, its incident opened.
pub struct Begun {
    pub id: String,
    pub incident: Option<i64>,
}

/// Records a checked `--replace` proposal: the audit entry first (a change
/// whose entry cannot be written does not happen), then the journal, which
/// locks the datastore against a declaration, then the public incident.
pub fn begin(state: &State, p: &Proposal, reason: &str, who: &Actor, at: SystemTime) -> Result<Begun, Error> {
    let r = &p.request;
    if p.refused() {
        let refusals: Vec<String> =
            p.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.subject, c.detail)).collect();
        let request = serde_json::json!({ "datastore": r.datastore, "to": r.to, "target": r.target,
            "replace": true, "reason": reason, "unfenced": r.unfenced, "refused": refusals, "outcome": "refused" });
        drctl_control::declare::audit(state, who, "restore.refused", &format!("execution {}", p.id), &request)?;
        return Err(Error::Refused(refusals));
    }
    let request = serde_json::json!({ "datastore": r.datastore, "to": r.to, "target": r.target, "into": r.into,
        "replace": true, "reason": reason, "unfenced": r.unfenced, "dry_run": false });
    drctl_control::declare::audit(state, who, "restore", &format!("execution {}", p.id), &request)?;
    crate::restore::create_by(state, p, reason, at, Some(&who.name))?;
    let incident = state.create_incident(
        &format!("Restoring {} to an earlier point", r.datastore),
        "identified",
        "We are restoring data to its state before a problem; some recent changes may be undone.",
        &[],
        Some(&p.id),
    )?;
    Ok(Begun { id: p.id.clone(), incident: Some(incident) })
}

/// Says on the restore's incident how its execution ended.
pub fn close_incident(state: &State, id: &str, ended: &Result<Ended, Error>) {
    let (status, body) = match ended {
        Ok(Ended::Succeeded) => {
            ("monitoring", format!("The data is restored and serving again (execution {id}); we are watching it."))
        }
        Ok(Ended::Paused) => (
            "identified",
            format!("The restore is paused while operators look at a step that failed (execution {id})."),
        ),
        Ok(other) => ("identified", format!("The restore ended: {other:?} (execution {id}); operators are on it.")),
        Err(e) => ("identified", format!("The restore stopped: {e} (execution {id}); operators are on it.")),
    };
    if let Ok(Some(incident)) = state.incident_of_execution(id) {
        if let Err(e) = state.update_incident(incident, status, &body) {
            tracing::warn!(execution = id, error = %e, "the restore's incident could not be updated");
        }
    }
}

/// What [`replace`] did.
#[derive(Debug)]
pub struct Replaced {
    pub id: String,
    pub ended: Ended,
}

/// `restore --replace` as a library call, for drills and the operator API:
/// proposes (a refused check is [`Error::Refused`], nothing changed),
/// begins (audit, journal, incident), executes to the end, and says on
/// the incident how it ended. The CLI makes the same calls with a
/// confirmation between the proposal and the beginning.
#[allow(clippy::too_many_arguments)]
pub async fn replace(
    topo: Arc<Topology>,
    site: PathBuf,
    state: Arc<State>,
    clock: Arc<dyn drctl_runtime::Clock>,
    who: &Actor,
    datastore: &str,
    to: &str,
    reason: &str,
    unfenced: &[String],
) -> Result<Replaced, Error> {
    let p = propose(&topo, &site, &*state, datastore, to, None, unfenced, clock.now()).await?;
    let begun = begin(&*state, &p, reason, who, clock.now())?;
    let ended = crate::restore::execute(topo, site, state.clone(), clock, &begun.id).await;
    close_incident(&*state, &begun.id, &ended);
    Ok(Replaced { id: begun.id, ended: ended? })
}

/// The overrides of a restore: those journaled with it, and those a
/// commander added with `drctl retry ID STEP --unfenced ...`.
fn overrides(pg: &PgRestore, execution: &str) -> Overrides {
    let mut o = Overrides { unfenced: pg.req.unfenced.clone(), ..Overrides::default() };
    for e in pg.state.events(execution).unwrap_or_default() {
        if e.kind != drctl_engine::decide::kind::RETRIED {
            continue;
        }
        for f in drctl_control::overrides::named_in(e.detail.as_deref().unwrap_or("")) {
            if let Some(m) = f.strip_prefix("--unfenced ") {
                o.unfenced.push(m.to_string());
            }
        }
    }
    o
}

fn replace_of(pg: &PgRestore) -> Result<&ReplaceOf, ActionError> {
    pg.req.replace_of.as_ref().ok_or_else(|| ActionError::Fatal("this restore does not replace a primary".into()))
}

/// `DS/fence`: every member through the fence ladder.
pub(crate) async fn fence(pg: &PgRestore, execution: &str, step: &str) -> Result<Note, ActionError> {
    let o = overrides(pg, execution);
    let primary = &replace_of(pg)?.primary.zone;
    drctl_control::fence::fence_all(&pg.topo, &pg.req.datastore, primary, &o, execution, step)
        .await
        .map(|notes| Some(notes.join("; ")))
        .map_err(ActionError::Fatal)
}

/// A server's data folder on this host, handled with `pg_ctl`.
fn server(data: &str, port: u16) -> Copy {
    let data = PathBuf::from(data);
    Copy { socket_dir: data.with_extension("sock"), data, port, listen: None }
}

/// Whether something accepts TCP connections at the address.
async fn listening(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// `DS/takeover`: the fenced old primary stopped, then the copy started on
/// its address. Never two writable primaries: the fence step succeeded
/// before this one runs, and the copy binds the address only once nothing
/// else listens there.
pub(crate) async fn takeover(pg: &PgRestore) -> Result<Note, ActionError> {
    let of = replace_of(pg)?;
    let p = &of.primary;
    let private = copy_of(&pg.site, &pg.req);
    let (bind_host, bind_port) = p.bound();
    let serving = Copy { port: bind_port, listen: Some(bind_host.clone()), ..private.clone() };
    if serving.running() && serving.is_serving() {
        // An earlier attempt got this far: make sure it serves, nothing more.
        wait_open(&p.url, Duration::from_secs(120)).await?;
        return Ok(Some(format!("the copy already serves at {}:{} (an earlier attempt)", p.host, p.port)));
    }
    let mut notes = Vec::new();
    match &p.data_directory {
        Some(dir) if Path::new(dir).join("PG_VERSION").exists() => {
            let old = server(dir, bind_port);
            if old.running() {
                old.stop();
                if old.running() {
                    return Err(ActionError::Transient(format!(
                        "the old primary ({dir}) did not stop; it stays fenced. Stop it, then `drctl resume`"
                    )));
                }
                notes.push(format!("stopped the fenced old primary (its data stays in {dir}, fenced)"));
            } else {
                notes.push(format!("the old primary ({dir}) is not running"));
            }
        }
        Some(dir) => notes.push(format!("the old primary's folder {dir} is not on this host")),
        None => notes.push("the old primary did not answer when the restore was asked for".to_string()),
    }
    if listening(&bind_host, bind_port).await {
        return Err(ActionError::Transient(format!(
            "{bind_host}:{bind_port} still takes connections after the old primary was fenced and stopped: stop what listens there, then `drctl resume` (the copy does not start beside it)"
        )));
    }
    private.stop();
    let stanza = pg.existing_stanza().map_err(fatal)?;
    serving.configure_serving(p.socket_dirs.as_deref(), &stanza.archive_command()).map_err(fatal)?;
    let history = history_ready(&serving.data).map_err(fatal)?;
    serving.start().await.map_err(fatal)?;
    wait_open(&p.url, Duration::from_secs(300)).await?;
    notes.push(format!(
        "the copy serves at {}:{}, the primary's address, archiving into the repository{}",
        p.host,
        p.port,
        if history > 0 { " (its new timeline's history queued for the archive)" } else { "" }
    ));
    // The stanza's configuration from the new primary (its folder, port
    // and socket): the next backup is of the copy, on its new timeline.
    match crate::stanza(&pg.site, &pg.ds).await {
        Ok(_) => notes.push("backups now follow the restored copy".to_string()),
        Err(e) => notes.push(format!("the backup configuration was not rewritten yet ({e}); the next backup does it")),
    }
    Ok(Some(notes.join("; ")))
}

/// Queues the copy's timeline history files for the archiver: they were
/// written at the promote, while archiving was off, and a later restore
/// past this point follows the new timeline only through them.
fn history_ready(data: &Path) -> Result<usize, Error> {
    let wal = data.join("pg_wal");
    let status = wal.join("archive_status");
    let io =
        |e: std::io::Error| Error::Io { what: format!("queue {} for the archive", wal.display()), why: e.to_string() };
    let mut n = 0;
    for e in std::fs::read_dir(&wal).map_err(io)? {
        let name = e.map_err(io)?.file_name().to_string_lossy().to_string();
        if !name.ends_with(".history") {
            continue;
        }
        let done = status.join(format!("{name}.done"));
        let ready = status.join(format!("{name}.ready"));
        if !done.exists() && !ready.exists() {
            std::fs::write(&ready, b"").map_err(io)?;
            drctl_pgserver::hand_over(&ready).map_err(io)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Waits until the URL answers as a writable primary.
async fn wait_open(url: &str, within: Duration) -> Result<(), ActionError> {
    let deadline = Instant::now() + within;
    while !drctl_providers::postgres::is_open_primary(url, TIMEOUT).await {
        if Instant::now() >= deadline {
            return Err(ActionError::Transient(format!(
                "{} does not answer as a writable primary within {}s",
                drctl_core::redact::url(url),
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The file beside a standby's folder that says which execution rebuilt it.
fn rebuilt_mark(data: &Path) -> PathBuf {
    data.with_extension("drctl-rebuilt")
}

/// `DS/standbys`: each standby's folder replaced by a base backup of the
/// new primary, its own port, address and sockets kept, started streaming.
pub(crate) async fn standbys(pg: &PgRestore, execution: &str) -> Result<Note, ActionError> {
    let of = replace_of(pg)?;
    let p = &of.primary;
    let bin = drctl_pgserver::find_bin().map_err(ActionError::Fatal)?;
    let user = crate::postgres::primary_user(&p.url);
    let mut notes = Vec::new();
    for s in &of.standbys {
        let Some(dir) = s
            .data_directory
            .as_deref()
            .filter(|d| Path::new(d).join("PG_VERSION").exists() || rebuilt_mark(Path::new(d)).exists())
        else {
            notes.push(format!("{}: not rebuilt (not on this host, or it did not answer): rebuild it by hand", s.zone));
            continue;
        };
        let sb = server(dir, s.bound().1);
        let mark = rebuilt_mark(&sb.data);
        let done = std::fs::read_to_string(&mark).is_ok_and(|t| t.trim() == execution);
        if done && sb.data.join("PG_VERSION").exists() {
            sb.start().await.map_err(fatal)?;
            notes.push(format!("{}: rebuilt by an earlier attempt; running", s.zone));
            continue;
        }
        // Its data holds what the restore undoes: it is replaced, not kept.
        sb.stop();
        if sb.running() {
            return Err(ActionError::Transient(format!("the standby in {} ({dir}) did not stop", s.zone)));
        }
        let _ = std::fs::remove_file(&mark);
        let _ = std::fs::remove_dir_all(&sb.data);
        let started = Instant::now();
        let mut c = drctl_pgserver::command(&bin, "pg_basebackup", drctl_pgserver::Lifetime::DiesWithParent);
        c.arg("-D").arg(&sb.data).args([
            "-h",
            &p.host,
            "-p",
            &p.port.to_string(),
            "-U",
            &user,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]);
        let out = tokio::task::spawn_blocking(move || c.output())
            .await
            .map_err(|e| ActionError::Transient(format!("pg_basebackup: {e}")))?
            .map_err(|e| ActionError::Fatal(format!("cannot run pg_basebackup: {e}")))?;
        if !out.status.success() {
            return Err(ActionError::Transient(format!(
                "pg_basebackup of the new primary into {dir} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        standby_settings(&sb.data, s).map_err(fatal)?;
        sb.start().await.map_err(fatal)?;
        std::fs::write(&mark, execution)
            .map_err(|e| ActionError::Transient(format!("write {}: {e}", mark.display())))?;
        notes.push(format!(
            "{}: rebuilt from the new primary in {:.1}s and started on port {}",
            s.zone,
            started.elapsed().as_secs_f64(),
            s.port
        ));
    }
    if notes.is_empty() {
        notes.push("no standby to rebuild".into());
    }
    Ok(Some(notes.join("; ")))
}

/// A rebuilt standby's own settings, after the primary's it was copied with.
fn standby_settings(data: &Path, s: &Seat) -> Result<(), Error> {
    let conf = data.join("postgresql.auto.conf");
    let io = |e: std::io::Error| Error::Io { what: format!("configure {}", conf.display()), why: e.to_string() };
    // A standby that inherited a recovery target would stop there and
    // promote itself: a second writable primary.
    let mut text = crate::postgres::without_recovery_target(&std::fs::read_to_string(&conf).map_err(io)?);
    let q = |v: &str| v.replace('\'', "''");
    text.push_str(&format!(
        "# drctl: standby rebuilt from the restored primary\nport = {}\nlisten_addresses = '{}'\nunix_socket_directories = '{}'\nhot_standby = on\n",
        s.bound().1,
        q(s.listen_addresses.as_deref().unwrap_or(&s.host)),
        q(s.socket_dirs.as_deref().unwrap_or(""))
    ));
    std::fs::write(&conf, text).map_err(io)?;
    drctl_pgserver::hand_over(&conf).map_err(io)
}

/// `DS/verify`: the primary's address takes a write; every rebuilt standby
/// streams from it; the old primary serves nothing.
pub(crate) async fn verify(pg: &PgRestore) -> Result<Note, ActionError> {
    let of = replace_of(pg)?;
    let p = &of.primary;
    let transient = |what: &str, e: drctl_providers::Error| ActionError::Transient(format!("{what}: {e}"));
    let c = drctl_providers::postgres::connect(&p.url, TIMEOUT).await.map_err(|e| transient("the new primary", e))?;
    let q = |e: tokio_postgres::Error| ActionError::Transient(format!("the new primary: {e}"));
    let row = c
        .query_one(
            "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint())::int8, current_setting('data_directory')",
            &[],
        )
        .await
        .map_err(q)?;
    let (in_recovery, timeline, data): (bool, i64, String) = (row.get(0), row.get(1), row.get(2));
    if in_recovery {
        return Err(ActionError::Fatal(format!("{}:{} is a standby, not the restored primary", p.host, p.port)));
    }
    let copy = copy_of(&pg.site, &pg.req);
    // The same folder, however each side spells it (`..`, a symlink).
    let same = |a: &Path, b: &Path| {
        a == b || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    };
    if !same(Path::new(&data), &copy.data) {
        return Err(ActionError::Fatal(format!(
            "{}:{} serves {data}, not the restored copy {}",
            p.host,
            p.port,
            copy.data.display()
        )));
    }
    c.batch_execute("BEGIN READ WRITE; SELECT pg_current_xact_id(); COMMIT").await.map_err(q)?;
    let mut notes = vec![format!("{}:{} takes writes (the restored copy, timeline {timeline})", p.host, p.port)];
    let rebuilt: Vec<&Seat> = of
        .standbys
        .iter()
        .filter(|s| s.data_directory.as_deref().is_some_and(|d| rebuilt_mark(Path::new(d)).exists()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for s in rebuilt {
        loop {
            let streaming = match drctl_providers::postgres::connect(&s.url, TIMEOUT).await {
                Ok(sc) => sc
                    .query_opt("SELECT status FROM pg_stat_wal_receiver WHERE sender_port = $1", &[&i32::from(p.port)])
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, String>(0)),
                Err(_) => None,
            };
            if streaming.as_deref() == Some("streaming") {
                notes.push(format!("the standby in {} streams from it", s.zone));
                break;
            }
            if Instant::now() >= deadline {
                return Err(ActionError::Transient(format!(
                    "the standby in {} does not stream from the new primary ({})",
                    s.zone,
                    streaming.unwrap_or_else(|| "no WAL receiver".into())
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let Some(dir) = &p.data_directory {
        if server(dir, p.port).running() {
            return Err(ActionError::Fatal(format!("the old primary ({dir}) runs again: stop it (it is fenced)")));
        }
    }
    Ok(Some(notes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_read_from_the_url() {
        assert_eq!(address("postgres://u@10.0.0.5:6432/db"), ("10.0.0.5".to_string(), 6432));
        assert_eq!(address("postgres://u@db.internal/db"), ("db.internal".to_string(), 5432));
    }

    /// The primary is fenced only once the copy is ready, and the copy
    /// takes the address only after the fence: never two writable primaries.
    #[test]
    fn a_replace_fences_after_the_copy_is_ready_and_takes_over_after_the_fence() {
        let req = Request {
            datastore: "db".into(),
            kind: "postgres".into(),
            replace: true,
            replace_of: Some(ReplaceOf::default()),
            ..Request::default()
        };
        let specs = crate::restore::steps(&req);
        let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "db/archive",
                "db/restore",
                "db/start",
                "db/erasures",
                "db/fence",
                "db/takeover",
                "db/standbys",
                "db/verify"
            ]
        );
        for (i, s) in specs.iter().enumerate().skip(1) {
            assert_eq!(s.after, [i - 1], "{} waits for {}", s.id, specs[i - 1].id);
            assert!(s.rerun_safe, "{} checks the world first", s.id);
        }
        let plain = Request { replace_of: None, ..req };
        assert_eq!(crate::restore::steps(&plain).len(), 4, "a copy beside the datastore fences nothing");
    }

    #[test]
    fn a_serving_copy_keeps_no_recovery_target() {
        let text = "restore_command = 'x'\nrecovery_target_time = '2026-12-06'\n  recovery_target_action = 'promote'\nport = 5\n";
        assert_eq!(crate::postgres::without_recovery_target(text), "restore_command = 'x'\nport = 5\n");
    }

    /// A copy restored from a backup of a copy: pgBackRest's new recovery
    /// settings, written after the old block, stay; the old block goes.
    #[test]
    fn the_old_block_goes_and_what_pgbackrest_wrote_after_it_stays() {
        let text = "a = 1\n# drctl: restored copy\n# serving in the primary's place (drctl restore --replace)\nport = 5\narchive_mode = 'on'\nhot_standby = on\n# Recovery settings generated by pgBackRest restore on X\nrestore_command = 'new'\nrecovery_target_time = 'T'\n";
        let out = crate::postgres::without_block(text);
        assert_eq!(out, "a = 1\n# Recovery settings generated by pgBackRest restore on X\nrestore_command = 'new'\nrecovery_target_time = 'T'\n");
        let closed = "# drctl: restored copy\nport = 5\n# drctl: end of restored copy\nport = 7\n";
        assert_eq!(crate::postgres::without_block(closed), "port = 7\n", "what follows the block's end is not ours");
    }

    #[test]
    fn a_journaled_seat_refuses_unknown_fields() {
        let bad = r#"{"primary":{"zone":"a","url":"u","host":"h","port":1,"data_directory":null,"socket_dirs":null,"listen_addresses":null,"dta":1},"standbys":[]}"#;
        assert!(serde_json::from_str::<ReplaceOf>(bad).is_err());
    }
}
