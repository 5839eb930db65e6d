//! A point-in-time restore as an execution, journaled like a declaration.
//!
//! A restore of a large database takes long enough for the controller to
//! die in the middle of it. Its steps therefore go through the same engine
//! and journal as a failover: `drctl resume ID` picks it up where it
//! stopped, and the restore step, caught running, runs again as a
//! pgBackRest *delta* restore into the same folder: the files already
//! there are checked and kept, nothing is restored a second time from
//! scratch, and no second copy appears. Everything a step needs is in the
//! journaled request (the target time resolved once, the copy's folder and
//! port), so a resume does exactly what the first run would have done.
//!
//! The steps of a PostgreSQL restore:
//! 1. `DS/archive`: the primary's WAL up to now is closed and archived
//!    (for `latest`, the recovery point is the moment asked for);
//! 2. `DS/restore`: `pgbackrest restore --type=time` into the copy's folder;
//! 3. `DS/start`: the copy starts on its own port with archiving off (it
//!    never pushes WAL into the production repository), recovers to the
//!    target and is promoted there;
//! 4. `DS/erasures`: every erasure requested after the target is replayed
//!    on the copy (the backup predates them) before anything reads it;
//!    a subject still there afterwards fails the restore.

use crate::postgres::Copy;
use crate::{Error, PgDatastore};
use drctl_core::Topology;
use drctl_engine::{ActionError, Actions, Ended, Engine, Note, StepSpec};
use drctl_state::journal::{exec_state, ExecutionRow};
use drctl_state::State;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A restore as journaled: everything its steps need, decided once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub datastore: String,
    /// `--to` as typed: `latest`, an RFC 3339 time, `-15m`.
    pub to: String,
    /// The point asked for, resolved when the restore was made (RFC 3339, UTC).
    pub target: String,
    /// The copy's name (its folder under the backup site's `copies/`).
    pub into: String,
    pub replace: bool,
    /// A restore test's copy: no TCP listener, removed after the checks.
    pub scratch: bool,
    pub port: u16,
    /// The TCP address the copy listens on; none for a scratch copy.
    pub listen: Option<String>,
    /// `postgres` (the default), `s3`, `rds-instance` or `rds-cluster`.
    #[serde(default)]
    pub kind: String,
    /// S3: only the keys under this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// PostgreSQL: the backup set restored from, chosen once (the newest
    /// that ended before the target). pgBackRest's own choice compares whole
    /// seconds and misses a backup that ended within the target's second.
    #[serde(default)]
    pub set: Option<String>,
    /// `--replace` of PostgreSQL: the members as they were when the
    /// restore was asked for (the primary whose place the copy takes, the
    /// standbys rebuilt from it), read once and journaled.
    #[serde(default)]
    pub replace_of: Option<crate::replace::ReplaceOf>,
    /// Members the commander named `--unfenced DATASTORE/ZONE`.
    #[serde(default)]
    pub unfenced: Vec<String>,
    /// `--replace` of an `rds-instance`: the identifiers the old primary
    /// and its replicas move aside to, decided once and journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds_replace: Option<crate::rds_replace::RdsReplace>,
}

impl Request {
    pub fn is_s3(&self) -> bool {
        self.kind == "s3"
    }

    /// An RDS restore (`rds-instance` or `rds-cluster`): a new instance or
    /// cluster from the automated backups.
    pub fn is_rds(&self) -> bool {
        self.kind.starts_with("rds-")
    }
}

/// The execution's options as the journal keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Options {
    restore: Request,
    /// Who asked for it (a `--replace`'s overrides are shown with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declared_by: Option<String>,
}

/// Whether a journaled execution is a restore (its options say so).
pub fn is_restore(row: &ExecutionRow) -> bool {
    serde_json::from_str::<serde_json::Value>(&row.options).is_ok_and(|o| o.get("restore").is_some())
}

