//! The commands drctl prints as hints, written so that they work when typed
//! exactly as printed.
//!
//! A hint such as `drctl abort ID` used to be right only for the default
//! state store: a commander working on the lab (`-f .drctl/lab/drctl.yaml`)
//! typed it and reached another store, which did not know the execution.
//! The process that prints hints knows which topology file and which
//! `--state` chose its store; it says so once, at start, with
//! [`use_store_flags`], and every hint built with [`drctl`] then carries the
//! same flags. Library crates print hints through [`drctl`] without knowing
//! which flags those are.

use std::sync::OnceLock;

static STORE_FLAGS: OnceLock<String> = OnceLock::new();

/// Records the flags that choose this process's state store: `-f FILE` when
/// the topology is not the default `drctl.yaml`, `--state URL` when one was
/// given on the command line (an environment variable is still set where the
/// hint is typed). The first call wins.
pub fn use_store_flags(file: Option<&std::path::Path>, state_flag: Option<&str>) {
    let mut flags = String::new();
    if let Some(f) = file.filter(|f| *f != std::path::Path::new(DEFAULT_FILE)) {
        flags.push_str(" -f ");
        flags.push_str(&quote(&f.to_string_lossy()));
    }
    if let Some(s) = state_flag {
        flags.push_str(" --state ");
        flags.push_str(&quote(&crate::redact::text(s)));
    }
    let _ = STORE_FLAGS.set(flags);
}

/// The topology file commands read when `-f` is not given.
pub const DEFAULT_FILE: &str = "drctl.yaml";

/// `drctl ARGS` followed by the flags that reach this process's state
/// store: `drctl("abort 20261206-1200-ab12")`.
pub fn drctl(args: &str) -> String {
    format!("drctl {args}{}", STORE_FLAGS.get().map(String::as_str).unwrap_or(""))
}

/// A word as a POSIX shell reads it back: unchanged when it is plain.
fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_them() {
        assert_eq!(quote(".drctl/lab/drctl.yaml"), ".drctl/lab/drctl.yaml");
        assert_eq!(quote("my lab/drctl.yaml"), "'my lab/drctl.yaml'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
