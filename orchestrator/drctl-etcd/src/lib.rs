//! drctl's state and leader election on etcd (docs/guide/ha-etcd.md).
//!
//! A controller whose state sits in one local file dies with its zone, the
//! day it exists for. With `--state etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`
//! every piece of state lives in an etcd cluster, the consensus store
//! Kubernetes and Patroni trust, instead of one invented here; several
//! `drctl serve` processes share it and one of them leads.
//!
//! - [`EtcdKv`] is drctl-state's [`Kv`] on etcd's v3 API: the whole store
//!   ([`drctl_state::kv::KvStore`]) runs on its get, range and compare-and-
//!   swap transactions. The trait is synchronous (SQLite's is), so the etcd
//!   client runs on a small runtime of its own and each call waits for its
//!   answer, at most [`OP_TIMEOUT`].
//! - [`Election`] is a [`Leadership`]: an etcd lease (`--lease-ttl`) and a
//!   leader key created only when absent, bound to the lease. While it
//!   leads, every leader-only write carries "the leader key still has my
//!   create revision" in its compare, so a deposed leader's late write is
//!   refused by etcd itself; and it gives up leading (cancels its work)
//!   once its lease can no longer be known alive, before etcd expires it
//!   and another can be elected.
//!
//! TLS to etcd: `DRCTL_ETCD_CA` (the CA that signed the members'
//! certificates) and, for client certificates, `DRCTL_ETCD_CERT` and
//! `DRCTL_ETCD_KEY`, all PEM files; set, they make every connection https.

use drctl_runtime::{CancellationToken, Leader, Leadership};
use drctl_state::kv::{Check, Kv, KvStore, Op, Txn, Versioned};
use drctl_state::{Error, Result, State};
use futures::future::BoxFuture;
use grpc::pb::etcdserverpb::{response_op, TxnRequest};
use grpc::{Client, RpcError};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod grpc;

/// How long one call to etcd may take before it is an error.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// The default lease of the leader.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// An `etcd://` state URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `host:port` of each member.
    pub members: Vec<String>,
    /// Every key starts with it (`/drctl/` by default); several drctl
    /// installations can share one cluster under different prefixes.
    pub prefix: String,
}

impl EtcdUrl {
    pub fn parse(url: &str) -> Result<EtcdUrl> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "state URL `{url}`: {why}; use etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (e.g. etcd://10.0.1.5:2379,10.0.2.5:2379/drctl)"
            ))
        };
        let rest = url.strip_prefix("etcd://").ok_or_else(|| bad("it does not start with etcd://"))?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        let members: Vec<String> = hosts.split(',').map(str::trim).map(str::to_string).collect();
        for m in &members {
            let Some((host, port)) = m.rsplit_once(':') else { return Err(bad(&format!("member `{m}` has no port"))) };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(&format!("member `{m}` is not HOST:PORT")));
            }
        }
        let prefix = prefix.trim_matches('/');
        if prefix.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("the prefix has spaces or control characters"));
        }
        let prefix = if prefix.is_empty() { "/drctl/".to_string() } else { format!("/{prefix}/") };
        Ok(EtcdUrl { members, prefix })
    }
}

/// What leader-only writes are checked against.
#[derive(Debug, Clone)]
enum Guard {
    /// No election (a CLI command): leader-only writes go as they are.
    Off,
    /// This process leads while the leader key has this create revision.
    Leading { key: String, revision: i64 },
    /// Part of an election and not leading: leader-only writes are refused.
    Following,
}

type Shared = Arc<Mutex<Guard>>;