/// Reads `--to`: `latest` (now), a relative `-15m`, or RFC 3339.
pub fn resolve_target(to: &str, now: SystemTime) -> Result<SystemTime, Error> {
    if to == "latest" {
        return Ok(now);
    }
    if let Some(rel) = to.strip_prefix('-') {
        let d =
            drctl_core::duration::parse_duration(rel).map_err(|why| Error::BadRequest(format!("--to {to}: {why}")))?;
        return now.checked_sub(d).ok_or_else(|| Error::BadRequest(format!("--to {to} is before 1970")));
    }
    let t = chrono::DateTime::parse_from_rfc3339(to).map_err(|_| {
        Error::BadRequest(format!(
            "--to `{to}` is not a time: write `latest`, a time such as 2026-12-06T10:00:00Z, or a duration ago such as -15m"
        ))
    })?;
    let t = SystemTime::from(t.with_timezone(&chrono::Utc));
    if t > now + Duration::from_secs(1) {
        return Err(Error::BadRequest(format!("--to {to} is in the future; the latest point is `latest`")));
    }
    Ok(t)
}

pub use drctl_core::text::rfc3339_micros as rfc3339;

/// Seconds since the epoch.
pub fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// The copy a request restores into.
pub fn copy_of(site: &Path, req: &Request) -> Copy {
    let dir = site.join("copies").join(&req.into);
    Copy { data: dir.join("data"), socket_dir: socket_dir(&dir), port: req.port, listen: req.listen.clone() }
}

/// A copy's socket folder: `sock` beside its data, unless that path is
/// too long for a Unix socket (PostgreSQL refuses more than 107 bytes, and
/// a site deep in a long folder, such as the lab's, goes past it). Then a
/// short folder under the temporary directory, named after the copy's
/// folder, so every resume finds the same one.
fn socket_dir(copy: &Path) -> PathBuf {
    let own = copy.join("sock");
    if own.as_os_str().len() + "/.s.PGSQL.65535".len() <= 107 {
        return own;
    }
    // FNV-1a: the same name for the same folder in every drctl build.
    let hash = copy
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
    std::env::temp_dir().join(format!("drctl-copy-{hash:016x}"))
}

fn result_file(site: &Path, req: &Request) -> PathBuf {
    site.join("copies").join(&req.into).join("restored.json")
}

/// What a restore gave back, written when its copy is promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// The time of the newest transaction in the copy (seconds since the epoch).
    pub recovered_point: Option<f64>,
    /// Seconds the pgBackRest restore itself took (the last attempt).
    pub pgbackrest_s: f64,
    /// The backup's size in bytes.
    pub bytes: u64,
}

pub fn restored(site: &Path, req: &Request) -> Option<Restored> {
    std::fs::read_to_string(result_file(site, req)).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// A planned restore, checked, not yet journaled.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub id: String,
    pub request: Request,
    pub earliest: Option<SystemTime>,
    /// Bytes of the backup the restore will start from.
    pub backup_bytes: u64,
    /// Restore rate measured by earlier restores (bytes per second).
    pub rate: Option<f64>,
    /// `--replace`: the checks that can refuse it (every member fenceable),
    /// run before anything changes.
    pub checks: Vec<drctl_control::failover::Check>,
}

impl Proposal {
    /// How long the restore should take, from the backup's size and the measured rate.
    pub fn estimate_s(&self) -> Option<f64> {
        self.rate.filter(|r| *r > 0.0).map(|r| self.backup_bytes as f64 / r)
    }

    /// Whether a check refuses the restore (nothing was changed).
    pub fn refused(&self) -> bool {
        self.checks.iter().any(|c| !c.ok)
    }

