//! `drctl serve`: the long-lived controller (docs/guide/controller.md).
//!
//! One process that
//! - **samples** RPO and health every `--sample-every`, records the samples
//!   and the daily uptime counters, and re-renders the status page;
//! - runs the `by: drctl` **replication** jobs on their schedules;
//! - runs the topology's **cron-scheduled drills**;
//! - **resumes** unfinished executions when it starts;
//! - serves the public **status page** and its JSON, Atom and Prometheus
//!   faces from an in-memory snapshot (a request never queries a system),
//!   and the **operator API** behind bearer tokens and roles, every change
//!   landing in the hash-chained audit log.
//!
//! Every background task is owned by a [`TaskCenter`] that restarts a loop
//! that panics and, on shutdown, waits for them up to a deadline and names
//! what is still running (an execution left running is resumable).
//!
//! **Several controllers, one leading** (docs/guide/ha-etcd.md, `--state etcd://`): with
//! a [`Leadership`] only the leader samples, replicates, runs scheduled
//! drills and executes — each leadership term's work under a task center
//! of its own, dropped at once when the term ends. Every controller serves
//! the page, feeds, metrics and read API from the shared state (followers
//! refresh from the status the leader publishes); an operator write sent
//! to a follower is forwarded to the leader, or answered 503 naming it.

mod api;
mod audience;
mod backups;
mod customers;
mod erasure;
pub mod feeds;
#[cfg(test)]
mod handler_tests;
mod limits;
pub mod notify;
pub mod page;
mod peer;
pub mod readiness;
mod reports;
mod restore_tests;
mod tls;
pub mod view;

mod public;
pub use audience::subscriptions_json;
pub use limits::Limits;
pub use notify::{check_smtp, NotifyOptions};
pub use readiness::ReadinessOptions;

use bytes::Bytes;
use drctl_control::live::Clients;
use drctl_core::status::StatusReport;
use drctl_core::topology::Topology;
use drctl_runtime::{CancellationToken, Leadership, OnFailure, TaskCenter};
use drctl_state::State;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Errors that stop the controller from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: SocketAddr, why: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    BadInput(String),
    #[error("state: {0}")]
    State(#[from] drctl_state::Error),
}

