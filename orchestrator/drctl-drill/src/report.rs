//! A drill's report, three ways: `report.json` for machines,
//! `report.md` for a ticket or a pull request, and a self-contained
//! `report.html` (no script, no external file) with an SVG timeline of the
//! faults, detection, declaration, each step and each recovery, for an
//! auditor.

use crate::drill::Report;
use std::fmt::Write as _;
use std::path::Path;

/// Writes the three files into `dir` (created if needed).
pub fn write_all(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(report))?;
    std::fs::write(dir.join("report.html"), html(report))?;
    Ok(())
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |s| format!("{s:.2}s"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// A count, or "not probed" where nothing measured it.
fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "not probed".into(), |n| n.to_string())
}

/// The summary an operator reads first.
pub fn headline(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drill {} ({}): objectives {}",
        r.id,
        r.experiment,
        if r.objectives_met { "met" } else { "NOT met" }
    );
    if let Some(s) = &r.stopped_early {
        let _ = writeln!(out, "stopped early: {s}");
    }
    for v in &r.safety_violations {
        let _ = writeln!(out, "UNSAFE: {v}");
    }
    let _ = writeln!(
        out,
        "detected {}, declared {}, recovered {} after the first fault",
        secs(r.detected_at_s),
        secs(r.declared_at_s),
        secs(r.recovered_at_s)
    );
    for s in r.services.iter().filter(|s| s.affected) {
        let _ = writeln!(
            out,
            "  service   {:<12} RTO {:>8} (from the fault {:>8}) target {:>8}  {}",
            s.name,
            secs(s.rto_s),
            secs(s.rto_from_fault_s),
            secs(s.rto_target_s),
            verdict(s.meets_rto)
        );
    }
    for d in &r.datastores {
        let lost = d.lost_writes.map_or_else(|| "not counted".into(), |n| format!("{n} writes lost"));
        let brain = match (d.writable_primaries_max, d.split_brain_writes) {
            (Some(w), Some(b)) => format!("  {w} writable at most, {b} split-brain writes"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  datastore {:<12} RPO {:>8} target {:>8}  {:<16} {}{brain}",
            d.name,
            secs(d.rpo_s),
            secs(d.rpo_target_s),
            lost,
            verdict(d.meets_rpo)
        );
        if let Some(judged) = &d.lag_at_declaration {
            let _ = writeln!(out, "            at the declaration: {judged}");
        }
    }
    out
}

pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# DR drill `{}`: {}\n", r.id, r.experiment);
    if let Some(d) = &r.description {
        let _ = writeln!(m, "{d}\n");
    }
    let _ = writeln!(
        m,
        "- Topology: `{}`; declare: {}; started {}; finished {} ({:.1}s)",
        r.topology, r.declare, r.started_at, r.finished_at, r.duration_s
    );
    let _ = writeln!(m, "- **Objectives {}**", if r.objectives_met { "met" } else { "NOT met" });
    let _ = writeln!(
        m,
        "- **{}**",
        if r.safe { "Safe: never two writable primaries, no split-brain write" } else { "UNSAFE" }
    );
    for v in &r.safety_violations {
        let _ = writeln!(m, "  - {v}");
    }
    if let Some(s) = &r.stopped_early {
        let _ = writeln!(m, "- Stopped early: {s}");
    }
    let _ = writeln!(
        m,
        "- Detected {}, declared {} (execution `{}`, {}), recovered {} after the first fault\n",
        secs(r.detected_at_s),
        secs(r.declared_at_s),
        r.execution.as_deref().unwrap_or("none"),
        r.execution_state.as_deref().unwrap_or("—"),
        secs(r.recovered_at_s)
    );
    for o in &r.overrides {
        let _ = writeln!(
            m,
            "- Override `{}` by {} ({})",
            o["override"].as_str().unwrap_or(""),
            o["by"].as_str().unwrap_or(""),
            o["with"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(m, "## Services\n\n| service | tier | RTO (from declaration) | from the fault | target | |\n|---|---|---|---|---|---|");
    for s in &r.services {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} |",
            s.name,
            s.tier.as_deref().unwrap_or("—"),
            secs(s.rto_s),
            secs(s.rto_from_fault_s),
            secs(s.rto_target_s),
            if s.affected { verdict(s.meets_rto) } else { "not affected" }
        );
    }
    let _ = writeln!(m, "\n## Datastores\n\n| datastore | failed over to | RPO | target | lost writes | writable primaries (max) | split-brain writes | lag before the fault | how | |\n|---|---|---|---|---|---|---|---|---|---|");
    for d in &r.datastores {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.name,
            d.failed_over_to.as_deref().unwrap_or("—"),
            secs(d.rpo_s),
            secs(d.rpo_target_s),
            d.lost_writes.map_or_else(|| "not counted".into(), |n| n.to_string()),
            count(d.writable_primaries_max),
            count(d.split_brain_writes),
            secs(d.lag_before_fault_s),
            d.how,
            verdict(d.meets_rpo)
        );
    }
    if let Some(after) = r.declared_after_fault_s {
        let _ = writeln!(m, "\nDeclared {} after the first fault.", secs(Some(after)));
    }
    for d in r.datastores.iter().filter(|d| d.lag_at_declaration.is_some()) {
        let _ = writeln!(m, "\n{} at the declaration: {}", d.name, d.lag_at_declaration.as_deref().unwrap_or_default());
    }
    let _ = writeln!(m, "\n## Faults\n");
    for f in &r.faults {
        let _ = writeln!(
            m,
            "- `{}` injected {}, healed {}: {}",
            f.kind,
            secs(f.injected_at_s),
            secs(f.healed_at_s),
            f.hits.join("; ")
        );
    }
    if !r.steps.is_empty() {
        let _ = writeln!(
            m,
            "\n## Steps\n\n| step | action | state | started | finished | ran by | note |\n|---|---|---|---|---|---|---|"
        );
        for s in &r.steps {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.id,
                s.action,
                s.state,
                secs(s.started_s),
                secs(s.finished_s),
                runner(s.ran_by.as_deref()),
                s.error.as_deref().or(s.note.as_deref()).unwrap_or("").replace('|', "/")
            );
        }
    }
    let _ = writeln!(m, "\n## Timeline\n");
    for e in &r.timeline {
        let _ = writeln!(m, "- {:>7.2}s {}: {}", e.at_s, e.kind, e.what);
    }
    let _ = writeln!(
        m,
        "\nTimes are seconds from the start of the drill. Detection: {} failed health checks in a row, {}s apart.",
        r.thresholds["failures_to_detect"], r.thresholds["probe_interval_s"]
    );
    m
}

// Where the status page has always found it.
pub use drctl_core::html::esc;

