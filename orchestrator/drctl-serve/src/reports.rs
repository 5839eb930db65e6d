//! Post-incident reports (docs/customers.md): when an execution behind an incident
//! ends, the leader drafts its report from the journal and the audit log;
//! an operator edits it (`PUT /api/v1/incidents/ID/report`) and publishes
//! it (`POST …/report/publish`), and `/incidents/ID` shows it.
//!
//! The draft states only what was recorded: the timeline, who declared and
//! approved what (the audit log), each step with its times, the RTO per
//! service and the RPO per datastore against their targets, and what is
//! known of writes lost. What caused the incident and what will change are
//! left for a person to write, and the draft says so.

use crate::page::rfc3339;
use crate::Shared;
use drctl_core::topology::{EntitySpec, Topology};
use drctl_state::controller::{AuditEntry, Incident};
use drctl_state::journal::{exec_state, Event, ExecutionRow, StepRow};
use drctl_state::RpoSample;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a draft leaves for a person to write; a report holding it is not
/// published.
pub(crate) const PLACEHOLDER: &str = "(To be written.)";

/// The placeholder a report still holds, if any.
pub(crate) fn placeholder_in(body: &str) -> Option<&'static str> {
    body.contains(PLACEHOLDER).then_some(PLACEHOLDER)
}

/// What the draft is written from.
pub(crate) struct Record<'a> {
    pub topology: &'a Topology,
    pub incident: &'a Incident,
    pub execution: &'a ExecutionRow,
    pub steps: &'a [StepRow],
    pub events: &'a [Event],
    pub audit: &'a [AuditEntry],
    /// Per datastore, the last RPO measured before the declaration.
    pub rpo_at_declaration: &'a [(String, Option<RpoSample>)],
    /// Writes lost per datastore, when a drill's workload counted them.
    pub lost_writes: &'a [(String, u64)],
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn since(t: Option<SystemTime>, from: SystemTime) -> Option<Duration> {
    t.and_then(|t| t.duration_since(from).ok())
}

