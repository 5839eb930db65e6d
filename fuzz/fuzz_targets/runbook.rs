//! A runbook file: a runbook or diagnostics, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = drctl_core::runbook::load_str(src, std::path::Path::new("fuzz.yaml"));
    }
});
