//! DR drills: drctl proving its own numbers.
//!
//! - [`drill`]: runs a chaos experiment (SPEC §7) against a lab, or against
//!   any topology for the faults that need no lab: steady state, inject,
//!   detect, declare (through the one declarer every declaration takes),
//!   measure, heal, report.
//! - [`lifecycle`]: what is recorded around a drill (audit first, begun,
//!   announced, finished), the same from the CLI and the controller.
//! - [`report`]: the report as JSON, Markdown and self-contained HTML.
//!
//! A lab is driven only through its control API ([`drctl_lab_api`]), so a
//! drill works the same on a lab it started itself, on one started by
//! `drctl lab up` in another terminal, and from the controller, which does
//! not link the lab's servers.

pub mod drill;
pub mod lifecycle;
pub mod report;

/// Why a drill could not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An experiment that cannot run on this topology as written.
    #[error("{0}")]
    BadInput(String),
    /// The system is not healthy enough to start a drill on.
    #[error("refusing to start the drill: the system is not in a steady state: {0}")]
    Unsteady(String),
    /// The lab's control API failed.
    #[error(transparent)]
    Lab(#[from] drctl_lab_api::Error),
    /// Declaring or executing the failover failed.
    #[error("the drill's failover: {0}")]
    Declare(#[from] drctl_control::Error),
    /// A fault injected outside a lab (SQL on a real PostgreSQL) failed.
    #[error("{0}")]
    Inject(String),
}
