//! PostgreSQL's own server binaries, found and run the same way by the lab
//! (`drctl lab up`) and by the tests (`drctl-testkit`).
//!
//! The two used to carry their own copies: they looked in different
//! folders (one knew PostgreSQL 18 and RHEL's `/usr/pgsql-*`, the other
//! did not) and ran the tools as `postgres` differently, so a machine where
//! the lab worked could fail the tests, or the reverse. `initdb` refuses
//! root, so when drctl runs as root every tool runs as the `postgres`
//! user; otherwise as ourselves.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to say when no server binaries are found.
pub const INSTALL_HINT: &str = "PostgreSQL's server binaries (initdb, postgres) were not found on PATH or in \
     /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; Fedora: \
     `dnf install postgresql-server`; macOS: `brew install postgresql`) or set PG_BIN to their folder";

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").exists() && dir.join("postgres").exists()
}

/// Where the server binaries are: `$PG_BIN`, the Debian/Ubuntu and RHEL
/// folders (newest version first), or PATH. `Err` says what to do.
pub fn find_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PG_BIN") {
        let p = PathBuf::from(p);
        if has_server(&p) {
            return Ok(p);
        }
        return Err(format!(
            "PG_BIN={} has no initdb and postgres in it: point it at PostgreSQL's server binaries (e.g. /usr/lib/postgresql/15/bin), or unset it",
            p.display()
        ));
    }
    for v in ["18", "17", "16", "15", "14", "13"] {
        for p in [format!("/usr/lib/postgresql/{v}/bin"), format!("/usr/pgsql-{v}/bin")] {
            if has_server(Path::new(&p)) {
                return Ok(PathBuf::from(p));
            }
        }
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| has_server(p)))
        .ok_or_else(|| INSTALL_HINT.to_string())
}

/// The uid and gid to run PostgreSQL as: `postgres`'s when we are root,
/// `None` (ourselves) otherwise.
pub fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres")).then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

/// Gives a folder PostgreSQL will write to, or a file it must own (its
/// TLS key), to the user it runs as.
pub fn hand_over(dir: &Path) -> std::io::Result<()> {
    if let Some((uid, gid)) = run_as() {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Whether a tool outlives the process that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when its parent dies, even by SIGKILL (the lab's servers).
    DiesWithParent,
    /// Lives on its own (`pg_ctl`, which daemonizes the server it starts).
    Independent,
}

/// A command for one of the server's tools, run as [`run_as`] says, with
/// stdin closed.
pub fn command(bin: &Path, tool: &str, lifetime: Lifetime) -> Command {
    let mut c = Command::new(bin.join(tool));
    if let Some((uid, gid)) = run_as() {
        c.uid(uid).gid(gid);
    }
    if lifetime == Lifetime::DiesWithParent {
        // SAFETY: prctl is async-signal-safe; it runs after the uid switch
        // (which would otherwise clear the parent-death signal).
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    c.stdin(Stdio::null());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pg_bin_without_the_server_says_what_to_do() {
        // PG_BIN is read once per call; a folder without initdb is refused in words.
        let empty = std::env::temp_dir().join(format!("drctl-pgserver-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        std::env::set_var("PG_BIN", &empty);
        let err = find_bin().unwrap_err();
        std::env::remove_var("PG_BIN");
        assert!(err.contains("has no initdb and postgres") && err.contains("unset it"), "{err}");
    }
}
