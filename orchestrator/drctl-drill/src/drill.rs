//! Running a chaos experiment as a DR drill (SPEC §7).
//!
//! 1. **Steady state**: every service healthy, every datastore measured and
//!    within its RPO target. A drill never starts on a sick system (it
//!    waits up to [`Options::steady_timeout`], then refuses).
//! 2. **Inject** each fault at its `after`.
//! 3. **Detect** (`declare: auto`): every [`PROBE_INTERVAL`], each
//!    service's health URL is checked; [`DETECT_FAILURES`] failures in a
//!    row is an outage. The scope is then found by probing every member's
//!    address: a zone where nothing answers is lost; a datastore whose
//!    primary alone is gone is a target. `declare: manual` waits for
//!    `drctl declare` from another terminal instead.
//! 4. **Execute** the declaration with the same engine and journal as
//!    `drctl declare`, and keep probing until each service is healthy again.
//! 5. **Measure**: per service, RTO from the declaration (SPEC's
//!    definition) and from the fault; per datastore, the writes really lost,
//!    counted from the lab workload's acknowledgements.
//! 6. **Heal** every fault, on every exit path (end, `stop_when`, error,
//!    Ctrl-C), and report.

use crate::Error;
use drctl_control::declare::{Actor, Declarer, IncidentPolicy, Recorded};
use drctl_control::failover::{self, Declaration};
use drctl_control::live::Clients;
use drctl_core::chaos::{DeclareMode, Experiment, StopWhen};
use drctl_core::topology::{EntitySpec, Location, Topology};
use drctl_lab_api::{FaultRequest, LabClient};
use drctl_state::journal::exec_state;
use drctl_state::State;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How often services are probed during a drill.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Failed probes in a row that make an outage.
pub const DETECT_FAILURES: u32 = 3;
/// How long the steady state must hold before the first fault (it also
/// lets the workload build a history to count losses against).
pub const STEADY_FOR: Duration = Duration::from_secs(3);
/// How long a member may take to answer before scope detection calls it
/// lost. Generous on purpose: slow is not dead, and failing over a slow
/// primary is an outage of its own.
pub const SCOPE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// After healing, how long the drill keeps probing for services to recover.
pub const RECOVERY_WATCH: Duration = Duration::from_secs(20);

pub struct Options {
    pub topology: Arc<Topology>,
    pub experiment: Experiment,
    pub state: Arc<State>,
    /// The clients the caller shares (the lab's credentials on a lab).
    pub clients: Arc<Clients>,
    /// Faults go through this lab; without one only faults that need no lab work.
    pub lab: Option<LabClient>,
    pub parallel: Option<usize>,
    pub steady_timeout: Duration,
    /// Where the drill's time comes from (its timeline, its waits, what it
    /// records); a drill's durations are measured on tokio's monotonic
    /// clock, which a test pauses to control them.
    pub clock: Arc<dyn drctl_runtime::Clock>,
    /// Becomes true when the operator interrupts (Ctrl-C): heal and report.
    pub cancel: drctl_runtime::CancellationToken,
    /// Hears one line per event as it happens.
    pub say: Box<dyn Fn(&str) + Send + Sync>,
    /// Highly available controllers (their base URLs) and a commander
    /// token: the drill declares through them, as an incident commander
    /// would, and the leader of the moment executes (SPEC §11). Empty: the
    /// drill executes in its own process.
    pub controllers: Vec<String>,
    pub token: Option<String>,
}

