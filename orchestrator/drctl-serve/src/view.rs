//! What the status page says, computed once per snapshot from the latest
//! measurement and the state store, and shared by every rendering (HTML in
//! each language, docs/lag-and-rpo.md JSON, Statuspage JSON, Atom, Prometheus).

use drctl_backup::report::RestoreTest;
use drctl_core::status::StatusReport;
use drctl_core::topology::{EntitySpec, Topology};
use drctl_state::controller::{DrillRow, Incident, Maintenance, UptimeDay};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// A service's state, in Atlassian Statuspage's words (their page and
/// widgets read these unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Operational => "operational",
            State::UnderMaintenance => "under_maintenance",
            State::DegradedPerformance => "degraded_performance",
            State::PartialOutage => "partial_outage",
            State::MajorOutage => "major_outage",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub id: String,
    pub experiment: String,
    pub at: SystemTime,
    pub rto_s: Option<f64>,
    pub rpo_s: Option<f64>,
    pub lost_writes: Option<u64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub tier: Option<String>,
    pub state: State,
    pub healthy: Option<bool>,
    /// The worst live RPO among the datastores it depends on (directly or not).
    pub rpo_s: Option<f64>,
    pub rpo_target_s: Option<f64>,
    pub rto_estimate_s: Option<f64>,
    pub rto_target_s: Option<f64>,
    pub last_drill: Option<LastDrill>,
    /// 90 entries, oldest first: (day, checks, healthy); checks 0 = no data.
    pub uptime: Vec<UptimeDay>,
    /// Healthy checks over checks made, in percent, over `uptime_days`.
    pub uptime_90d: Option<f64>,
    /// The days the uptime is measured over: from the first day sampled.
    pub uptime_days: i64,
    /// The share (percent) of that time the controller itself was not
    /// sampling (down, restarting): unknown, counted neither up nor down.
    pub uptime_unknown_pct: Option<f64>,
    /// Why the service is not operational, in one line (`None` when it is).
    pub why: Option<Why>,
}

/// Why a service is in the state the page shows, in words a customer
/// reads: a banner without a reason makes people guess.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Its health check fails (and, when `failing_over`, it is being moved).
    Down {
        failing_over: bool,
    },
    Maintenance {
        title: String,
    },
    FailingOver,
    Incident {
        title: String,
    },
    /// The data a failure would lose now is above its target.
    RpoOver {
        rpo_s: f64,
        target_s: f64,
    },
    /// Nothing measures that its data is protected right now.
    RpoUnknown,
    /// A failover would take longer than its target (or cannot recover it).
    RtoOver {
        rto_s: Option<f64>,
        target_s: Option<f64>,
    },
}

#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub now: SystemTime,
    pub measured_at: Option<String>,
    pub status: Option<StatusReport>,
    pub overall: State,
    pub services: Vec<ServiceView>,
    /// Tier names in the topology's order, then "other".
    pub tiers: Vec<String>,
    pub active_incidents: Vec<Incident>,
    pub past_incidents: Vec<Incident>,
    pub maintenance: Vec<Maintenance>,
    pub running_executions: Vec<(String, Vec<String>)>,
    /// Health checks in a fully sampled day (from the sampling interval).
    pub expected_checks_per_day: i64,
    /// Whether the page offers the subscribe form (a controller that
    /// sends e-mail; never an exported copy).
    pub subscribe_form: bool,
    /// Each datastore's last restore test (drctl-backup records it), by name.
    pub restore_tests: Vec<(String, RestoreTest)>,
}

pub const UPTIME_DAYS: i64 = 90;

fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 86_400)
}

/// The datastores a service depends on, directly or through other services.
pub(crate) fn datastores_under(topo: &Topology, id: usize) -> Vec<usize> {
    let mut seen = vec![false; topo.entities.len()];
    let mut stack = vec![id];
    let mut out = Vec::new();
    while let Some(e) = stack.pop() {
        for &d in &topo.entity(e).depends_on {
            if !seen[d] {
                seen[d] = true;
                if matches!(topo.entity(d).spec, EntitySpec::Datastore(_)) {
                    out.push(d);
                }
                stack.push(d);
            }
        }
    }
    out
}

