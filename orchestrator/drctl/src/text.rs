//! Text output for people: compact, aligned, coloured only on a terminal
//! (and never with `NO_COLOR`), fitted to the terminal's width. The plan is
//! read by an incident commander at 3 a.m.: the verdict comes last, in one
//! line, where the eye lands when the command returns.

use drctl_core::diag::Severity;
use drctl_core::duration::format_secs;
use drctl_core::plan::Plan;
use drctl_core::{Diagnostic, Topology};
use std::io::IsTerminal;
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
    pub width: usize,
}

impl Style {
    /// No colour, 100 columns.
    #[cfg(test)]
    pub fn plain() -> Self {
        Style { colour: false, width: 100 }
    }

    pub fn detect() -> Self {
        let tty = std::io::stdout().is_terminal();
        let colour =
            tty && std::env::var_os("NO_COLOR").is_none() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .or_else(|| terminal_size::terminal_size().map(|(w, _)| w.0 as usize))
            .unwrap_or(100)
            .clamp(60, 240);
        Style { colour, width }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

pub fn diagnostic(d: &Diagnostic, style: &Style) -> String {
    let text = d.to_string();
    let (head, hint) = match text.split_once("\n  hint: ") {
        Some((h, t)) => (h.to_string(), Some(t.to_string())),
        None => (text, None),
    };
    let head = match d.severity {
        Severity::Error => head.replacen(": error[", &format!(": {}[", style.red("error")), 1),
        Severity::Warning => head.replacen(": warning[", &format!(": {}[", style.yellow("warning")), 1),
    };
    match hint {
        Some(h) => format!("{head}\n  {} {h}", style.dim("hint:")),
        None => head,
    }
}

pub fn validated(path: &Path, topo: &Topology, warnings: usize, style: &Style) -> String {
    let datastores = topo.datastores().count();
    let services = topo.services().count();
    let runbooks = topo.entities.iter().filter(|e| e.failover.runbook.is_some()).count();
    let mut s = format!(
        "{} {}: {} zones, {} entities ({datastores} datastores, {services} services), {} tiers, {} contracts, {runbooks} runbooks",
        style.green("✓"),
        path.display(),
        topo.zones.len(),
        topo.entities.len(),
        topo.tiers.len(),
        topo.contracts.len(),
    );
    if warnings > 0 {
        s.push_str(&format!(", {warnings} warning{}", if warnings == 1 { "" } else { "s" }));
    }
    s
}

/// Cuts `s` to `max` characters, marking the cut.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

fn describe_scope(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let list = |label: &str, v: &[String]| format!("{label}{} {}", if v.len() == 1 { "" } else { "s" }, v.join(", "));
    if !plan.scope.zones.is_empty() {
        parts.push(list("zone", &plan.scope.zones));
    }
    if !plan.scope.regions.is_empty() {
        parts.push(list("region", &plan.scope.regions));
    }
    if !plan.scope.targets.is_empty() {
        parts.push(list("target", &plan.scope.targets));
    }
    parts.join(" + ")
}

pub fn plan(topo: &Topology, plan: &Plan, style: &Style) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} {} — lost: {}\n",
        style.bold("Failover plan for"),
        style.bold(&topo.name),
        describe_scope(plan)
    ));
    let cap = plan.parallel.map_or("unlimited parallelism".to_string(), |n| format!("at most {n} steps at once"));
    out.push_str(&format!(
        "{} steps, {cap}; done after {} (critical path {})\n\n",
        plan.steps.len(),
        format_secs(plan.makespan_s),
        format_secs(plan.critical_path_s)
    ));

    if !plan.steps.is_empty() {
        let mut order: Vec<usize> = (0..plan.steps.len()).collect();
        order.sort_by(|&a, &b| plan.steps[a].start_s.total_cmp(&plan.steps[b].start_s).then(a.cmp(&b)));
        let critical: std::collections::HashSet<&str> = plan.critical_path.iter().map(String::as_str).collect();
        let moves: Vec<String> = plan
            .steps
            .iter()
            .map(|s| match (&s.from_zone, &s.to_zone) {
                (Some(f), Some(t)) => format!("{f} → {t}"),
                (None, Some(t)) => format!("→ {t}"),
                (Some(f), None) => format!("{f} →"),
                (None, None) => String::new(),
            })
            .collect();
        let w_time = plan.steps.iter().map(|s| format_secs(s.finish_s).len()).max().unwrap_or(2).max(6);
        let w_action = plan.steps.iter().map(|s| s.action.len()).max().unwrap_or(6).max(6);
        let w_move = moves.iter().map(|m| m.chars().count()).max().unwrap_or(0).max(9);
        let fixed = 2 + (w_time + 2) * 2 + 2 + 2 + w_action + 2 + w_move;
        let w_step = plan
            .steps
            .iter()
            .map(|s| s.id.len())
            .max()
            .unwrap_or(4)
            .max(4)
            .min(style.width.saturating_sub(fixed).max(24));
        out.push_str(&style.dim(&format!(
            "  {}  {}  {}  {}  {}\n",
            pad("START", w_time),
            pad("FINISH", w_time),
            pad("STEP", w_step + 2),
            pad("ACTION", w_action),
            "FROM → TO"
        )));
        for &i in &order {
            let s = &plan.steps[i];
            let mark = if critical.contains(s.id.as_str()) { style.yellow("*") } else { " ".into() };
            out.push_str(&format!(
                "  {}  {}  {} {}  {}  {}\n",
                pad(&format_secs(s.start_s), w_time),
                pad(&format_secs(s.finish_s), w_time),
                pad(&fit(&s.id, w_step), w_step),
                mark,
                pad(&s.action, w_action),
                moves[i]
            ));
        }
        out.push_str(&format!("  {} critical path ({}):", style.yellow("*"), format_secs(plan.critical_path_s)));
        let mut col = 24;
        for (k, id) in plan.critical_path.iter().enumerate() {
            let piece = if k == 0 { format!(" {id}") } else { format!(" → {id}") };
            if col + piece.chars().count() > style.width && col > 24 {
                out.push_str("\n     ");
                col = 5;
            }
            col += piece.chars().count();
            out.push_str(&piece);
        }
        out.push_str("\n\n");
    }

    if !plan.entities.is_empty() {
        out.push_str(&style.bold("RTO of each affected entity (estimate / target)\n"));
        let mut ents: Vec<&drctl_core::plan::PlanEntity> = plan.entities.iter().collect();
        // Misses first, then by tier (untiered last), then soonest first.
        ents.sort_by(|a, b| {
            a.meets_rto
                .cmp(&b.meets_rto)
                .then_with(|| (a.tier.is_none(), &a.tier).cmp(&(b.tier.is_none(), &b.tier)))
                .then(a.rto_estimate_s.total_cmp(&b.rto_estimate_s))
                .then(a.name.cmp(&b.name))
        });
        let w_name = ents.iter().map(|e| e.name.len()).max().unwrap_or(4).min(40);
        let w_kind = ents.iter().map(|e| e.kind.len()).max().unwrap_or(4);
        let w_tier = ents.iter().map(|e| e.tier.as_deref().unwrap_or("-").len()).max().unwrap_or(1);
        for e in ents {
            let mark = if e.meets_rto { style.green("✓") } else { style.red("✗") };
            let target = e.rto_target_s.map_or("no target".to_string(), format_secs);
            let late = match e.rto_target_s {
                Some(t) if !e.meets_rto => style.red(&format!("  {} late", format_secs(e.rto_estimate_s - t))),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {mark} {}  {}  {}  {} / {target}{late}\n",
                pad(&fit(&e.name, w_name), w_name),
                pad(&e.kind, w_kind),
                pad(e.tier.as_deref().unwrap_or("-"), w_tier),
                format_secs(e.rto_estimate_s)
            ));
        }
        out.push('\n');
    }

    if !plan.unrecoverable.is_empty() {
        out.push_str(&style.bold(&style.red("Unrecoverable\n")));
        for u in &plan.unrecoverable {
            out.push_str(&format!("  {} {}: {}\n", style.red("✗"), u.name, u.reason));
        }
        out.push('\n');
    }

    let missed = plan.entities.iter().filter(|e| !e.meets_rto).count();
    let lost = plan.unrecoverable.len();
    if plan.steps.is_empty() && lost == 0 {
        out.push_str(&format!("{} Nothing in the topology is affected by this scope.\n", style.green("✓")));
    } else if missed == 0 && lost == 0 {
        out.push_str(&format!("{} Every affected entity meets its RTO target.\n", style.green("✓")));
    } else {
        let mut parts = Vec::new();
        if missed > 0 {
            parts.push(format!("{missed} RTO target{} missed", if missed == 1 { "" } else { "s" }));
        }
        if lost > 0 {
            parts.push(format!("{lost} entit{} unrecoverable", if lost == 1 { "y" } else { "ies" }));
        }
        out.push_str(&format!("{} {}.\n", style.red("✗"), style.bold(&parts.join(", "))));
    }
    out
}
