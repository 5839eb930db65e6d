//! The lab, chaos and drills: drctl proving its own numbers.
//!
//! - [`lab`]: a real multi-zone environment on loopback (SPEC §8): a
//!   PostgreSQL primary and streaming standby, an S3 endpoint per zone, a
//!   DNS server for `lab.`, sample services with health checks, and a
//!   steady write workload whose acknowledgements are the ground truth of
//!   a drill's RPO. Every endpoint sits behind a fault proxy.
//! - [`drill`]: runs a chaos experiment (SPEC §7) against it, or against
//!   any topology for the faults that need no lab: steady state, inject,
//!   detect, declare, execute, verify, heal, report.
//!
//! The lab is driven through a small HTTP control API (`lab.json` says
//! where), so a drill works the same on a lab it started itself and on
//! one started by `drctl lab up` in another terminal.

pub mod dns;
pub mod drill;
pub mod lab;
pub mod pg;
pub mod proxy;
pub mod report;
pub mod s3;
pub mod service;
pub mod workload;

/// Errors of the lab and drills; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the machine lacks (PostgreSQL's binaries).
    #[error("{0}")]
    Missing(String),
    /// A flag, file or request that cannot work as given.
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Io(String),
    /// The system is not healthy enough to start a drill on.
    #[error("refusing to start the drill: the system is not in a steady state: {0}")]
    Unsteady(String),
    /// A process or server did not do what it should.
    #[error("{0}")]
    Process(String),
}

/// Makes this process's AWS SDK use the lab's S3 credentials (the lab's
/// endpoints check SigV4 signatures like S3 does). Call before any AWS
/// client is built; the lab's topology names only lab endpoints.
pub fn use_lab_credentials() {
    // Edition 2021: set_var is safe; called before clients (and their
    // threads reading the environment) exist.
    std::env::set_var("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY);
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
}
