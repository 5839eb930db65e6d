//! `drctl serve`, `token`, `audit` and `status-page`: glue to drctl-serve and the state store.

use crate::flags::{CustomerLinkArgs, CustomerLinkCommand, Output, TokenCommand};
use crate::{Failure, Outcome};
use drctl_core::Topology;
use drctl_state::controller::{Role, Verified};
use drctl_state::State;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct ServeArgs {
    pub id: String,
    pub leadership: Option<Arc<dyn drctl_runtime::Leadership>>,
    pub path: PathBuf,
    pub topo: Topology,
    pub state: Arc<State>,
    pub clients: Arc<drctl_control::live::Clients>,
    pub state_url: String,
    pub listen: std::net::SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub peer_ca: Option<PathBuf>,
    pub allow: Vec<drctl_serve::Cidr>,
    pub sample_every: Duration,
    pub base_url: Option<String>,
    pub shutdown_deadline: Duration,
    pub limits: drctl_serve::Limits,
    pub notify: drctl_serve::NotifyOptions,
    pub readiness: drctl_serve::ReadinessOptions,
}

fn serve_error(e: drctl_serve::Error) -> Failure {
    match e {
        drctl_serve::Error::Tls(m) | drctl_serve::Error::BadInput(m) => Failure::bad_input(m),
        other => Failure::Runtime(anyhow::anyhow!("{other}")),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// Holds an exclusive lock on `<db>.serve-lock` while the controller runs:
/// two controllers on one SQLite file would each think they alone run its
/// executions. (On etcd the election decides who acts.)
fn lock_sqlite(url: &str) -> Result<Option<std::fs::File>, Failure> {
    use std::os::unix::io::AsRawFd;
    let Some(path) = url.strip_prefix("sqlite://") else { return Ok(None) };
    let lock = PathBuf::from(format!("{path}.serve-lock"));
    let mut open = std::fs::OpenOptions::new();
    open.create(true).truncate(false).write(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(&lock).map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", lock.display())))?;
    // SAFETY: flock on a descriptor this function owns; no memory is touched.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Failure::bad_input(format!(
            "another `drctl serve` runs on {path} (it holds {}): stop it first, or give this one its own --state",
            lock.display()
        )));
    }
    Ok(Some(file))
}

/// Checks the audit log before serving: its chain intact and the last head
/// recorded outside the store still in it (a rewritten or cut log is
/// refused, not served on).
fn verify_audit_on_start(state: &State, url: &str) -> Result<(), Failure> {
    let head_file = crate::context::default_head_file(url);
    let kept = if head_file.exists() {
        drctl_state::controller::last_head(&head_file)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", head_file.display())))?
    } else {
        None
    };
    let broken = |why: String| {
        Failure::Runtime(anyhow::anyhow!(
            "the audit log does not verify, so the controller does not start: {why}; see `drctl audit verify` (docs/hardening.md)"
        ))
    };
    match state.verify_audit().map_err(|e| Failure::Runtime(e.into()))? {
        Verified::Broken { seq, why } => Err(broken(format!("entry {seq}: {why}"))),
        Verified::Intact { .. } => {
            let entries = state.audit_entries().map_err(|e| Failure::Runtime(e.into()))?;
            match kept {
                Some(kept) if !entries.iter().any(|e| e.hash == kept) => {
                    Err(broken(format!("it no longer contains the head {kept} recorded in {}", head_file.display())))
                }
                _ => Ok(()),
            }
        }
    }
}