fn guard_of(g: &Shared) -> Guard {
    g.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn set_guard(g: &Shared, to: Guard) {
    *g.lock().unwrap_or_else(|p| p.into_inner()) = to;
}

/// The etcd client's own runtime, on its own thread: the store's
/// synchronous calls wait on it from any thread, inside async code or not.
struct Runtime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Runtime {
    fn start() -> Result<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drctl-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the etcd client: {e}")))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("drctl-etcd".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_background();
            })
            .map_err(|e| Error::Backend(format!("cannot start the etcd client: {e}")))?;
        Ok(Runtime { handle, _stop: stop })
    }

    /// Runs `make()`'s future there and waits for its answer, at most
    /// [`OP_TIMEOUT`] in all. Transient failures (etcd electing a leader
    /// of its own, a member going away) are tried again on the way.
    fn call<T, F, Fut>(&self, location: &str, interrupt: Option<&Shared>, make: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<T, RpcError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
            let answer = tokio::time::timeout_at(deadline, async {
                let mut pause = Duration::from_millis(20);
                loop {
                    match make().await {
                        Err(e) if e.transient() && tokio::time::Instant::now() + pause < deadline => {
                            tracing::debug!(error = %e, "etcd: transient failure; trying again");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_millis(500));
                        }
                        other => return other,
                    }
                }
            })
            .await;
            let _ = tx.send(answer);
        });
        // A leader's call gives up the moment leadership is lost: the work
        // waiting on it must stop within the lease, not after a timeout.
        let leading = |g: &Option<&Shared>| g.is_some_and(|g| matches!(guard_of(g), Guard::Leading { .. }));
        let watch = if leading(&interrupt) { interrupt } else { None };
        // Waiting may take seconds: off the caller's runtime worker.
        let answer = drctl_state::offload(|| loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(a) => break Some(Ok(a)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if watch.is_some() && !leading(&watch) => break None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Some(Err(())),
            }
        });
        let Some(answer) = answer else {
            return Err(Error::NotLeader(None));
        };
        match answer {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) if e.transient() => Err(Error::Backend(format!(
                "etcd at {location} cannot be reached ({e}): are its members running, and is a quorum reachable from here?"
            ))),
            Ok(Ok(Err(e))) => Err(Error::Backend(format!("etcd at {location}: {e}"))),
            Ok(Err(_)) => Err(Error::Backend(format!(
                "etcd at {location} did not answer within {} s (is a quorum of its members reachable?)",
                OP_TIMEOUT.as_secs()
            ))),
            Err(_) => Err(Error::Backend(format!("the etcd client for {location} stopped"))),
        }
    }
}

fn tls_options() -> Result<Option<grpc::Tls>> {
    let read = |var: &str| -> Result<Option<Vec<u8>>> {
        match std::env::var_os(var) {
            None => Ok(None),
            Some(p) => std::fs::read(&p)
                .map(Some)
                .map_err(|e| Error::Invalid(format!("{var}={}: cannot read it: {e}", p.to_string_lossy()))),
        }
    };
    let Some(ca) = read("DRCTL_ETCD_CA")? else { return Ok(None) };
    let identity = match (read("DRCTL_ETCD_CERT")?, read("DRCTL_ETCD_KEY")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(Error::Invalid("set both DRCTL_ETCD_CERT and DRCTL_ETCD_KEY, or neither".into())),
    };
    Ok(Some(grpc::Tls { ca, identity }))
}

/// drctl-state's [`Kv`] on etcd; see the module documentation.
pub struct EtcdKv {
    rt: Runtime,
    client: Client,
    location: String,
    guard: Shared,
}

impl EtcdKv {
    /// Connects to the cluster (no round trip yet: a member down is fine
    /// while a quorum answers).
    pub fn connect(url: &EtcdUrl) -> Result<EtcdKv> {
        let rt = Runtime::start()?;
        let tls = tls_options()?;
        let members = url.members.clone();
        let location = format!("etcd://{}{}", url.members.join(","), url.prefix.trim_end_matches('/'));
        let client = rt.call(&location, None, move || {
            let opts = grpc::Options {
                connect_timeout: Duration::from_secs(2),
                timeout: OP_TIMEOUT,
                keep_alive: (Duration::from_secs(2), Duration::from_secs(2)),
                tls: tls.clone(),
            };
            let members = members.clone();
            async move { Client::connect(&members, opts).await }
        })?;
        Ok(EtcdKv { rt, client, location, guard: Arc::new(Mutex::new(Guard::Off)) })
    }
}

