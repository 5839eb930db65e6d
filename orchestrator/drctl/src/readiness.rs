//! `drctl readiness`: one evaluation of every scope, printed; and the
//! readiness line of `drctl status`, from the last evaluation stored.

use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_control::live::Clients;
use drctl_control::readiness::{self, Report, Severity};
use drctl_core::Topology;
use drctl_state::State;
use std::time::SystemTime;

/// Evaluates once, stores the result (for `status` and the controllers)
/// and prints it. Exit 0 when every scope is ready, 3 otherwise.
pub async fn run(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    json: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    let previous = stored(state);
    let now = SystemTime::now();
    let backups = drctl_backup::report::statuses(topo, &drctl_backup::site_dir(topo), state, now).await;
    let report =
        readiness::evaluate(topo, state, clients, &readiness::Options::default(), now, previous.as_ref(), &backups)
            .await;
    if let Ok(text) = serde_json::to_string(&report) {
        if let Err(e) = state.publish(readiness::PUBLISHED, &text) {
            eprintln!("warning: the evaluation was not stored: {e}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?);
    } else {
        print!("{}", render(topo, &report, style));
    }
    Ok(if report.ready() { Outcome::Done } else { Outcome::ObjectiveMissed })
}

/// The last evaluation stored, by this command or a controller.
pub fn stored(state: &State) -> Option<Report> {
    serde_json::from_str(&state.published(readiness::PUBLISHED).ok()??).ok()
}

pub fn render(topo: &Topology, r: &Report, style: &Style) -> String {
    let mut out = format!("{} {} at {}\n\n", style.bold("Readiness of"), style.bold(&topo.name), r.evaluated_at);
    for s in &r.scopes {
        let verdict = if s.ready { style.green("ready") } else { style.red("NOT READY") };
        let misses = if s.misses.is_empty() { String::new() } else { format!(", {} over their RTO", s.misses.len()) };
        out.push_str(&format!(
            "  {:<24} {}  (failover ~{}{misses})\n",
            s.scope.to_string(),
            verdict,
            drctl_core::duration::format_secs(s.rto_estimate_s)
        ));
        for f in &s.findings {
            let sev = match f.severity {
                Severity::Error => style.red("error"),
                Severity::Warning => style.yellow("warning"),
            };
            let who = if f.entity.is_empty() { String::new() } else { format!("{} ", f.entity) };
            out.push_str(&format!("      {sev} [{}] {who}{}\n", f.check, drctl_core::redact::text(&f.message)));
        }
    }
    let (errors, warnings) = r.counts();
    out.push_str(&format!(
        "\n{} of {} scopes ready; {errors} errors, {warnings} warnings\n",
        r.scopes.iter().filter(|s| s.ready).count(),
        r.scopes.len()
    ));
    out
}

/// `drctl status`'s readiness line, from the last evaluation stored.
pub fn line(state: &State, now: SystemTime) -> String {
    let hint = drctl_core::hint::drctl("readiness");
    let Some(r) = stored(state) else {
        return format!("readiness: not evaluated yet (`{hint}`, or `drctl serve` evaluates every minute)\n");
    };
    let ago = r.at().and_then(|at| now.duration_since(at).ok()).map_or_else(
        || format!("at {}", r.evaluated_at),
        |d| format!("{} ago", drctl_core::duration::format_secs(d.as_secs_f64().round())),
    );
    let not: Vec<String> = r.scopes.iter().filter(|s| !s.ready).map(|s| s.scope.to_string()).collect();
    if not.is_empty() {
        format!("readiness: every scope ready (evaluated {ago})\n")
    } else {
        format!("readiness: NOT READY: {} (evaluated {ago}; `{hint}` for the findings)\n", not.join(", "))
    }
}
