//! The embedded backend: one SQLite file, `.drctl/state.db` by default,
//! because a DR tool must work on the worst day without a database of its
//! own to fail over first.
//!
//! Schema changes are numbered migrations ([`migrations`]) applied in order
//! inside one transaction each; the applied version is kept in
//! `schema_version`. The journal, the controller's records and the samples
//! live in tables of their own (a file each here); subscriptions, the
//! outbox, reports, lag evidence and erasures are written once on the
//! key-value space and kept in a `kv` table ([`kv_table`]).

use crate::error::{Error, Result};
use crate::kv::KvStore;
use crate::model::controller::AuditSeal;
use crate::model::{State, Store};
use crate::seal;
use drctl_runtime::{Clock, SystemClock};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod controller;
mod journal;
mod kv_table;
mod migrations;
mod samples;

pub use kv_table::SqliteKv;
use migrations::MIGRATIONS;

/// A stored value this drctl cannot read back, as a SQLite conversion
/// error: it surfaces as [`Error::Sqlite`] naming the column and the value.
pub(crate) fn corrupt(column: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, why.into())
}

/// The embedded SQLite backend of [`Store`].
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Subscriptions, the outbox and reports, on the `kv` table.
    audience: KvStore<SqliteKv>,
    location: String,
    pub(crate) seal: AuditSeal,
    /// Where its keys live (none: an in-memory store, sealed under a key nobody keeps).
    keys: Option<seal::KeyPaths>,
    /// Where the times it records come from: the caller's clock.
    clock: Arc<dyn Clock>,
}

/// Makes an existing folder owner-only (0700).
fn private_folder(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| Error::CreateDir { path: dir.to_path_buf(), source })?;
    }
    let _ = dir;
    Ok(())
}

