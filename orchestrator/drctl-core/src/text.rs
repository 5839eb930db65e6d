//! How drctl writes times and markup, in one place: every report, page,
//! journal line and API answer formats a time or escapes a string the same
//! way, whichever crate prints it.

use std::time::SystemTime;

/// RFC 3339 in UTC to the second: status reports, API answers, ledgers.
pub fn rfc3339_secs(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// RFC 3339 in UTC with milliseconds: journals and execution timings.
pub fn rfc3339_millis(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// RFC 3339 in UTC with microseconds: restore points, which PostgreSQL
/// resolves to the microsecond.
pub fn rfc3339_micros(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The machine's time now, to the second: for progress lines a person
/// reads as they appear (never for a record; records take the controller's
/// clock).
pub fn now_for_humans() -> String {
    rfc3339_secs(SystemTime::now())
}

/// Escapes text for HTML: every user- or system-supplied string on a page
/// or in a report goes through it.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_at_the_precision_each_record_needs() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_551_200_123_456);
        assert_eq!(rfc3339_secs(t), "2026-12-06T10:00:00Z");
        assert_eq!(rfc3339_millis(t), "2026-12-06T10:00:00.123Z");
        assert_eq!(rfc3339_micros(t), "2026-12-06T10:00:00.123456Z");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            html_escape(r#"<a href="x">O'Neil & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }
}
