//! The PostgreSQL side of backups and restores: what the primary says
//! about itself, its WAL archiving, and the restored copies drctl starts.
//!
//! A backup is only as good as the WAL archived after it, so archiving is
//! checked before every backup and every restore, and the exact settings
//! are printed when it is off. A restored copy is started by drctl on a
//! port of its own with archiving off, so that it can never push WAL into
//! the production repository and confuse the next restore.

use crate::pgbackrest::Cluster;
use crate::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &str) -> Result<Client, Error> {
    drctl_providers::postgres::connect(url, TIMEOUT).await.map_err(Error::Postgres)
}

fn query_error(url: &str, what: &str, e: tokio_postgres::Error) -> Error {
    let why = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
    Error::Postgres(drctl_providers::Error::Query { target: drctl_core::redact::url(url), what: what.into(), why })
}

/// What the primary says about itself.
#[derive(Debug, Clone)]
pub struct Primary {
    pub cluster: Cluster,
    pub archive_mode: String,
    pub archive_command: String,
    pub in_recovery: bool,
}

pub async fn primary(url: &str) -> Result<Primary, Error> {
    let c = connect(url).await?;
    let row = c
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('port'), \
                    current_setting('unix_socket_directories'), current_user::text, \
                    current_setting('archive_mode'), current_setting('archive_command'), pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(|e| query_error(url, "read its settings (drctl needs a superuser here)", e))?;
    let sockets: String = row.get(2);
    let socket_dir = sockets.split(',').map(str::trim).find(|s| s.starts_with('/')).unwrap_or("/var/run/postgresql");
    let port: String = row.get(1);
    Ok(Primary {
        cluster: Cluster {
            data_directory: row.get(0),
            port: port.parse().unwrap_or(5432),
            socket_dir: socket_dir.to_string(),
            user: row.get(3),
        },
        archive_mode: row.get(4),
        archive_command: row.get(5),
        in_recovery: row.get(6),
    })
}

/// What [`ensure_archiving`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archiving {
    /// Already archiving into this stanza.
    Ready,
    /// `archive_mode` was on and `archive_command` empty: drctl set it and reloaded.
    SetUp,
}

/// Checks that the primary archives its WAL into this stanza, and sets the
/// command up when archiving is on but has no command. Anything else (off,
/// or archiving elsewhere) is refused with the exact settings to apply.
pub async fn ensure_archiving(url: &str, p: &Primary, command: &str) -> Result<Archiving, Error> {
    let settings = format!(
        "ALTER SYSTEM SET archive_mode = 'on'; ALTER SYSTEM SET archive_command = '{}'; then restart PostgreSQL",
        command.replace('\'', "''")
    );
    if p.archive_mode == "off" {
        return Err(Error::ArchivingOff { why: "archive_mode is off".into(), settings });
    }
    if p.archive_command == command {
        return Ok(Archiving::Ready);
    }
    let unset = matches!(p.archive_command.as_str(), "" | "(disabled)");
    let ours = p.archive_command.contains("pgbackrest") && p.archive_command.contains("archive-push");
    if !unset && !ours {
        return Err(Error::ArchivingOff {
            why: format!("archive_command archives elsewhere (`{}`)", p.archive_command),
            settings,
        });
    }
    let c = connect(url).await?;
    let sql = format!("ALTER SYSTEM SET archive_command = '{}'", command.replace('\'', "''"));
    c.batch_execute(&sql).await.map_err(|e| query_error(url, "set archive_command", e))?;
    c.batch_execute("SELECT pg_reload_conf()").await.map_err(|e| query_error(url, "reload", e))?;
    Ok(Archiving::SetUp)
}

