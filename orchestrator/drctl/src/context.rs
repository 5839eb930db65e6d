//! The one wiring point: the flags resolved, once, into what commands need.
//!
//! Every command used to decide for itself which state store to open, and a
//! lab's topology changed the process environment (`AWS_ACCESS_KEY_ID`) so
//! that whatever AWS client was built later would sign with the lab's keys.
//! Now a command asks its [`Context`] for a [`Wiring`]: the state URL and
//! the AWS credentials a topology file implies, decided here and nowhere
//! else, and one shared set of [`Clients`] built from it. Nothing here
//! writes to the environment.

use crate::text::{self, Style};
use crate::Failure;
use drctl_control::declare::{Actor, Declarer};
use drctl_control::live::Clients;
use drctl_core::{Diagnostic, Severity, Topology};
use drctl_state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The process-wide choices every command shares.
pub struct Context {
    pub style: Style,
    /// `--state` (or `DRCTL_STATE`), as given.
    pub state_flag: String,
    /// Whether the state store was chosen at all (flag or environment).
    state_chosen: bool,
    /// Whether the environment names AWS keys (they win over a lab's).
    aws_keys_in_env: bool,
}

/// What one topology file decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    pub state_url: String,
    pub credentials: drctl_aws::Credentials,
}

impl Context {
    pub fn new(state_flag: String) -> Context {
        Context {
            style: Style::detect(),
            state_chosen: state_flag != drctl_state::DEFAULT_URL || std::env::var_os("DRCTL_STATE").is_some(),
            state_flag,
            aws_keys_in_env: std::env::var_os("AWS_ACCESS_KEY_ID").is_some(),
        }
    }

    /// The state store and credentials for a topology. A topology written
    /// by `drctl lab up` (a `lab.json` beside it) means the lab's own store
    /// (its failovers must not move the estate's primaries, nor the reverse)
    /// and the lab's S3 keys, unless a store or keys were chosen.
    ///
    /// This is the one place that decides it: `declare`, `executions`,
    /// `show`, `abort`, `audit` and the rest all come here with their `-f`.
    pub fn wiring(&self, topology: &Path) -> Wiring {
        if !drctl_lab_api::is_lab_topology(topology) {
            return self.flag_wiring();
        }
        self.lab_wiring(topology.parent().unwrap_or(Path::new(".")))
    }

    /// What the flags alone decide: their store, AWS's credential chain
    /// (commands about an account, not a topology: `discover`).
    pub fn flag_wiring(&self) -> Wiring {
        Wiring { state_url: self.state_flag.clone(), credentials: Default::default() }
    }

    /// The wiring of the lab in `dir`.
    pub fn lab_wiring(&self, dir: &Path) -> Wiring {
        Wiring {
            state_url: if self.state_chosen {
                self.state_flag.clone()
            } else {
                // A lab with controllers keeps its state on their etcd.
                drctl_lab_api::Manifest::read(dir).and_then(|m| m.state).unwrap_or_else(|| lab_state_url(dir))
            },
            credentials: if self.aws_keys_in_env { drctl_aws::Credentials::Chain } else { drctl_lab::credentials() },
        }
    }

    /// The state store a topology's commands use.
    pub fn state(&self, topology: &Path) -> Result<Arc<State>, Failure> {
        open_state(&self.wiring(topology).state_url)
    }

    /// The state store of a command about executions, tokens or the audit log.
    pub fn store(&self, store: &crate::flags::StoreArgs) -> Result<Arc<State>, Failure> {
        self.state(&store.file)
    }

    /// `--state` when it was typed on the command line rather than taken
    /// from `DRCTL_STATE` (which is still set where a hint is typed).
    pub fn state_from_command_line(&self) -> Option<&str> {
        let from_env = std::env::var("DRCTL_STATE").is_ok_and(|v| v == self.state_flag);
        (self.state_chosen && !from_env).then_some(self.state_flag.as_str())
    }

    /// The declarer for a topology: its store and one shared set of clients.
    pub fn declarer(&self, topology: Topology, path: &Path) -> Result<Declarer, Failure> {
        let w = self.wiring(path);
        Ok(Declarer::new(Arc::new(topology), open_state(&w.state_url)?, clients(&w)))
    }
}

/// The clients a wiring implies.
pub fn clients(w: &Wiring) -> Arc<Clients> {
    Arc::new(Clients::new(w.credentials.clone()))
}

/// The lab's own state store.
pub fn lab_state_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

/// Audits a change made from this terminal, through the one audit writer,
/// before the change: one the log cannot record is not made.
pub fn audit(state: &State, action: &str, target: &str, request: &serde_json::Value) -> Result<(), Failure> {
    drctl_control::declare::audit(state, &Actor::cli(), action, target, request)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("the audit log cannot be written, so nothing was changed: {e}")))
}

/// Threads the runtime may add for blocking work. Every state store call
/// blocks its thread (SQLite behind one lock, etcd's client), and tokio
/// replaces a blocked worker with a new thread: uncapped, a flood of
/// requests (subscriptions from many addresses) grew `serve` to 170
/// threads and as many hundreds of MiB of stacks and allocator caches. A
/// thread past the cap waits for one to finish.
const MAX_BLOCKING_THREADS: usize = 32;

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

fn state_failure(e: drctl_state::Error) -> Failure {
    match e {
        drctl_state::Error::UnsupportedUrl(_) | drctl_state::Error::Invalid(_) => Failure::bad_input(e.to_string()),
        other => Failure::Runtime(anyhow::Error::new(other).context("opening the state store")),
    }
}

