//! pgBackRest, driven: its configuration written from the topology, its
//! commands run, its `info` read.
//!
//! drctl writes no backup format of its own. Everything that touches the
//! repository goes through the `pgbackrest` binary, so a repository drctl
//! made is one any pgBackRest user can read with the documented tools, and
//! the other way round. drctl owns exactly one file per datastore: the
//! stanza's configuration, which it writes (0600, with the cipher key)
//! each time it acts, so the topology stays the one source of truth.

use crate::Error;
use drctl_core::topology::backup::{PgBackRest, RepoStore};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to say when the binary is missing.
pub const INSTALL_HINT: &str =
    "install pgBackRest (Debian/Ubuntu: `apt-get install pgbackrest`; RHEL: `dnf install pgbackrest`) or set PGBACKREST to its path";

/// The `pgbackrest` binary: `$PGBACKREST`, else the first on PATH.
pub fn find() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("PGBACKREST") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(Error::NoPgBackRest) };
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("pgbackrest")).find(|p| p.is_file()))
        .ok_or(Error::NoPgBackRest)
}

/// The facts about a running cluster that its stanza needs, read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub data_directory: String,
    pub port: u16,
    /// The first of `unix_socket_directories`: pgBackRest talks to the
    /// server through its socket, as the database host's own tools do.
    pub socket_dir: String,
    pub user: String,
}

/// One datastore's stanza: its name, its configuration file and the tool.
#[derive(Debug, Clone)]
pub struct Stanza {
    pub name: String,
    pub config: PathBuf,
    pub bin: PathBuf,
    /// pgBackRest's lock and spool folder, beside the configuration.
    pub work: PathBuf,
}

/// The kinds of backup pgBackRest takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Full,
    Diff,
    Incr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Diff => "diff",
            Kind::Incr => "incr",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "full" => Kind::Full,
            "diff" => Kind::Diff,
            "incr" => Kind::Incr,
            _ => return None,
        })
    }
}

/// The configuration file's text for a stanza. `cipher` is the
/// repository's passphrase.
pub fn config_text(name: &str, spec: &PgBackRest, cluster: &Cluster, cipher: &str, work: &Path) -> String {
    let mut global = vec![
        format!("lock-path={}", work.join("lock").display()),
        format!("spool-path={}", work.join("spool").display()),
        "log-level-console=warn".to_string(),
        "log-level-file=off".to_string(),
        "start-fast=y".to_string(),
        "repo1-cipher-type=aes-256-cbc".to_string(),
        format!("repo1-cipher-pass={cipher}"),
    ];
    match &spec.repo.store {
        RepoStore::Posix { path } => global.push(format!("repo1-path={path}")),
        RepoStore::S3 { bucket, endpoint, region } => {
            let region = region.clone().unwrap_or_else(|| "us-east-1".into());
            let endpoint = endpoint
                .as_deref()
                .map(|e| e.trim_start_matches("https://").trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("s3.{region}.amazonaws.com"));
            let (host, port) = match endpoint.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), Some(p.to_string())),
                _ => (endpoint.clone(), None),
            };
            global.extend([
                "repo1-type=s3".to_string(),
                "repo1-path=/pgbackrest".to_string(),
                format!("repo1-s3-bucket={bucket}"),
                format!("repo1-s3-endpoint={host}"),
                format!("repo1-s3-region={region}"),
                "repo1-s3-uri-style=path".to_string(),
                // Credentials come from the environment (AWS_ACCESS_KEY_ID,
                // ...), passed through as pgBackRest's own variables.
            ]);
            if let Some(p) = port {
                global.push(format!("repo1-storage-port={p}"));
            }
            if let Ok(ca) = std::env::var("DRCTL_BACKUP_CA_FILE") {
                global.push(format!("repo1-storage-ca-file={ca}"));
            }
        }
    }
    if let Some(days) = spec.retention_days() {
        global.push("repo1-retention-full-type=time".to_string());
        global.push(format!("repo1-retention-full={days}"));
    }
    format!(
        "# Written by drctl from the topology; edits are overwritten.\n[global]\n{}\n\n[{name}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\npg1-user={}\n",
        global.join("\n"),
        cluster.data_directory,
        cluster.port,
        cluster.socket_dir,
        cluster.user
    )
}

impl Stanza {
    /// Writes the stanza's configuration (0600, owned by the user pgBackRest
    /// runs as: it holds the cipher key, and PostgreSQL's `archive_command`
    /// reads it).
    pub fn write(&self, text: &str) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::Io { what: format!("write {}", self.config.display()), why: e.to_string() };
        for dir in [self.work.join("lock"), self.work.join("spool")] {
            std::fs::create_dir_all(&dir).map_err(io)?;
            drctl_pgserver::hand_over(&dir).map_err(io)?;
        }
        drctl_pgserver::hand_over(&self.work).map_err(io)?;
        if let Some(parent) = self.config.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = self.config.with_extension("conf.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        drctl_pgserver::hand_over(&tmp).map_err(io)?;
        std::fs::rename(&tmp, &self.config).map_err(io)?;
        Ok(())
    }