    /// What it will do, one line per step.
    pub fn describe(&self, site: &Path) -> Vec<String> {
        let r = &self.request;
        if r.replace_of.is_some() {
            return crate::replace::describe(site, r);
        }
        if r.rds_replace.is_some() {
            return crate::rds_replace::describe(r);
        }
        let copy = copy_of(site, r);
        let mut lines = vec![
            format!(
                "{}/archive: close the primary's current WAL segment and wait for it in the repository",
                r.datastore
            ),
            format!(
                "{}/restore: pgbackrest restore --type=time --target={} into {}",
                r.datastore,
                r.target,
                copy.data.display()
            ),
        ];
        lines.push(match &r.listen {
            Some(h) => format!("{}/start: start the copy on {h}:{} (archiving off) and promote it at the target", r.datastore, r.port),
            None => format!(
                "{}/start: start the copy on a private socket only (unreachable by the estate; archiving off) and promote it at the target",
                r.datastore
            ),
        });
        lines
    }
}

/// The rate kept per datastore by earlier restores.
fn rate_key(datastore: &str) -> String {
    format!("backup/restore-rate/{datastore}")
}

/// Plans a restore and checks it can be done (a backup holds the target,
/// the copy's name is free). Changes nothing in the world.
#[allow(clippy::too_many_arguments)]
pub async fn propose(
    topo: &Topology,
    site: &Path,
    state: &State,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    replace: bool,
    scratch: bool,
    now: SystemTime,
) -> Result<Proposal, Error> {
    if replace {
        return crate::replace::propose(topo, site, state, datastore, to, into, &[], now).await;
    }
    propose_copy(topo, site, state, datastore, to, into, scratch, now).await
}

/// Plans a restore into a new copy (the first half of every PostgreSQL
/// restore, `--replace` included). Changes nothing in the world.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn propose_copy(
    topo: &Topology,
    site: &Path,
    state: &State,
    datastore: &str,
    to: &str,
    into: Option<&str>,
    scratch: bool,
    now: SystemTime,
) -> Result<Proposal, Error> {
    let ds = crate::pg_datastore_now(topo, state, datastore)?;
    let target = resolve_target(to, now)?;
    let (stanza, _) = crate::stanza(site, &ds).await?;
    let info = stanza.info().await?;
    let Some(first) = info.backups.first() else {
        return Err(Error::BadRequest(format!(
            "`{datastore}` has no backup in its repository yet: take one with `drctl backup {datastore} -f {}`",
            topo.file.display()
        )));
    };
    let earliest = SystemTime::UNIX_EPOCH + Duration::from_secs(first.stopped.max(0) as u64);
    if target < earliest {
        return Err(Error::BadRequest(format!(
            "--to {to} ({}) is before the earliest restorable point, {} (the end of the oldest backup)",
            rfc3339(target),
            rfc3339(earliest)
        )));
    }
    let backup = info
        .backups
        .iter()
        .rev()
        .find(|b| SystemTime::UNIX_EPOCH + Duration::from_secs(b.stopped.max(0) as u64) <= target)
        .unwrap_or(first);
    let id = new_id(now);
    let into = match into {
        Some(n) => n.to_string(),
        None => format!("{datastore}-{}", id),
    };
    if into.is_empty()
        || !into.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || into.starts_with('.')
    {
        return Err(Error::BadRequest(format!("--into `{into}`: use letters, digits, `-`, `_` and `.`")));
    }
    if site.join("copies").join(&into).exists() {
        return Err(Error::BadRequest(format!(
            "a copy named `{into}` already exists in {}: choose another --into, or remove it",
            site.join("copies").display()
        )));
    }
    let rate = state.published(&rate_key(datastore)).ok().flatten().and_then(|s| s.parse::<f64>().ok());
    Ok(Proposal {
        id,
        request: Request {
            datastore: datastore.to_string(),
            to: to.to_string(),
            target: rfc3339(target),
            into,
            replace: false,
            scratch,
            port: crate::postgres::free_port(),
            listen: (!scratch).then(|| "127.0.0.1".to_string()),
            kind: "postgres".into(),
            prefix: None,
            set: Some(backup.label.clone()),
            replace_of: None,
            unfenced: Vec::new(),
            rds_replace: None,
        },
        earliest: Some(earliest),
        backup_bytes: backup.size,
        rate,
        checks: Vec::new(),
    })
}

