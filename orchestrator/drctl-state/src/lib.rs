//! drctl's durable state.
//!
//! [`Store`] (in [`store`]) says what drctl remembers: the execution
//! journal ([`journal`]), what the controller keeps ([`controller`]), RPO
//! samples and replication bookkeeping. Callers hold an `Arc<State>`
//! (`State` is `dyn Store`) and never see the backend.
//!
//! [`Sqlite`] is the embedded default, `.drctl/state.db`, because a DR tool
//! must work on the worst day without a database of its own to fail over
//! first. Schema changes are numbered migrations applied in order inside
//! one transaction each; the applied version is kept in `schema_version`.

use drctl_runtime::{Clock, SystemClock};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default state URL (docs/declaring.md).
pub const DEFAULT_URL: &str = "sqlite://.drctl/state.db";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names a backend this build does not have.
    #[error("state URL `{0}` is not supported: use sqlite://PATH (e.g. {DEFAULT_URL}) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]")]
    UnsupportedUrl(String),
    /// The folder for the database could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// SQLite refused an operation (a corrupt or locked file, a full disk).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another execution holds an entity this one needs.
    #[error("`{entity}` is being failed over by execution {execution}: wait for it, or `{}`", drctl_core::hint::drctl(&format!("abort {execution}")))]
    Locked { entity: String, execution: String },
    /// No execution by that id.
    #[error("no execution `{0}` (see `{hint}`)", hint = drctl_core::hint::drctl("executions"))]
    NoSuchExecution(String),
    /// A token, incident or maintenance that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request the state refuses (a duplicate token name, a bad role).
    #[error("{0}")]
    Invalid(String),
    /// A stored value this drctl cannot read back (a damaged or newer record).
    #[error("state store: {0}")]
    Corrupt(String),
    /// The store's server failed or did not answer (etcd).
    #[error("state store: {0}")]
    Backend(String),
    /// A leader's write made by a controller that no longer leads: refused,
    /// so a deposed leader never changes the journal.
    #[error("this controller no longer leads{}: its write was refused", .0.as_deref().map(|l| format!(" (`{l}` does)")).unwrap_or_default())]
    NotLeader(Option<String>),
    /// A bounded store is full (unconfirmed subscriptions): try again later.
    #[error("{0}")]
    Full(String),
    /// The database was written by a newer drctl.
    #[error("the state database has schema version {found}, newer than this drctl knows ({known}); upgrade drctl")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs one blocking store operation (a SQLite statement and its fsync, an
/// etcd round trip that may wait seconds for a quorum).
///
/// The store is synchronous so that the engine, the CLI and the tests can
/// call it from anywhere, but most callers are async tasks on the
/// controller's runtime. On a multi-threaded runtime the calling worker
/// first hands the tasks queued on it to another worker
/// (`tokio::task::block_in_place`), so a slow disk or a sick etcd never
/// stalls what is waiting behind the call: the election's lease renewals,
/// the API's other requests, a step's timeout. Anywhere else (a plain
/// thread, a current-thread runtime in a test) it simply runs.
pub fn offload<T>(operation: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(operation),
        _ => operation(),
    }
}

/// A stored value this drctl cannot read back, as a SQLite conversion
/// error: it surfaces as [`Error::Sqlite`] naming the column and the value.
pub(crate) fn corrupt(column: usize, why: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, why.into())
}