impl Sqlite {
    /// Opens (creating when absent) the state at `url`: `sqlite://PATH`,
    /// relative to the current folder unless absolute (`sqlite:///abs/path`).
    pub fn open(url: &str) -> Result<Sqlite> {
        let path = url.strip_prefix("sqlite://").ok_or_else(|| Error::UnsupportedUrl(url.to_string()))?;
        if path.is_empty() {
            return Err(Error::UnsupportedUrl(url.to_string()));
        }
        let path = Path::new(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let made = !parent.exists();
            seal::private_dir(parent)?;
            // drctl's own folder is private whoever made it.
            if made || parent.file_name().is_some_and(|n| n == ".drctl") {
                private_folder(parent)?;
            }
        }
        // Created owner-only before SQLite opens it: its WAL and shared
        // memory files take the database file's mode.
        seal::touch_private(path)?;
        let keys = seal::KeyPaths::for_sqlite(path);
        let sealer = keys.sealer()?;
        let conn = Connection::open(path)?;
        let mut s = Self::init(conn, path.display().to_string(), sealer)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_os_string();
            side.push(suffix);
            seal::private_file(Path::new(&side))?;
        }
        s.keys = Some(keys);
        Ok(s)
    }

    /// Where this store's keys live (an in-memory store has none).
    pub fn key_paths(&self) -> Option<&seal::KeyPaths> {
        self.keys.as_ref()
    }

    /// What seals its secrets and personal data.
    pub fn sealer(&self) -> &seal::Sealer {
        self.audience.sealer()
    }

    /// Seals the audit log this store writes (a key, a head file).
    pub fn sealed(mut self, seal: AuditSeal) -> Sqlite {
        self.seal = seal;
        self
    }

    /// Takes the times it records (a token's creation, an audit entry, a
    /// journal event) from `clock` instead of the machine's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Sqlite {
        self.audience = self.audience.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// A private in-memory state (tests, dry runs).
    pub fn in_memory() -> Result<Sqlite> {
        Self::init(Connection::open_in_memory()?, ":memory:".into(), seal::Sealer::ephemeral())
    }

    fn init(mut conn: Connection, location: String, sealer: seal::Sealer) -> Result<Sqlite> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL: readers never block the writer; NORMAL sync is durable across
        // a process crash, which is the failure the journal must survive.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(Error::TooNew { found: current, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?1)", params![i as i64 + 1])?;
            tx.commit()?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let audience = KvStore::new(SqliteKv::new(conn.clone(), location.clone()), "/")?.with_sealer(sealer);
        Ok(Sqlite { conn, audience, location, seal: Default::default(), keys: None, clock: Arc::new(SystemClock) })
    }

    pub(crate) fn kv_part(&self) -> &KvStore<SqliteKv> {
        &self.audience
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl dyn Store {
    /// Opens (creating when absent) the store at `url`: `sqlite://PATH`,
    /// relative to the current folder unless absolute (`sqlite:///abs/path`).
    pub fn open(url: &str) -> Result<Arc<State>> {
        Self::open_sealed(url, Default::default())
    }

    /// Opens like [`open`](State::open), with the audit log sealed as `seal` says.
    pub fn open_sealed(url: &str, seal: AuditSeal) -> Result<Arc<State>> {
        let store = Sqlite::open(url)?;
        let seal = match store.key_paths() {
            Some(paths) => seal.or_defaults(paths)?,
            None => seal,
        };
        Ok(Arc::new(store.sealed(seal)))
    }

    /// A private in-memory store (tests, dry runs).
    pub fn in_memory() -> Result<Arc<State>> {
        Ok(Arc::new(Sqlite::in_memory()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::journal::Journal;
    use crate::model::samples::{RpoSample, Samples};
    use std::time::UNIX_EPOCH;

    /// A store call that blocks (here: another thread holds the database)
    /// on the only worker of a runtime must not stall the tasks queued
    /// behind it: in the controller those are the lease renewals.
    #[test]
    fn a_blocked_store_call_does_not_stall_the_tasks_behind_it() {
        let store = std::sync::Arc::new(Sqlite::in_memory().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn({
            let store = store.clone();
            move || {
                let _db = store.conn();
                locked_tx.send(()).unwrap();
                released.recv().unwrap();
            }
        });
        locked.recv().unwrap();
        let (calling_tx, calling) = std::sync::mpsc::channel();
        let blocked = rt.spawn(async move {
            calling_tx.send(()).unwrap();
            store.placements().map(|p| p.len())
        });
        calling.recv().unwrap();
        let (ran_tx, ran) = std::sync::mpsc::channel();
        rt.spawn(async move { ran_tx.send(()).unwrap() });
        let other_ran = ran.recv_timeout(Duration::from_secs(5));
        release.send(()).unwrap();
        holder.join().unwrap();
        assert!(other_ran.is_ok(), "a task queued behind a blocked store call did not run");
        assert_eq!(rt.block_on(blocked).unwrap().unwrap(), 0);
    }

    #[test]
    fn migrations_apply_once_and_reopening_keeps_data() {
        let dir = std::env::temp_dir().join(format!("drctl-state-{}", std::process::id()));
        let url = format!("sqlite://{}/nested/state.db", dir.display());
        {
            let s = Sqlite::open(&url).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            let t = UNIX_EPOCH + Duration::from_secs(1_000);
            s.record_rpo_samples(&[RpoSample {
                datastore: "db".into(),
                at: t,
                rpo_s: Some(0.4),
                target_s: Some(5.0),
                error: None,
            }])
            .unwrap();
        }
        let s = Sqlite::open(&url).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let got = s.rpo_samples("db", UNIX_EPOCH).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rpo_s, Some(0.4));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused_rather_than_misread() {
        let dir = std::env::temp_dir().join(format!("drctl-state-new-{}", std::process::id()));
        let url = format!("sqlite://{}/state.db", dir.display());
        Sqlite::open(&url).unwrap().conn().execute("INSERT INTO schema_version (version) VALUES (99)", []).unwrap();
        assert!(matches!(Sqlite::open(&url), Err(Error::TooNew { found: 99, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_urls_say_what_works() {
        let err = Sqlite::open("postgres://h/db").err().unwrap();
        assert!(err.to_string().contains("sqlite://"), "{err}");
    }
}