pub fn serve(a: ServeArgs) -> Result<Outcome, Failure> {
    if let Some(url) = &a.notify.smtp {
        drctl_serve::check_smtp(url, a.notify.smtp_insecure).map_err(Failure::bad_input)?;
    }
    let _lock = lock_sqlite(&a.state_url)?;
    verify_audit_on_start(&*a.state, &a.state_url)?;
    let opts = drctl_serve::Options {
        topology_path: a.path,
        topology: Arc::new(a.topo),
        state: a.state,
        clients: a.clients,
        state_url: a.state_url,
        listen: a.listen,
        tls: a.tls,
        peer_ca: a.peer_ca,
        allow: a.allow,
        sample_every: a.sample_every.max(Duration::from_millis(200)),
        base_url: a.base_url,
        shutdown_deadline: a.shutdown_deadline,
        reports_dir: PathBuf::from(".drctl/reports"),
        say: Arc::new(|line| eprintln!("{} {line}", drctl_core::text::now_for_humans())),
        id: a.id,
        leadership: a.leadership,
        limits: a.limits,
        notify: a.notify,
        readiness: a.readiness,
        clock: Arc::new(drctl_runtime::SystemClock),
    };
    let deadline = opts.shutdown_deadline;
    crate::context::runtime()?.block_on(async move {
        let left = drctl_serve::run(opts, stop_signal()).await.map_err(serve_error)?;
        if left.is_empty() {
            eprintln!("stopped: every task finished");
        } else {
            eprintln!(
                "stopped after {}s with these still running: {} (executions resume with `drctl resume ID` or the next `drctl serve`)",
                deadline.as_secs(),
                left.join(", ")
            );
        }
        Ok(Outcome::Done)
    })
}

/// A customer token must name a customer the topology has a contract
/// with (when the topology can be read: the store may be used without it).
fn check_customer(file: &std::path::Path, customer: &str) -> Result<(), Failure> {
    let Ok(text) = drctl_core::yaml::read_file(file) else { return Ok(()) };
    let Some(topology) = drctl_core::load_str(&text, file).topology else { return Ok(()) };
    if topology.contracts.iter().any(|c| c.customer == customer) {
        return Ok(());
    }
    let known: Vec<&str> = topology.contracts.iter().map(|c| c.customer.as_str()).collect();
    Err(Failure::bad_input(format!(
        "{} has no contract with customer `{customer}` ({}): a customer token sees one contract",
        file.display(),
        if known.is_empty() { "it has no `contracts`".to_string() } else { format!("customers: {}", known.join(", ")) }
    )))
}

/// `drctl subscriptions list`.
/// `text` safe for a terminal: control characters (an escape sequence a
/// subscriber typed into their address, say) shown as `\u{..}`, never run.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

pub fn subscriptions_list(state: &State, json: bool) -> Result<Outcome, Failure> {
    let all = drctl_serve::subscriptions_json(state).map_err(|e| Failure::Runtime(e.into()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all).map_err(anyhow::Error::from)?);
        return Ok(Outcome::Done);
    }
    let rows = all.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no subscriptions (the status page's form, or POST /api/v1/subscriptions)");
        return Ok(Outcome::Done);
    }
    println!(
        "{:>4}  {:<8} {:<13} {:<40} {:>9} {:>7} {:>8}  LAST ERROR",
        "ID", "CHANNEL", "STATE", "TO", "DELIVERED", "PENDING", "GIVEN UP"
    );
    for r in rows {
        let state = match (r["state"].as_str().unwrap_or("?"), r["failing"] == true) {
            ("active", true) => "active,failing".to_string(),
            (s, _) => s.to_string(),
        };
        let to = printable(r["target"].as_str().unwrap_or_default());
        let services = r["services"].as_array().map(|a| a.len()).unwrap_or(0);
        let to = if services == 0 { to.to_string() } else { format!("{to} ({services} services)") };
        let n = |k: &str| r["deliveries"][k].as_u64().unwrap_or(0).to_string();
        println!(
            "{:>4}  {:<8} {:<13} {:<40} {:>9} {:>7} {:>8}  {}",
            r["id"].as_i64().unwrap_or(0),
            r["channel"].as_str().unwrap_or_default(),
            state,
            to,
            n("delivered"),
            n("pending"),
            n("given_up"),
            // The last error matters while deliveries fail (JSON keeps it always).
            printable(r["last_error"].as_str().filter(|_| r["failing"] == true).unwrap_or("-"))
        );
    }
    Ok(Outcome::Done)
}

