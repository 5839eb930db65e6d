//! The one redaction: never a panic, and a planted password never survives.
//!
//! The planted password is one the input does not already contain: an
//! input may itself hold the word (libFuzzer found `…SECRETPWET…`), and a
//! password the input wrote outside any URL or `password=` pair is not a
//! secret the redaction can know about.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = drctl_core::redact::text(text);
        let _ = drctl_core::redact::url(text);
        let mut secret = String::from("SECRETPW");
        while text.contains(&secret) {
            secret.push('Q');
        }
        let planted = format!("{text} postgres://u:{secret}@h/db?password={secret}2 {text}");
        let out = drctl_core::redact::text(&planted);
        assert!(!out.contains(&secret), "{planted:?} -> {out:?}");
    }
});
