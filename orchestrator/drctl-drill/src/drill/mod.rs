//! Running a chaos experiment as a DR drill (docs/reference/runbooks-and-experiments.md).
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
//! 5. **Measure**: per service, RTO from the declaration (the documented
//!    definition) and from the fault; per datastore, the writes really lost,
//!    counted from the lab workload's acknowledgements.
//! 6. **Heal** every fault, on every exit path (end, `stop_when`, error,
//!    Ctrl-C), and check safety: never two writable primaries.
//! 7. **Report**.
//!
//! Each phase is a method of the drill in `phases` ([`run`] calls them in
//! this order); faults are injected and healed in `inject`, and what was
//! lost is found in `detect`.

use crate::Error;
use drctl_control::declare::{Actor, Declarer, IncidentPolicy, Recorded};
use drctl_control::failover::{self, Declaration};
use drctl_control::live::Clients;
use drctl_core::chaos::{DeclareMode, Experiment, StopWhen};
use drctl_core::status::StatusReport;
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
    /// would, and the leader of the moment executes (docs/guide/ha-etcd.md). Empty: the
    /// drill executes in its own process.
    pub controllers: Vec<String>,
    pub token: Option<String>,
    /// The drill's id, when its [`lifecycle`](crate::lifecycle) gave it one.
    pub id: Option<String>,
}

mod detect;
mod inject;
mod owned_failover;
mod phases;
mod recover;

use inject::no_lab_hits;

pub use phases::run;

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
    /// From the declaration until healthy again (docs/reference/topology.md RTO).
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
    /// What the preflight judged the standby lacked, and the bound it
    /// printed on what cannot be known, in its words (when this process declared).
    pub lag_at_declaration: Option<String>,
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
    /// Seconds from the first fault to the declaration (minutes, when a
    /// person declares: `declare: { after }`).
    pub declared_after_fault_s: Option<f64>,
    pub recovered_at_s: Option<f64>,
    pub execution: Option<String>,
    pub execution_state: Option<String>,
    /// The overrides its execution ran with (`--accept-lag`, ...), who
    /// gave each and when; empty when none was used.
    pub overrides: Vec<serde_json::Value>,
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
    /// `recover: restore`: the restore of the (first) damaged datastore,
    /// with the writes it gave back and gave up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<serde_json::Value>,
    /// Every restore, when the experiment damaged more than one datastore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<serde_json::Value>,
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