/// A new execution id, time-ordered like a declaration's.
pub fn new_id(now: SystemTime) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from(now);
    let nanos = t.timestamp_subsec_nanos();
    format!("{}-{:04x}", t.format("%Y%m%d-%H%M%S"), (nanos ^ std::process::id()) & 0xffff)
}

/// The steps of a restore, the same every time for the same request.
pub fn steps(req: &Request) -> Vec<StepSpec> {
    let ds = &req.datastore;
    if req.is_s3() {
        // One step: restoring from versions checks every key first, so
        // running it again after a crash finishes what is left.
        return vec![StepSpec {
            id: format!("{ds}/restore"),
            entity: ds.clone(),
            action: "s3.restore_versions".into(),
            after: vec![],
            priority: 0.0,
            timeout: Some(Duration::from_secs(24 * 3600)),
            attempts: 3,
            backoff: Duration::from_secs(2),
            with: serde_json::json!({ "datastore": ds }),
            from_zone: None,
            to_zone: None,
            rerun_safe: true,
            continue_on_failure: false,
        }];
    }
    if req.is_rds() && req.rds_replace.is_some() {
        // `--replace`: restored, cleaned of the erasures made since, then
        // the old primary renamed aside and the copy into its name, the
        // replicas made again from it. Each looks at the world first.
        let step = |name: &str, action: &str, after: Vec<usize>, hours: u64, attempts: u32| StepSpec {
            id: format!("{ds}/{name}"),
            entity: ds.clone(),
            action: action.to_string(),
            after,
            priority: 0.0,
            timeout: Some(Duration::from_secs(hours * 3600)),
            attempts,
            backoff: Duration::from_secs(5),
            with: serde_json::json!({ "datastore": ds }),
            from_zone: None,
            to_zone: None,
            rerun_safe: true,
            continue_on_failure: false,
        };
        use crate::rds_replace as r;
        if r::is_cluster(req) {
            // A restored cluster has no instance: they are added first.
            return vec![
                step("restore", "rds.restore_to_point", vec![], 6, 2),
                step("instances", r::INSTANCES, vec![0], 6, 2),
                step("erasures", r::ERASURES, vec![1], 1, 1),
                step("fence", r::FENCE, vec![2], 2, 2),
                step("switch", r::SWITCH, vec![3], 2, 2),
            ];
        }
        return vec![
            step("restore", "rds.restore_to_point", vec![], 6, 2),
            // Unreachable is for the commander to settle: no second attempt.
            step("erasures", r::ERASURES, vec![0], 1, 1),
            step("fence", r::FENCE, vec![1], 2, 2),
            step("switch", r::SWITCH, vec![2], 2, 2),
            step("replicas", r::REPLICAS, vec![3], 6, 2),
        ];
    }
    if req.is_rds() {
        // One step: it first looks for the instance (or cluster) it would
        // create, so running it again after a crash waits for that one.
        return vec![StepSpec {
            id: format!("{ds}/restore"),
            entity: ds.clone(),
            action: "rds.restore_to_point".into(),
            after: vec![],
            priority: 0.0,
            timeout: Some(Duration::from_secs(6 * 3600)),
            attempts: 2,
            backoff: Duration::from_secs(5),
            with: serde_json::json!({ "datastore": ds }),
            from_zone: None,
            to_zone: None,
            rerun_safe: true,
            continue_on_failure: false,
        }];
    }
    let step = |name: &str, action: &str, after: Vec<usize>, timeout: u64, priority: f64| StepSpec {
        id: format!("{ds}/{name}"),
        entity: ds.clone(),
        action: action.to_string(),
        after,
        priority,
        timeout: Some(Duration::from_secs(timeout)),
        attempts: 2,
        backoff: Duration::from_secs(2),
        with: serde_json::json!({ "datastore": ds }),
        from_zone: None,
        to_zone: None,
        // Each checks the world first: the archive waits for what is
        // there, the restore is a delta into the same folder, the start
        // finds a running copy.
        rerun_safe: true,
        continue_on_failure: false,
    };
    let mut specs = vec![
        step("archive", "pgbackrest.archive", vec![], 300, 0.0),
        step("restore", "pgbackrest.restore", vec![0], 24 * 3600, 1.0),
        step("start", "postgres.start_copy", vec![1], 3600, 2.0),
        step("erasures", "erasure.replay", vec![2], 3600, 3.0),
    ];
    if req.replace_of.is_some() {
        // `--replace`: only once the copy is ready (restored, promoted at
        // the point, erasures replayed) is the primary fenced; the copy
        // then takes its address, the standbys are rebuilt from it, and
        // the result is checked. Each step checks the world first.
        specs.extend([
            step("fence", crate::replace::FENCE, vec![3], 300, 4.0),
            step("takeover", crate::replace::TAKEOVER, vec![4], 3600, 5.0),
            step("standbys", crate::replace::STANDBYS, vec![5], 24 * 3600, 6.0),
            step("verify", crate::replace::VERIFY, vec![6], 600, 7.0),
        ]);
    }
    specs
}

