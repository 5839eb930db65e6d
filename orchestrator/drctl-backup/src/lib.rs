//! Backups, point-in-time restores and restore tests.
//!
//! Replication carries a `DELETE` without a `WHERE` to every zone within a
//! second; only a backup taken elsewhere, restored to the moment before,
//! brings the rows back. This crate is that half of disaster recovery:
//! - [`pgbackrest`] drives pgBackRest for PostgreSQL (drctl writes no
//!   backup format of its own);
//! - [`postgres`] checks WAL archiving and runs the restored copies;
//! - [`restore`] makes a restore an execution like a declaration: journaled
//!   steps through the engine, so a controller killed mid-restore resumes
//!   with a delta restore into the same folder instead of starting over;
//! - [`report`] answers `drctl backups`.
//!
//! RDS and S3 restores themselves live with the AWS code; an S3 restore
//! test ([`s3_test`]) calls it for its scratch copy.

pub mod cloud;
pub mod drill;
pub mod held;
pub mod pgbackrest;
pub mod postgres;
pub mod rds_replace;
pub mod replace;
pub mod report;
pub mod restore;
mod s3_test;
pub mod schedule;
pub mod verify;

use drctl_core::topology::backup::{Backup, PgBackRest, RepoStore};
use drctl_core::topology::{DatastoreKind, EntitySpec, Location, Topology};
use std::path::{Path, PathBuf};

/// Errors of backups and restores; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `pgbackrest` binary on this host.
    #[error("pgBackRest is not installed: {}", pgbackrest::INSTALL_HINT)]
    NoPgBackRest,
    /// The datastore named is not in the topology, or has no usable backup.
    #[error("{0}")]
    NotBackedUp(String),
    /// A request that cannot be met as asked (a time before the earliest
    /// restorable point, in the future, a copy name taken).
    #[error("{0}")]
    BadRequest(String),
    /// WAL archiving is not set up on the primary: the exact settings.
    #[error("WAL archiving is not set up on the primary: {why}. Run on the primary: {settings}")]
    ArchivingOff { why: String, settings: String },
    /// The archiver did not push the closed segment in time.
    #[error("WAL segment {segment} was not archived within {secs}s{}; check the primary's log and `pgbackrest check`", failed.as_deref().map(|f| format!(" (the archiver last failed on {f})")).unwrap_or_default())]
    ArchiveWait { segment: String, secs: u64, failed: Option<String> },
    /// pgBackRest (or pg_ctl) failed; its own words.
    #[error("{what}: {why}")]
    Tool { what: String, why: String },
    /// A PostgreSQL server refused or failed.
    #[error(transparent)]
    Postgres(#[from] drctl_providers::Error),
    /// A file drctl keeps could not be written or read.
    #[error("{what}: {why}")]
    Io { what: String, why: String },
    #[error(transparent)]
    State(#[from] drctl_state::Error),
    /// A check refused the restore before anything changed (a member that
    /// can be fenced neither way, an address not on this host); each line
    /// says what would lift it.
    #[error("the restore is refused; nothing was changed: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The audit log or another operation of drctl's control failed.
    #[error(transparent)]
    Control(#[from] drctl_control::Error),
    #[error("execution {execution}: {source}")]
    Engine { execution: String, source: drctl_engine::Error },
}

impl Error {
    /// Whether the request, not the world, is at fault (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::NotBackedUp(_) | Error::BadRequest(_) | Error::NoPgBackRest | Error::ArchivingOff { .. })
    }
}

/// Where drctl keeps what backups need on this host: the stanzas'
/// configurations, the repositories' keys (0600), restored copies.
/// `$DRCTL_BACKUP_DIR`, else `.drctl/backup` beside the topology.
pub fn site_dir(topo: &Topology) -> PathBuf {
    let dir = match std::env::var_os("DRCTL_BACKUP_DIR") {
        Some(d) => PathBuf::from(d),
        None => topo.folder().join(".drctl").join("backup"),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A PostgreSQL datastore backed up with pgBackRest, resolved.
#[derive(Debug, Clone)]
pub struct PgDatastore {
    pub name: String,
    pub spec: PgBackRest,
    pub primary_url: String,
    pub primary_zone: String,
    pub repo_zone: String,
}

impl PgDatastore {
    /// The repository must sit in another zone than the primary (losing
    /// the zone would lose both). The topology is checked when it is
    /// loaded; after a failover the primary may have moved into the
    /// repository's zone, which this says.
    pub fn zone_warning(&self) -> Option<String> {
        (self.primary_zone == self.repo_zone).then(|| {
            format!(
                "the repository of `{}` is in {}, the zone its primary is in now (after a failover): losing {} would lose the primary and its backups; move the repository (`backup: {{ repo: {{ zone: ... }} }}`) to another zone",
                self.name, self.repo_zone, self.repo_zone
            )
        })
    }
}

/// The datastore `name`, when it is PostgreSQL backed up by pgBackRest.
pub fn pg_datastore(topo: &Topology, name: &str) -> Result<PgDatastore, Error> {
    let id = topo.entity_id(name).ok_or_else(|| {
        let names: Vec<&str> = topo.datastores().map(|(_, e, _)| e.name.as_str()).collect();
        let near = drctl_core::diag::did_you_mean(name, names.iter().copied())
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        Error::NotBackedUp(format!("no datastore `{name}` in the topology{near}"))
    })?;
    let EntitySpec::Datastore(ds) = &topo.entity(id).spec else {
        return Err(Error::NotBackedUp(format!("`{name}` is a service, not a datastore")));
    };
    if matches!(ds.kind, DatastoreKind::RdsInstance | DatastoreKind::RdsCluster) {
        return Err(Error::NotBackedUp(format!(
            "`{name}` is an RDS datastore: `drctl restore` does not restore RDS yet; use RDS's own point-in-time restore (console or `aws rds restore-db-instance-to-point-in-time`)"
        )));
    }
    let Some(Backup::PgBackRest(spec)) = &ds.backup else {
        return Err(Error::NotBackedUp(format!(
            "datastore `{name}` has no pgBackRest backup: add `backup: {{ tool: pgbackrest, repo: {{ zone: ZONE, path: /var/lib/pgbackrest }} }}` to it in the topology"
        )));
    };
    let Some(primary) = &ds.primary else {
        return Err(Error::NotBackedUp(format!("datastore `{name}` has no primary")));
    };
    let Location::Postgres { url, .. } = &primary.location else {
        return Err(Error::NotBackedUp(format!("datastore `{name}` is not PostgreSQL")));
    };
    Ok(PgDatastore {
        name: name.to_string(),
        spec: (**spec).clone(),
        primary_url: url.clone(),
        primary_zone: topo.zones[primary.zone].name.clone(),
        repo_zone: topo.zones[spec.repo.zone].name.clone(),
    })
}

/// The datastore `name` with its primary where it is now: after a
/// failover the state store places the primary in another zone, and the
/// backups and restores follow it (the new primary's timeline).
pub fn pg_datastore_now(topo: &Topology, state: &drctl_state::State, name: &str) -> Result<PgDatastore, Error> {
    let mut ds = pg_datastore(topo, name)?;
    let placed = state.placements().unwrap_or_default().into_iter().find(|(d, _)| d == name).map(|(_, z)| z);
    if let Some(zone) = placed.filter(|z| *z != ds.primary_zone) {
        let id = topo.entity_id(name).ok_or_else(|| Error::NotBackedUp(format!("no datastore `{name}`")))?;
        if let EntitySpec::Datastore(d) = &topo.entity(id).spec {
            if let Some(m) = drctl_control::live::postgres_members(topo, d).into_iter().find(|m| m.zone == zone) {
                ds.primary_url = m.url;
                ds.primary_zone = zone;
            }
        }
    }
    Ok(ds)
}

/// The repository's cipher passphrase, made once (random, 0600) and kept
/// outside the state store: losing it loses the backups, so it is never
/// replaced.
pub fn cipher_key(site: &Path, datastore: &str) -> Result<String, Error> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = site.join("keys");
    let path = dir.join(format!("{datastore}.key"));
    let io = |e: std::io::Error| Error::Io { what: format!("the backup key {}", path.display()), why: e.to_string() };
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Io { what: "random bytes".into(), why: e.to_string() })?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // create_new: two processes racing both read back the winner's key.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut f) => {
            f.write_all(key.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path).map_err(io)?.trim().to_string())
        }
        Err(e) => Err(io(e)),
    }
}

