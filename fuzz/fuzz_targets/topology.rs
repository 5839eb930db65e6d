//! A topology file, YAML or JSON: a topology or diagnostics, never a panic,
//! and every diagnostic inside the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let loaded = drctl_core::load_str(src, std::path::Path::new("fuzz.yaml"));
        // Line breaks as YAML counts them: LF, CRLF, and a lone CR.
        let lines = src.matches('\n').count() + src.matches('\r').count() - src.matches("\r\n").count();
        let lines = lines as u32 + 1;
        for d in &loaded.diagnostics {
            assert!(d.pos.line >= 1 && d.pos.line <= lines.max(1), "{d:?} outside a file of {lines} lines");
        }
    }
});
