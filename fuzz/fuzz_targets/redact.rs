//! The one redaction: never a panic, and a planted password never survives.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = drctl_core::redact::text(text);
        let _ = drctl_core::redact::url(text);
        let planted = format!("{text} postgres://u:SECRETPW@h/db?password=SECRETPW2 {text}");
        let out = drctl_core::redact::text(&planted);
        assert!(!out.contains("SECRETPW"), "{planted:?} -> {out:?}");
    }
});