/// Declares through the first controller that takes it (a follower
/// forwards to the leader; during an election every one may say 503).
/// `Ok(None)`: none could take it now, try again at the next probe.
async fn declare_via_controllers(
    controllers: &[String],
    token: &str,
    body: &serde_json::Value,
) -> Result<Option<(String, String)>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    for base in controllers {
        let Ok(r) = client.post(format!("{base}/api/v1/declare")).bearer_auth(token).json(body).send().await else {
            continue;
        };
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        match status {
            202 => return Ok(Some((v["id"].as_str().unwrap_or_default().to_string(), base.clone()))),
            409 => return Err(format!("the declaration was refused: {}", v["error"].as_str().unwrap_or_default())),
            503 | 502 => continue,
            other => return Err(format!("{base} answered {other}: {v}")),
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub at_s: f64,
    pub kind: String,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: String,
    pub fault: FaultRequest,
    pub hits: Vec<String>,
    pub injected_at_s: Option<f64>,
    pub healed_at_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub id: String,
    pub entity: String,
    pub action: String,
    pub state: String,
    pub started_s: Option<f64>,
    pub finished_s: Option<f64>,
    pub note: Option<String>,
    pub error: Option<String>,
    /// The controller (or process) that ran it: with highly available
    /// controllers, which one led when it ran.
    pub ran_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    pub name: String,
    pub tier: Option<String>,
    pub affected: bool,
    /// From the declaration until healthy again (SPEC §1's RTO).
    pub rto_s: Option<f64>,
    /// From the first fault until healthy again (detection included).
    pub rto_from_fault_s: Option<f64>,
    pub rto_target_s: Option<f64>,
    pub meets_rto: bool,
    pub unhealthy_at_s: Option<f64>,
    pub recovered_at_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatastoreResult {
    pub name: String,
    pub kind: String,
    pub failed_over_to: Option<String>,
    pub rpo_s: Option<f64>,
    pub rpo_target_s: Option<f64>,
    pub meets_rpo: bool,
    /// Acknowledged writes the new primary does not have; null where nothing counts them.
    pub lost_writes: Option<u64>,
    pub acknowledged_elsewhere: Option<u64>,
    /// The most members that took writes at the same moment, from probes in
    /// each member's own zone (1 on a safe run; null where nothing probes).
    pub writable_primaries_max: Option<u64>,
    /// Writes acknowledged by a member after another member was promoted
    /// (0 on a safe run; null where nothing counts them).
    pub split_brain_writes: Option<u64>,
    /// The RPO drctl measured just before the first fault.
    pub lag_before_fault_s: Option<f64>,
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub experiment: String,
    pub description: Option<String>,
    pub topology: String,
    pub declare: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub detected_at_s: Option<f64>,
    pub declared_at_s: Option<f64>,
    pub recovered_at_s: Option<f64>,
    pub execution: Option<String>,
    pub execution_state: Option<String>,
    pub scope: Option<serde_json::Value>,
    pub stopped_early: Option<String>,
    pub objectives_met: bool,
    /// Never two writable primaries, no split-brain write: a drill that saw
    /// either fails, whatever else it measured.
    pub safe: bool,
    /// What broke safety, in words (empty on a safe run).
    pub safety_violations: Vec<String>,
    pub faults: Vec<FaultRecord>,
    pub steps: Vec<StepRecord>,
    pub services: Vec<ServiceResult>,
    pub datastores: Vec<DatastoreResult>,
    pub timeline: Vec<TimelineEvent>,
    pub thresholds: serde_json::Value,
}

/// What a dry run would hit.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub experiment: String,
    pub faults: Vec<FaultRecord>,
}

/// The drill's own time: seconds since its steady state held, and wall
/// times read against it.
struct Clock {
    t0: Instant,
    wall0: SystemTime,
    source: Arc<dyn drctl_runtime::Clock>,
}

impl Clock {
    fn start(source: Arc<dyn drctl_runtime::Clock>) -> Clock {
        Clock { t0: Instant::now(), wall0: source.now(), source }
    }

    /// The wall-clock time now, from the drill's clock.
    fn wall(&self) -> SystemTime {
        self.source.now()
    }

    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
    fn of(&self, t: SystemTime) -> f64 {
        match t.duration_since(self.wall0) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

fn kind_of(f: &FaultRequest) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default()
}

/// Lists what each fault would hit, changing nothing.
pub async fn dry_run(opts: &Options) -> Result<DryRun, Error> {
    let mut faults = Vec::new();
    for f in &opts.experiment.faults {
        let req = FaultRequest::from(&f.fault);
        let hits = match &opts.lab {
            Some(lab) => lab.inject(&req, true).await?.hits,
            None => no_lab_hits(&opts.topology, &req)?,
        };
        faults.push(FaultRecord {
            kind: kind_of(&req),
            fault: req,
            hits,
            injected_at_s: Some(f.after.as_secs_f64()),
            healed_at_s: None,
        });
    }
    Ok(DryRun { experiment: opts.experiment.name.clone(), faults })
}

/// Without a lab, only a PostgreSQL replication pause can be injected (by SQL on the standbys).
fn no_lab_hits(topo: &Topology, f: &FaultRequest) -> Result<Vec<String>, Error> {
    match f {
        FaultRequest::ReplicationPause { datastore } => {
            let id = topo
                .entity_id(datastore)
                .ok_or_else(|| Error::BadInput(format!("`{datastore}` is not in the topology")))?;
            match &topo.entity(id).spec {
                EntitySpec::Datastore(d) if d.kind == drctl_core::topology::DatastoreKind::Postgres => Ok(d
                    .replicas
                    .iter()
                    .map(|r| format!("{datastore} standby in {}: WAL replay paused", topo.zones[r.zone].name))
                    .collect()),
                _ => Err(Error::BadInput(format!(
                    "replication-pause outside the lab works on postgres datastores only; `{datastore}` is not one"
                ))),
            }
        }
        other => Err(Error::BadInput(format!(
            "a `{}` fault needs the lab's fault proxies: run the drill with --lab, or on a topology written by `drctl lab up`",
            kind_of(other)
        ))),
    }
}

async fn pg_replay(topo: &Topology, datastore: &str, pause: bool) -> Result<(), Error> {
    let id = topo.entity_id(datastore).ok_or_else(|| Error::BadInput(format!("no datastore {datastore}")))?;
    let EntitySpec::Datastore(d) = &topo.entity(id).spec else { return Ok(()) };
    for r in &d.replicas {
        if let Location::Postgres { url, .. } = &r.location {
            let c = drctl_providers::postgres::connect(url, Duration::from_secs(5))
                .await
                .map_err(|e| Error::Inject(e.to_string()))?;
            let sql = if pause { "SELECT pg_wal_replay_pause()" } else { "SELECT pg_wal_replay_resume()" };
            c.batch_execute(sql).await.map_err(|e| Error::Inject(format!("{}: {e}", drctl_providers::redact(url))))?;
        }
    }
    Ok(())
}

struct Injector<'a> {
    lab: Option<&'a LabClient>,
    topo: &'a Topology,
}

impl Injector<'_> {
    async fn inject(&self, f: &FaultRequest) -> Result<(Option<u64>, Vec<String>), Error> {
        match self.lab {
            Some(lab) => {
                let r = lab.inject(f, false).await?;
                Ok((Some(r.id), r.hits))
            }
            None => {
                let hits = no_lab_hits(self.topo, f)?;
                if let FaultRequest::ReplicationPause { datastore } = f {
                    pg_replay(self.topo, datastore, true).await?;
                }
                Ok((None, hits))
            }
        }
    }

    async fn heal(&self, id: Option<u64>, f: &FaultRequest) -> Result<Vec<String>, Error> {
        match (self.lab, id) {
            (Some(lab), Some(id)) => Ok(lab.heal(id).await?),
            (None, _) => {
                if let FaultRequest::ReplicationPause { datastore } = f {
                    pg_replay(self.topo, datastore, false).await?;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// (zone, entity, URL) of every datastore member, for scope detection.
fn members(topo: &Topology) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (_, e, d) in topo.datastores() {
        for m in d.primary.iter().chain(&d.replicas) {
            let url = match &m.location {
                Location::Postgres { url, .. } => url.clone(),
                Location::S3 { endpoint: Some(ep), .. } => ep.clone(),
                _ => continue,
            };
            out.push((topo.zones[m.zone].name.clone(), e.name.clone(), url));
        }
    }
    out
}

/// Whether a member answers its own protocol (a TCP handshake alone proves
/// little: the kernel completes it before any program accepts).
async fn reachable(url: &str) -> bool {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let probe = async {
            let c = drctl_providers::postgres::connect(url, SCOPE_PROBE_TIMEOUT).await.ok()?;
            Some(c.simple_query("SELECT 1").await.is_ok())
        };
        return matches!(tokio::time::timeout(SCOPE_PROBE_TIMEOUT, probe).await, Ok(Some(true)));
    }
    let client = reqwest::Client::builder().no_proxy().timeout(SCOPE_PROBE_TIMEOUT).build();
    match client {
        // Any HTTP answer (S3 says 403 to an unsigned request) means it is up.
        Ok(c) => c.get(url).send().await.is_ok(),
        Err(_) => false,
    }
}

/// Works out what was lost: zones where no member answers, else datastores whose primary is gone.
async fn detect_scope(topo: &Topology, state: &State) -> (Vec<String>, Vec<String>) {
    let addrs = members(topo);
    let results = futures::future::join_all(addrs.iter().map(|(_, _, url)| reachable(url))).await;
    let mut zones = Vec::new();
    for z in &topo.zones {
        let mine: Vec<bool> =
            addrs.iter().zip(&results).filter(|((zn, _, _), _)| *zn == z.name).map(|(_, r)| *r).collect();
        if !mine.is_empty() && mine.iter().all(|r| !r) {
            zones.push(z.name.clone());
        }
    }
    let placements = state.placements().unwrap_or_default();
    let mut targets = Vec::new();
    for (_, e, d) in topo.datastores() {
        let primary_zone = placements
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, z)| z.clone())
            .or_else(|| d.primary.as_ref().map(|p| topo.zones[p.zone].name.clone()));
        let Some(pz) = primary_zone else { continue };
        if zones.contains(&pz) {
            continue;
        }
        let down = addrs
            .iter()
            .zip(&results)
            .filter(|((zn, name, _), _)| *name == e.name && *zn == pz)
            .map(|(_, r)| *r)
            .collect::<Vec<_>>();
        if !down.is_empty() && down.iter().all(|r| !r) {
            targets.push(e.name.clone());
        }
    }
    (zones, targets)
}

struct Probe {
    name: String,
    url: String,
    /// The service's own health timeout (topology `health.timeout`).
    timeout: Duration,
    fails: u32,
    unhealthy_at: Option<f64>,
    recovered_at: Option<f64>,
    healthy_now: bool,
}

/// Runs the drill; heals on every path out, including cancellation.
pub async fn run(opts: Options) -> Result<Report, Error> {
    if opts.experiment.declare == DeclareMode::Controllers && (opts.controllers.is_empty() || opts.token.is_none()) {
        return Err(Error::BadInput(format!(
            "{} declares through highly available controllers: run it with `drctl drill --lab` (which starts one per zone on etcd)",
            opts.experiment.file.display()
        )));
    }
    let clients = opts.clients.clone();
    let topo = opts.topology.clone();
    let say = &opts.say;
    let id = failover::new_id();

    // 1. Steady state.
    let deadline = Instant::now() + opts.steady_timeout + STEADY_FOR;
    let mut steady_since: Option<Instant> = None;
    let before = loop {
        let placements = opts.state.placements().unwrap_or_default();
        let st = drctl_control::live::status(&clients, &topo, &placements).await;
        // Recorded like the controller does: if a primary dies, the
        // preflight judges its standby by the last sample.
        let _ = drctl_control::live::record(&*opts.state, &st, opts.clock.now());
        let mut problems = Vec::new();
        for d in &st.datastores {
            if let Some(e) = &d.error {
                problems.push(format!("{}: {e}", d.name));
            } else if !d.meets_rpo {
                problems.push(format!("{}: RPO {:.1}s over its target", d.name, d.rpo_s.unwrap_or(f64::NAN)));
            }
        }
        for s in &st.services {
            if !s.healthy {
                problems.push(format!("{}: unhealthy", s.name));
            }
        }
        if problems.is_empty() {
            let since = *steady_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= STEADY_FOR {
                break st;
            }
        } else {
            steady_since = None;
        }
        if !problems.is_empty() && Instant::now() >= deadline {
            return Err(Error::Unsteady(problems.join("; ")));
        }
        opts.clock.sleep(Duration::from_millis(500)).await;
    };
    say(&format!(
        "steady state for {}s: every service healthy, every datastore within its RPO target",
        STEADY_FOR.as_secs()
    ));

    let clock = Clock::start(opts.clock.clone());
    let mut timeline = vec![TimelineEvent { at_s: 0.0, kind: "steady".into(), what: "steady state verified".into() }];
    let injector = Injector { lab: opts.lab.as_ref(), topo: &topo };
    let mut faults: Vec<(FaultRecord, Option<u64>, Duration)> = opts
        .experiment
        .faults
        .iter()
        .map(|f| {
            let req = FaultRequest::from(&f.fault);
            (
                FaultRecord {
                    kind: kind_of(&req),
                    fault: req,
                    hits: Vec::new(),
                    injected_at_s: None,
                    healed_at_s: None,
                },
                None,
                f.after,
            )
        })
        .collect();
    let mut probes: Vec<Probe> = topo
        .services()
        .filter_map(|(_, e, s)| {
            s.health.as_ref().map(|h| Probe {
                name: e.name.clone(),
                url: h.url.clone(),
                timeout: h.timeout,
                fails: 0,
                unhealthy_at: None,
                recovered_at: None,
                healthy_now: true,
            })
        })
        .collect();

    let mut detected_at: Option<f64> = None;
    let mut declared_at: Option<f64> = None;
    let mut execution: Option<String> = None;
    let mut exec_task: Option<tokio::task::JoinHandle<Result<drctl_engine::Ended, drctl_control::Error>>> = None;
    let mut exec_done: Option<String> = None;
    let mut scope: Option<serde_json::Value> = None;
    let mut stopped_early: Option<String> = None;
    let mut last_stop_check = Instant::now();
    let cancel = opts.cancel.clone();
    let mut undetermined_logged = false;
    let http = clients.http().clone();

    let outcome: Result<(), Error> = async {
        loop {
            if cancel.is_cancelled() {
                stopped_early = Some("interrupted by the operator".into());
                say("interrupted: healing and reporting");
                break;
            }
            let now = clock.now();
            // Inject faults that are due.
            for (rec, fid, after) in faults.iter_mut() {
                if rec.injected_at_s.is_none() && now >= after.as_secs_f64() {
                    let (id, hits) = injector.inject(&rec.fault).await?;
                    rec.injected_at_s = Some(clock.now());
                    *fid = id;
                    rec.hits = hits;
                    say(&format!("{:>6.2}s  injected {}: {}", clock.now(), rec.kind, rec.hits.join("; ")));
                    timeline.push(TimelineEvent {
                        at_s: clock.now(),
                        kind: "fault".into(),
                        what: format!("{}: {}", rec.kind, rec.hits.join("; ")),
                    });
                }
            }
            let first_fault = faults.iter().filter_map(|f| f.0.injected_at_s).reduce(f64::min);

            // Probe every service.
            let results = futures::future::join_all(
                probes.iter().map(|p| drctl_providers::http::check(&http, &p.url, p.timeout)),
            )
            .await;
            let at = clock.now();
            for (p, r) in probes.iter_mut().zip(results) {
                match r {
                    Ok(()) => {
                        p.fails = 0;
                        if !p.healthy_now && p.unhealthy_at.is_some() {
                            p.recovered_at = Some(at);
                            say(&format!("{at:>6.2}s  {} healthy again", p.name));
                            timeline.push(TimelineEvent {
                                at_s: at,
                                kind: "recovered".into(),
                                what: format!("{} healthy", p.name),
                            });
                        }
                        p.healthy_now = true;
                    }
                    Err(why) => {
                        p.fails += 1;
                        if p.healthy_now && first_fault.is_some() {
                            p.healthy_now = false;
                            p.recovered_at = None;
                            if p.unhealthy_at.is_none() {
                                p.unhealthy_at = Some(at);
                            }
                            say(&format!("{at:>6.2}s  {} unhealthy: {why}", p.name));
                            timeline.push(TimelineEvent {
                                at_s: at,
                                kind: "unhealthy".into(),
                                what: format!("{}: {why}", p.name),
                            });
                        }
                    }
                }
            }

            // Detect and declare.
            let outage: Vec<String> =
                probes.iter().filter(|p| p.fails >= DETECT_FAILURES).map(|p| p.name.clone()).collect();
            if detected_at.is_none() && !outage.is_empty() && first_fault.is_some() {
                detected_at = Some(clock.now());
                say(&format!(
                    "{:>6.2}s  detected: {} failed {DETECT_FAILURES} checks in a row",
                    clock.now(),
                    outage.join(", ")
                ));
                timeline.push(TimelineEvent {
                    at_s: clock.now(),
                    kind: "detected".into(),
                    what: format!("{} down", outage.join(", ")),
                });
            }
            let auto = matches!(opts.experiment.declare, DeclareMode::Auto | DeclareMode::Controllers);
            if auto && detected_at.is_some() && execution.is_none() {
                let (zones, targets) = detect_scope(&topo, &*opts.state).await;
                if zones.is_empty() && targets.is_empty() {
                    if !undetermined_logged {
                        undetermined_logged = true;
                        say(&format!(
                            "{:>6.2}s  no zone or primary is lost: nothing to fail over, watching",
                            clock.now()
                        ));
                        timeline.push(TimelineEvent {
                            at_s: clock.now(),
                            kind: "note".into(),
                            what: "no zone or primary lost: not declared".into(),
                        });
                    }
                } else {
                    let decl = Declaration {
                        zones: zones.clone(),
                        regions: Vec::new(),
                        targets: targets.clone(),
                        reason: format!("drill {}: {} unhealthy", opts.experiment.name, outage.join(", ")),
                        force: false,
                        parallel: opts.parallel,
                    };
                    scope = Some(serde_json::json!({ "zones": zones, "regions": [], "targets": targets }));
                    let accepted = if let (false, Some(token)) = (opts.controllers.is_empty(), &opts.token) {
                        let body = serde_json::json!({
                            "zones": zones, "targets": targets, "reason": decl.reason, "parallel": decl.parallel,
                        });
                        match declare_via_controllers(&opts.controllers, token, &body).await {
                            Ok(Some((exec_id, via))) => Some((exec_id, Some(via))),
                            Ok(None) => {
                                say(&format!("{:>6.2}s  no controller takes declarations yet", clock.now()));
                                None
                            }
                            Err(why) => {
                                stopped_early = Some(why);
                                break;
                            }
                        }
                    } else {
                        let declarer = Declarer::new(topo.clone(), opts.state.clone(), clients.clone());
                        let proposal = declarer.propose(decl, Some(format!("{id}-failover"))).await?;
                        for c in &proposal.prepared.checks {
                            say(&format!(
                                "          check {} {}: {}",
                                if c.ok { "ok " } else { "NO " },
                                c.subject,
                                c.detail
                            ));
                        }
                        let exec_id = proposal.id.clone();
                        let who = Actor::new("drill", "controller");
                        // The drill announces itself; its failover opens no incident of its own.
                        if declarer.record(&proposal, &who, false, IncidentPolicy::None)? == Recorded::Refused {
                            stopped_early =
                                Some(format!("the declaration was refused: {}", proposal.refusals().join("; ")));
                            break;
                        }
                        let eid = exec_id.clone();
                        exec_task = Some(tokio::spawn(async move { declarer.run(&eid).await }));
                        Some((exec_id, None))
                    };
                    if let Some((exec_id, via)) = accepted {
                        declared_at = Some(clock.now());
                        let through = via.as_deref().map(|v| format!(" through {v}")).unwrap_or_default();
                        say(&format!(
                            "{:>6.2}s  declared {exec_id}{through}: zones [{}] targets [{}]",
                            clock.now(),
                            zones.join(", "),
                            targets.join(", ")
                        ));
                        timeline.push(TimelineEvent {
                            at_s: clock.now(),
                            kind: "declared".into(),
                            what: match via {
                                Some(_) => format!("execution {exec_id}, through the controllers"),
                                None => format!("execution {exec_id}"),
                            },
                        });
                        execution = Some(exec_id);
                    }
                }
            }
            if opts.experiment.declare == DeclareMode::Manual && execution.is_none() && first_fault.is_some() {
                if let Ok(rows) = opts.state.executions() {
                    if let Some(r) = rows.iter().find(|r| r.declared_at >= clock.wall0) {
                        declared_at = Some(clock.of(r.declared_at));
                        scope = serde_json::from_str::<serde_json::Value>(&r.options).ok();
                        say(&format!("{:>6.2}s  declared by an operator: {}", declared_at.unwrap_or(0.0), r.id));
                        timeline.push(TimelineEvent {
                            at_s: declared_at.unwrap_or(0.0),
                            kind: "declared".into(),
                            what: format!("execution {}", r.id),
                        });
                        execution = Some(r.id.clone());
                    }
                }
            }

            // The execution's end.
            if let (Some(eid), None) = (&execution, &exec_done) {
                let finished = match &exec_task {
                    Some(t) => t.is_finished(),
                    None => opts.state.execution(eid).map(|r| exec_state::is_final(&r.state)).unwrap_or(false),
                };
                if finished {
                    if let Some(t) = exec_task.take() {
                        match t.await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => say(&format!("          execution error: {e}")),
                            Err(e) => say(&format!("          execution task: {e}")),
                        }
                    }
                    let st = opts.state.execution(eid).map(|r| r.state).unwrap_or_else(|_| "unknown".into());
                    say(&format!("{:>6.2}s  execution {eid} {st}", clock.now()));
                    timeline.push(TimelineEvent {
                        at_s: clock.now(),
                        kind: "executed".into(),
                        what: format!("execution {st}"),
                    });
                    exec_done = Some(st);
                }
            }

            // Stop conditions.
            if last_stop_check.elapsed() >= Duration::from_secs(1) && first_fault.is_some() {
                last_stop_check = Instant::now();
                if let Some(why) =
                    check_stop_when(&opts.experiment.stop_when, &clients, &topo, &*opts.state, &probes, &clock).await
                {
                    say(&format!("{:>6.2}s  stop_when: {why}", clock.now()));
                    timeline.push(TimelineEvent { at_s: clock.now(), kind: "stopped".into(), what: why.clone() });
                    stopped_early = Some(why);
                    break;
                }
            }
            let all_injected = faults.iter().all(|f| f.0.injected_at_s.is_some());
            let all_healthy = probes.iter().all(|p| p.healthy_now);
            if exec_done.is_some() && all_healthy {
                break;
            }
            if exec_done.as_deref().is_some_and(|s| s != exec_state::SUCCEEDED) {
                break;
            }
            if clock.now() >= opts.experiment.duration.as_secs_f64() && all_injected {
                say(&format!("{:>6.2}s  the experiment's duration is over", clock.now()));
                break;
            }
            tokio::select! {
                _ = opts.clock.sleep(PROBE_INTERVAL) => {}
                _ = cancel.cancelled() => {}
            }
        }
        Ok(())
    }
    .await;

    // An execution still running at the end is asked to stop.
    if let (Some(eid), None) = (&execution, &exec_done) {
        if let Ok(s) = opts.state.request_abort(eid) {
            say(&format!("{:>6.2}s  execution {eid} still running: abort requested ({s})", clock.now()));
        }
        if let Some(mut t) = exec_task.take() {
            // Healing must not start under a failover still acting: past the
            // grace period the task is cancelled, and awaited, so nothing it
            // started outlives this point. The journal says where it stopped.
            if tokio::time::timeout(Duration::from_secs(30), &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
                say(&format!(
                    "{:>6.2}s  execution {eid} cancelled after 30 s; its journal says where it stopped",
                    clock.now()
                ));
            }
        }
    }

    // Measure what was lost before healing (healing restarts old primaries).
    let plan_steps: Vec<drctl_core::plan::Step> = execution
        .as_ref()
        .and_then(|e| opts.state.execution(e).ok())
        .and_then(|r| serde_json::from_str::<drctl_core::plan::Plan>(&r.plan).ok())
        .map(|p| p.steps)
        .unwrap_or_default();
    let journal = execution.as_ref().and_then(|e| opts.state.steps(e).ok()).unwrap_or_default();
    let mut datastores = Vec::new();
    for (_, e, d) in topo.datastores() {
        let failed_over_to =
            plan_steps.iter().filter(|s| s.entity == e.name).filter_map(|s| s.to_zone.clone()).next().filter(|_| {
                journal
                    .iter()
                    .filter(|s| s.entity == e.name)
                    .all(|s| s.state == drctl_state::journal::StepState::Succeeded)
                    && journal.iter().any(|s| s.entity == e.name)
            });
        let lag_before = before.datastores.iter().find(|x| x.name == e.name).and_then(|x| x.rpo_s);
        let target = e.targets.rpo.map(|t| t.as_secs_f64());
        let counted = matches!(e.name.as_str(), "orders-db" | "assets") && opts.lab.is_some();
        let (rpo, lost, elsewhere, how) = match (&opts.lab, &failed_over_to) {
            (Some(lab), Some(z)) if counted => match lab.loss(&e.name, z).await {
                Ok(l) => (
                    Some(l.rpo_s),
                    Some(l.lost_writes),
                    Some(l.acknowledged_elsewhere),
                    format!("counted: acknowledged writes missing from the new primary in {z}"),
                ),
                Err(err) => (None, None, None, format!("could not count: {err}")),
            },
            (Some(_), None) if counted => {
                (Some(0.0), Some(0), None, "no failover: the primary kept every write".into())
            }
            (_, Some(_)) => (lag_before, None, None, "estimated: the lag measured just before the fault".into()),
            (_, None) => (Some(0.0), None, None, "no failover".into()),
        };
        let meets = match (rpo, target) {
            (Some(r), Some(t)) => r <= t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        datastores.push(DatastoreResult {
            name: e.name.clone(),
            kind: d.kind.as_str().to_string(),
            failed_over_to,
            rpo_s: rpo,
            rpo_target_s: target,
            meets_rpo: meets,
            lost_writes: lost,
            acknowledged_elsewhere: elsewhere,
            writable_primaries_max: None,
            split_brain_writes: None,
            lag_before_fault_s: lag_before,
            how,
        });
    }

    // Heal, always.
    for (rec, fid, _) in faults.iter_mut() {
        if rec.injected_at_s.is_some() {
            match injector.heal(*fid, &rec.fault).await {
                Ok(notes) => {
                    rec.healed_at_s = Some(clock.now());
                    let extra = if notes.is_empty() { String::new() } else { format!(": {}", notes.join("; ")) };
                    say(&format!("{:>6.2}s  healed {}{extra}", clock.now(), rec.kind));
                    timeline.push(TimelineEvent {
                        at_s: clock.now(),
                        kind: "healed".into(),
                        what: format!("{}{extra}", rec.kind),
                    });
                }
                Err(e) => say(&format!("          could not heal {}: {e}", rec.kind)),
            }
        }
    }
    outcome?;

    // Services still down once the faults are gone: watch them recover
    // (their RTO then includes the time the fault lasted, as users felt it).
    let watch_until = Instant::now() + RECOVERY_WATCH;
    while probes.iter().any(|p| !p.healthy_now) && Instant::now() < watch_until && !cancel.is_cancelled() {
        let results =
            futures::future::join_all(probes.iter().map(|p| drctl_providers::http::check(&http, &p.url, p.timeout)))
                .await;
        let at = clock.now();
        for (p, r) in probes.iter_mut().zip(results) {
            if r.is_ok() && !p.healthy_now {
                p.healthy_now = true;
                p.recovered_at = Some(at);
                say(&format!("{at:>6.2}s  {} healthy again", p.name));
                timeline.push(TimelineEvent {
                    at_s: at,
                    kind: "recovered".into(),
                    what: format!("{} healthy", p.name),
                });
            }
        }
        opts.clock.sleep(PROBE_INTERVAL).await;
    }

    // Safety, over the whole drill (healing included): did two members ever take writes?
    let mut safety_violations = Vec::new();
    if let Some(lab) = &opts.lab {
        let since_ms = clock.wall0.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        for d in datastores.iter_mut().filter(|d| d.kind == "postgres") {
            match lab.safety(&d.name, since_ms).await {
                // A drill shorter than a probe round (interrupted at once): not probed.
                Ok(s) if s.probe_rounds == 0 && clock.now() < 2.0 => {}
                Ok(s) => {
                    d.writable_primaries_max = Some(s.writable_primaries_max);
                    d.split_brain_writes = Some(s.split_brain_writes);
                    if s.writable_primaries_max > 1 {
                        safety_violations.push(format!(
                            "{}: {} members took writes at the same moment",
                            d.name, s.writable_primaries_max
                        ));
                    }
                    if s.split_brain_writes > 0 {
                        safety_violations.push(format!(
                            "{}: {} writes acknowledged by a member after another was promoted",
                            d.name, s.split_brain_writes
                        ));
                    }
                    if s.probe_rounds == 0 {
                        safety_violations.push(format!("{}: the split-brain probes did not run", d.name));
                    }
                }
                Err(e) => safety_violations.push(format!("{}: the split-brain check failed: {e}", d.name)),
            }
        }
    }
    for v in &safety_violations {
        say(&format!("          UNSAFE: {v}"));
        timeline.push(TimelineEvent { at_s: clock.now(), kind: "unsafe".into(), what: v.clone() });
    }

    // Steps, on the drill's clock.
    let steps: Vec<StepRecord> = journal
        .iter()
        .map(|s| StepRecord {
            id: s.id.clone(),
            entity: s.entity.clone(),
            action: s.action.clone(),
            state: s.state.as_str().into(),
            started_s: s.started_at.map(|t| clock.of(t)),
            finished_s: s.finished_at.map(|t| clock.of(t)),
            note: s.note.clone(),
            error: s.error.clone(),
            ran_by: s.ran_by.clone(),
        })
        .collect();
    let first_fault = faults.iter().filter_map(|f| f.0.injected_at_s).reduce(f64::min);
    let affected: Vec<&str> = plan_steps.iter().map(|s| s.entity.as_str()).collect();
    let services: Vec<ServiceResult> = topo
        .services()
        .map(|(_, e, _)| {
            let p = probes.iter().find(|p| p.name == e.name);
            let unhealthy = p.and_then(|p| p.unhealthy_at);
            let recovered = p.and_then(|p| if p.healthy_now { p.recovered_at } else { None });
            let never_down = unhealthy.is_none() && p.is_some_and(|p| p.healthy_now);
            let in_plan = affected.contains(&e.name.as_str());
            // Without a health check, the journal says when its failover ended.
            let journal_done = journal
                .iter()
                .filter(|s| s.entity == e.name)
                .map(|s| (s.state == drctl_state::journal::StepState::Succeeded, s.finished_at))
                .try_fold(None, |acc: Option<f64>, (ok, at)| {
                    let t = clock.of(at?);
                    ok.then_some(Some(acc.map_or(t, |a| a.max(t))))
                })
                .flatten();
            let rto = if never_down {
                Some(0.0)
            } else {
                match (recovered, declared_at, unhealthy) {
                    (Some(r), Some(d), _) => Some((r - d).max(0.0)),
                    (Some(r), None, Some(u)) => Some(r - u),
                    _ if p.is_none() && in_plan => journal_done.zip(declared_at).map(|(f, d)| (f - d).max(0.0)),
                    _ => None,
                }
            };
            let from_fault = if never_down {
                Some(0.0)
            } else if p.is_none() {
                journal_done.zip(first_fault).map(|(r, f)| r - f)
            } else {
                recovered.zip(first_fault).map(|(r, f)| r - f)
            };
            let target = e.targets.rto.map(|t| t.as_secs_f64());
            // No health check and no failover: nothing to measure, nothing missed.
            let unmeasured = p.is_none() && !in_plan;
            ServiceResult {
                name: e.name.clone(),
                tier: e.tier.map(|t| topo.tiers[t].name.clone()),
                affected: in_plan || unhealthy.is_some(),
                rto_s: rto,
                rto_from_fault_s: from_fault,
                rto_target_s: target,
                meets_rto: unmeasured
                    || match (rto, target) {
                        (Some(r), Some(t)) => r <= t,
                        (Some(_), None) => true,
                        (None, _) => false,
                    },
                unhealthy_at_s: unhealthy,
                recovered_at_s: recovered,
            }
        })
        .collect();
    let recovered_at = if services.iter().all(|s| s.recovered_at_s.is_some() || !s.affected) {
        services.iter().filter_map(|s| s.recovered_at_s).reduce(f64::max)
    } else {
        None
    };
    let safe = safety_violations.is_empty();
    let objectives_met = stopped_early.is_none()
        && safe
        && services.iter().all(|s| s.meets_rto)
        && datastores.iter().all(|d| d.meets_rpo)
        && exec_done.as_deref().is_none_or(|s| s == exec_state::SUCCEEDED);
    let execution_state = execution.as_ref().and_then(|e| opts.state.execution(e).ok()).map(|r| r.state);
    timeline.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Ok(Report {
        id,
        experiment: opts.experiment.name.clone(),
        description: opts.experiment.description.clone(),
        topology: topo.name.clone(),
        declare: match opts.experiment.declare {
            DeclareMode::Auto => "auto",
            DeclareMode::Manual => "manual",
            DeclareMode::Controllers => "controllers",
        }
        .into(),
        started_at: failover::rfc3339(clock.wall0),
        finished_at: failover::rfc3339(clock.wall()),
        duration_s: clock.now(),
        detected_at_s: detected_at,
        declared_at_s: declared_at,
        recovered_at_s: recovered_at,
        execution,
        execution_state,
        scope,
        stopped_early,
        objectives_met,
        safe,
        safety_violations,
        faults: faults.into_iter().map(|f| f.0).collect(),
        steps,
        services,
        datastores,
        timeline,
        thresholds: serde_json::json!({
            "probe_interval_s": PROBE_INTERVAL.as_secs_f64(),
            "probe_timeout": "each service's health timeout",
            "scope_probe_timeout_s": SCOPE_PROBE_TIMEOUT.as_secs_f64(),
            "recovery_watch_s": RECOVERY_WATCH.as_secs_f64(),
            "failures_to_detect": DETECT_FAILURES,
        }),
    })
}

async fn check_stop_when(
    conditions: &[StopWhen],
    clients: &Clients,
    topo: &Topology,
    state: &State,
    probes: &[Probe],
    clock: &Clock,
) -> Option<String> {
    if conditions.is_empty() {
        return None;
    }
    let mut status = None;
    for c in conditions {
        match c {
            StopWhen::RpoAbove { datastore, bound } => {
                if status.is_none() {
                    let placements = state.placements().unwrap_or_default();
                    let st = drctl_control::live::status(clients, topo, &placements).await;
                    let _ = drctl_control::live::record(state, &st, clock.wall());
                    status = Some(st);
                }
                let rpo = status.as_ref()?.datastores.iter().find(|d| d.name == *datastore).and_then(|d| d.rpo_s);
                if let Some(r) = rpo.filter(|r| *r > bound.as_secs_f64()) {
                    return Some(format!("{datastore}'s RPO is {r:.1}s, above {}s", bound.as_secs_f64()));
                }
            }
            StopWhen::RtoAbove { service, bound } => {
                if let Some(p) = probes.iter().find(|p| p.name == *service) {
                    if let (false, Some(u)) = (p.healthy_now, p.unhealthy_at) {
                        let down = clock.now() - u;
                        if down > bound.as_secs_f64() {
                            return Some(format!("{service} has been down {down:.1}s, above {}s", bound.as_secs_f64()));
                        }
                    }
                }
            }
        }
    }
    None
}
