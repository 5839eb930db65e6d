//! drctl's core: the topology of services and datastores, its validation,
//! and failover planning. Everything here is pure and fast; anything that
//! touches the world (databases, AWS, the network) lives in other crates.

pub mod action;
pub mod chaos;
pub mod decode;
pub mod diag;
pub mod duration;
pub mod graph;
pub mod hint;
pub mod json;
pub mod pgurl;
pub mod plan;
pub mod redact;
pub mod restore_test;
pub mod runbook;
pub mod schedule;
pub mod schema;
pub mod status;
pub mod synth;
pub mod text;
pub mod topology;
pub mod tree;
pub mod yaml;

pub use diag::{Diagnostic, Pos, Severity};
pub use plan::{plan, Observations, Plan, Scope};
pub use topology::{load, load_str, Loaded, Topology};

/// Every message in an error's source chain, joined with `: `: a client
/// library's own message ("error sending request", "dispatch failure")
/// rarely says what went wrong; its sources do.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

fn did_you_mean(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(": did you mean `{h}`? ")).unwrap_or_else(|| " ".into())
}

/// Errors from planning. File problems are [`Diagnostic`]s instead, because
/// they are reported all at once rather than one at a time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `--zone` names a zone that the topology does not declare.
    #[error("zone `{name}` is not in the topology{}(zones: {known})", did_you_mean(hint))]
    UnknownZone { name: String, known: String, hint: Option<String> },
    /// `--region` names a region that no zone is in.
    #[error("region `{name}` is not in the topology{}(regions: {known})", did_you_mean(hint))]
    UnknownRegion { name: String, known: String, hint: Option<String> },
    /// `--target` names an entity that the topology does not declare.
    #[error("`{name}` is not a datastore or service of the topology{}", hint.as_ref().map(|h| format!(": did you mean `{h}`?")).unwrap_or_default())]
    UnknownTarget { name: String, hint: Option<String> },
    /// `--parallel 0` would never run anything.
    #[error("--parallel must be at least 1")]
    ZeroParallel,
}