/// Opens the state store a URL names: `sqlite://PATH` (embedded) or
/// `etcd://HOST:PORT[,...][/PREFIX]` (shared by highly available controllers).
pub fn open_state(url: &str) -> Result<Arc<State>, Failure> {
    let seal = audit_seal()?;
    if url.starts_with("etcd://") {
        return drctl_etcd::open_sealed(url, seal).map_err(state_failure);
    }
    State::open_sealed(url, seal).map_err(state_failure)
}

/// Where the keys of the store at `url` live (outside it).
pub fn key_paths(url: &str) -> drctl_state::seal::KeyPaths {
    match url.strip_prefix("sqlite://") {
        Some(path) => drctl_state::seal::KeyPaths::for_sqlite(Path::new(path)),
        None => drctl_state::seal::KeyPaths::for_etcd(),
    }
}

/// The head file every writer of the store at `url` appends to.
pub fn default_head_file(url: &str) -> PathBuf {
    std::env::var_os("DRCTL_AUDIT_HEAD_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| key_paths(url).audit_head())
}

/// The shortest audit key accepted: HMAC-SHA256 wants 32 random bytes.
const MIN_AUDIT_KEY_BYTES: usize = 32;

/// How the audit log is sealed, from the environment (never from a flag,
/// which `ps` would show): `DRCTL_AUDIT_KEY_FILE`, a file holding the key,
/// or `DRCTL_AUDIT_KEY`, the key itself, chain entries with HMAC-SHA256;
/// `DRCTL_AUDIT_HEAD_FILE` gets every new head appended.
pub fn audit_seal() -> Result<drctl_state::controller::AuditSeal, Failure> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let key = match (set("DRCTL_AUDIT_KEY_FILE"), set("DRCTL_AUDIT_KEY").and_then(|k| k.into_string().ok())) {
        (Some(path), _) => Some(
            std::fs::read(&path)
                .map_err(|e| Failure::bad_input(format!("DRCTL_AUDIT_KEY_FILE {}: {e}", Path::new(&path).display())))?,
        ),
        (None, Some(key)) => Some(key.into_bytes()),
        (None, None) => None,
    };
    let key = key.map(|k| k.trim_ascii().to_vec());
    if key.as_ref().is_some_and(|k| k.len() < MIN_AUDIT_KEY_BYTES) {
        return Err(Failure::bad_input(format!(
            "the audit key is shorter than {MIN_AUDIT_KEY_BYTES} bytes: make one with `openssl rand -hex 32 > audit.key`"
        )));
    }
    let head_file = set("DRCTL_AUDIT_HEAD_FILE").map(PathBuf::from);
    Ok(drctl_state::controller::AuditSeal::new(key, head_file))
}

/// A controller's part in an election.
pub type Election = Arc<dyn drctl_runtime::Leadership>;

/// The state for `drctl serve`: on etcd, with this controller standing
/// for election (docs/guide/ha-etcd.md); on SQLite, alone and always leading.
pub fn open_controller_state(
    url: &str,
    id: &str,
    advertise: &str,
    lease_ttl: std::time::Duration,
) -> Result<(Arc<State>, Option<Election>), Failure> {
    if !url.starts_with("etcd://") {
        return Ok((open_state(url)?, None));
    }
    // Engines of a highly available controller say which controller ran each step.
    drctl_engine::identify_as(&format!("{}{id}", drctl_state::kv::CONTROLLER_OWNER));
    let me = drctl_runtime::Leader { id: id.to_string(), url: advertise.to_string() };
    let (state, election) = drctl_etcd::open_controller(url, me, lease_ttl, audit_seal()?).map_err(state_failure)?;
    Ok((state, Some(election)))
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "drctl".into())
}

pub fn print_diagnostics(diags: &[Diagnostic], style: &Style) {
    for d in diags {
        eprintln!("{}", text::diagnostic(d, style));
    }
}

/// Loads a topology for a command that needs a valid one: diagnostics go to
/// stderr (warnings too), and any error is bad input.
pub fn load(path: &Path, style: &Style) -> Result<Topology, Failure> {
    let loaded = drctl_core::load(path);
    print_diagnostics(&loaded.diagnostics, style);
    match loaded.topology {
        Some(t) => Ok(t),
        None => {
            let n = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            eprintln!("{}: {n} error{}; nothing was done", path.display(), if n == 1 { "" } else { "s" });
            Err(Failure::BadInput { message: String::new(), printed: true })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(flag: &str, chosen: bool, keys: bool) -> Context {
        Context { style: Style::plain(), state_flag: flag.into(), state_chosen: chosen, aws_keys_in_env: keys }
    }

    #[test]
    fn a_lab_topology_means_the_labs_store_and_keys_unless_chosen() {
        let dir = std::env::temp_dir().join(format!("drctl-context-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let topo = dir.join("drctl.yaml");
        let plain = ctx(drctl_state::DEFAULT_URL, false, false).wiring(&topo);
        assert_eq!(plain.state_url, drctl_state::DEFAULT_URL);
        assert_eq!(plain.credentials, drctl_aws::Credentials::Chain);

        std::fs::write(dir.join("lab.json"), "{}").unwrap();
        let lab = ctx(drctl_state::DEFAULT_URL, false, false).wiring(&topo);
        assert_eq!(lab.state_url, lab_state_url(&dir));
        assert_eq!(lab.credentials, drctl_lab::credentials());
        let chosen = ctx("sqlite:///elsewhere.db", true, true).wiring(&topo);
        assert_eq!(chosen.state_url, "sqlite:///elsewhere.db");
        assert_eq!(chosen.credentials, drctl_aws::Credentials::Chain, "keys in the environment win");
        assert!(
            std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                || std::env::var("AWS_ACCESS_KEY_ID").unwrap() != "drctl-lab",
            "nothing was written to the environment"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
