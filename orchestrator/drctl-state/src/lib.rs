//! drctl's durable state.
//!
//! Three rooms: [`model`] says what drctl remembers (the records and the
//! [`Store`] trait, no storage code), [`sqlite`] keeps it in one embedded
//! SQLite file (the default, [`Sqlite`]), and [`kv`] keeps it on a
//! transactional key-value space (etcd, in `drctl-etcd`). Both backends
//! import the model; neither imports the other, except that SQLite keeps
//! the parts written once on the key-value space in a table of its own.
//! Callers hold an `Arc<State>` (`State` is `dyn Store`) and never see the
//! backend. [`seal`] holds the keys that seal secrets and personal data.

mod blocking;
/// Test code: compiled for this crate's tests and, with the `conformance`
/// feature, for another backend's (drctl-etcd's); never into the binary.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod kv;
pub mod model;
pub mod seal;
pub mod sqlite;

// The paths other crates have always used (`drctl_state::journal::...`).
pub use model::{audience, controller, erasure, evidence, journal, samples};

pub use blocking::offload;
pub use error::{Error, Result, DEFAULT_URL};
pub use model::audience::Audience;
pub use model::controller::Controller;
pub use model::erasure::{CopyState, ErasureRequest, Erasures};
pub use model::evidence::{Evidence, LagEvidence, WalSample};
pub use model::journal::{Approval, Claim, Journal};
pub use model::samples::{MultipartCheckpoint, ReplicatedObject, RpoSample, RunTotals, Samples};
pub use model::{millis, State, Store};
pub use sqlite::Sqlite;