/// Makes the WAL up to now restorable: writes a commit record (so that a
/// recovery to a time before now finds a transaction after its target and
/// stops there, even on an idle database), closes the WAL segment and
/// waits until the archiver has pushed it. Returns the segment's name.
pub async fn flush_to_archive(url: &str, within: Duration) -> Result<String, Error> {
    let c = connect(url).await?;
    c.batch_execute("SELECT pg_current_xact_id()").await.map_err(|e| query_error(url, "write a commit record", e))?;
    let row = c
        .query_one("SELECT pg_walfile_name(lsn - 1) FROM (SELECT pg_switch_wal() AS lsn) s", &[])
        .await
        .map_err(|e| query_error(url, "close the current WAL segment", e))?;
    let segment: String = row.get(0);
    let deadline = Instant::now() + within;
    loop {
        let row = c
            .query_one(
                "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| query_error(url, "read pg_stat_archiver", e))?;
        let (archived, failed): (String, String) = (row.get(0), row.get(1));
        // Names of one timeline sort in WAL order; a newer timeline sorts after.
        if archived.len() >= 24 && archived.get(..24) >= Some(segment.as_str()) {
            return Ok(segment);
        }
        if Instant::now() >= deadline {
            return Err(Error::ArchiveWait {
                segment,
                secs: within.as_secs(),
                failed: (!failed.is_empty()).then_some(failed),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last time the archiver pushed a segment (seconds since the epoch).
pub async fn last_archived(url: &str) -> Result<Option<f64>, Error> {
    let c = connect(url).await?;
    let row = c
        .query_one("SELECT extract(epoch FROM last_archived_time)::float8 FROM pg_stat_archiver", &[])
        .await
        .map_err(|e| query_error(url, "read pg_stat_archiver", e))?;
    Ok(row.get(0))
}

/// The line that marks a copy configured to serve in a primary's place.
const SERVING: &str = "# serving in the primary's place (drctl restore --replace)\n";

/// A restored copy's data directory and where it listens.
#[derive(Debug, Clone)]
pub struct Copy {
    pub data: PathBuf,
    /// Its private socket folder.
    pub socket_dir: PathBuf,
    pub port: u16,
    /// `None`: no TCP listener at all (a scratch copy no client of the estate can reach).
    pub listen: Option<String>,
}

impl Copy {
    /// A URL drctl (on this host) reaches the copy with.
    pub fn local_url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@/{database}?host={}&port={}&sslmode=disable", self.socket_dir.display(), self.port)
    }

    /// The URL clients reach it with, when it listens on TCP.
    pub fn tcp_url(&self, user: &str, database: &str) -> Option<String> {
        self.listen.as_ref().map(|h| format!("postgres://{user}@{h}:{}/{database}", self.port))
    }

    fn ctl(&self, action: &[&str]) -> std::process::Command {
        let bin = drctl_pgserver::find_bin().unwrap_or_else(|_| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let mut c = drctl_pgserver::command(&bin, "pg_ctl", drctl_pgserver::Lifetime::Independent);
        let log = self.data.with_extension("log");
        c.arg("-D").arg(&self.data).arg("-l").arg(log).args(action);
        c
    }

    /// Whether a server runs on the copy's data directory now.
    pub fn running(&self) -> bool {
        self.ctl(&["status"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Settings appended after the restore: its own port and socket, no
    /// archiving (never into the production repository), no replication
    /// from anyone.
    pub fn configure(&self) -> Result<(), Error> {
        let sockets = self.socket_dir.display().to_string();
        self.write_settings(&sockets, "archive_mode = 'off'\narchive_command = ''\n", "")
    }

    /// The settings of a copy that serves in a primary's place (`restore
    /// --replace`): the primary's port and address, its socket folders
    /// first (local clients keep theirs) then the copy's own, and WAL
    /// archived into the datastore's repository again, on the copy's new
    /// timeline.
    pub fn configure_serving(&self, primary_sockets: Option<&str>, archive_command: &str) -> Result<(), Error> {
        let own = self.socket_dir.display().to_string();
        let sockets = match primary_sockets.filter(|s| !s.trim().is_empty()) {
            Some(p) => format!("{p},{own}"),
            None => own,
        };
        let archive = format!("archive_mode = 'on'\narchive_command = '{}'\n", archive_command.replace('\'', "''"));
        self.write_settings(&sockets, &archive, SERVING)
    }

    /// Whether the copy was configured to serve in a primary's place.
    pub fn is_serving(&self) -> bool {
        std::fs::read_to_string(self.data.join("postgresql.auto.conf")).is_ok_and(|t| t.contains(SERVING))
    }

    fn write_settings(&self, sockets: &str, archive: &str, note: &str) -> Result<(), Error> {
        let io =
            |e: std::io::Error| Error::Io { what: format!("configure {}", self.data.display()), why: e.to_string() };
        std::fs::create_dir_all(&self.socket_dir).map_err(io)?;
        drctl_pgserver::hand_over(&self.socket_dir).map_err(io)?;
        let conf = self.data.join("postgresql.auto.conf");
        // Our earlier block goes, wherever it is: a copy restored from a
        // backup of a copy carries one, and pgBackRest appends its own
        // recovery settings after it, which must stay.
        let mut text = without_block(&std::fs::read_to_string(&conf).unwrap_or_default());
        if !note.is_empty() {
            // Serving, the copy is done recovering: the restore's target
            // and command must not travel to the standbys rebuilt from it
            // (which would stop at the target and promote themselves) nor
            // into its backups (a restore from them writes its own).
            text = without_recovery_settings(&text);
        }
        text.push_str(&format!(
            "{BLOCK_START}\n{note}port = {}\nlisten_addresses = '{}'\nunix_socket_directories = '{}'\n{archive}primary_conninfo = ''\nhot_standby = on\n{BLOCK_END}\n",
            self.port,
            self.listen.as_deref().unwrap_or(""),
            sockets.replace('\'', "''"),
        ));
        std::fs::write(&conf, text).map_err(io)?;
        drctl_pgserver::hand_over(&conf).map_err(io)?;
        // A standby's signal copied from a backup taken on a standby would
        // keep the copy waiting for a primary; recovery.signal stays.
        let _ = std::fs::remove_file(self.data.join("standby.signal"));
        Ok(())
    }

    pub async fn start(&self) -> Result<(), Error> {
        if self.running() {
            return Ok(());
        }
        let mut c = self.ctl(&["-w", "-t", "600", "start"]);
        let out = tokio::task::spawn_blocking(move || c.output())
            .await
            .map_err(|e| Error::Tool { what: "pg_ctl start".into(), why: e.to_string() })?
            .map_err(|e| Error::Tool { what: "pg_ctl start".into(), why: e.to_string() })?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(Error::Tool { what: "pg_ctl start".into(), why: tail.join(" / ") });
        }
        Ok(())
    }

    pub fn stop(&self) {
        let _ = self
            .ctl(&["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Waits until recovery has reached its target and the copy is
    /// promoted; returns the time of the last transaction it replayed
    /// (seconds since the epoch), the newest data it holds.
    pub async fn wait_promoted(&self, user: &str, within: Duration) -> Result<Option<f64>, Error> {
        let url = self.local_url(user, "postgres");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(c) = drctl_providers::postgres::connect(&url, TIMEOUT).await {
                if let Ok(row) = c
                    .query_one(
                        "SELECT pg_is_in_recovery(), extract(epoch FROM pg_last_xact_replay_timestamp())::float8",
                        &[],
                    )
                    .await
                {
                    let in_recovery: bool = row.get(0);
                    if !in_recovery {
                        return Ok(row.get(1));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Tool {
                    what: "the restored copy".into(),
                    why: format!(
                        "not promoted within {}s (see {})",
                        within.as_secs(),
                        self.data.with_extension("log").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the copy and removes its files.
    pub fn remove(&self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
        let _ = std::fs::remove_dir_all(&self.socket_dir);
        let _ = std::fs::remove_file(self.data.with_extension("log"));
    }
}

/// A configuration's text without its `recovery_target*` settings.
pub fn without_recovery_target(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("recovery_target")).map(|l| format!("{l}\n")).collect()
}

/// Without any recovery setting pgBackRest wrote (target, command, its
/// comment line).
fn without_recovery_settings(text: &str) -> String {
    without_recovery_target(text)
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("restore_command") && !l.starts_with("# Recovery settings generated by pgBackRest")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

const BLOCK_START: &str = "# drctl: restored copy";
const BLOCK_END: &str = "# drctl: end of restored copy";

/// A configuration's text without drctl's block: from its first line to
/// its last (or, written before the block had a last line, through the
/// settings drctl writes there).
pub fn without_block(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with(BLOCK_START) {
            inside = true;
            continue;
        }
        if inside {
            if l.starts_with(BLOCK_END) {
                inside = false;
                continue;
            }
            let ours = [
                "port",
                "listen_addresses",
                "unix_socket_directories",
                "archive_mode",
                "archive_command",
                "primary_conninfo",
                "hot_standby",
                "# serving",
            ]
            .iter()
            .any(|k| l.starts_with(k));
            if ours {
                continue;
            }
            inside = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Creates an empty folder PostgreSQL's user owns, mode 0700.
pub fn make_data_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| Error::Io { what: format!("create {}", dir.display()), why: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    drctl_pgserver::hand_over(dir).map_err(io)?;
    if let Some(parent) = dir.parent() {
        drctl_pgserver::hand_over(parent).map_err(io)?;
    }
    Ok(())
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The user a PostgreSQL URL names (`postgres` when it names none).
pub fn primary_user(url: &str) -> String {
    drctl_providers::pg_tls::parse(url)
        .ok()
        .and_then(|t| t.config.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".to_string())
}

/// The database a PostgreSQL URL names (`postgres` when it names none).
pub(crate) fn database_of(url: &str) -> String {
    drctl_providers::pg_tls::parse(url)
        .ok()
        .and_then(|t| t.config.get_dbname().map(str::to_string))
        .unwrap_or_else(|| "postgres".to_string())
}