/// An allowed client network for the operator API (`--allow 10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, bits) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = ip.parse().map_err(|_| format!("`{s}` is not an address or CIDR block (e.g. 10.0.0.0/8)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() { max } else { bits.parse().map_err(|_| format!("`{s}`: bad prefix length"))? };
        if bits > max {
            return Err(format!("`{s}`: prefix length over {max}"));
        }
        Ok(Cidr { net, bits })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(a)) => self.contains(IpAddr::V6(a.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(a)) => a.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

pub struct Options {
    pub topology_path: PathBuf,
    pub topology: Arc<Topology>,
    pub state: Arc<State>,
    /// The clients every task shares (AWS configuration, HTTP, S3 pools).
    pub clients: Arc<Clients>,
    pub state_url: String,
    pub listen: SocketAddr,
    /// (certificate chain PEM, private key PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA certificates (PEM) that sign the other controllers' certificates:
    /// trusted, beside the public roots, when a follower forwards an
    /// operator request to a leader serving HTTPS under a private CA.
    pub peer_ca: Option<PathBuf>,
    /// Networks allowed to use the operator API; empty: any.
    pub allow: Vec<Cidr>,
    pub sample_every: Duration,
    /// The page's public URL, for links in the feeds (default from --listen).
    pub base_url: Option<String>,
    pub shutdown_deadline: Duration,
    /// Where drill reports go.
    pub reports_dir: PathBuf,
    /// Says what happens (one line each).
    pub say: Arc<dyn Fn(&str) + Send + Sync>,
    /// This controller's id (`--id`), in `/api/v1/leader` and in logs.
    pub id: String,
    /// The election, when several controllers share the state; `None`:
    /// this one always leads.
    pub leadership: Option<Arc<dyn Leadership>>,
    /// What clients may take: connections, request rate, time.
    pub limits: Limits,
    /// How subscribers are told (docs/customers.md).
    pub notify: NotifyOptions,
    /// How often readiness is evaluated, and which operators hear of it.
    pub readiness: ReadinessOptions,
    /// Where the controller's time comes from: when it samples, what a
    /// page says "now" is, when a delivery is due. The machine's in
    /// production; a test's own to control.
    pub clock: Arc<dyn drctl_runtime::Clock>,
}

/// The name under which the leader publishes its latest status measurement.
pub const PUBLISHED_STATUS: &str = "status";

/// The rendered faces of the status page, swapped whole on each refresh.
#[derive(Clone, Default)]
pub struct Rendered {
    pub html: HashMap<&'static str, Bytes>,
    pub status_json: Bytes,
    /// Statuspage v2 JSON by path under `/api/v2/` (`summary.json`, ...).
    pub v2: HashMap<&'static str, Bytes>,
    pub atom: Bytes,
    pub metrics: Bytes,
}

pub(crate) struct Shared {
    pub opts: Options,
    pub base_url: String,
    pub rendered: RwLock<Arc<Rendered>>,
    pub latest: RwLock<Option<StatusReport>>,
    pub samples: std::sync::atomic::AtomicU64,
    /// Per datastore, the replication lag of every object copied.
    pub replication_lag: std::sync::Mutex<std::collections::BTreeMap<String, feeds::Histogram>>,
    /// Owns every background task: executions, drills, sampler, replication, schedulers.
    pub tasks: TaskCenter,
    /// Serialises re-rendering (the sampler and API handlers both ask).
    pub render_lock: tokio::sync::Mutex<()>,
    /// The current leadership term's task center: `None` while following.
    pub leading: RwLock<Option<TaskCenter>>,
    /// The latest view of the page (customer and incident pages, notifications).
    pub view: RwLock<Option<Arc<view::View>>>,
    /// For webhooks: no redirects (a receiver cannot bounce a delivery
    /// elsewhere), a bounded wait.
    pub http: reqwest::Client,
    /// For forwarding operator requests to the leader: one client (its
    /// connections reused), trusting `--peer-ca` beside the public roots.
    pub forwarder: reqwest::Client,
    /// Requests forwarded to the leader at once: fewer than the connections
    /// the leader lets one address hold, so it closes none of them.
    pub forward_slots: tokio::sync::Semaphore,
    /// Per client address, for the unauthenticated subscribe endpoints.
    pub subscribe_rate: limits::RateLimiter,
    /// The latest readiness evaluation (this leader's, or the stored one).
    pub readiness: RwLock<Option<Arc<drctl_control::readiness::Report>>>,
    /// What the operators were last told of readiness, per scope.
    pub told: readiness::Told,
    /// Each backed-up datastore's backup RPO, as the last readiness evaluation read it.
    pub backup_status: std::sync::RwLock<Vec<drctl_core::status::BackupStatus>>,
    /// The topology's folder, fixed when the controller is wired: relative
    /// experiment paths start there, and a lab serving the topology keeps
    /// its manifest there.
    pub topology_dir: PathBuf,
}

impl Shared {
    fn new(opts: Options, base_url: String) -> Shared {
        let forward_slots = tokio::sync::Semaphore::new((opts.limits.per_address / 2).max(1));
        let parent = opts.topology_path.parent().filter(|p| !p.as_os_str().is_empty());
        let topology_dir = parent.unwrap_or(std::path::Path::new(".")).to_path_buf();
        Shared {
            topology_dir,
            opts,
            base_url,
            rendered: Default::default(),
            latest: RwLock::new(None),
            samples: Default::default(),
            replication_lag: Default::default(),
            tasks: TaskCenter::new(),
            render_lock: Default::default(),
            leading: RwLock::new(None),
            view: RwLock::new(None),
            forwarder: tls::forwarder(None).unwrap_or_default(),
            forward_slots,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .user_agent(concat!("drctl/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            // Five subscriptions at once from one address, then one a minute.
            subscribe_rate: limits::RateLimiter::with(1.0 / 60.0, 5.0),
            readiness: RwLock::new(None),
            told: Default::default(),
            backup_status: Default::default(),
        }
    }

    /// The lab serving this topology, while its process runs: the one place
    /// the controller looks for it. Read at each use, not kept: a lab starts
    /// its controllers before it writes its manifest, and may stop while
    /// they run.
    pub fn lab(&self) -> Option<drctl_lab_api::Manifest> {
        drctl_lab_api::Manifest::read(&self.topology_dir).filter(|m| m.alive())
    }

    /// Where leader-only work is spawned; `None` while this controller follows.
    pub fn work(&self) -> Option<TaskCenter> {
        self.leading.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn leads(&self) -> bool {
        self.work().is_some()
    }

    /// A follower's snapshot: the status the leader published, re-rendered
    /// with the shared state (incidents, executions, uptime).
    pub async fn follow(&self) {
        if let Ok(Some(json)) = self.opts.state.published(PUBLISHED_STATUS) {
            if let Ok(report) = serde_json::from_str::<StatusReport>(&json) {
                *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(report);
            }
        }
        self.follow_readiness();
        self.refresh().await;
    }

    /// The one path declarations take (docs/guide/safety.md: whoever declares).
    pub fn declarer(&self) -> drctl_control::declare::Declarer {
        drctl_control::declare::Declarer::new(
            self.opts.topology.clone(),
            self.opts.state.clone(),
            self.opts.clients.clone(),
        )
        .with_clock(self.opts.clock.clone())
    }

    /// Rebuilds the snapshot from the latest measurement and the state store.
    pub async fn refresh(&self) {
        let _one = self.render_lock.lock().await;
        let state = &self.opts.state;
        let topo = &self.opts.topology;
        let now = self.opts.clock.now();
        // Everything rendered here is public: errors by class only.
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(public::status);
        let since_day =
            now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 86_400) - view::UPTIME_DAYS;
        let mut uptime = HashMap::new();
        for (_, e, _) in topo.services() {
            uptime.insert(e.name.clone(), state.uptime(&e.name, since_day).unwrap_or_default());
        }
        let drills = state.drills().unwrap_or_default();
        let running: Vec<(String, Vec<String>)> = state
            .executions()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !drctl_state::journal::exec_state::is_final(&e.state))
            .map(|e| {
                let ents = state.steps(&e.id).unwrap_or_default().into_iter().map(|s| s.entity).collect::<Vec<_>>();
                let mut ents: Vec<String> = ents;
                ents.dedup();
                (e.id, ents)
            })
            .collect();
        let mut v = view::build(view::Inputs {
            topo,
            status: latest.as_ref(),
            incidents: state.incidents().unwrap_or_default(),
            maintenance: state.maintenance().unwrap_or_default(),
            uptime,
            drills: &drills,
            running_executions: running,
            now,
            expected_checks_per_day: (86_400.0 / self.opts.sample_every.as_secs_f64().max(0.1)) as i64,
            restore_tests: view::restore_tests(topo, &**state),
        });
        let counters = feeds::Counters {
            samples: self.samples.load(std::sync::atomic::Ordering::Relaxed),
            replication_lag: self
                .replication_lag
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            replication: state.replication_totals().unwrap_or_default(),
            step_seconds: state.step_durations().unwrap_or_default(),
            executions: state.execution_counts().unwrap_or_default(),
        };
        let status_json = match &latest {
            Some(s) => serde_json::to_vec_pretty(s).unwrap_or_default(),
            None => serde_json::to_vec(&serde_json::json!({
                "at": null, "datastores": [], "services": [], "error": "not measured yet"
            }))
            .unwrap_or_default(),
        };
        v.subscribe_form = self.opts.notify.smtp.is_some();
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(v.clone()));
        let mut html = HashMap::new();
        for l in page::Lang::ALL {
            html.insert(l.code(), Bytes::from(page::render(&v, l)));
        }
        let r = Rendered {
            html,
            status_json: Bytes::from(status_json),
            v2: feeds::statuspage_v2(&v, &self.base_url)
                .into_iter()
                .map(|(path, json)| (path, Bytes::from(serde_json::to_vec_pretty(&json).unwrap_or_default())))
                .collect(),
            atom: Bytes::from(feeds::atom(&v, &self.base_url)),
            metrics: Bytes::from(
                feeds::metrics(&v, &counters)
                    + &readiness::metrics(self.readiness().as_deref())
                    + &readiness::backup_metrics(&self.backup_status.read().unwrap_or_else(|p| p.into_inner()))
                    + &erasure::metrics(self),
            ),
        };
        *self.rendered.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }

    /// One measurement: recorded, then the snapshot rebuilt.
    pub async fn sample(&self, clients: &Clients) {
        let placements = self.opts.state.placements().unwrap_or_default();
        let at = self.opts.clock.now();
        let mut report = drctl_control::live::status(clients, &self.opts.topology, &placements, at).await;
        drctl_control::live::with_state(&*self.opts.state, &mut report, at);
        for found in drctl_control::returned::look(&self.opts.topology, &*self.opts.state, &report, at).await {
            (self.opts.say)(&format!("warning: {found}"));
        }
        let _ = drctl_control::live::record(&*self.opts.state, &report, at);
        let checks: Vec<(String, bool)> = report.services.iter().map(|s| (s.name.clone(), s.healthy)).collect();
        let _ = self.opts.state.record_health(self.opts.clock.now(), &checks);
        if let Ok(json) = serde_json::to_string(&report) {
            let _ = self.opts.state.publish(PUBLISHED_STATUS, &json);
        }
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(report);
        self.samples.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.refresh().await;
    }
}

/// Renders the status page and its JSON into `dir` once, for hosting
/// elsewhere (another region's bucket) when the controller's zone is down.
pub async fn export(
    topology: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    dir: &std::path::Path,
    base_url: &str,
) -> Result<Vec<PathBuf>, Error> {
    let opts = Options {
        topology_path: PathBuf::new(),
        topology,
        state,
        clients,
        state_url: String::new(),
        listen: "127.0.0.1:0".parse().expect("literal"),
        tls: None,
        peer_ca: None,
        allow: Vec::new(),
        sample_every: Duration::from_secs(60),
        base_url: Some(base_url.into()),
        shutdown_deadline: Duration::ZERO,
        reports_dir: PathBuf::new(),
        say: Arc::new(|_| {}),
        id: String::new(),
        leadership: None,
        limits: Limits::default(),
        notify: NotifyOptions::default(),
        readiness: ReadinessOptions::default(),
        clock: Arc::new(drctl_runtime::SystemClock),
    };
    let shared = Shared::new(opts, base_url.into());
    shared.sample(&shared.opts.clients).await;
    let r = shared.rendered.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut files: Vec<(PathBuf, &[u8])> = vec![
        (dir.join("index.html"), r.html["en"].as_ref()),
        (dir.join("ja/index.html"), r.html["ja"].as_ref()),
        (dir.join("static/status.css"), page::CSS.as_bytes()),
        (dir.join("api/v1/status"), r.status_json.as_ref()),
        (dir.join("feed.atom"), r.atom.as_ref()),
    ];
    for (path, bytes) in &r.v2 {
        files.push((dir.join("api/v2").join(path), bytes.as_ref()));
    }
    // Each incident the page links to, as `incidents/ID/index.html` (a
    // bucket's website hosting answers `/incidents/ID/` with it).
    let view = shared.view.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut incident_pages: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    if let Some(v) = &view {
        for i in v.active_incidents.iter().chain(&v.past_incidents) {
            let report =
                shared.opts.state.report(i.id).ok().flatten().filter(|r| r.published_ms.is_some()).map(|r| r.body);
            let html = page::incident_page(v, i, report.as_deref(), page::Lang::En);
            incident_pages.push((dir.join(format!("incidents/{}/index.html", i.id)), html.into_bytes()));
        }
    }
    for (path, html) in &incident_pages {
        files.push((path.clone(), html.as_slice()));
    }
    // The audit log's head, published with the page in another region: a
    // log later rewritten or cut short no longer contains it
    // (`drctl audit verify --head-file audit-head`).
    let head =
        shared.opts.state.audit_entries().map_err(Error::State)?.last().map(|e| format!("{} {}\n", e.seq, e.hash));
    if let Some(head) = &head {
        files.push((dir.join("audit-head"), head.as_bytes()));
    }
    let mut written = Vec::new();
    for (path, bytes) in files {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| Error::BadInput(format!("cannot create {}: {e}", p.display())))?;
        }
        // The Japanese page sits one folder down: its stylesheet link is absolute, so it works as is.
        std::fs::write(&path, bytes).map_err(|e| Error::BadInput(format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// Runs the controller until `stop` completes; returns the names of tasks
/// still running at the deadline.
pub async fn run(opts: Options, stop: impl std::future::Future<Output = ()>) -> Result<Vec<String>, Error> {
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls::config(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Listen { addr: opts.listen, why: e.to_string() })?;
    let bound = listener.local_addr().map_err(|e| Error::Listen { addr: opts.listen, why: e.to_string() })?;
    let admin_listener = match opts.limits.admin_listen {
        Some(addr) => {
            Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Listen { addr, why: e.to_string() })?)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = opts.base_url.clone().unwrap_or_else(|| format!("{scheme}://{bound}"));
    let forwarder = tls::forwarder(opts.peer_ca.as_deref())?;
    let say = opts.say.clone();
    let mut shared = Shared::new(opts, base_url.clone());
    shared.forwarder = forwarder;
    let shared = Arc::new(shared);
    shared.refresh().await;
    say(&format!("serving {base_url}/ (status page), {base_url}/api/v1/ (operator API)"));
    if let Some(l) = &admin_listener {
        if let Ok(a) = l.local_addr() {
            say(&format!("operators also on {scheme}://{a}/api/v1/ (connections of its own)"));
        }
    }

    match shared.opts.leadership.clone() {
        None => {
            // The only controller: it leads for as long as it runs.
            *shared.leading.write().unwrap_or_else(|p| p.into_inner()) = Some(shared.tasks.clone());
            lead(&shared, &shared.tasks);
        }
        Some(election) => {
            say(&format!("controller {}: following until elected", election.id()));
            shared.tasks.spawn("election", OnFailure::Restart(Duration::from_secs(1)), {
                let s = shared.clone();
                move |stop| campaign(s.clone(), election.clone(), stop)
            });
            // Followers serve what the leader measured.
            shared.tasks.spawn("follower", OnFailure::Restart(Duration::from_secs(1)), {
                let s = shared.clone();
                move |stop| {
                    let s = s.clone();
                    async move {
                        loop {
                            if !s.leads() {
                                s.follow().await;
                            }
                            tokio::select! {
                                _ = s.opts.clock.sleep(s.opts.sample_every) => {}
                                _ = stop.cancelled() => return,
                            }
                        }
                    }
                }
            });
        }
    }

    // The server stops accepting first, so that nothing new starts while
    // the background tasks wind down.
    let server_stop = CancellationToken::new();
    // Owned here and awaited at shutdown, as the public listener is.
    let admin = admin_listener.map(|l| tokio::spawn(api::serve(shared.clone(), l, tls.clone(), server_stop.clone())));
    let server = tokio::spawn(api::serve(shared.clone(), listener, tls, server_stop.clone()));
    stop.await;
    say("shutting down: no new requests; waiting for background tasks");
    server_stop.cancel();
    // A listener that has not stopped in time is cut, not left behind.
    for mut listener in std::iter::once(server).chain(admin) {
        if tokio::time::timeout(Duration::from_secs(5), &mut listener).await.is_err() {
            listener.abort();
        }
    }
    let mut left = Vec::new();
    let term = shared.leading.write().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(term) = term.filter(|_| shared.opts.leadership.is_some()) {
        left = term.shutdown(shared.opts.shutdown_deadline).await;
    }
    left.extend(shared.tasks.shutdown(shared.opts.shutdown_deadline).await);
    Ok(left)
}

/// Stands for election until shutdown; each term's work runs under a task
/// center of its own, dropped the moment the term ends.
async fn campaign(s: Arc<Shared>, election: Arc<dyn Leadership>, stop: CancellationToken) {
    loop {
        let Some(lost) = election.lead(stop.clone()).await else { return };
        let term = TaskCenter::new();
        *s.leading.write().unwrap_or_else(|p| p.into_inner()) = Some(term.clone());
        (s.opts.say)(&format!("controller {}: leading", election.id()));
        lead(&s, &term);
        tokio::select! {
            _ = lost.cancelled() => {
                s.leading.write().unwrap_or_else(|p| p.into_inner()).take();
                (s.opts.say)(&format!(
                    "controller {}: lost the lead; stopping its work now (the next leader resumes it)",
                    election.id()
                ));
                // Not a graceful wind-down: another controller may lead
                // within the lease, so nothing of this term may act on.
                let left = term.shutdown(Duration::from_millis(200)).await;
                if !left.is_empty() {
                    (s.opts.say)(&format!("stopped mid-way: {}", left.join(", ")));
                }
            }
            _ = stop.cancelled() => {
                // Shutdown: `run` has wound the term down gracefully (still
                // leading) before it cancels this task; hand the lead over.
                election.resign().await;
                return;
            }
        }
    }
}

/// Starts the leader's work under `center`: resumes unfinished executions,
/// samples, replicates and runs the scheduled drills.
fn lead(shared: &Arc<Shared>, center: &TaskCenter) {
    let say = shared.opts.say.clone();
    // Executions left unfinished by a previous run or leader: resume them.
    for e in shared
        .opts
        .state
        .executions()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !drctl_state::journal::exec_state::is_final(&e.state))
    {
        // A paused execution waits for a commander's decision, never for a restart.
        if e.state == drctl_state::journal::exec_state::PAUSED {
            say(&format!(
                "execution {} is paused: it waits for a commander (retry, skip, approve --done, abort)",
                e.id
            ));
            continue;
        }
        say(&format!("resuming execution {} ({})", e.id, e.state));
        api::spawn_execution(shared, e.id.clone());
    }

    // The sampler.
    center.spawn("sampler", OnFailure::Restart(Duration::from_secs(1)), {
        let s = shared.clone();
        move |stop| {
            let s = s.clone();
            async move {
                loop {
                    s.sample(&s.opts.clients).await;
                    tokio::select! {
                        _ = s.opts.clock.sleep(s.opts.sample_every) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    });
    // Replication on its schedules.
    let ids = drctl_control::replicate::selected(&shared.opts.topology, &[]).unwrap_or_default();
    let lab_replicates = shared.lab().is_some();
    if lab_replicates && !ids.is_empty() {
        say("the lab replicates its own datastores; this controller does not copy them twice");
    } else if !ids.is_empty() {
        let s = shared.clone();
        center.spawn("replication", OnFailure::Restart(Duration::from_secs(1)), move |stop| {
            let (s, ids) = (s.clone(), ids.clone());
            async move {
                let say = s.opts.say.clone();
                let lags = s.clone();
                let report = move |name: &str, r: &Result<drctl_aws::s3::Summary, drctl_control::Error>| match r {
                    Err(e) => say(&format!("replication of {name}: {e}")),
                    Ok(summary) => {
                        let mut all = lags.replication_lag.lock().unwrap_or_else(|p| p.into_inner());
                        let h = all.entry(name.to_string()).or_default();
                        for &lag in &summary.lags_s {
                            h.observe(lag);
                        }
                    }
                };
                drctl_control::replicate::run_scheduled(
                    &s.opts.clients,
                    &s.opts.topology,
                    &*s.opts.state,
                    &ids,
                    &s.opts.clock,
                    stop.cancelled_owned(),
                    &|_| false,
                    &report,
                )
                .await;
            }
        });
    }
    // Subscribers told from the outbox; post-incident reports drafted.
    center.spawn("notifier", OnFailure::Restart(Duration::from_secs(1)), {
        let s = shared.clone();
        move |stop| notify::run(s.clone(), stop)
    });
    // Readiness of every scope, evaluated on the clock; operators told of changes.
    center.spawn("readiness", OnFailure::Restart(Duration::from_secs(1)), {
        let s = shared.clone();
        move |stop| readiness::run(s.clone(), stop)
    });
    // Scheduled backups.
    if backups::any(shared) {
        let s = shared.clone();
        center.spawn("backups", OnFailure::Restart(Duration::from_secs(1)), move |stop| backups::run(s.clone(), stop));
    }
    // Restore tests on their cron.
    if restore_tests::any(shared) {
        let s = shared.clone();
        center.spawn("restore-tests", OnFailure::Restart(Duration::from_secs(1)), move |stop| {
            restore_tests::run(s.clone(), stop)
        });
    }
    // Erasures not verified everywhere yet: verified again, run again on a moved primary.
    if shared.opts.topology.erasure.is_some() {
        center.spawn("erasure", OnFailure::Restart(Duration::from_secs(1)), {
            let s = shared.clone();
            move |stop| erasure::run(s.clone(), stop)
        });
    }
    // Cron-scheduled drills.
    if !shared.opts.topology.drills.is_empty() {
        let s = shared.clone();
        center.spawn("drill-scheduler", OnFailure::Restart(Duration::from_secs(1)), move |stop| {
            api::drill_scheduler(s.clone(), stop)
        });
    }
}

/// The operator API, described (served at `/api/v1/openapi.json`).
pub fn openapi() -> serde_json::Value {
    use serde_json::json;
    let err = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let secured = |role: &str, summary: &str, body: Option<&str>, ok: &str| {
        let mut op = json!({
            "summary": format!("{summary} (role: {role} or above)"),
            "security": [{ "bearer": [] }],
            "responses": { ok: { "description": "done" }, "401": err.clone(), "403": err.clone(), "422": err.clone() },
        });
        if let Some(schema) = body {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
        }
        op
    };
    let public = |summary: &str, ct: &str| json!({ "summary": summary, "responses": { "200": { "description": "ok", "content": { ct: {} } } } });
    let id_param =
        |name: &str, kind: &str| json!([{ "name": name, "in": "path", "required": true, "schema": { "type": kind } }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "drctl controller", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The public status page and the operator API of `drctl serve`. Roles include the ones before them: viewer < operator < commander < admin. A customer token sees only its customer's pages." },
        "paths": {
            "/": { "get": public("The status page (HTML; ?lang=en|ja or Accept-Language)", "text/html") },
            "/api/v1/status": { "get": public("Live status and RPO: per datastore the measured RPO against its target, per service health and the estimated RTO", "application/json") },
            "/api/v2/summary.json": { "get": public("Statuspage-compatible summary", "application/json") },
            "/api/v2/status.json": { "get": public("Statuspage-compatible status", "application/json") },
            "/api/v2/components.json": { "get": public("Statuspage-compatible components", "application/json") },
            "/api/v2/incidents.json": { "get": public("Statuspage-compatible incidents (active and past 14 days)", "application/json") },
            "/api/v2/incidents/unresolved.json": { "get": public("Statuspage-compatible unresolved incidents", "application/json") },
            "/api/v2/scheduled-maintenances.json": { "get": public("Statuspage-compatible maintenance (also /upcoming.json, /active.json)", "application/json") },
            "/feed.atom": { "get": public("Incidents and maintenance", "application/atom+xml") },
            "/metrics": { "get": public("Prometheus metrics", "text/plain") },
            "/api/v1/readiness": { "get": secured("viewer", "The latest readiness evaluation: per zone and region scope, whether its failover would work now, its estimated RTO, misses and findings", None, "200") },
            "/api/v1/leader": { "get": public("This controller's id and the leader's among controllers sharing an etcd state: {\"self\", \"leader\", \"url\", \"leading\"}", "application/json") },
            "/api/v1/incidents": {
                "get": secured("viewer", "List incidents with their updates", None, "200"),
                "post": secured("operator", "Open an incident", Some("NewIncident"), "201"),
            },
            "/api/v1/incidents/{id}/updates": { "parameters": id_param("id", "integer"), "post": secured("operator", "Add an update to an incident", Some("IncidentUpdate"), "201") },
            "/api/v1/maintenance": { "post": secured("operator", "Schedule maintenance", Some("NewMaintenance"), "201") },
            "/api/v1/declare": { "post": secured("commander", "Declare a disaster: plan, preflight, execute (202 with the execution id; 409 when the preflight refuses)", Some("Declare"), "202") },
            "/api/v1/executions": { "get": secured("viewer", "List executions", None, "200") },
            "/api/v1/executions/{id}": { "parameters": id_param("id", "string"), "get": secured("viewer", "An execution with its steps, their states and times, and the RTO measured", None, "200") },
            "/api/v1/executions/{id}/approve": { "parameters": id_param("id", "string"), "post": secured("commander", "Approve a step waiting for approval; a step its runbook keeps to admins (`role: admin`) needs an admin", Some("Approve"), "200") },
            "/api/v1/executions/{id}/abort": { "parameters": id_param("id", "string"), "post": secured("commander", "Abort an execution: a running one winds down, a paused one stops at once", None, "200") },
            "/api/v1/executions/{id}/retry": { "parameters": id_param("id", "string"), "post": secured("commander", "Run a paused execution's failed step again, with overrides added", Some("Retry"), "202") },
            "/api/v1/executions/{id}/skip": { "parameters": id_param("id", "string"), "post": secured("commander", "Give up a paused execution's failed step and every step that needs it; the rest goes on", Some("Skip"), "202") },
            "/api/v1/drills": { "post": secured("operator", "Run a chaos experiment as a drill (202 with the drill id)", Some("Drill"), "202") },
            "/api/v1/erasures": {
                "post": secured("operator", "Record an erasure request and erase it on every copy (202 with the request's id)", Some("Erasure"), "202"),
                "get": secured("viewer", "The erasure ledger: each request's dates, copies, backups and whether it is overdue (never the subject)", None, "200")
            },
            "/api/v1/audit": { "get": secured("admin", "The audit log", None, "200") },
            "/api/v1/subscriptions": {
                "post": { "summary": "Subscribe (no token; rate-limited per address): an e-mail address (pending until its confirmation link is followed) or a webhook (answers its signing secret once)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Subscribe" } } } },
                    "responses": { "201": { "description": "subscribed" }, "422": err.clone(), "429": err.clone() } },
                "get": secured("admin", "Every subscription with its state and deliveries (never a token or secret)", None, "200"),
            },
            "/subscribe": { "post": public("The status page's subscribe form (application/x-www-form-urlencoded: email, services repeated, lang)", "text/html") },
            "/subscriptions/confirm/{token}": { "parameters": id_param("token", "string"), "get": public("Confirms an e-mail subscription (the link mailed)", "text/html") },
            "/unsubscribe/{token}": { "parameters": id_param("token", "string"), "get": public("Ends a subscription (the link in every notification)", "text/html") },
            "/incidents/{id}": { "parameters": id_param("id", "integer"), "get": public("An incident's page: its updates and published post-incident report", "text/html") },
            "/api/v1/incidents/{id}/report": {
                "parameters": id_param("id", "integer"),
                "get": secured("viewer", "The post-incident report (drafted when the incident's execution ends)", None, "200"),
                "put": secured("operator", "Write or replace the report's Markdown", Some("ReportEdit"), "200"),
            },
            "/api/v1/incidents/{id}/report/publish": { "parameters": id_param("id", "integer"), "post": secured("operator", "Publish the report on the incident's page", None, "200") },
            "/customer-link/{secret}": { "parameters": id_param("secret", "string"), "get": public("A customer link (`drctl customer-link`): exchanged at once for a session cookie on that customer's pages, then on to /customers/NAME; 403 when expired or revoked", "text/html") },
            "/customers/{name}": { "parameters": id_param("name", "string"), "get": secured("customer (that customer's token) or operator", "The customer's contract page (HTML; JSON with Accept: application/json); a browser opened through a customer link is let in by its session cookie", None, "200") },
            "/customers/{name}/assurance.json": { "parameters": id_param("name", "string"), "get": secured("customer (that customer's token) or operator", "The contract's evidence for auditors", None, "200") },
            "/customers/{name}/assurance.html": { "parameters": id_param("name", "string"), "get": secured("customer (that customer's token) or operator", "The same evidence as a self-contained, printable page", None, "200") },
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "A token from `drctl token create`" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] },
                "NewIncident": { "type": "object", "required": ["title", "status"], "properties": {
                    "title": { "type": "string", "maxLength": 200 }, "status": { "enum": ["investigating", "identified", "monitoring", "resolved"] },
                    "body": { "type": "string", "maxLength": 10000 }, "services": { "type": "array", "items": { "type": "string" } } } },
                "IncidentUpdate": { "type": "object", "required": ["status"], "properties": {
                    "status": { "enum": ["investigating", "identified", "monitoring", "resolved"] }, "body": { "type": "string" } } },
                "NewMaintenance": { "type": "object", "required": ["title", "starts_at", "ends_at"], "properties": {
                    "title": { "type": "string" }, "body": { "type": "string" }, "services": { "type": "array", "items": { "type": "string" } },
                    "starts_at": { "type": "string", "format": "date-time" }, "ends_at": { "type": "string", "format": "date-time" } } },
                "Declare": { "type": "object", "required": ["reason"], "properties": {
                    "zones": { "type": "array", "items": { "type": "string" } }, "regions": { "type": "array", "items": { "type": "string" } },
                    "targets": { "type": "array", "items": { "type": "string" } }, "reason": { "type": "string" },
                    "dry_run": { "type": "boolean" }, "force": { "type": "boolean", "description": "accept_lag and skip_catch_up; never waives a fence" },
                    "overrides": { "$ref": "#/components/schemas/Overrides" }, "parallel": { "type": "integer", "minimum": 1 } },
                    "additionalProperties": false },
                "Overrides": { "type": "object", "additionalProperties": false, "properties": {
                    "accept_lag": { "type": "boolean", "description": "promote a standby beyond max_lag, or of unknown lag" },
                    "skip_catch_up": { "type": "boolean", "description": "promote before the standby replayed the fenced primary's last write" },
                    "unfenced": { "type": "array", "items": { "type": "string", "pattern": "^[^/]+/[^/]+$" }, "description": "DATASTORE/ZONE members promoted beside although they could be fenced neither way" } } },
                "Approve": { "type": "object", "required": ["step"], "additionalProperties": false, "properties": { "step": { "type": "string" }, "done": { "type": "boolean" } } },
                "Retry": { "type": "object", "required": ["step"], "additionalProperties": false, "properties": { "step": { "type": "string" }, "overrides": { "$ref": "#/components/schemas/Overrides" } } },
                "Skip": { "type": "object", "required": ["step"], "additionalProperties": false, "properties": { "step": { "type": "string" } } },
                "Subscribe": { "type": "object", "properties": {
                    "email": { "type": "string", "format": "email" }, "webhook": { "type": "string", "format": "uri" },
                    "services": { "type": "array", "items": { "type": "string" }, "description": "none: every service" },
                    "lang": { "enum": ["en", "ja"] } } },
                "ReportEdit": { "type": "object", "required": ["body"], "properties": { "body": { "type": "string", "maxLength": 60000, "description": "Markdown" } } },
                "Drill": { "type": "object", "required": ["experiment"], "properties": { "experiment": { "type": "string", "description": "a relative path, e.g. chaos/lab-zone-outage.yaml" } } },
                "Erasure": { "type": "object", "required": ["subject", "reason"], "additionalProperties": false, "properties": { "subject": { "type": "string", "description": "the identifier the topology's `erasure.locate` entries take as $1 / {subject}" }, "reason": { "type": "string" } } },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn cidr_blocks_contain_what_they_should() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()), "IPv4-mapped IPv6");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }
}