/// The timeline as inline SVG: one row per fault, step and service.
pub fn timeline_svg(r: &Report) -> String {
    let end = r.duration_s.max(1.0);
    let (left, width, row) = (210.0, 640.0, 22.0);
    let x = |t: f64| left + (t.clamp(0.0, end) / end) * width;
    let mut rows: Vec<(String, f64, f64, &str, String)> = Vec::new();
    for f in &r.faults {
        if let Some(a) = f.injected_at_s {
            rows.push((format!("fault: {}", f.kind), a, f.healed_at_s.unwrap_or(end), "#d9534f", f.hits.join("; ")));
        }
    }
    for s in &r.steps {
        if let Some(a) = s.started_s {
            let colour = if s.state == "succeeded" { "#337ab7" } else { "#f0ad4e" };
            rows.push((
                format!("step: {}", s.id),
                a,
                s.finished_s.unwrap_or(end),
                colour,
                format!("{} ({})", s.action, s.state),
            ));
        }
    }
    for s in r.services.iter().filter(|s| s.unhealthy_at_s.is_some()) {
        let a = s.unhealthy_at_s.unwrap_or(0.0);
        rows.push((format!("down: {}", s.name), a, s.recovered_at_s.unwrap_or(end), "#777777", "unhealthy".into()));
    }
    let height = 40.0 + row * rows.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="tl-title" viewBox="0 0 {w} {h}" width="100%" style="max-width:{w}px;font:12px sans-serif"><title id="tl-title">Drill timeline</title>"#,
        w = left + width + 20.0,
        h = height
    );
    // Axis with a tick every sensible step.
    let step =
        [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0].into_iter().find(|s| end / s <= 12.0).unwrap_or(600.0);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="30" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="22" text-anchor="middle" fill="currentColor">{2:.1}s</text>"##,
            x(t),
            height - 20.0,
            t
        );
        t += step;
    }
    for (i, (label, a, b, colour, tip)) in rows.iter().enumerate() {
        let y = 36.0 + row * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty:.1}" text-anchor="end" fill="currentColor">{label}</text><rect x="{x1:.1}" y="{y:.1}" width="{w:.1}" height="14" fill="{colour}"><title>{tip}</title></rect>"#,
            lx = left - 8.0,
            ty = y + 11.0,
            label = esc(label),
            x1 = x(*a),
            w = (x(*b) - x(*a)).max(2.0),
            colour = colour,
            tip = esc(&format!("{tip}: {a:.2}s to {b:.2}s"))
        );
    }
    // Detection left of its line, declaration right of its own: they are often close.
    for (t, label, colour, anchor, dx) in
        [(r.detected_at_s, "detected", "#2e7d32", "end", -4.0), (r.declared_at_s, "declared", "#555", "start", 4.0)]
    {
        if let Some(t) = t {
            let _ = write!(
                svg,
                r#"<line x1="{0:.1}" y1="28" x2="{0:.1}" y2="{1:.1}" stroke="{3}" stroke-width="2" stroke-dasharray="4 3"/><text x="{6:.1}" y="{2:.1}" text-anchor="{7}" fill="{3}">{4} {5:.2}s</text>"#,
                x(t),
                height - 18.0,
                height - 4.0,
                colour,
                label,
                t,
                x(t) + dx,
                anchor
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(r: &Report) -> String {
    let mut h = String::new();
    let verdict_class = |ok: bool| if ok { "ok" } else { "bad" };
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>DR drill {id}: {exp}</title><style>
body{{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1a1a1a;background:#fff}}
@media (prefers-color-scheme:dark){{body{{color:#eee;background:#161616}}th,td{{border-color:#444!important}}}}
table{{border-collapse:collapse;width:100%;margin:1rem 0}}th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left}}
.ok{{color:#1e7b34;font-weight:600}}.bad{{color:#c9302c;font-weight:600}}.muted{{color:#777}}
</style></head><body><main><h1>DR drill <code>{id}</code>: {exp}</h1>"#,
        id = esc(&r.id),
        exp = esc(&r.experiment)
    );
    if let Some(d) = &r.description {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    let _ = write!(
        h,
        r#"<p class="{}">Objectives {}</p>"#,
        verdict_class(r.objectives_met),
        if r.objectives_met { "met" } else { "NOT met" }
    );
    if r.safe {
        h.push_str(r#"<p class="ok">Safe: never two writable primaries, no split-brain write.</p>"#);
    } else {
        let _ = write!(h, r#"<p class="bad">UNSAFE: {}</p>"#, esc(&r.safety_violations.join("; ")));
    }
    if let Some(s) = &r.stopped_early {
        let _ = write!(h, r#"<p class="bad">Stopped early: {}</p>"#, esc(s));
    }
    let _ = write!(
        h,
        "<p>Topology <code>{}</code>, declare {}, from {} to {} ({:.1}s). Detected {}, declared {} (execution <code>{}</code>, {}), recovered {} after the first fault.</p>",
        esc(&r.topology),
        esc(&r.declare),
        esc(&r.started_at),
        esc(&r.finished_at),
        r.duration_s,
        secs(r.detected_at_s),
        secs(r.declared_at_s),
        esc(r.execution.as_deref().unwrap_or("none")),
        esc(r.execution_state.as_deref().unwrap_or("—")),
        secs(r.recovered_at_s)
    );
    let _ = write!(h, "<h2>Timeline</h2><figure>{}<figcaption class=\"muted\">Seconds from the start of the drill.</figcaption></figure>", timeline_svg(r));
    h.push_str("<h2>Services</h2><table><thead><tr><th scope=\"col\">service</th><th scope=\"col\">tier</th><th scope=\"col\">RTO (from declaration)</th><th scope=\"col\">from the fault</th><th scope=\"col\">target</th><th scope=\"col\">verdict</th></tr></thead><tbody>");
    for s in &r.services {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&s.name),
            esc(s.tier.as_deref().unwrap_or("—")),
            secs(s.rto_s),
            secs(s.rto_from_fault_s),
            secs(s.rto_target_s),
            if s.affected { verdict_class(s.meets_rto) } else { "muted" },
            if s.affected { verdict(s.meets_rto) } else { "not affected" }
        );
    }
    h.push_str("</tbody></table><h2>Datastores</h2><table><thead><tr><th scope=\"col\">datastore</th><th scope=\"col\">failed over to</th><th scope=\"col\">RPO</th><th scope=\"col\">target</th><th scope=\"col\">lost writes</th><th scope=\"col\">writable primaries (max)</th><th scope=\"col\">split-brain writes</th><th scope=\"col\">lag before the fault</th><th scope=\"col\">how</th><th scope=\"col\">verdict</th></tr></thead><tbody>");
    for d in &r.datastores {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&d.name),
            esc(d.failed_over_to.as_deref().unwrap_or("—")),
            secs(d.rpo_s),
            secs(d.rpo_target_s),
            d.lost_writes.map_or_else(|| "not counted".into(), |n| n.to_string()),
            count(d.writable_primaries_max),
            count(d.split_brain_writes),
            secs(d.lag_before_fault_s),
            esc(&d.how),
            verdict_class(d.meets_rpo),
            verdict(d.meets_rpo)
        );
    }
    h.push_str("</tbody></table><h2>Faults</h2><ul>");
    for f in &r.faults {
        let _ = write!(
            h,
            "<li><code>{}</code> injected {}, healed {}: {}</li>",
            esc(&f.kind),
            secs(f.injected_at_s),
            secs(f.healed_at_s),
            esc(&f.hits.join("; "))
        );
    }
    h.push_str("</ul>");
    if !r.steps.is_empty() {
        h.push_str("<h2>Steps</h2><table><thead><tr><th scope=\"col\">step</th><th scope=\"col\">action</th><th scope=\"col\">state</th><th scope=\"col\">started</th><th scope=\"col\">finished</th><th scope=\"col\">ran by</th><th scope=\"col\">note</th></tr></thead><tbody>");
        for s in &r.steps {
            let _ = write!(
                h,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.id),
                esc(&s.action),
                esc(&s.state),
                secs(s.started_s),
                secs(s.finished_s),
                esc(&runner(s.ran_by.as_deref())),
                esc(s.error.as_deref().or(s.note.as_deref()).unwrap_or(""))
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h2>Events</h2><ol>");
    for e in &r.timeline {
        let _ = write!(h, "<li>{:.2}s <strong>{}</strong>: {}</li>", e.at_s, esc(&e.kind), esc(&e.what));
    }
    let _ = writeln!(
        h,
        "</ol><p class=\"muted\">Detection: {} failed health checks in a row, {}s apart, each within the service's health timeout; a member is lost when it does not answer within {}s. Generated by drctl.</p></main></body></html>",
        r.thresholds["failures_to_detect"], r.thresholds["probe_interval_s"], r.thresholds["scope_probe_timeout_s"]
    );
    h
}

/// Who ran a step, readably: a controller's id (`controller:ID:pid…`), or
/// the host and process of a CLI run.
fn runner(ran_by: Option<&str>) -> String {
    let Some(owner) = ran_by else { return String::new() };
    if let Some(rest) = owner.strip_prefix(drctl_state::kv::CONTROLLER_OWNER) {
        return rest.split(":pid").next().unwrap_or(rest).to_string();
    }
    let mut parts = owner.split(':');
    match (parts.next(), parts.next()) {
        (Some(host), Some(pid)) => format!("{host} {}", pid.replace("pid", "pid ")),
        _ => owner.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_say_which_controller_ran_them() {
        assert_eq!(super::runner(Some("controller:lab-az2-ctl:pid42:abc1")), "lab-az2-ctl");
        assert_eq!(super::runner(Some("ops-box:pid7:9f0")), "ops-box pid 7");
        assert_eq!(super::runner(None), "");
    }
}
