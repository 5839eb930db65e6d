//! Blocking store calls made from async code without stalling the runtime.

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