pub fn token(state: &State, file: &std::path::Path, cmd: TokenCommand) -> Result<Outcome, Failure> {
    match cmd {
        TokenCommand::Create { name, role, customer } => {
            let role = Role::parse(&role).ok_or_else(|| Failure::bad_input(format!("role `{role}`")))?;
            if let Some(c) = customer.as_deref().filter(|_| role == Role::Customer) {
                check_customer(file, c)?;
            }
            crate::context::audit(
                state,
                "token.create",
                &format!("token {name}"),
                &serde_json::json!({"name": name, "role": role.as_str(), "customer": customer}),
            )?;
            let secret = state.create_token(&name, role, customer.as_deref()).map_err(crate::execute::state_error)?;
            match &customer {
                Some(c) => {
                    eprintln!("token `{name}` (customer {c}) created; it is shown once, give it to them safely:")
                }
                None => eprintln!(
                    "token `{name}` ({}) created; it is shown once, keep it in a secret store:",
                    role.as_str()
                ),
            }
            println!("{secret}");
            Ok(Outcome::Done)
        }
        TokenCommand::List { output } => {
            let tokens = state.tokens().map_err(|e| Failure::Runtime(e.into()))?;
            if output == Output::Json {
                let v: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "name": t.name, "role": t.role.as_str(), "customer": t.customer,
                            "created_at": drctl_control::failover::rfc3339(t.created_at),
                            "revoked_at": t.revoked_at.map(drctl_control::failover::rfc3339),
                            "last_used_at": t.last_used_at.map(drctl_control::failover::rfc3339),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?);
            } else {
                println!("{:>4}  {:<20} {:<10} {:<24} STATE", "ID", "NAME", "ROLE", "CREATED");
                for t in &tokens {
                    let st = match (t.revoked_at, t.last_used_at) {
                        (Some(r), _) => format!("revoked {}", drctl_control::failover::rfc3339(r)),
                        (None, Some(u)) => format!("last used {}", drctl_control::failover::rfc3339(u)),
                        (None, None) => "never used".into(),
                    };
                    println!(
                        "{:>4}  {:<20} {:<10} {:<24} {st}",
                        t.id,
                        t.name,
                        t.role.as_str(),
                        drctl_control::failover::rfc3339(t.created_at)
                    );
                }
            }
            Ok(Outcome::Done)
        }
        TokenCommand::Revoke { name } => {
            crate::context::audit(state, "token.revoke", &format!("token {name}"), &serde_json::json!({"name": name}))?;
            let t = state.revoke_token(&name).map_err(crate::execute::state_error)?;
            println!("revoked token `{}` ({})", t.name, t.role.as_str());
            Ok(Outcome::Done)
        }
    }
}

/// The longest a customer link may work: a link in someone's mailbox is a
/// standing key to the page; a quarter is as long as a contract review.
const LINK_TTL_MAX: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

/// `drctl customer-link`: make, list and revoke links to a customer's page.
pub fn customer_link(state: &State, args: CustomerLinkArgs) -> Result<Outcome, Failure> {
    let now = SystemTime::now();
    match (args.cmd, args.customer) {
        (Some(CustomerLinkCommand::List { output }), _) => {
            let links = state.customer_links().map_err(|e| Failure::Runtime(e.into()))?;
            let row = |l: &drctl_state::audience::CustomerLink| {
                let st = match l.revoked_ms {
                    Some(r) => format!("revoked {}", at(from_ms(r))),
                    None if !l.usable(now) => "expired".into(),
                    None => "works".into(),
                };
                (st, at(from_ms(l.expires_ms)))
            };
            if output == Output::Json {
                let v: Vec<serde_json::Value> = links
                    .iter()
                    .map(|l| {
                        let (st, until) = row(l);
                        serde_json::json!({"id": l.id, "customer": l.customer, "state": st, "expires_at": until,
                            "created_at": at(from_ms(l.created_ms)), "created_by": l.created_by, "sessions": l.sessions.len()})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?);
            } else {
                println!("{:<12}  {:<16} {:<24} STATE", "ID", "CUSTOMER", "EXPIRES");
                for l in &links {
                    let (st, until) = row(l);
                    println!("{:<12}  {:<16} {:<24} {st}", l.id, l.customer, until);
                }
            }
            Ok(Outcome::Done)
        }
        (Some(CustomerLinkCommand::Revoke { id }), _) => {
            crate::context::audit(
                state,
                "customer_link.revoke",
                &format!("link {id}"),
                &serde_json::json!({"id": id}),
            )?;
            let l = state.revoke_customer_link(&id, now).map_err(crate::execute::state_error)?;
            println!("revoked link {} to {}'s page; browsers it opened are logged out", l.id, l.customer);
            Ok(Outcome::Done)
        }
        (None, None) => Err(Failure::bad_input(
            "name the customer (`drctl customer-link CUSTOMER --ttl 7d`), or `list` / `revoke ID`",
        )),
        (None, Some(customer)) => {
            if args.ttl.is_zero() || args.ttl > LINK_TTL_MAX {
                return Err(Failure::bad_input("--ttl: between 1s and 90d"));
            }
            let base = args.base_url.trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(Failure::bad_input(format!(
                    "--base-url `{base}`: an http(s) URL, e.g. https://status.example.com"
                )));
            }
            check_contract(&args.store.file, &customer)?;
            let expires = now + args.ttl;
            crate::context::audit(
                state,
                "customer_link.create",
                &format!("customer {customer}"),
                &serde_json::json!({"customer": customer, "expires_at": at(expires)}),
            )?;
            let who = drctl_control::declare::login_name();
            let made =
                state.create_customer_link(&customer, &who, expires, now).map_err(crate::execute::state_error)?;
            println!("{base}/customer-link/{}", made.secret);
            eprintln!(
                "link {} opens {customer}'s contract page until {}; it is shown once. Revoke it: `{}`",
                made.link.id,
                at(expires),
                drctl_core::hint::drctl(&format!("customer-link revoke {}", made.link.id))
            );
            Ok(Outcome::Done)
        }
    }
}