/// Numbered schema migrations; never edit one that has shipped, add another.
const MIGRATIONS: &[&str] = &[
    // 1: RPO samples and replication bookkeeping.
    "CREATE TABLE rpo_samples (
        datastore TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        rpo_s REAL,
        target_s REAL,
        error TEXT
     );
     CREATE INDEX rpo_samples_by_datastore ON rpo_samples (datastore, at_ms);
     CREATE TABLE replication_runs (
        id INTEGER PRIMARY KEY,
        datastore TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        copied INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        error TEXT
     );
     CREATE TABLE multipart_checkpoints (
        datastore TEXT NOT NULL,
        replica_zone TEXT NOT NULL,
        key TEXT NOT NULL,
        source_etag TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        part_size INTEGER NOT NULL,
        PRIMARY KEY (datastore, replica_zone, key)
     );
     CREATE TABLE multipart_parts (
        datastore TEXT NOT NULL,
        replica_zone TEXT NOT NULL,
        key TEXT NOT NULL,
        part_number INTEGER NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (datastore, replica_zone, key, part_number)
     );",
    // 2: the execution journal of failovers.
    "CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        declared_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        plan TEXT NOT NULL,
        options TEXT NOT NULL
     );
     CREATE TABLE execution_steps (
        execution_id TEXT NOT NULL REFERENCES executions(id),
        idx INTEGER NOT NULL,
        id TEXT NOT NULL,
        entity TEXT NOT NULL,
        action TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_ms INTEGER,
        finished_ms INTEGER,
        error TEXT,
        note TEXT,
        PRIMARY KEY (execution_id, idx)
     );
     CREATE TABLE execution_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        step TEXT,
        kind TEXT NOT NULL,
        detail TEXT
     );
     CREATE TABLE approvals (
        execution_id TEXT NOT NULL,
        step TEXT NOT NULL,
        by TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (execution_id, step)
     );
     CREATE TABLE entity_locks (
        entity TEXT PRIMARY KEY,
        execution_id TEXT NOT NULL
     );
     CREATE TABLE placements (
        datastore TEXT PRIMARY KEY,
        primary_zone TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
     );",
    // 3: the controller: tokens, the audit log, incidents, maintenance,
    // daily uptime counters, drill results.
    "CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        last_used_ms INTEGER
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        request TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        services TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        execution_id TEXT
     );
     CREATE TABLE incident_updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL
     );
     CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        services TEXT NOT NULL,
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE uptime_days (
        service TEXT NOT NULL,
        day INTEGER NOT NULL,
        checks INTEGER NOT NULL,
        healthy INTEGER NOT NULL,
        PRIMARY KEY (service, day)
     );
     CREATE TABLE drills (
        id TEXT PRIMARY KEY,
        experiment TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        objectives_met INTEGER,
        report TEXT
     );",
    // 4: safety (docs/guide/safety.md). An approval belongs to one attempt of a step
    // and may record the step as done without running it; an execution
    // has at most one owner at a time, on a lease; each standby's lag is
    // sampled on its own, so `max_lag` is checked against the one promoted.
    "CREATE TABLE approvals_by_attempt (
        execution_id TEXT NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        by TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (execution_id, step, attempt)
     );
     INSERT INTO approvals_by_attempt (execution_id, step, attempt, by, at_ms)
        SELECT execution_id, step, 0, by, at_ms FROM approvals;
     DROP TABLE approvals;
     ALTER TABLE approvals_by_attempt RENAME TO approvals;
     CREATE TABLE execution_owners (
        execution_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until_ms INTEGER NOT NULL
     );
     CREATE TABLE replica_samples (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        lag_s REAL
     );
     CREATE INDEX replica_samples_by_member ON replica_samples (datastore, zone, at_ms);",
    // 5: S3 objects replication accounts for, per zone (docs/guide/safety.md, nothing
    // lost in S3): what it never wrote or copied is never overwritten.
    "CREATE TABLE replicated_objects (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        source_etag TEXT NOT NULL,
        kept INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (datastore, zone, key)
     );",
    // 6: the conflicts the last pass found, for `status`.
    "CREATE TABLE replication_conflicts (
        datastore TEXT NOT NULL,
        zone TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (datastore, zone, key)
     );",
    // 7: highly available controllers (docs/guide/ha-etcd.md): which controller ran a
    // step, and documents the leader publishes for every controller (the
    // latest status measurement, which followers serve).
    "ALTER TABLE execution_steps ADD COLUMN ran_by TEXT;
     CREATE TABLE published (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        at_ms INTEGER NOT NULL
     );",
    // 8: customers (docs/customers.md): a token may belong to one customer; the
    // subscriptions, the notification outbox and post-incident reports
    // live in a key-value table, the same code as on etcd
    // (`audience::SqliteKv`).
    "ALTER TABLE tokens ADD COLUMN customer TEXT;
     CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        version INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE kv_revision (n INTEGER NOT NULL);
     INSERT INTO kv_revision (n) VALUES (0);",
    // 9: nobody rewrites the audit log quietly: `INSERT OR REPLACE` deletes
    // without firing the delete trigger, so an insert is refused unless it
    // adds the next entry at the end; tokens are found by an index of
    // their hash, never by reading them all.
    "CREATE TRIGGER audit_is_append_only_insert BEFORE INSERT ON audit
        WHEN NEW.seq <> (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: entries are only added at its end'); END;
     CREATE INDEX tokens_by_hash ON tokens (hash);",
];