/// Journals the restore (nothing locked: a copy beside the datastore
/// touches nothing a failover needs).
pub fn create(state: &State, p: &Proposal, reason: &str, at: SystemTime) -> Result<(), Error> {
    create_by(state, p, reason, at, None)
}

/// [`create`], recording who asked for it.
pub fn create_by(state: &State, p: &Proposal, reason: &str, at: SystemTime, by: Option<&str>) -> Result<(), Error> {
    let specs = steps(&p.request);
    let options = serde_json::to_string(&Options { restore: p.request.clone(), declared_by: by.map(str::to_string) })
        .unwrap_or_default();
    let row = ExecutionRow {
        id: p.id.clone(),
        declared_at: at,
        finished_at: None,
        state: exec_state::RUNNING.into(),
        reason: reason.to_string(),
        plan: serde_json::json!({ "restore": p.request.datastore, "to": p.request.target }).to_string(),
        options,
    };
    let steps: Vec<(String, String, String)> =
        specs.iter().map(|s| (s.id.clone(), s.entity.clone(), s.action.clone())).collect();
    let entities: Vec<String> = if p.request.replace { vec![p.request.datastore.clone()] } else { Vec::new() };
    state.create_execution(&row, &steps, &entities)?;
    Ok(())
}

/// The request a journaled restore carries.
pub fn request_of(state: &State, id: &str) -> Result<Request, Error> {
    let row = state.execution(id)?;
    serde_json::from_str::<Options>(&row.options)
        .map(|o| o.restore)
        .map_err(|e| Error::BadRequest(format!("execution {id} is not a restore drctl can read: {e}")))
}

/// Runs (or resumes) a journaled restore to its end.
pub async fn execute(
    topo: Arc<Topology>,
    site: PathBuf,
    state: Arc<State>,
    clock: Arc<dyn drctl_runtime::Clock>,
    id: &str,
) -> Result<Ended, Error> {
    let req = request_of(&*state, id)?;
    let mut ds = crate::pg_datastore_now(&topo, &*state, &req.datastore)?;
    if let Some(r) = &req.replace_of {
        // The primary as it was when the restore was asked for: the copy
        // takes its place, whatever the placement says meanwhile.
        ds.primary_url = r.primary.url.clone();
        ds.primary_zone = r.primary.zone.clone();
    }
    let specs = steps(&req);
    let actions = Arc::new(PgRestore { site, ds, req, topo: topo.clone(), state: state.clone() });
    let engine = Engine::new(state, actions, Some(1)).with_clock(clock);
    engine.run(id, &specs).await.map_err(|e| match e {
        drctl_engine::Error::State(s) => Error::State(s),
        other => Error::Engine { execution: id.to_string(), source: other },
    })
}