    /// The `archive_command` PostgreSQL must run for this stanza.
    pub fn archive_command(&self) -> String {
        format!("{} --config={} --stanza={} archive-push %p", self.bin.display(), self.config.display(), self.name)
    }

    /// Runs `pgbackrest --config=... --stanza=... COMMAND ARGS...` as the
    /// user PostgreSQL runs as; `Ok(stdout)` on exit 0.
    pub async fn run(&self, command: &str, args: &[String], timeout: Duration) -> Result<String, Error> {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={}", self.name))
            .arg(command)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = drctl_pgserver::run_as() {
            c.uid(uid).gid(gid);
        }
        // pgBackRest dies with drctl, even by SIGKILL: a restore resumed
        // later must not race an orphan still writing the same folder.
        // SAFETY: prctl is async-signal-safe; it runs after the uid switch
        // (which would otherwise clear the parent-death signal).
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // An S3 repository's credentials, from the standard AWS variables.
        for (from, to) in [
            ("AWS_ACCESS_KEY_ID", "PGBACKREST_REPO1_S3_KEY"),
            ("AWS_SECRET_ACCESS_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"),
            ("AWS_SESSION_TOKEN", "PGBACKREST_REPO1_S3_TOKEN"),
        ] {
            if let Ok(v) = std::env::var(from) {
                c.env(to, v);
            }
        }
        let what = format!("pgbackrest {command}");
        let out = match tokio::time::timeout(timeout, c.output()).await {
            Err(_) => return Err(Error::Tool { what, why: format!("no answer within {}s", timeout.as_secs()) }),
            Ok(Err(e)) => return Err(Error::Tool { what, why: format!("cannot run {}: {e}", self.bin.display()) }),
            Ok(Ok(out)) => out,
        };
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if why.is_empty() {
            why = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        // pgBackRest prints its errors with the code first: keep the lines that say something.
        let why: Vec<&str> = why.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
        Err(Error::Tool { what, why: why.join(" / ") })
    }

    /// Reads `pgbackrest info --output=json` for this stanza.
    pub async fn info(&self) -> Result<Info, Error> {
        let text = self.run("info", &["--output=json".into()], Duration::from_secs(60)).await?;
        Info::parse(&text, &self.name)
    }
}

/// One backup as `pgbackrest info` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSet {
    pub label: String,
    pub kind: String,
    /// Unix seconds.
    pub started: i64,
    pub stopped: i64,
    /// Bytes of the cluster the backup restores (not its compressed size).
    pub size: u64,
    /// Bytes it takes in the repository.
    pub repo_size: u64,
}

/// What a stanza's repository holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Info {
    pub backups: Vec<BackupSet>,
    /// The newest WAL segment archived, when any.
    pub archive_max: Option<String>,
    pub status: String,
}

impl Info {
    pub fn parse(text: &str, stanza: &str) -> Result<Info, Error> {
        let bad = |why: &str| Error::Tool { what: "pgbackrest info".into(), why: why.to_string() };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&format!("unreadable JSON: {e}")))?;
        let entry = v
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == stanza))
            .ok_or_else(|| bad(&format!("no stanza `{stanza}` in its answer")))?;
        let backups = entry["backup"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .filter(|b| b["error"] != true)
                    .map(|b| BackupSet {
                        label: b["label"].as_str().unwrap_or_default().to_string(),
                        kind: b["type"].as_str().unwrap_or_default().to_string(),
                        started: b["timestamp"]["start"].as_i64().unwrap_or_default(),
                        stopped: b["timestamp"]["stop"].as_i64().unwrap_or_default(),
                        size: b["info"]["size"].as_u64().unwrap_or_default(),
                        repo_size: b["info"]["repository"]["delta"].as_u64().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let archive_max = entry["archive"]
            .as_array()
            .and_then(|a| a.iter().filter_map(|x| x["max"].as_str()).max().map(str::to_string));
        let status = entry["status"]["message"].as_str().unwrap_or_default().to_string();
        Ok(Info { backups, archive_max, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_backups_and_the_newest_archived_segment() {
        let text = r#"[{"name":"db","status":{"code":0,"message":"ok"},
          "archive":[{"id":"15-1","max":"000000010000000000000005","min":"000000010000000000000001"}],
          "backup":[{"label":"20261206-030000F","type":"full","error":false,
             "timestamp":{"start":100,"stop":105},"info":{"size":2000,"repository":{"delta":300,"size":300}}},
            {"label":"bad","type":"incr","error":true,"timestamp":{"start":1,"stop":2},"info":{}}]}]"#;
        let info = Info::parse(text, "db").unwrap();
        assert_eq!(info.backups.len(), 1);
        assert_eq!((info.backups[0].stopped, info.backups[0].size, info.backups[0].repo_size), (105, 2000, 300));
        assert_eq!(info.archive_max.as_deref(), Some("000000010000000000000005"));
        assert!(Info::parse(text, "other").is_err());
    }
}