/// One RPO measurement of one datastore.
#[derive(Debug, Clone, PartialEq)]
pub struct RpoSample {
    pub datastore: String,
    pub at: SystemTime,
    pub rpo_s: Option<f64>,
    pub target_s: Option<f64>,
    pub error: Option<String>,
}

/// Totals of one replication pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub copied: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// An unfinished multipart copy: where it was, so it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartCheckpoint {
    pub upload_id: String,
    pub source_etag: String,
    pub part_size: u64,
    /// (part number, ETag) of every part already uploaded.
    pub parts: Vec<(i32, String)>,
}

pub mod audience;
/// Test code: compiled for this crate's tests and, with the `conformance`
/// feature, for another backend's (drctl-etcd's); never into the binary.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod controller;
pub mod erasure;
pub mod evidence;
pub mod journal;
pub mod kv;
pub mod seal;
pub mod store;

pub use audience::Audience;
pub use erasure::{CopyState, ErasureRequest, Erasures};
pub use evidence::{Evidence, LagEvidence, WalSample};
pub use store::{Approval, Claim, Controller, Journal, ReplicatedObject, Samples, State, Store};

/// The embedded SQLite backend of [`Store`].
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Subscriptions, the outbox and reports, on the `kv` table.
    audience: kv::KvStore<audience::SqliteKv>,
    location: String,
    pub(crate) seal: controller::AuditSeal,
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