/// Says on a `--replace` restore's incident how its run ended (the CLI's
/// run and resume, a drill's, the controller's).
pub fn close_incident_of(state: &State, id: &str, ended: &Result<Ended, Error>) {
    crate::replace::close_incident(state, id, ended)
}

/// Records the restore rate a finished restore measured, for the next
/// dry run's estimate.
pub fn record_rate(state: &State, req: &Request, r: &Restored) {
    if r.pgbackrest_s > 0.0 && r.bytes > 0 {
        let _ = state.publish(&rate_key(&req.datastore), &format!("{}", r.bytes as f64 / r.pgbackrest_s));
    }
}

/// The actions of a PostgreSQL restore.
pub(crate) struct PgRestore {
    pub(crate) site: PathBuf,
    pub(crate) ds: PgDatastore,
    pub(crate) req: Request,
    pub(crate) topo: Arc<Topology>,
    pub(crate) state: Arc<State>,
}

/// What the replay of the erasure ledger did on a copy (kept beside it for
/// the restore test's report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasuresReplayed {
    pub requests: usize,
    pub resurrected: usize,
}

fn erasures_file(site: &Path, req: &Request) -> PathBuf {
    copy_of(site, req).data.with_extension("erasures.json")
}

/// The replay's outcome on a restore's copy, once it ran.
pub fn erasures_replayed(site: &Path, req: &Request) -> Option<ErasuresReplayed> {
    serde_json::from_str(&std::fs::read_to_string(erasures_file(site, req)).ok()?).ok()
}

pub(crate) fn fatal(e: Error) -> ActionError {
    match e {
        Error::Postgres(drctl_providers::Error::Connect { .. } | drctl_providers::Error::Timeout { .. }) => {
            ActionError::Transient(e.to_string())
        }
        other => ActionError::Fatal(other.to_string()),
    }
}

impl PgRestore {
    async fn archive(&self) -> Result<Note, ActionError> {
        let (stanza, primary) = match crate::stanza(&self.site, &self.ds).await {
            Ok(s) => s,
            Err(Error::Postgres(e)) => {
                return Ok(Some(format!("the primary does not answer ({e}): restoring from what the repository holds")))
            }
            Err(e) => return Err(fatal(e)),
        };
        crate::postgres::ensure_archiving(&self.ds.primary_url, &primary, &stanza.archive_command())
            .await
            .map_err(fatal)?;
        let seg =
            crate::postgres::flush_to_archive(&self.ds.primary_url, Duration::from_secs(120)).await.map_err(fatal)?;
        Ok(Some(format!("WAL archived up to segment {seg}")))
    }

