//! Who asks for a change, and the audit record written before it is made:
//! shared by every operation that changes something (declarations,
//! decisions on steps, erasures), so each names its actor the same way.

use crate::Error;
use drctl_state::State;

/// Who asks, and through what: kept with every audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, an OS user, `scheduler`, `drill`.
    pub name: String,
    /// `cli`, a client address, `controller`.
    pub source: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Actor {
        Actor { name: name.into(), source: source.into() }
    }

    /// The person at this terminal, by their login name.
    pub fn cli() -> Actor {
        Actor::new(login_name(), "cli")
    }
}

/// The login name of whoever runs this process: `$USER` (or `$LOGNAME`)
/// when set, else the name the password database gives this process's
/// user id (a cron job, a `systemd` unit or `env -i` has no `$USER`, and an
/// audit entry by "unknown" tells the security team nothing), else `uid N`.
pub fn login_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return v;
        }
    }
    // The process's own /proc entry belongs to its effective user id.
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)) else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| name_of_uid(&p, uid))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The user name `passwd` (the text of /etc/passwd) gives `uid`.
fn name_of_uid(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Writes one audit entry. A change whose entry cannot be written does not
/// happen: callers write the entry before they act and stop on an error.
pub fn audit(state: &State, who: &Actor, action: &str, target: &str, request: &serde_json::Value) -> Result<(), Error> {
    state.audit(&who.name, &who.source, action, target, request)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_named_by_the_password_database() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
        assert_eq!(name_of_uid(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_of_uid(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_of_uid(passwd, 42), None);
    }
}
