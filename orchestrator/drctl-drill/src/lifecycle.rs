//! A drill's life around the experiment itself: audited before it acts,
//! recorded as begun, optionally announced to customers, then recorded
//! with its report, its announcement resolved and its end audited.
//!
//! The CLI (`drctl drill`) and the controller (`POST /api/v1/drills`, the
//! cron scheduler) each used to write this sequence themselves, and they
//! drifted: the CLI audited a drill only after it had run. Both now call
//! [`begin`] before the first fault and [`finish`] after the report.

use crate::drill::Report;
use crate::Error;
use drctl_control::declare::{audit, Actor};
use drctl_core::chaos::Experiment;
use drctl_state::State;
use serde_json::json;

/// A drill that has begun: its id (the report's and the journal's), and
/// the incident announcing it, when it is announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    pub id: String,
    pub experiment: String,
    pub incident: Option<i64>,
    pub who: Actor,
}

/// Audits the drill (an entry that cannot be written stops it before
/// anything is injected), records it as running and, with `announce`,
/// opens an incident naming `services`.
pub fn begin(
    state: &State,
    who: &Actor,
    experiment: &Experiment,
    request: serde_json::Value,
    announce: Option<&[String]>,
) -> Result<Begun, Error> {
    let id = format!("drill-{}", drctl_control::failover::new_id());
    audit(state, who, "drill", &id, &request)?;
    state.begin_drill(&id, &experiment.name).map_err(drctl_control::Error::from)?;
    let incident = match announce {
        None => None,
        Some(services) => state
            .create_incident(
                &format!("Disaster-recovery drill: {}", experiment.name),
                "identified",
                &format!(
                    "A planned drill is testing our failover{}. Short interruptions are expected while it runs.",
                    experiment.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                ),
                services,
                None,
            )
            .ok(),
    };
    Ok(Begun { id, experiment: experiment.name.clone(), incident, who: who.clone() })
}

/// Records how the drill ended: its report (or that it did not run), its
/// announcement resolved with what it measured, and its end audited. The
/// drill has run by now: a record that cannot be written is returned as a
/// warning for the caller to show, never an error that hides the report.
pub fn finish(state: &State, begun: &Begun, result: &Result<Report, Error>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut warn = |what: &str, e: &dyn std::fmt::Display| warnings.push(format!("{what}: {e}"));
    match result {
        Ok(report) => {
            let json = serde_json::to_string(report).unwrap_or_default();
            if let Err(e) = state.finish_drill(&begun.id, Some(report.objectives_met), Some(&json)) {
                warn("cannot record the drill's report", &e);
            }
            if let Some(i) = begun.incident {
                let worst_rto =
                    report.services.iter().filter(|x| x.affected).filter_map(|x| x.rto_s).fold(0.0, f64::max);
                let lost: u64 = report.datastores.iter().filter_map(|d| d.lost_writes).sum();
                let body = format!(
                    "The drill is over; everything is back to normal. Measured: recovery in {worst_rto:.1} s, {lost} writes lost; objectives {}.",
                    if report.objectives_met { "met" } else { "NOT met" }
                );
                if let Err(e) = state.update_incident(i, "resolved", &body) {
                    warn("cannot resolve the drill's incident", &e);
                }
            }
            let request = json!({"experiment": begun.experiment, "objectives_met": report.objectives_met,
                                 "stopped_early": report.stopped_early});
            if let Err(e) = audit(state, &begun.who, "drill.finished", &begun.id, &request) {
                warn("the audit log cannot record the drill's end", &e);
            }
        }
        Err(e) => {
            if let Err(e) = state.finish_drill(&begun.id, None, None) {
                warn("cannot record the drill's end", &e);
            }
            if let Some(i) = begun.incident {
                if let Err(e) = state.update_incident(i, "resolved", &format!("The drill did not run: {e}")) {
                    warn("cannot resolve the drill's incident", &e);
                }
            }
            let request = json!({"experiment": begun.experiment, "error": e.to_string()});
            if let Err(e) = audit(state, &begun.who, "drill.finished", &begun.id, &request) {
                warn("the audit log cannot record the drill's end", &e);
            }
        }
    }
    warnings
}