/// Milliseconds since the epoch, as the store keeps times.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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
    pub fn sealed(mut self, seal: controller::AuditSeal) -> Sqlite {
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
        let audience =
            kv::KvStore::new(audience::SqliteKv::new(conn.clone(), location.clone()), "/")?.with_sealer(sealer);
        Ok(Sqlite { conn, audience, location, seal: Default::default(), keys: None, clock: Arc::new(SystemClock) })
    }

    pub(crate) fn kv_part(&self) -> &kv::KvStore<audience::SqliteKv> {
        &self.audience
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Samples for Sqlite {
    fn location(&self) -> &str {
        &self.location
    }

    fn schema_version(&self) -> Result<i64> {
        crate::offload(|| Ok(self.conn().query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?))
    }

    fn record_rpo_samples(&self, samples: &[RpoSample]) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO rpo_samples (datastore, at_ms, rpo_s, target_s, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for s in samples {
                    stmt.execute(params![s.datastore, millis(s.at), s.rpo_s, s.target_s, s.error])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn record_replica_lags(&self, datastore: &str, at: SystemTime, lags: &[(String, Option<f64>)]) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO replica_samples (datastore, zone, at_ms, lag_s) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (zone, lag) in lags {
                    stmt.execute(params![datastore, zone, millis(at), lag])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn last_replica_lag(&self, datastore: &str, zone: &str) -> Result<Option<(SystemTime, f64)>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, lag_s FROM replica_samples
                 WHERE datastore = ?1 AND zone = ?2 AND lag_s IS NOT NULL ORDER BY at_ms DESC LIMIT 1",
            )?;
            Ok(stmt
                .query_row(params![datastore, zone], |r| {
                    Ok((UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)?.max(0) as u64), r.get::<_, f64>(1)?))
                })
                .optional()?)
        })
    }

    fn rpo_samples(&self, datastore: &str, since: SystemTime) -> Result<Vec<RpoSample>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, rpo_s, target_s, error FROM rpo_samples WHERE datastore = ?1 AND at_ms >= ?2 ORDER BY at_ms",
            )?;
            let rows = stmt.query_map(params![datastore, millis(since)], |r| {
                Ok(RpoSample {
                    datastore: datastore.to_string(),
                    at: UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)? as u64),
                    rpo_s: r.get(1)?,
                    target_s: r.get(2)?,
                    error: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn begin_replication_run(&self, datastore: &str, at: SystemTime) -> Result<i64> {
        crate::offload(|| {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO replication_runs (datastore, started_ms) VALUES (?1, ?2)",
                params![datastore, millis(at)],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn finish_replication_run(&self, id: i64, at: SystemTime, totals: RunTotals, error: Option<&str>) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "UPDATE replication_runs SET finished_ms = ?2, copied = ?3, bytes = ?4, skipped = ?5, failed = ?6, error = ?7 WHERE id = ?1",
                params![id, millis(at), totals.copied as i64, totals.bytes as i64, totals.skipped as i64, totals.failed as i64, error],
            )?;
            Ok(())
        })
    }

    fn last_replication_run(&self, datastore: &str) -> Result<Option<(SystemTime, RunTotals, Option<String>)>> {
        crate::offload(|| {
            Ok(self
                .conn()
                .query_row(
                    "SELECT finished_ms, copied, bytes, skipped, failed, error FROM replication_runs
                     WHERE datastore = ?1 AND finished_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
                    params![datastore],
                    |r| {
                        Ok((
                            UNIX_EPOCH + Duration::from_millis(r.get::<_, i64>(0)? as u64),
                            RunTotals {
                                copied: r.get::<_, i64>(1)? as u64,
                                bytes: r.get::<_, i64>(2)? as u64,
                                skipped: r.get::<_, i64>(3)? as u64,
                                failed: r.get::<_, i64>(4)? as u64,
                            },
                            r.get(5)?,
                        ))
                    },
                )
                .optional()?)
        })
    }

    fn multipart_checkpoint(&self, datastore: &str, zone: &str, key: &str) -> Result<Option<MultipartCheckpoint>> {
        crate::offload(|| {
            let conn = self.conn();
            let head = conn
                .query_row(
                    "SELECT upload_id, source_etag, part_size FROM multipart_checkpoints WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3",
                    params![datastore, zone, key],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
                )
                .optional()?;
            let Some((upload_id, source_etag, part_size)) = head else { return Ok(None) };
            let mut stmt = conn.prepare_cached(
                "SELECT part_number, etag FROM multipart_parts WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3 ORDER BY part_number",
            )?;
            let parts = stmt
                .query_map(params![datastore, zone, key], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Some(MultipartCheckpoint { upload_id, source_etag, part_size: part_size as u64, parts }))
        })
    }

    fn start_multipart(&self, datastore: &str, zone: &str, key: &str, cp: &MultipartCheckpoint) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM multipart_parts WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3",
                params![datastore, zone, key],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO multipart_checkpoints (datastore, replica_zone, key, source_etag, upload_id, part_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![datastore, zone, key, cp.source_etag, cp.upload_id, cp.part_size as i64],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn record_part(&self, datastore: &str, zone: &str, key: &str, part: i32, etag: &str) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO multipart_parts (datastore, replica_zone, key, part_number, etag) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![datastore, zone, key, part, etag],
            )?;
            Ok(())
        })
    }

    fn record_replicated(&self, datastore: &str, rows: &[ReplicatedObject]) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO replicated_objects (datastore, zone, key, etag, source_etag, kept) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (datastore, zone, key) DO UPDATE
                     SET etag = excluded.etag, source_etag = excluded.source_etag, kept = excluded.kept",
                )?;
                for r in rows {
                    stmt.execute(params![datastore, r.zone, r.key, r.etag, r.source_etag, r.kept])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn replicated(&self, datastore: &str, zone: &str) -> Result<std::collections::HashMap<String, ReplicatedObject>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT key, etag, source_etag, kept FROM replicated_objects WHERE datastore = ?1 AND zone = ?2",
            )?;
            let rows = stmt.query_map(params![datastore, zone], |r| {
                let key: String = r.get(0)?;
                Ok((
                    key.clone(),
                    ReplicatedObject {
                        zone: zone.to_string(),
                        key,
                        etag: r.get(1)?,
                        source_etag: r.get(2)?,
                        kept: r.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn forget_replicated(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "DELETE FROM replicated_objects WHERE datastore = ?1 AND zone = ?2 AND key = ?3",
                params![datastore, zone, key],
            )?;
            Ok(())
        })
    }

    fn replace_conflicts(&self, datastore: &str, zone: &str, rows: &[(String, String, String)]) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM replication_conflicts WHERE datastore = ?1 AND zone = ?2",
                params![datastore, zone],
            )?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO replication_conflicts (datastore, zone, key, etag, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (key, etag, reason) in rows {
                    stmt.execute(params![datastore, zone, key, etag, reason])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn conflicts(&self, datastore: &str) -> Result<Vec<(String, String, String, String)>> {
        crate::offload(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT zone, key, etag, reason FROM replication_conflicts WHERE datastore = ?1 ORDER BY zone, key",
            )?;
            let rows = stmt.query_map(params![datastore], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
    }

    fn keep_replicated(&self, datastore: &str, zone: &str, key: &str, etag: &str) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "INSERT INTO replicated_objects (datastore, zone, key, etag, source_etag, kept) VALUES (?1, ?2, ?3, ?4, ?4, 1)
                 ON CONFLICT (datastore, zone, key) DO UPDATE SET etag = excluded.etag, kept = 1",
                params![datastore, zone, key, etag],
            )?;
            Ok(())
        })
    }

    fn publish(&self, name: &str, value: &str) -> Result<()> {
        crate::offload(|| {
            self.conn().execute(
                "INSERT OR REPLACE INTO published (name, value, at_ms) VALUES (?1, ?2, ?3)",
                params![name, value, millis(self.now())],
            )?;
            Ok(())
        })
    }

    fn published(&self, name: &str) -> Result<Option<String>> {
        crate::offload(|| {
            Ok(self
                .conn()
                .query_row("SELECT value FROM published WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?)
        })
    }

    fn clear_multipart(&self, datastore: &str, zone: &str, key: &str) -> Result<()> {
        crate::offload(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for table in ["multipart_parts", "multipart_checkpoints"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE datastore = ?1 AND replica_zone = ?2 AND key = ?3"),
                    params![datastore, zone, key],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn multipart_checkpoints_survive_and_clear() {
        let s = Sqlite::in_memory().unwrap();
        let cp =
            MultipartCheckpoint { upload_id: "u1".into(), source_etag: "e".into(), part_size: 8 << 20, parts: vec![] };
        s.start_multipart("a", "z2", "big.bin", &cp).unwrap();
        s.record_part("a", "z2", "big.bin", 1, "p1").unwrap();
        s.record_part("a", "z2", "big.bin", 2, "p2").unwrap();
        let got = s.multipart_checkpoint("a", "z2", "big.bin").unwrap().unwrap();
        assert_eq!(got.parts, vec![(1, "p1".to_string()), (2, "p2".to_string())]);
        s.clear_multipart("a", "z2", "big.bin").unwrap();
        assert!(s.multipart_checkpoint("a", "z2", "big.bin").unwrap().is_none());
    }

    #[test]
    fn replication_runs_are_recorded() {
        let s = Sqlite::in_memory().unwrap();
        let id = s.begin_replication_run("assets", UNIX_EPOCH).unwrap();
        assert!(s.last_replication_run("assets").unwrap().is_none(), "unfinished runs are not 'last'");
        let totals = RunTotals { copied: 3, bytes: 30, skipped: 1, failed: 0 };
        s.finish_replication_run(id, UNIX_EPOCH + Duration::from_secs(5), totals, None).unwrap();
        let (at, got, err) = s.last_replication_run("assets").unwrap().unwrap();
        assert_eq!((at, got, err), (UNIX_EPOCH + Duration::from_secs(5), totals, None));
    }
}