/// The draft, as Markdown.
pub(crate) fn draft(r: &Record) -> String {
    let e = r.execution;
    let t0 = e.declared_at;
    let mut out = String::new();
    // A report is of what happened: titled as the incident reads once resolved.
    let title = drctl_state::controller::shown_title(r.incident.title.clone(), "resolved");
    let _ = writeln!(out, "# Post-incident report: {title}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "*Drafted by drctl from the journal of execution `{}` and the audit log. Edit it before you publish it: the cause, the impact on customers and what will change are yours to write (the declaration's reason is in `drctl executions`, not here).*",
        e.id
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "## Summary");
    let _ = writeln!(out);
    let took = since(e.finished_at, t0);
    // The declaration's reason stays in the journal and the audit log: it
    // is written for operators, and this report is for publishing.
    let _ = writeln!(out, "- Declared: {}", rfc3339(t0));
    let _ = writeln!(
        out,
        "- Ended: {} as **{}**, {} after the declaration",
        e.finished_at.map_or("-".into(), rfc3339),
        e.state,
        secs(took)
    );
    let _ = writeln!(
        out,
        "- Services: {}",
        if r.incident.services.is_empty() { "-".into() } else { r.incident.services.join(", ") }
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "## Who decided what");
    let _ = writeln!(out);
    if r.audit.is_empty() {
        let _ = writeln!(out, "The audit log records no decision about this execution.");
    }
    for a in r.audit {
        let _ = writeln!(out, "- {} — {} `{}` ({}, from {})", rfc3339(a.at), a.actor, a.action, a.target, a.source);
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Steps");
    let _ = writeln!(out);
    let _ = writeln!(out, "| step | action | state | attempts | started | finished | took |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for s in r.steps {
        let took = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => b.duration_since(a).ok(),
            _ => None,
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.id,
            s.action,
            s.state.as_str(),
            s.attempts,
            secs(since(s.started_at, t0)).replace(" s", " s after"),
            secs(since(s.finished_at, t0)).replace(" s", " s after"),
            secs(took)
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Recovery time (RTO) against the targets");
    let _ = writeln!(out);
    let _ = writeln!(out, "| service | recovered after | target | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for name in &r.incident.services {
        let Some(id) = r.topology.entity_id(name) else { continue };
        let target = r.topology.entity(id).targets.rto;
        let last = r.steps.iter().filter(|s| &s.entity == name).filter_map(|s| s.finished_at).max();
        let rto = since(last, t0).or(took);
        let verdict = match (rto, target) {
            (Some(a), Some(t)) if a <= t => "met",
            (Some(_), Some(_)) => "**missed**",
            _ => "-",
        };
        let _ = writeln!(out, "| {name} | {} | {} | {verdict} |", secs(rto), secs(target));
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Data (RPO) against the targets");
    let _ = writeln!(out);
    let _ = writeln!(out, "| datastore | data at risk when declared | target | writes lost |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, sample) in r.rpo_at_declaration {
        let target = r.topology.entity_id(name).and_then(|id| r.topology.entity(id).targets.rpo);
        let rpo = sample.as_ref().and_then(|s| s.rpo_s).map(Duration::from_secs_f64);
        let lost = r
            .lost_writes
            .iter()
            .find(|(d, _)| d == name)
            .map_or_else(|| "not counted".to_string(), |(_, n)| n.to_string());
        let _ = writeln!(out, "| {name} | {} | {} | {lost} |", secs(rpo), secs(target));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The RPO is the last one measured before the declaration: at most that much acknowledged data may be missing on the promoted replicas. Writes lost are counted only when a drill's workload ran."
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "## Timeline");
    let _ = writeln!(out);
    for ev in r.events {
        let _ = writeln!(
            out,
            "- +{} {}{}{}",
            secs(since(Some(ev.at), t0)),
            ev.kind,
            ev.step.as_deref().map(|s| format!(" `{s}`")).unwrap_or_default(),
            ev.detail
                .as_deref()
                .filter(|_| ev.kind != "declared")
                .map(|d| format!(": {}", drctl_core::redact::text(d)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Cause and what will change");
    let _ = writeln!(out);
    let _ = writeln!(out, "{PLACEHOLDER}");
    out
}

/// Drafts the report of every incident whose execution has ended and that
/// has none yet (the leader's notifier calls this each pass). `reported`:
/// incidents known to have a report, not asked about again.
pub(crate) fn draft_finished(
    s: &Arc<Shared>,
    incidents: &[Incident],
    now: SystemTime,
    reported: &mut std::collections::HashSet<i64>,
) {
    let state = &s.opts.state;
    for i in incidents {
        let Some(exec_id) = i.execution_id.as_deref() else { continue };
        if reported.contains(&i.id) {
            continue;
        }
        match state.report(i.id) {
            Ok(Some(_)) => {
                reported.insert(i.id);
                continue;
            }
            Ok(None) => {}
            Err(_) => continue,
        }
        let Ok(e) = state.execution(exec_id) else { continue };
        if !exec_state::is_final(&e.state) {
            continue;
        }
        let steps = state.steps(exec_id).unwrap_or_default();
        let events = state.events(exec_id).unwrap_or_default();
        let target = format!("execution {exec_id}");
        let audit: Vec<AuditEntry> = state
            .audit_entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.target == target || a.target.starts_with(&format!("{target} ")))
            .collect();
        let topo = &s.opts.topology;
        let mut datastores: Vec<String> = Vec::new();
        for st in &steps {
            let is_ds =
                topo.entity_id(&st.entity).is_some_and(|id| matches!(topo.entity(id).spec, EntitySpec::Datastore(_)));
            if is_ds && !datastores.contains(&st.entity) {
                datastores.push(st.entity.clone());
            }
        }
        let before = e.declared_at.checked_sub(Duration::from_secs(3600)).unwrap_or(e.declared_at);
        let rpo: Vec<(String, Option<RpoSample>)> = datastores
            .into_iter()
            .map(|d| {
                let last = state
                    .rpo_samples(&d, before)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|x| x.at <= e.declared_at)
                    .max_by_key(|x| x.at);
                (d, last)
            })
            .collect();
        let lost = lost_writes_of(s, exec_id);
        let body = draft(&Record {
            topology: topo,
            incident: i,
            execution: &e,
            steps: &steps,
            events: &events,
            audit: &audit,
            rpo_at_declaration: &rpo,
            lost_writes: &lost,
        });
        match state.draft_report(i.id, &body, now) {
            Ok(true) => {
                reported.insert(i.id);
                (s.opts.say)(&format!("incident {}: post-incident report drafted (execution {exec_id})", i.id))
            }
            Ok(false) => {
                reported.insert(i.id);
            }
            Err(e) => tracing::warn!(incident = i.id, error = %e, "the post-incident report could not be stored"),
        }
    }
}

/// Writes lost per datastore, from the drill whose execution this was.
fn lost_writes_of(s: &Shared, execution: &str) -> Vec<(String, u64)> {
    for d in s.opts.state.drills().unwrap_or_default() {
        let Some(rep) = d.report.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()) else {
            continue;
        };
        if rep["execution"] == execution {
            return rep["datastores"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| Some((d["name"].as_str()?.to_string(), d["lost_writes"].as_u64()?)))
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    Vec::new()
}