/// A datastore's stanza, its configuration freshly written from the
/// topology and what the primary says about itself.
pub async fn stanza(site: &Path, ds: &PgDatastore) -> Result<(pgbackrest::Stanza, postgres::Primary), Error> {
    let bin = pgbackrest::find()?;
    let primary = postgres::primary(&ds.primary_url).await?;
    let dir = site.join("pgbackrest");
    let stanza = pgbackrest::Stanza {
        name: ds.name.clone(),
        config: dir.join(format!("{}.conf", ds.name)),
        bin,
        work: dir.join(&ds.name),
    };
    let key = cipher_key(site, &ds.name)?;
    stanza.write(&pgbackrest::config_text(&ds.name, &ds.spec, &primary.cluster, &key, &stanza.work))?;
    if let RepoStore::Posix { path } = &ds.spec.repo.store {
        let p = Path::new(path);
        if !p.exists() {
            let io =
                |e: std::io::Error| Error::Io { what: format!("create the repository {path}"), why: e.to_string() };
            std::fs::create_dir_all(p).map_err(io)?;
            drctl_pgserver::hand_over(p).map_err(io)?;
        }
    }
    Ok((stanza, primary))
}

/// Checks (and where it safely can, sets up) archiving, and creates the
/// stanza in the repository; safe to run again.
pub async fn setup(site: &Path, ds: &PgDatastore) -> Result<(pgbackrest::Stanza, postgres::Archiving), Error> {
    let (stanza, primary) = stanza(site, ds).await?;
    if primary.in_recovery {
        return Err(Error::BadRequest(format!(
            "the primary of `{}` is in recovery (a standby): backups follow the primary; fix the topology's `primary:`",
            ds.name
        )));
    }
    let archiving = postgres::ensure_archiving(&ds.primary_url, &primary, &stanza.archive_command()).await?;
    stanza.run("stanza-create", &[], std::time::Duration::from_secs(120)).await?;
    Ok((stanza, archiving))
}

/// Takes one backup now; returns the set pgBackRest recorded.
pub async fn take_backup(
    site: &Path,
    ds: &PgDatastore,
    kind: pgbackrest::Kind,
) -> Result<pgbackrest::BackupSet, Error> {
    let (stanza, _) = setup(site, ds).await?;
    stanza.run("backup", &[format!("--type={}", kind.as_str())], std::time::Duration::from_secs(24 * 3600)).await?;
    let info = stanza.info().await?;
    info.backups.last().cloned().ok_or_else(|| Error::Tool {
        what: "pgbackrest backup".into(),
        why: "it ended without error but `pgbackrest info` lists no backup".into(),
    })
}
