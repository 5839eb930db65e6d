//! Times as drctl-control writes them. The formats themselves live in
//! `drctl_core::text`, shared by every crate; this names the ones the
//! control plane uses, under the names its modules have always used.

pub use drctl_core::text::{now_for_humans as now_rfc3339, rfc3339_millis as rfc3339, rfc3339_secs};

pub(crate) fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| std::time::SystemTime::from(t.with_timezone(&chrono::Utc)))
}
