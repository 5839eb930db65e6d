//! A duration as written in files and flags: parsed within range or
//! refused in words; what parses formats and parses back to about itself.
#![no_main]
use drctl_core::duration::{format_duration, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = parse_duration(text) {
            assert!(d.as_secs() <= 10 * 365 * 86_400, "{text:?} parsed past ten years");
            let again = parse_duration(&format_duration(d)).expect("a formatted duration parses");
            let (a, b) = (d.as_secs_f64(), again.as_secs_f64());
            assert!((a - b).abs() <= 0.051 * a.max(1.0), "{text:?}: {a} formatted and parsed as {b}");
        }
    }
});