fn from_ms(ms: i64) -> SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// A link is to a customer the topology has a contract with.
fn check_contract(file: &std::path::Path, customer: &str) -> Result<(), Failure> {
    let loaded = drctl_core::load(file);
    let Some(topology) = loaded.topology else {
        return Err(Failure::bad_input(format!(
            "{}: a customer link needs the topology whose contract it opens (-f FILE)",
            file.display()
        )));
    };
    if topology.contracts.iter().any(|c| c.customer == customer) {
        return Ok(());
    }
    let known: Vec<&str> = topology.contracts.iter().map(|c| c.customer.as_str()).collect();
    let hint = drctl_core::diag::closest_name(customer, known.iter().copied())
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    Err(Failure::bad_input(format!(
        "{} has no contract with customer `{customer}`: {hint}({})",
        file.display(),
        if known.is_empty() { "it has no `contracts`".to_string() } else { format!("customers: {}", known.join(", ")) }
    )))
}

fn at(t: SystemTime) -> String {
    drctl_control::failover::rfc3339(t)
}

/// What an audit entry records: `done` (a change was made), `refused`
/// (asked, refused, nothing changed) or `dry_run` (a plan, nothing changed).
fn audit_outcome(action: &str, request: &serde_json::Value) -> String {
    if let Some(o) = request["outcome"].as_str() {
        return o.to_string();
    }
    let o = if action.ends_with(".refused") {
        "refused"
    } else if action.ends_with(".dry_run") {
        "dry_run"
    } else {
        "done"
    };
    o.to_string()
}

pub fn audit_list(state: &State, json: bool) -> Result<Outcome, Failure> {
    let entries = state.audit_entries().map_err(|e| Failure::Runtime(e.into()))?;
    if json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let request = serde_json::from_str::<serde_json::Value>(&e.request).unwrap_or_default();
                serde_json::json!({
                    "seq": e.seq, "at": at(e.at), "actor": e.actor, "source": e.source, "action": e.action,
                    "target": e.target, "outcome": audit_outcome(&e.action, &request), "request": request,
                    "hash": e.hash, "prev_hash": e.prev_hash,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?);
    } else {
        for e in &entries {
            println!(
                "{:>5}  {}  {:<12} {:<15} {:<20} {}  {}",
                e.seq,
                at(e.at),
                printable(&e.actor),
                printable(&e.source),
                printable(&e.action),
                printable(&e.target),
                printable(&e.request)
            );
        }
    }
    Ok(Outcome::Done)
}

