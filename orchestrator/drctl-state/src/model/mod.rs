//! What drctl remembers, not how: the records every backend stores and
//! the traits that say what a backend must do with them.
//!
//! Everything durable goes through [`Store`]: the execution journal and its
//! entity locks, approvals, placements ([`journal`]); tokens, the audit log,
//! incidents, maintenance and drills ([`controller`]); RPO samples and
//! replication bookkeeping ([`samples`]); subscriptions, the outbox and
//! reports ([`audience`]); the lag evidence ([`evidence`]); the erasure
//! ledger ([`erasure`]). Callers hold an `Arc<State>` (`State` is
//! `dyn Store`) and never know the backend; the URL picks it
//! ([`open`](State::open)). The embedded SQLite file
//! ([`Sqlite`](crate::Sqlite)) is the default because a DR tool must work
//! on the worst day without a database of its own to fail over first; a
//! consensus store (etcd) for highly available controllers implements the
//! same traits through [`KvStore`](crate::kv::KvStore).
//!
//! This module imports neither backend: both import it.
//!
//! Contract every backend keeps: a method's writes are atomic; reads see
//! every write that returned before them; stored states parse strictly (an
//! unknown value is an error, never a default that could run a step twice).

pub mod audience;
pub mod controller;
pub mod erasure;
pub mod evidence;
pub mod journal;
pub mod samples;
pub mod times;

pub use times::millis;

use audience::Audience;
use controller::Controller;
use erasure::Erasures;
use evidence::Evidence;
use journal::Journal;
use samples::Samples;

/// Everything a state backend stores; see the module documentation.
pub trait Store: Journal + Controller + Samples + Audience + Evidence + Erasures {}

impl<T: Journal + Controller + Samples + Audience + Evidence + Erasures> Store for T {}

/// The state store, whatever its backend.
pub type State = dyn Store;
