//! Times as drctl writes them: RFC 3339 in UTC, to the millisecond in
//! journals and reports, to the second in status reports and log lines.

use std::time::SystemTime;

/// RFC 3339 in UTC, seconds with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| std::time::SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// The machine's time now, to the second: for progress lines a person reads.
pub fn now_rfc3339() -> String {
    rfc3339_secs(SystemTime::now())
}

/// `at` to the second, as status reports say when they were measured.
pub fn rfc3339_secs(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