/// Each datastore's last restore test, read from the state store (for [`Inputs`]).
pub(crate) fn restore_tests(topo: &Topology, state: &drctl_state::State) -> Vec<(String, RestoreTest)> {
    topo.datastores()
        .filter_map(|(_, e, _)| Some((e.name.clone(), drctl_backup::report::last_test(state, &e.name)?)))
        .collect()
}

/// What a drill measured for one service (`deps`: the datastores under
/// it); `None` when the drill did not cover it.
pub(crate) fn drill_result(
    topo: &Topology,
    service: &str,
    deps: &[usize],
    row: &DrillRow,
    rep: &serde_json::Value,
) -> Option<LastDrill> {
    let s = rep["services"].as_array()?.iter().find(|s| s["name"] == service)?;
    let ds: Vec<&serde_json::Value> = rep["datastores"]
        .as_array()
        .map(|a| a.iter().filter(|d| deps.iter().any(|x| d["name"] == topo.entity(*x).name.as_str())).collect())
        .unwrap_or_default();
    let rpo =
        ds.iter().filter_map(|d| d["rpo_s"].as_f64()).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let lost = ds.iter().filter_map(|d| d["lost_writes"].as_u64()).reduce(|a, b| a + b);
    let passed = s["meets_rto"] == true && ds.iter().all(|d| d["meets_rpo"] == true);
    Some(LastDrill {
        id: row.id.clone(),
        experiment: row.experiment.clone(),
        at: row.finished_at.unwrap_or(row.started_at),
        rto_s: s["rto_s"].as_f64(),
        rpo_s: rpo,
        lost_writes: lost,
        passed,
    })
}

pub struct Inputs<'a> {
    pub topo: &'a Topology,
    pub status: Option<&'a StatusReport>,
    pub incidents: Vec<Incident>,
    pub maintenance: Vec<Maintenance>,
    pub uptime: HashMap<String, Vec<UptimeDay>>,
    pub drills: &'a [DrillRow],
    pub running_executions: Vec<(String, Vec<String>)>,
    pub now: SystemTime,
    pub expected_checks_per_day: i64,
    /// Each datastore's last restore test, by name (those never tested absent).
    pub restore_tests: Vec<(String, RestoreTest)>,
}

/// Over how many days the uptime is measured (from the first day with a
/// check to today), and what share of that time no check was made: the
/// controller was down. The first day counts from its first check (when
/// the controller was started, not a gap), today up to now.
fn unknown_share(days: &[UptimeDay], today: i64, now: SystemTime, expected_per_day: i64) -> (i64, Option<f64>) {
    let Some(first) = days.iter().position(|d| d.checks > 0) else { return (0, None) };
    let measured = &days[first..];
    if expected_per_day <= 0 {
        return (measured.len() as i64, None);
    }
    let into_today = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| (d.as_secs_f64() % 86_400.0) / 86_400.0);
    let (mut expected, mut missing) = (0.0f64, 0.0f64);
    for (n, d) in measured.iter().enumerate() {
        let full = expected_per_day as f64;
        let e = if d.day == today { full * into_today } else { full };
        // The first day: from the first check on, whatever it held.
        let e = if n == 0 { d.checks as f64 } else { e };
        expected += e;
        missing += (e - d.checks as f64).max(0.0);
    }
    let pct = if expected > 0.0 { missing / expected * 100.0 } else { 0.0 };
    (measured.len() as i64, Some(pct))
}

