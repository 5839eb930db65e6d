//! The one error type of the state crate, and the default state URL its
//! messages name.

use std::path::PathBuf;

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
