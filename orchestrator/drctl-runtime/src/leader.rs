//! Who leads: the seam between the controller and its election.
//!
//! Several `drctl serve` processes sharing one state store form one
//! controller (docs/guide/ha-etcd.md). Exactly one leads: it samples, replicates, runs
//! scheduled drills and executes; every one serves. The controller asks a
//! [`Leadership`] to lead and does its leader-only work under the token it
//! gets back, which is cancelled *before* the lease behind it can lapse —
//! so a controller cut off from the store stops acting before another can
//! have taken over. The etcd election (`drctl-etcd`) implements it; a
//! controller on the embedded store has none and always leads.

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// The controller that leads, as the election records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: String,
    /// Where it serves (its `--advertise` URL).
    pub url: String,
}

/// One controller's part in an election; see the module documentation.
pub trait Leadership: Send + Sync {
    /// This controller's id (`--id`).
    fn id(&self) -> &str;

    /// Waits until this controller leads, or `stop` is cancelled (`None`).
    /// The token returned is cancelled when it stops leading, before its
    /// lease can have run out; leader-only work runs under it.
    fn lead(&self, stop: CancellationToken) -> BoxFuture<'_, Option<CancellationToken>>;

    /// Who leads now, as the store says (`None`: nobody, an election is on).
    fn leader(&self) -> BoxFuture<'_, Option<Leader>>;

    /// Gives leadership up at once (a clean shutdown), so another need not
    /// wait for the lease to run out.
    fn resign(&self) -> BoxFuture<'_, ()>;
}