impl Kv for EtcdKv {
    fn location(&self) -> &str {
        &self.location
    }

    fn get(&self, key: &str) -> Result<Option<Versioned>> {
        let c = self.client.clone();
        let key = key.to_string();
        let resp = self.rt.call(&self.location, Some(&self.guard), move || {
            let (c, key) = (c.clone(), key.clone());
            async move { c.get(key).await }
        })?;
        Ok(resp.kvs.into_iter().next().map(|kv| Versioned { value: kv.value, version: kv.mod_revision }))
    }

    fn scan(&self, start: &str, end: &str) -> Result<Vec<(String, Versioned)>> {
        let c = self.client.clone();
        let (start, end) = (start.to_string(), end.to_string());
        let resp = self.rt.call(&self.location, Some(&self.guard), move || {
            let (c, start, end) = (c.clone(), start.clone(), end.clone());
            async move { c.range(start, end).await }
        })?;
        Ok(resp
            .kvs
            .into_iter()
            .map(|kv| {
                (String::from_utf8_lossy(&kv.key).into_owned(), Versioned { value: kv.value, version: kv.mod_revision })
            })
            .collect())
    }

    fn commit(&self, txn: Txn) -> Result<bool> {
        let guard = if txn.leader_only { guard_of(&self.guard) } else { Guard::Off };
        let mut compares: Vec<_> = txn
            .checks
            .iter()
            .map(|c| match c {
                Check::Absent(k) => grpc::version_is(k, 0),
                Check::Version(k, v) => grpc::mod_revision_is(k, *v),
            })
            .collect();
        let mut otherwise = Vec::new();
        let fence = match guard {
            Guard::Off => None,
            Guard::Following => return Err(Error::NotLeader(None)),
            Guard::Leading { key, revision } => {
                compares.push(grpc::create_revision_is(&key, revision));
                otherwise.push(grpc::get(key.as_str()));
                Some((key, revision))
            }
        };
        let ops = txn
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put(k, v) => grpc::put(k, v, 0),
                Op::Delete(k) => grpc::delete(k, None),
                Op::DeleteRange(a, b) => grpc::delete(a, Some(b.into())),
            })
            .collect();
        let c = self.client.clone();
        let t = TxnRequest { compare: compares, success: ops, failure: otherwise };
        // A transaction is tried again only on failures that mean it was
        // not applied (unavailable before it reached a leader); one that
        // did apply and whose answer was lost reads back as a failed
        // compare, which the store's retry loop handles by reading again.
        let resp = self.rt.call(&self.location, Some(&self.guard), move || {
            let (c, t) = (c.clone(), t.clone());
            async move { c.txn(t).await }
        })?;
        if resp.succeeded {
            return Ok(true);
        }
        if let Some((_, revision)) = fence {
            let leader = resp.responses.into_iter().find_map(|r| match r.response {
                Some(response_op::Response::ResponseRange(g)) => {
                    Some(g.kvs.into_iter().next().map(|kv| (kv.create_revision, kv.value)))
                }
                _ => None,
            });
            if let Some(now) = leader {
                if now.as_ref().map(|(rev, _)| *rev) != Some(revision) {
                    set_guard(&self.guard, Guard::Following);
                    let who = now.and_then(|(_, v)| serde_json::from_slice::<LeaderDoc>(&v).ok()).map(|d| d.id);
                    return Err(Error::NotLeader(who));
                }
            }
        }
        Ok(false)
    }

    fn leads(&self) -> bool {
        matches!(guard_of(&self.guard), Guard::Leading { .. })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LeaderDoc {
    id: String,
    url: String,
}

/// Opens the state at an `etcd://` URL, with no election (CLI commands).
pub fn open(url: &str) -> Result<Arc<State>> {
    open_sealed(url, Default::default())
}

/// Opens like [`open`], with the audit log sealed as `seal` says.
pub fn open_sealed(url: &str, seal: drctl_state::controller::AuditSeal) -> Result<Arc<State>> {
    let parsed = EtcdUrl::parse(url)?;
    let (sealer, seal) = keys(seal)?;
    Ok(Arc::new(KvStore::new(EtcdKv::connect(&parsed)?, &parsed.prefix)?.sealed(seal).with_sealer(sealer)))
}

/// The keys of a store on etcd, outside it: what seals subscriptions
/// before they leave the process, and the audit key (see
/// `drctl_state::seal`). Every controller and CLI sharing the store must
/// be given the same key files.
fn keys(
    seal: drctl_state::controller::AuditSeal,
) -> Result<(drctl_state::seal::Sealer, drctl_state::controller::AuditSeal)> {
    let paths = drctl_state::seal::KeyPaths::for_etcd();
    Ok((paths.sealer()?, seal.or_defaults(&paths)?))
}

/// Opens the state for a controller taking part in the election: its
/// leader-only writes are refused until it leads.
pub fn open_controller(
    url: &str,
    me: Leader,
    ttl: Duration,
    seal: drctl_state::controller::AuditSeal,
) -> Result<(Arc<State>, Arc<Election>)> {
    let parsed = EtcdUrl::parse(url)?;
    let kv = EtcdKv::connect(&parsed)?;
    set_guard(&kv.guard, Guard::Following);
    let election = Arc::new(Election {
        client: kv.client.clone(),
        handle: kv.rt.handle.clone(),
        location: kv.location.clone(),
        key: format!("{}leader", parsed.prefix),
        me,
        ttl: ttl.max(Duration::from_secs(2)),
        guard: kv.guard.clone(),
        lease: Arc::new(Mutex::new(None)),
    });
    let (sealer, seal) = keys(seal)?;
    Ok((Arc::new(KvStore::new(kv, &parsed.prefix)?.sealed(seal).with_sealer(sealer)), election))
}

/// One controller's part in the election; see the module documentation.
/// Cloning shares the client, the guard and the lease.
#[derive(Clone)]
pub struct Election {
    client: Client,
    handle: tokio::runtime::Handle,
    location: String,
    key: String,
    me: Leader,
    ttl: Duration,
    guard: Shared,
    /// The lease behind our leader key while we lead.
    lease: Arc<Mutex<Option<i64>>>,
}

impl Election {
    /// How long before the lease could lapse this controller stops acting.
    fn margin(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(500))
    }

    /// One try: a fresh lease, and the leader key if nobody holds it.
    async fn try_lead(&self) -> std::result::Result<Option<(i64, i64, Instant)>, RpcError> {
        let c = self.client.clone();
        let asked = Instant::now();
        let lease = c.lease_grant(self.ttl.as_secs().max(2) as i64).await?;
        let doc =
            serde_json::to_vec(&LeaderDoc { id: self.me.id.clone(), url: self.me.url.clone() }).unwrap_or_default();
        let t = TxnRequest {
            compare: vec![grpc::create_revision_is(&self.key, 0)],
            success: vec![grpc::put(self.key.as_str(), doc, lease)],
            failure: Vec::new(),
        };
        let resp = c.txn(t).await?;
        if resp.succeeded {
            let revision = resp.header.map(|h| h.revision).unwrap_or_default();
            return Ok(Some((lease, revision, asked)));
        }
        let _ = c.lease_revoke(lease).await;
        Ok(None)
    }

    /// Keeps the lease alive while it can be known alive; then cancels `lost`.
    async fn hold(self, lease: i64, revision: i64, asked: Instant, lost: CancellationToken) {
        let (key, ttl, margin, guard) = (self.key.clone(), self.ttl, self.margin(), self.guard.clone());
        let c = self.client.clone();
        // The lease is alive at least `ttl` after the last keep-alive that
        // was answered was *sent*: stop acting `margin` before that.
        let mut alive_since = asked;
        let beat = ttl / 4;
        let mut stream: Option<grpc::Keeper> = None;
        let why = loop {
            let deadline = alive_since + ttl - margin;
            let now = Instant::now();
            if now >= deadline {
                break "its lease could not be renewed in time";
            }
            let budget = (deadline - now).min(beat);
            let sent = Instant::now();
            let renewed = tokio::time::timeout(budget, async {
                let ttl_left = match stream.as_mut() {
                    None => {
                        let (keeper, ttl) = c.keep_alive(lease).await?;
                        stream = Some(keeper);
                        ttl
                    }
                    Some(keeper) => keeper.renew().await?,
                };
                // Still ours? Someone may have deleted the key by hand.
                let held = c.get(key.as_str()).await?;
                let ours = held.kvs.first().is_some_and(|kv| kv.create_revision == revision);
                Ok::<_, RpcError>(ttl_left > 0 && ours)
            })
            .await;
            match renewed {
                Ok(Ok(true)) => alive_since = sent,
                Ok(Ok(false)) => break "its lease or leader key is gone",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not renew the leader lease");
                    stream = None;
                }
                Err(_) => stream = None,
            }
            let next = sent + beat;
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = lost.cancelled() => break "it resigned",
            }
        };
        set_guard(&guard, Guard::Following);
        tracing::warn!(why, "no longer leading");
        lost.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
    }
}

