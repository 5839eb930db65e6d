//! How the store keeps times: milliseconds since the epoch, one way for
//! every backend.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, as the store keeps times.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A stored millisecond count read back as a time (a negative one, from a
/// damaged record, as the epoch).
pub(crate) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
