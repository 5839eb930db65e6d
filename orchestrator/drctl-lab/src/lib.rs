//! The lab: a real multi-zone environment for drctl to prove its numbers on.
//!
//! - [`lab`]: a real multi-zone environment on loopback (docs/guide/lab.md): a
//!   PostgreSQL primary and streaming standby, an S3 endpoint per zone, a
//!   DNS server for `lab.`, sample services with health checks, and a
//!   steady write workload whose acknowledgements are the ground truth of
//!   a drill's RPO. Every endpoint sits behind a fault proxy.
//!
//! Drills live in `drctl-drill`; they drive a lab through its control API
//! (`drctl-lab-api`), so the controller can run them without this crate.
//!
//! The lab is driven through a small HTTP control API (`lab.json` says
//! where), so a drill works the same on a lab it started itself and on
//! one started by `drctl lab up` in another terminal.

pub mod dns;
pub mod lab;
pub mod pg;
pub mod procs;
pub mod proxy;
pub mod s3;
mod s3_versions;
pub mod safety;
pub mod service;
pub mod workload;

/// Errors of the lab; each says what to do. (A drill's are `drctl_drill::Error`.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the machine lacks (PostgreSQL's binaries).
    #[error("{0}")]
    Missing(String),
    /// A flag, file or request that cannot work as given.
    #[error("{0}")]
    BadInput(String),
    /// A file or socket the lab needs could not be made (which, and why).
    #[error("{0}")]
    Io(String),
    /// A process or server did not do what it should.
    #[error("{0}")]
    Process(String),
}

/// The credentials that sign for the lab's S3 endpoints (they check SigV4
/// signatures as S3 does): the lab's own clients, drills and the CLI on a
/// lab's topology all use these, never the caller's own keys.
pub fn credentials() -> drctl_aws::Credentials {
    drctl_aws::Credentials::Static {
        access_key: drctl_lab_api::ACCESS_KEY.into(),
        secret_key: drctl_lab_api::SECRET_KEY.into(),
    }
}
