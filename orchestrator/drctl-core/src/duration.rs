//! Durations as written in drctl's files and flags: `250ms`, `30s`, `2m`,
//! `1h30m`, `4h`, or a bare number of seconds (`90`, `0.5`).
//!
//! Written by hand rather than with humantime because the format is part of
//! the product contract (bare numbers are seconds, no spaces, no months) and
//! must not drift with a dependency.

use std::time::Duration;

/// Parses a duration, or says in words what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0f64;
    let mut rest = s;
    let mut last_unit_rank = usize::MAX;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("`{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (factor, rank) = match unit {
            "d" => (86_400.0, 0),
            "h" => (3_600.0, 1),
            "m" => (60.0, 2),
            "s" => (1.0, 3),
            "ms" => (0.001, 4),
            "" => return Err(format!("`{text}`: a unit is missing after {number}")),
            other => return Err(format!("`{text}`: unknown unit `{other}`")),
        };
        if rank <= last_unit_rank && last_unit_rank != usize::MAX {
            return Err(format!("`{text}`: units must go from largest to smallest, each once"));
        }
        last_unit_rank = rank;
        total += number * factor;
    }
    seconds(total, text)
}

/// A number of seconds as a duration, in the same range as written ones
/// (zero to ten years): `within: 1e20` is an error, never a panic.
pub fn from_seconds(secs: f64) -> Result<Duration, String> {
    seconds(secs, &secs.to_string())
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a duration of zero or more"));
    }
    if secs > 10.0 * 365.0 * 86_400.0 {
        return Err(format!("`{text}` is longer than ten years"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way a person writes it: `250ms`, `45s`, `1m30s`, `4h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 10_000 && !ms.is_multiple_of(1000) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let mut secs = d.as_secs_f64().round() as u64;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 || out.is_empty() {
        out.push_str(&format!("{secs}s"));
    }
    out
}

/// Formats a number of seconds (as in the JSON outputs) with [`format_duration`].
pub fn format_secs(secs: f64) -> String {
    format_duration(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_of_the_contract() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("4h"), Duration::from_secs(4 * 3600));
        assert_eq!(ok("90"), Duration::from_secs(90));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("1m30s500ms"), Duration::from_millis(90_500));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "s", "30x", "5 m", "1m1h", "1s1s", "-3", "1h30", "abc", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_like_a_person() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
