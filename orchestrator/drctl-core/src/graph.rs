//! The dependency graph drawn for people: Graphviz DOT and Mermaid.
//!
//! Colours follow tiers (most important: red), datastores are cylinders, and
//! a disaster scope's effect is drawn on top: entities that fail over get a
//! thick border, unrecoverable ones are dark and dashed. Edges point from an
//! entity to what it depends on.

use crate::plan::Plan;
use crate::topology::{EntitySpec, Topology};
use std::collections::HashSet;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
}

/// Tier colours: (fill, border). Tiers past the palette reuse the last.
const PALETTE: &[(&str, &str)] = &[
    ("#fde0dc", "#c62828"),
    ("#ffe9cc", "#e65100"),
    ("#fff8c4", "#b08d00"),
    ("#e3f2e1", "#2e7d32"),
    ("#e1ecf7", "#1565c0"),
];
const UNTIERED: (&str, &str) = ("#f2f2f2", "#757575");

fn colours(tier: Option<usize>) -> (&'static str, &'static str) {
    tier.map_or(UNTIERED, |t| PALETTE[t.min(PALETTE.len() - 1)])
}

/// Renders the graph; `plan`, when given, marks what its scope affects.
pub fn render(topo: &Topology, plan: Option<&Plan>, format: Format) -> String {
    let affected: HashSet<&str> =
        plan.map(|p| p.entities.iter().map(|e| e.name.as_str()).collect()).unwrap_or_default();
    let lost: HashSet<&str> =
        plan.map(|p| p.unrecoverable.iter().map(|e| e.name.as_str()).collect()).unwrap_or_default();
    match format {
        Format::Dot => dot(topo, &affected, &lost),
        Format::Mermaid => mermaid(topo, &affected, &lost),
    }
}

fn label(topo: &Topology, i: usize) -> (String, String) {
    let e = &topo.entities[i];
    let tier = e.effective_tier.map_or("no tier".to_string(), |t| topo.tiers[t].name.clone());
    let zones: Vec<&str> = match &e.spec {
        EntitySpec::Service(s) => s.zones.iter().map(|&z| topo.zones[z].name.as_str()).collect(),
        EntitySpec::Datastore(d) => d.primary.iter().map(|p| topo.zones[p.zone].name.as_str()).collect(),
    };
    let place = if zones.is_empty() { String::new() } else { format!(" @ {}", zones.join(",")) };
    (e.name.clone(), format!("{} · {tier}{place}", e.kind_name()))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(topo: &Topology, affected: &HashSet<&str>, lost: &HashSet<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&topo.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [style=filled, fontname=\"Helvetica\", fontsize=11];");
    let _ = writeln!(out, "  edge [color=\"#888888\"];");
    for (i, e) in topo.entities.iter().enumerate() {
        let (name, detail) = label(topo, i);
        let (fill, border) = colours(e.effective_tier);
        let shape = if e.is_service() { "box" } else { "cylinder" };
        let mut attrs = format!("shape={shape}, fillcolor=\"{fill}\", color=\"{border}\"");
        let mut mark = "";
        if lost.contains(e.name.as_str()) {
            attrs = format!("shape={shape}, fillcolor=\"#424242\", fontcolor=\"#ffffff\", color=\"#000000\", style=\"filled,dashed\", penwidth=2");
            mark = "\\n✗ unrecoverable";
        } else if affected.contains(e.name.as_str()) {
            attrs.push_str(", penwidth=4");
            mark = "\\n⟳ fails over";
        }
        let _ = writeln!(
            out,
            "  \"{}\" [{attrs}, label=\"{}\\n{}{mark}\"];",
            escape(&name),
            escape(&name),
            escape(&detail)
        );
    }
    for e in &topo.entities {
        for &d in &e.depends_on {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", escape(&e.name), escape(&topo.entities[d].name));
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid(topo: &Topology, affected: &HashSet<&str>, lost: &HashSet<&str>) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, e) in topo.entities.iter().enumerate() {
        let (name, detail) = label(topo, i);
        let text = format!("{}<br/>{}", name, detail).replace('"', "#quot;");
        let _ =
            if e.is_service() { writeln!(out, "  n{i}[\"{text}\"]") } else { writeln!(out, "  n{i}[(\"{text}\")]") };
    }
    for (i, e) in topo.entities.iter().enumerate() {
        for &d in &e.depends_on {
            let _ = writeln!(out, "  n{i} --> n{d}");
        }
    }
    let max_tier = topo.entities.iter().filter_map(|e| e.effective_tier).max();
    for t in 0..=max_tier.unwrap_or(0) {
        let (fill, border) = colours(Some(t));
        let members: Vec<String> = (0..topo.entities.len())
            .filter(|&i| topo.entities[i].effective_tier == Some(t))
            .map(|i| format!("n{i}"))
            .collect();
        if !members.is_empty() {
            let _ = writeln!(out, "  classDef tier{t} fill:{fill},stroke:{border},color:#000");
            let _ = writeln!(out, "  class {} tier{t}", members.join(","));
        }
    }
    let pick = |set: &HashSet<&str>| -> Vec<String> {
        (0..topo.entities.len())
            .filter(|&i| set.contains(topo.entities[i].name.as_str()))
            .map(|i| format!("n{i}"))
            .collect()
    };
    let untiered: Vec<String> = (0..topo.entities.len())
        .filter(|&i| topo.entities[i].effective_tier.is_none())
        .map(|i| format!("n{i}"))
        .collect();
    if !untiered.is_empty() {
        let _ = writeln!(out, "  classDef untiered fill:{},stroke:{},color:#000", UNTIERED.0, UNTIERED.1);
        let _ = writeln!(out, "  class {} untiered", untiered.join(","));
    }
    let hit = pick(affected);
    if !hit.is_empty() {
        let _ = writeln!(out, "  classDef affected stroke-width:4px");
        let _ = writeln!(out, "  class {} affected", hit.join(","));
    }
    let gone = pick(lost);
    if !gone.is_empty() {
        let _ = writeln!(out, "  classDef unrecoverable fill:#424242,color:#fff,stroke:#000,stroke-dasharray:5 5");
        let _ = writeln!(out, "  class {} unrecoverable", gone.join(","));
    }
    out
}