impl Leadership for Election {
    fn id(&self) -> &str {
        &self.me.id
    }

    fn lead(&self, stop: CancellationToken) -> BoxFuture<'_, Option<CancellationToken>> {
        Box::pin(async move {
            let poll = Duration::from_millis(250);
            loop {
                if stop.is_cancelled() {
                    return None;
                }
                let this = self.clone();
                let tried = self.handle.spawn(async move { this.try_lead().await }).await;
                match tried {
                    Ok(Ok(Some((lease, revision, asked)))) => {
                        set_guard(&self.guard, Guard::Leading { key: self.key.clone(), revision });
                        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
                        let lost = CancellationToken::new();
                        self.handle.spawn(self.clone().hold(lease, revision, asked, lost.clone()));
                        return Some(lost);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::warn!(etcd = %self.location, error = %e, "election: etcd did not answer"),
                    Err(e) => tracing::warn!(error = %e, "election task failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.cancelled() => return None,
                }
            }
        })
    }

    fn leader(&self) -> BoxFuture<'_, Option<Leader>> {
        Box::pin(async move {
            let c = self.client.clone();
            let key = self.key.clone();
            let got =
                self.handle.spawn(async move { tokio::time::timeout(Duration::from_secs(2), c.get(key)).await }).await;
            let Ok(Ok(Ok(resp))) = got else { return None };
            let kv = resp.kvs.into_iter().next()?;
            let d: LeaderDoc = serde_json::from_slice(&kv.value).ok()?;
            Some(Leader { id: d.id, url: d.url })
        })
    }

    fn resign(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            set_guard(&self.guard, Guard::Following);
            let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(lease) = lease {
                let c = self.client.clone();
                let _ = self
                    .handle
                    .spawn(async move { tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(lease)).await })
                    .await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_and_a_prefix() {
        let u = EtcdUrl::parse("etcd://10.0.1.5:2379,10.0.2.5:2379/prod/drctl").unwrap();
        assert_eq!(u.members, ["10.0.1.5:2379", "10.0.2.5:2379"]);
        assert_eq!(u.prefix, "/prod/drctl/");
        assert_eq!(EtcdUrl::parse("etcd://localhost:2379").unwrap().prefix, "/drctl/");
        for bad in ["etcd://", "etcd://host", "etcd://host:port", "etcd://:2379", "sqlite://x", "etcd://h:1/a b"] {
            let e = EtcdUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("etcd://HOST:PORT"), "{bad}: {e}");
        }
    }
}