pub fn build(i: Inputs) -> View {
    let topo = i.topo;
    let today = day_of(i.now);
    let active_maintenance: Vec<&Maintenance> =
        i.maintenance.iter().filter(|m| m.starts_at <= i.now && i.now < m.ends_at).collect();
    let (active, past): (Vec<Incident>, Vec<Incident>) = i.incidents.into_iter().partition(|x| x.status != "resolved");
    let drills: Vec<(&DrillRow, serde_json::Value)> = i
        .drills
        .iter()
        .filter_map(|d| Some((d, serde_json::from_str::<serde_json::Value>(d.report.as_deref()?).ok()?)))
        .collect();
    let mut services = Vec::new();
    for (id, e, _) in topo.services() {
        let st = i.status.and_then(|s| s.services.iter().find(|x| x.name == e.name));
        let deps = datastores_under(topo, id);
        let rpo = i.status.map(|s| {
            deps.iter()
                .filter_map(|d| s.datastores.iter().find(|x| x.name == topo.entity(*d).name))
                .map(|x| x.rpo_s)
                .collect::<Vec<_>>()
        });
        // Unknown RPO of any dependency makes the service's unknown.
        let rpo_s = rpo.and_then(|v| v.into_iter().try_fold(0.0f64, |acc, r| r.map(|r| acc.max(r))));
        let rpo_target_s = e.targets.rpo.map(|d| d.as_secs_f64());
        let in_maintenance = active_maintenance.iter().any(|m| m.services.contains(&e.name));
        let in_incident = active.iter().any(|x| x.services.contains(&e.name));
        let failing_over = i.running_executions.iter().any(|(_, ents)| ents.contains(&e.name));
        let healthy = st.map(|s| s.healthy);
        // A dependency whose RPO cannot be measured (no replica left to
        // fail over to, or unreachable) leaves the service unprotected.
        let rpo_missed = match (rpo_s, rpo_target_s) {
            (Some(r), Some(t)) => r > t,
            (None, Some(_)) => i.status.is_some() && !deps.is_empty(),
            _ => false,
        };
        let objectives_missed = st.is_some_and(|s| !s.meets_rto) || rpo_missed;
        let state = match healthy {
            Some(false) if failing_over => State::PartialOutage,
            Some(false) => State::MajorOutage,
            _ if in_maintenance => State::UnderMaintenance,
            _ if failing_over => State::PartialOutage,
            _ if in_incident || objectives_missed => State::DegradedPerformance,
            _ => State::Operational,
        };
        let rto_target = e.targets.rto.map(|d| d.as_secs_f64());
        let why = match state {
            State::Operational => None,
            State::MajorOutage | State::PartialOutage if healthy == Some(false) => Some(Why::Down { failing_over }),
            State::PartialOutage => Some(Why::FailingOver),
            State::UnderMaintenance => active_maintenance
                .iter()
                .find(|m| m.services.contains(&e.name))
                .map(|m| Why::Maintenance { title: m.title.clone() }),
            State::MajorOutage => Some(Why::Down { failing_over }),
            State::DegradedPerformance => {
                let rto = || {
                    st.filter(|s| !s.meets_rto).map(|s| Why::RtoOver { rto_s: s.rto_estimate_s, target_s: rto_target })
                };
                let over = match (rpo_s, rpo_target_s) {
                    (Some(r), Some(t)) if r > t => Some(Why::RpoOver { rpo_s: r, target_s: t }),
                    _ => None,
                };
                let incident = active.iter().find(|x| x.services.contains(&e.name));
                Some(
                    incident
                        .map(|x| Why::Incident { title: x.title.clone() })
                        .or(over)
                        .or_else(|| rpo_missed.then_some(Why::RpoUnknown))
                        .or_else(rto)
                        .unwrap_or(Why::RtoOver { rto_s: None, target_s: rto_target }),
                )
            }
        };
        let last_drill = drills.iter().find_map(|(row, rep)| drill_result(topo, &e.name, &deps, row, rep));
        let days = i.uptime.get(&e.name).cloned().unwrap_or_default();
        let uptime: Vec<UptimeDay> = (today - UPTIME_DAYS + 1..=today)
            .map(|d| days.iter().find(|x| x.day == d).copied().unwrap_or(UptimeDay { day: d, checks: 0, healthy: 0 }))
            .collect();
        let (checks, ok) = uptime.iter().fold((0, 0), |(c, h), d| (c + d.checks, h + d.healthy));
        let (uptime_days, uptime_unknown_pct) = unknown_share(&uptime, today, i.now, i.expected_checks_per_day);
        services.push(ServiceView {
            name: e.name.clone(),
            tier: e.tier.map(|t| topo.tiers[t].name.clone()),
            state,
            healthy,
            rpo_s,
            rpo_target_s,
            rto_estimate_s: st.and_then(|s| s.rto_estimate_s),
            rto_target_s: e.targets.rto.map(|d| d.as_secs_f64()),
            last_drill,
            uptime,
            uptime_90d: (checks > 0).then(|| ok as f64 / checks as f64 * 100.0),
            uptime_days,
            uptime_unknown_pct,
            why,
        });
    }
    let overall = services.iter().map(|s| s.state).max().unwrap_or(State::Operational);
    let mut tiers: Vec<String> = topo.tiers.iter().map(|t| t.name.clone()).collect();
    tiers.push(String::new());
    let cutoff = i.now - std::time::Duration::from_secs(14 * 86_400);
    View {
        name: topo.name.clone(),
        now: i.now,
        measured_at: i.status.map(|s| s.at.clone()),
        status: i.status.cloned(),
        overall,
        services,
        tiers,
        active_incidents: active,
        past_incidents: past.into_iter().filter(|x| x.resolved_at.unwrap_or(x.updated_at) >= cutoff).collect(),
        maintenance: i.maintenance.into_iter().filter(|m| m.ends_at > i.now).collect(),
        running_executions: i.running_executions,
        expected_checks_per_day: i.expected_checks_per_day,
        subscribe_form: false,
        restore_tests: i.restore_tests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_core::status::ServiceStatus;
    use std::time::Duration;

    const TOPO: &str = "version: 1\nname: shop\nzones: [ { name: az1, region: r1 } ]\n\
        objectives: { tier-0: { rpo: 5s, rto: 2m } }\n\
        services: [ { name: checkout, tier: tier-0, zones: [az1] } ]\n";

    fn view(status: Option<StatusReport>, uptime: Vec<UptimeDay>, now: SystemTime) -> View {
        let topo = drctl_core::load_str(TOPO, std::path::Path::new("t.yaml")).topology.unwrap();
        build(Inputs {
            restore_tests: Vec::new(),
            topo: &topo,
            status: status.as_ref(),
            incidents: vec![],
            maintenance: vec![],
            uptime: [("checkout".to_string(), uptime)].into_iter().collect(),
            drills: &[],
            running_executions: vec![],
            now,
            expected_checks_per_day: 1440,
        })
    }

    fn status(healthy: bool, rto: Option<f64>, meets_rto: bool) -> StatusReport {
        StatusReport {
            at: "2026-12-06T00:00:00Z".into(),
            datastores: vec![],
            services: vec![ServiceStatus {
                name: "checkout".into(),
                healthy,
                rto_estimate_s: rto,
                rto_target_s: Some(120.0),
                meets_rto,
                error: None,
            }],
        }
    }

    #[test]
    fn a_state_other_than_operational_says_why() {
        let now = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
        let up = view(Some(status(true, Some(10.0), true)), vec![], now);
        assert_eq!((up.services[0].state, up.services[0].why.clone()), (State::Operational, None));
        let down = view(Some(status(false, Some(10.0), true)), vec![], now);
        assert_eq!(down.services[0].why, Some(Why::Down { failing_over: false }));
        let slow = view(Some(status(true, Some(300.0), false)), vec![], now);
        assert_eq!(slow.services[0].state, State::DegradedPerformance);
        assert_eq!(slow.services[0].why, Some(Why::RtoOver { rto_s: Some(300.0), target_s: Some(120.0) }));
    }

    #[test]
    fn uptime_counts_its_days_and_the_controllers_gaps_as_unknown() {
        let today = 20_000;
        // Noon today; sampled once a minute: yesterday fully, the day
        // before from its first check on, today half as often as expected.
        let now = UNIX_EPOCH + Duration::from_secs(today as u64 * 86_400 + 43_200);
        let days = vec![
            UptimeDay { day: today - 2, checks: 100, healthy: 100 },
            UptimeDay { day: today - 1, checks: 1440, healthy: 1440 },
            UptimeDay { day: today, checks: 360, healthy: 360 },
        ];
        let v = view(Some(status(true, Some(10.0), true)), days, now);
        let s = &v.services[0];
        assert_eq!(s.uptime_days, 3, "measured over 3 days, not 90");
        assert_eq!(s.uptime_90d, Some(100.0));
        // 360 of the 720 checks due this morning are missing: 360 of 100 + 1440 + 720.
        let unknown = s.uptime_unknown_pct.unwrap();
        assert!((unknown - 360.0 / 2260.0 * 100.0).abs() < 0.01, "{unknown}");
    }
}