    async fn restore(&self) -> Result<Note, ActionError> {
        if let Some(r) = restored(&self.site, &self.req) {
            return Ok(Some(format!("already restored ({} bytes); nothing to do", r.bytes)));
        }
        let copy = copy_of(&self.site, &self.req);
        if copy.running() {
            copy.stop();
        }
        // The configuration from the topology; when the primary is gone,
        // the one written last time it answered.
        let stanza = match crate::stanza(&self.site, &self.ds).await {
            Ok((s, _)) => s,
            Err(Error::Postgres(_)) => self.existing_stanza().map_err(fatal)?,
            Err(e) => return Err(fatal(e)),
        };
        let started = std::time::Instant::now();
        let fresh =
            !copy.data.exists() || std::fs::read_dir(&copy.data).map(|mut d| d.next().is_none()).unwrap_or(true);
        // A delta restore needs proof that the folder is a cluster's;
        // one killed before its first files landed is started over.
        let recognisable = copy.data.join("PG_VERSION").exists() || copy.data.join("backup.manifest").exists();
        if !fresh && !recognisable {
            let _ = std::fs::remove_dir_all(&copy.data);
        }
        crate::postgres::make_data_dir(&copy.data).map_err(fatal)?;
        let target = parse_rfc3339(&self.req.target)
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
            .ok_or_else(|| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))?;
        let mut args = vec![
            format!("--pg1-path={}", copy.data.display()),
            "--type=time".to_string(),
            format!("--target={target}"),
            "--target-action=promote".to_string(),
            "--archive-mode=off".to_string(),
        ];
        if let Some(set) = &self.req.set {
            args.push(format!("--set={set}"));
        }
        let delta = !fresh && recognisable;
        if delta {
            args.push("--delta".into());
        }
        tracing::info!(datastore = %self.req.datastore, target = %target, delta, "restoring");
        stanza.run("restore", &args, Duration::from_secs(24 * 3600)).await.map_err(fatal)?;
        let secs = started.elapsed().as_secs_f64();
        let bytes = stanza.info().await.ok().and_then(|i| i.backups.last().map(|b| b.size)).unwrap_or(0);
        let partial = serde_json::json!({ "pgbackrest_s": secs, "bytes": bytes });
        let _ = std::fs::write(copy.data.with_extension("pgbackrest.json"), partial.to_string());
        Ok(Some(format!("{}restored {} bytes in {secs:.1}s", if delta { "delta-" } else { "" }, bytes)))
    }

    pub(crate) fn existing_stanza(&self) -> Result<crate::pgbackrest::Stanza, Error> {
        let dir = self.site.join("pgbackrest");
        let config = dir.join(format!("{}.conf", self.ds.name));
        if !config.exists() {
            return Err(Error::NotBackedUp(format!(
                "the primary of `{}` does not answer and drctl has no pgBackRest configuration for it yet",
                self.ds.name
            )));
        }
        Ok(crate::pgbackrest::Stanza {
            name: self.ds.name.clone(),
            config,
            bin: crate::pgbackrest::find()?,
            work: dir.join(&self.ds.name),
        })
    }

    async fn start(&self) -> Result<Note, ActionError> {
        if let Some(r) = restored(&self.site, &self.req) {
            let copy = copy_of(&self.site, &self.req);
            copy.start().await.map_err(fatal)?;
            return Ok(Some(format!("already promoted; newest transaction at {:?}", r.recovered_point)));
        }
        let copy = copy_of(&self.site, &self.req);
        copy.configure().map_err(fatal)?;
        copy.start().await.map_err(fatal)?;
        let user = crate::postgres::primary_user(&self.ds.primary_url);
        let recovered = copy.wait_promoted(&user, Duration::from_secs(3600)).await.map_err(fatal)?;
        let measured: serde_json::Value = std::fs::read_to_string(copy.data.with_extension("pgbackrest.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let r = Restored {
            recovered_point: recovered,
            pgbackrest_s: measured["pgbackrest_s"].as_f64().unwrap_or_default(),
            bytes: measured["bytes"].as_u64().unwrap_or_default(),
        };
        let path = result_file(&self.site, &self.req);
        std::fs::write(&path, serde_json::to_string(&r).unwrap_or_default())
            .map_err(|e| ActionError::Transient(format!("write {}: {e}", path.display())))?;
        Ok(Some(match recovered {
            Some(t) => format!(
                "promoted; newest transaction at {}",
                rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t))
            ),
            None => "promoted; no transaction replayed after the backup".to_string(),
        }))
    }
}

