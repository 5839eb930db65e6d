//! Providers that talk to systems other than AWS: PostgreSQL (replication
//! lag, roles, fencing and promotion), HTTP health checks, and DNS (the
//! lab's records, switched with standard RFC 2136 updates).
//!
//! Every provider turns failures into plain words an operator can act on
//! (unreachable, wrong password, missing privilege), never a raw driver
//! error alone, and never prints a password.

pub mod dns;
pub mod http;
pub mod pg_erasure;
pub mod pg_tls;
pub mod postgres;

/// Errors from providers; each says what was being done and to what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {target}: {why}")]
    Connect { target: String, why: String },
    /// The server answered but turned the session away in `pg_hba.conf`.
    #[error("{target} turns sessions away: {why}")]
    Rejected { target: String, why: String },
    /// A query failed after connecting.
    #[error("{target}: {what}: {why}")]
    Query { target: String, what: String, why: String },
    /// The operation did not finish in time.
    #[error("{target}: no answer within {secs}s")]
    Timeout { target: String, secs: f64 },
    /// The world is not in a state the operation can proceed from.
    #[error("{0}")]
    Refused(String),
}

/// Hides a password in a connection URL (one implementation, in core).
pub use drctl_core::redact::url as redact;

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_appear_in_targets() {
        assert_eq!(super::redact("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(super::redact("postgres://app@db/x"), "postgres://app@db/x");
    }
}