/// `drctl keys show|rotate`.
pub fn keys(paths: &drctl_state::seal::KeyPaths, cmd: crate::flags::KeysCommand) -> Result<Outcome, Failure> {
    use drctl_state::seal::Keyring;
    let fail = |e: drctl_state::Error| Failure::Runtime(anyhow::Error::new(e));
    let env_key = std::env::var("DRCTL_KEY").is_ok_and(|k| !k.trim().is_empty());
    match cmd {
        crate::flags::KeysCommand::Show => {
            if env_key {
                let ring =
                    Keyring::parse(&std::env::var("DRCTL_KEY").unwrap_or_default(), "DRCTL_KEY").map_err(fail)?;
                println!("data key:  DRCTL_KEY (ids {})", ring.ids().join(", "));
            } else {
                let ring = Keyring::load_or_create(&paths.data_key()).map_err(fail)?;
                println!("data key:  {} (ids {})", paths.data_key().display(), ring.ids().join(", "));
            }
            let audit = Keyring::load_or_create(&paths.audit_key()).map_err(fail)?;
            println!("audit key: {} (ids {})", paths.audit_key().display(), audit.ids().join(", "));
            println!("audit head file: {}", paths.audit_head().display());
        }
        crate::flags::KeysCommand::Rotate => {
            if env_key {
                return Err(Failure::bad_input(
                    "the data key comes from DRCTL_KEY: add a new key at its end (`openssl rand -hex 32`, comma-separated, the last one current) and keep the old ones",
                ));
            }
            let data = Keyring::rotate(&paths.data_key()).map_err(fail)?;
            let audit = Keyring::rotate(&paths.audit_key()).map_err(fail)?;
            println!("data key {} now current ({})", data.current().0, paths.data_key().display());
            println!("audit key {} now current ({})", audit.current().0, paths.audit_key().display());
            println!(
                "older keys are kept: what they sealed still opens, and the audit entries they chained still verify"
            );
            println!("copy both files to every controller and CLI that shares this state before they write");
        }
    }
    Ok(Outcome::Done)
}

pub fn audit_verify(state: &State, kept: Option<&str>) -> Result<Outcome, Failure> {
    let outcome = audit_verify_chain(state, kept)?;
    if let Ok(Verified::Intact { keys, .. }) = state.verify_audit() {
        if keys.is_empty() {
            eprintln!(
                "warning: the audit log is NOT keyed: anyone who can write the state store can rewrite it consistently; keep its head elsewhere (--head-file)"
            );
        } else {
            println!("keyed: chained with HMAC-SHA256 under audit key {}", keys.join(", "));
        }
    }
    Ok(outcome)
}

fn audit_verify_chain(state: &State, kept: Option<&str>) -> Result<Outcome, Failure> {
    match state.verify_audit().map_err(|e| Failure::Runtime(e.into()))? {
        Verified::Intact { entries, head, .. } if kept.is_some_and(|k| k != head) => {
            let kept = kept.unwrap_or_default();
            let all = state.audit_entries().map_err(|e| Failure::Runtime(e.into()))?;
            match all.iter().find(|e| e.hash == kept) {
                Some(e) => {
                    println!(
                        "audit log intact: {entries} entries; the head you kept is entry {} of them; head now {head}",
                        e.seq
                    );
                    Ok(Outcome::Done)
                }
                None => {
                    eprintln!(
                        "audit log BROKEN: it no longer contains the head you kept ({kept}); entries after some point were removed or the log was rewritten ({entries} entries now, head {head})"
                    );
                    Ok(Outcome::Failed)
                }
            }
        }
        Verified::Intact { entries, head, .. } => {
            println!("audit log intact: {entries} entries; head {head}");
            println!("(keep the head somewhere else: a later verify proves nothing before it was changed)");
            Ok(Outcome::Done)
        }
        Verified::Broken { seq, why } => {
            eprintln!("audit log BROKEN at entry {seq}: {why}");
            Ok(Outcome::Failed)
        }
    }
}

pub async fn export(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<drctl_control::live::Clients>,
    dir: &Path,
    base_url: &str,
) -> Result<Outcome, Failure> {
    let files = drctl_serve::export(Arc::new(topo), state, clients, dir, base_url).await.map_err(serve_error)?;
    for f in &files {
        println!("{}", f.display());
    }
    eprintln!(
        "the status page and its JSON are in {}: host them anywhere static (another region's bucket)",
        dir.display()
    );
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_run() {
        let shown = super::printable("a\u{1b}[2Jb\u{7}c");
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    }
}