impl PgRestore {
    /// Replays every erasure requested after the restore's point on the
    /// copy: the backup was taken before them, so it brings those subjects
    /// back. Safe to run again (a replay deletes what is there, nothing more).
    async fn replay_erasures(&self) -> Result<Note, ActionError> {
        let Some(point) = parse_rfc3339(&self.req.target) else {
            return Err(ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)));
        };
        let copy = copy_of(&self.site, &self.req);
        let url = copy.local_url(
            &crate::postgres::primary_user(&self.ds.primary_url),
            &crate::postgres::database_of(&self.ds.primary_url),
        );
        let eraser = drctl_control::erasure::Eraser::new(
            self.topo.clone(),
            self.state.clone(),
            Arc::new(drctl_control::live::Clients::new(Default::default())),
        );
        let r = eraser
            .replay_on(&self.req.datastore, &url, point)
            .await
            .map_err(|e| ActionError::Transient(e.to_string()))?;
        let done = ErasuresReplayed { requests: r.requests, resurrected: r.resurrected };
        let path = erasures_file(&self.site, &self.req);
        std::fs::write(&path, serde_json::to_string(&done).unwrap_or_default())
            .map_err(|e| ActionError::Transient(format!("write {}: {e}", path.display())))?;
        if r.resurrected > 0 {
            return Err(ActionError::Fatal(format!(
                "{} erased subjects are still in the copy after the ledger's replay: it must not serve (`drctl erasures` lists the requests)",
                r.resurrected
            )));
        }
        Ok(Some(format!("replayed {} erasure requests made after the point", r.requests)))
    }
}

impl Actions for PgRestore {
    fn run<'a>(
        &'a self,
        execution: &'a str,
        _attempt: u32,
        step: &'a StepSpec,
    ) -> BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            match step.action.as_str() {
                "pgbackrest.archive" => self.archive().await,
                "pgbackrest.restore" => self.restore().await,
                "postgres.start_copy" => self.start().await,
                "erasure.replay" => self.replay_erasures().await,
                crate::replace::FENCE => crate::replace::fence(self, execution, &step.id).await,
                crate::replace::TAKEOVER => crate::replace::takeover(self).await,
                crate::replace::STANDBYS => crate::replace::standbys(self, execution).await,
                crate::replace::VERIFY => crate::replace::verify(self).await,
                other => Err(ActionError::Fatal(format!("a restore has no action `{other}`"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_from_latest_relative_and_rfc3339() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(resolve_target("latest", now).unwrap(), now);
        assert_eq!(resolve_target("-15m", now).unwrap(), now - Duration::from_secs(900));
        let t = resolve_target("2026-12-06T10:00:00Z", now).unwrap();
        assert_eq!(rfc3339(t), "2026-12-06T10:00:00.000000Z");
        let future = resolve_target("2099-01-01T00:00:00Z", now).unwrap_err();
        assert!(future.to_string().contains("in the future"), "{future}");
        let bad = resolve_target("yesterday", now).unwrap_err();
        assert!(bad.to_string().contains("-15m"), "{bad}");
    }

    #[test]
    fn a_copy_deep_in_a_long_folder_gets_a_socket_folder_postgresql_accepts() {
        let short = socket_dir(Path::new("/var/lib/drctl/copies/c1"));
        assert_eq!(short, Path::new("/var/lib/drctl/copies/c1/sock"));
        let deep = Path::new(
            "/tmp/drctl-drill-bad-delete-14612/.drctl/lab/.drctl/backup/copies/orders-db-20261206-090500-b231",
        );
        let s = socket_dir(deep);
        assert!(s.join(".s.PGSQL.65535").as_os_str().len() <= 107, "{s:?}");
        assert_eq!(s, socket_dir(deep), "the same folder on every resume");
        assert_ne!(s, socket_dir(&deep.with_file_name("other")));
    }

    #[test]
    fn a_journaled_request_refuses_unknown_fields() {
        let bad = r#"{"restore":{"datastore":"db","to":"latest","target":"x","into":"c","replace":false,"scratch":false,"port":1,"listen":null,"repalce":true}}"#;
        assert!(serde_json::from_str::<Options>(bad).is_err());
    }
}
