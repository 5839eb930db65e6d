//! The overrides a commander may give a declaration, each named and narrow.
//!
//! One `--force` that waived the lag check, the catch-up and the fence at
//! once trained tired commanders to reach for the flag that can leave two
//! writable primaries. Each check that can refuse a promote now names the
//! one override that lifts it, and each override lifts only its own check:
//! `--accept-lag` (a standby beyond `max_lag`, or of unknown lag),
//! `--skip-catch-up` (promote before the standby replayed the fenced
//! primary's last write), `--unfenced DATASTORE/ZONE` (promote beside that
//! one member although it could be fenced neither way). `--force` is the
//! first two and nothing more: no flag waives a fence without naming the
//! member. The overrides travel with the declaration into the journal, and
//! those a `retry` adds are journaled with who added them.

use serde::{Deserialize, Serialize};

/// The flag that lifts a lag refusal.
pub const ACCEPT_LAG: &str = "--accept-lag";
/// The flag that lifts a catch-up refusal.
pub const SKIP_CATCH_UP: &str = "--skip-catch-up";
/// The most `unfenced` members one request may name.
pub const MAX_UNFENCED: usize = 64;

/// The flag that lifts the fence refusal of one member, as it is typed.
pub fn unfenced_flag(datastore: &str, zone: &str) -> String {
    format!("--unfenced {datastore}/{zone}")
}

/// Which checks the commander lifted. The operator API's and the journal's
/// JSON form: `{accept_lag, skip_catch_up, unfenced: ["DATASTORE/ZONE"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub accept_lag: bool,
    #[serde(default)]
    pub skip_catch_up: bool,
    /// Members promoted beside although they could not be fenced, each
    /// `DATASTORE/ZONE`.
    #[serde(default)]
    pub unfenced: Vec<String>,
}

impl Overrides {
    /// What `--force` means: the lag and the catch-up, never a fence.
    pub fn force() -> Overrides {
        Overrides { accept_lag: true, skip_catch_up: true, unfenced: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        !self.accept_lag && !self.skip_catch_up && self.unfenced.is_empty()
    }

    /// Whether the member of `datastore` in `zone` may stay unfenced.
    pub fn unfenced(&self, datastore: &str, zone: &str) -> bool {
        self.unfenced.iter().any(|u| u.split_once('/') == Some((datastore, zone)))
    }

    /// Adds another set (a retry's) to these.
    pub fn merge(&mut self, other: &Overrides) {
        self.accept_lag |= other.accept_lag;
        self.skip_catch_up |= other.skip_catch_up;
        for u in &other.unfenced {
            if !self.unfenced.contains(u) {
                self.unfenced.push(u.clone());
            }
        }
    }

    /// The flags, as a commander types them.
    pub fn flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.accept_lag {
            out.push(ACCEPT_LAG.to_string());
        }
        if self.skip_catch_up {
            out.push(SKIP_CATCH_UP.to_string());
        }
        out.extend(self.unfenced.iter().map(|u| format!("--unfenced {u}")));
        out
    }

    /// Checks each `unfenced` entry's form (`DATASTORE/ZONE`) and how many there are.
    pub fn check(&self) -> Result<(), crate::Request> {
        if self.unfenced.len() > MAX_UNFENCED {
            return Err(crate::Request::BadRequest {
                field: "overrides.unfenced".into(),
                why: format!("names more than {MAX_UNFENCED} members"),
            });
        }
        for u in &self.unfenced {
            let ok = u.len() <= 300
                && u.split_once('/').is_some_and(|(d, z)| !d.is_empty() && !z.is_empty() && !z.contains('/'));
            if !ok {
                return Err(crate::Request::BadRequest {
                    field: "overrides.unfenced".into(),
                    why: format!("`{u}` is not DATASTORE/ZONE (e.g. orders-db/use1-az1, as a refusal prints it)"),
                });
            }
        }
        Ok(())
    }
}

/// The overrides a refusal or a failed step's error names (each check's
/// words end with the one flag that lifts it), in the order named.
pub fn named_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let w = w.trim_matches(|c: char| matches!(c, '`' | ',' | ';' | ':' | '.' | '(' | ')'));
        let flag = match w {
            ACCEPT_LAG | SKIP_CATCH_UP => Some(w.to_string()),
            "--unfenced" => words.peek().map(|n| {
                let member = n.trim_matches(|c: char| matches!(c, '`' | ',' | ';' | ':' | '(' | ')'));
                format!("--unfenced {}", member.trim_end_matches('.'))
            }),
            _ => None,
        };
        if let Some(f) = flag.filter(|f| !out.contains(f)) {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_is_the_lag_and_the_catch_up_and_never_a_fence() {
        let f = Overrides::force();
        assert!(f.accept_lag && f.skip_catch_up);
        assert!(!f.unfenced("orders-db", "az1"), "--force waives no fence");
        assert_eq!(f.flags(), ["--accept-lag", "--skip-catch-up"]);
    }

    #[test]
    fn an_unfenced_member_is_named_exactly() {
        let o = Overrides { unfenced: vec!["orders-db/az1".into()], ..Overrides::default() };
        assert!(o.unfenced("orders-db", "az1"));
        assert!(!o.unfenced("orders-db", "az2") && !o.unfenced("ledger", "az1"));
        assert!(o.check().is_ok());
        for bad in ["orders-db", "/az1", "orders-db/", "a/b/c"] {
            let o = Overrides { unfenced: vec![bad.into()], ..Overrides::default() };
            assert!(o.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_overrides_a_refusal_names_are_found_in_its_words() {
        let t = "the standby in az2 is 12.0s behind, over max_lag 10s: --accept-lag to promote anyway";
        assert_eq!(named_in(t), ["--accept-lag"]);
        let t = "could leave two writable primaries. Give it `fence: { command: [...] }`, or `--unfenced orders-db/az1`; nothing was changed";
        assert_eq!(named_in(t), ["--unfenced orders-db/az1"]);
        assert!(named_in("a promote failed: connection refused").is_empty());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<Overrides>(r#"{"accept_lag": true, "force": true}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `force`"), "{e}");
    }
}
