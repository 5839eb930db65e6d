//! What the public faces (the page, `/api/v1/status`, the feeds, the
//! export) say of a failure: its class, never where it happened.
//!
//! A measurement's error is written for the operator: it names the URL,
//! the user, the host and the port that did not answer. The same text on
//! the public page would map the estate for anyone. So before anything
//! public is rendered, every error is replaced by its class ("the database
//! did not answer"); the operator API and the logs keep the detail.

use drctl_core::status::{StatusReport, SPLIT_BRAIN};

/// The class of a failure, in words a customer can read.
pub(crate) fn error_class(what: &str, error: &str) -> String {
    let e = error.to_ascii_lowercase();
    if error.starts_with(SPLIT_BRAIN) {
        return format!("{SPLIT_BRAIN} more than one member takes writes");
    }
    let class = if ["timed out", "timeout", "no answer within", "deadline"].iter().any(|k| e.contains(k)) {
        "did not answer in time"
    } else if [
        "password",
        "authentication",
        "permission",
        "denied",
        "forbidden",
        "unauthorized",
        "credential",
        "403",
        "401",
    ]
    .iter()
    .any(|k| e.contains(k))
    {
        "refused the controller's credentials"
    } else if ["connect", "refused", "unreachable", "resolve", "dns", "reset", "closed", "broken pipe", "network"]
        .iter()
        .any(|k| e.contains(k))
    {
        "did not answer"
    } else if ["no such", "not found", "does not exist", "no buckets", "no primary", "404"]
        .iter()
        .any(|k| e.contains(k))
    {
        "was not found"
    } else if ["unhealthy", "status 5", "answered 5"].iter().any(|k| e.contains(k)) {
        "answered with an error"
    } else {
        "could not be measured"
    };
    format!("{what} {class}")
}

/// `r` as the public may see it: every error replaced by its class.
pub(crate) fn status(r: &StatusReport) -> StatusReport {
    let mut r = r.clone();
    for d in &mut r.datastores {
        let what = if d.kind == "postgres" { "the database" } else { "the datastore" };
        d.error = d.error.as_deref().map(|e| error_class(what, e));
        for rep in &mut d.replicas {
            rep.error = rep.error.as_deref().map(|e| error_class("the replica", e));
            rep.detail = None;
        }
    }
    for s in &mut r.services {
        s.error = s.error.as_deref().map(|e| error_class("the health check", e));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_never_names_a_place() {
        let e = "cannot connect to postgres://admin:***@127.0.0.1:59992/postgres: Connection refused (os error 111)";
        let c = error_class("the database", e);
        assert_eq!(c, "the database did not answer");
        for leak in ["admin", "127.0.0.1", "59992", "postgres://"] {
            assert!(!c.contains(leak));
        }
        assert_eq!(
            error_class("the database", "password authentication failed for user \"x\""),
            "the database refused the controller's credentials"
        );
        assert_eq!(error_class("the health check", "no answer within 5s"), "the health check did not answer in time");
    }
}
