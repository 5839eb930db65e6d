//! The machine-readable faces of the status page: Atlassian Statuspage's
//! public v2 JSON (so existing widgets, aggregators and monitors read this
//! page unchanged), an Atom feed of incidents and maintenance, and
//! Prometheus metrics.

use crate::page::rfc3339;

/// Text for the Atom feed: escaped, and without the characters XML 1.0
/// forbids (control characters in an incident's body would make the whole
/// feed unreadable to every reader).
fn esc(s: &str) -> String {
    let allowed = |c: &char| matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
    crate::page::esc(&s.chars().filter(allowed).collect::<String>())
}
use crate::view::{State, View};
use drctl_state::controller::Incident;
use serde_json::{json, Value};
use std::fmt::Write as _;

fn indicator(v: &View) -> (&'static str, &'static str) {
    match v.overall {
        State::Operational => ("none", "All Systems Operational"),
        State::UnderMaintenance => ("maintenance", "Service Under Maintenance"),
        State::DegradedPerformance => ("minor", "Minor Service Outage"),
        State::PartialOutage => ("major", "Partial System Outage"),
        State::MajorOutage => ("critical", "Major System Outage"),
    }
}

fn page(v: &View, base_url: &str) -> Value {
    json!({
        "id": v.name,
        "name": v.name,
        "url": base_url,
        "time_zone": "Etc/UTC",
        "updated_at": rfc3339(v.now),
    })
}

fn component_id(name: &str) -> String {
    format!("svc-{name}")
}

fn impact(i: &Incident, v: &View) -> &'static str {
    let worst = v.services.iter().filter(|s| i.services.contains(&s.name)).map(|s| s.state).max();
    match worst {
        Some(State::MajorOutage) => "critical",
        Some(State::PartialOutage) => "major",
        Some(State::DegradedPerformance) => "minor",
        _ if i.status == "resolved" => "none",
        _ => "minor",
    }
}

pub(crate) fn incident_json(i: &Incident, v: &View, base_url: &str) -> Value {
    let monitoring_at = i.updates.iter().rev().find(|u| u.status == "monitoring").map(|u| rfc3339(u.at));
    json!({
        "id": i.id.to_string(),
        "name": i.title,
        "status": i.status,
        "created_at": rfc3339(i.created_at),
        "updated_at": rfc3339(i.updated_at),
        "monitoring_at": monitoring_at,
        "resolved_at": i.resolved_at.map(rfc3339),
        "impact": impact(i, v),
        "shortlink": format!("{base_url}/incidents/{}", i.id),
        "started_at": rfc3339(i.created_at),
        "page_id": v.name,
        "incident_updates": i.updates.iter().map(|u| json!({
            "id": u.id.to_string(),
            "status": u.status,
            "body": u.body,
            "incident_id": i.id.to_string(),
            "created_at": rfc3339(u.at),
            "updated_at": rfc3339(u.at),
            "display_at": rfc3339(u.at),
            "affected_components": null,
        })).collect::<Vec<_>>(),
        "components": v.services.iter().filter(|s| i.services.contains(&s.name)).map(|s| json!({
            "id": component_id(&s.name), "name": s.name, "status": s.state.as_str(),
        })).collect::<Vec<_>>(),
    })
}

/// `/api/v2/summary.json`.
pub fn summary(v: &View, base_url: &str) -> Value {
    let (ind, desc) = indicator(v);
    json!({
        "page": page(v, base_url),
        "components": v.services.iter().enumerate().map(|(pos, s)| json!({
            "id": component_id(&s.name),
            "name": s.name,
            "status": s.state.as_str(),
            "created_at": rfc3339(v.now),
            "updated_at": rfc3339(v.now),
            "position": pos + 1,
            "description": s.tier,
            "showcase": true,
            "start_date": null,
            "group_id": null,
            "page_id": v.name,
            "group": false,
            "only_show_if_degraded": false,
        })).collect::<Vec<_>>(),
        "incidents": v.active_incidents.iter().map(|i| incident_json(i, v, base_url)).collect::<Vec<_>>(),
        "scheduled_maintenances": v.maintenance.iter().map(|m| json!({
            "id": m.id.to_string(),
            "name": m.title,
            "status": if m.starts_at <= v.now { "in_progress" } else { "scheduled" },
            "created_at": rfc3339(m.created_at),
            "updated_at": rfc3339(m.created_at),
            "scheduled_for": rfc3339(m.starts_at),
            "scheduled_until": rfc3339(m.ends_at),
            "impact": "maintenance",
            "shortlink": base_url,
            "page_id": v.name,
            "incident_updates": [{ "id": format!("m{}", m.id), "status": "scheduled", "body": m.body,
                "created_at": rfc3339(m.created_at), "updated_at": rfc3339(m.created_at), "display_at": rfc3339(m.created_at) }],
            "components": v.services.iter().filter(|s| m.services.contains(&s.name)).map(|s| json!({
                "id": component_id(&s.name), "name": s.name, "status": s.state.as_str() })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "status": { "indicator": ind, "description": desc },
    })
}

/// Every public Statuspage v2 endpoint drctl serves, by path under `/api/v2/`.
pub fn statuspage_v2(v: &View, base_url: &str) -> Vec<(&'static str, Value)> {
    let sum = summary(v, base_url);
    let page = sum["page"].clone();
    let all_incidents: Vec<Value> =
        v.active_incidents.iter().chain(&v.past_incidents).map(|i| incident_json(i, v, base_url)).collect();
    let maint = sum["scheduled_maintenances"].as_array().cloned().unwrap_or_default();
    let with_status = |st: &str| -> Vec<Value> { maint.iter().filter(|m| m["status"] == st).cloned().collect() };
    vec![
        ("status.json", status(v, base_url)),
        ("components.json", json!({ "page": page, "components": sum["components"] })),
        ("incidents.json", json!({ "page": page, "incidents": all_incidents })),
        ("incidents/unresolved.json", json!({ "page": page, "incidents": sum["incidents"] })),
        ("scheduled-maintenances.json", json!({ "page": page, "scheduled_maintenances": maint })),
        (
            "scheduled-maintenances/upcoming.json",
            json!({ "page": page, "scheduled_maintenances": with_status("scheduled") }),
        ),
        (
            "scheduled-maintenances/active.json",
            json!({ "page": page, "scheduled_maintenances": with_status("in_progress") }),
        ),
        ("summary.json", sum),
    ]
}

/// `/api/v2/status.json`.
pub fn status(v: &View, base_url: &str) -> Value {
    let (ind, desc) = indicator(v);
    json!({ "page": page(v, base_url), "status": { "indicator": ind, "description": desc } })
}

/// `/feed.atom`: one entry per incident (its updates inside) and per maintenance.
pub fn atom(v: &View, base_url: &str) -> String {
    let mut a = String::new();
    let _ = write!(
        a,
        r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><id>{0}/feed.atom</id><title>{1} status</title><updated>{2}</updated><link rel="alternate" href="{0}/"/><link rel="self" href="{0}/feed.atom"/>"#,
        esc(base_url),
        esc(&v.name),
        rfc3339(v.now)
    );
    for i in v.active_incidents.iter().chain(&v.past_incidents) {
        let mut content = String::new();
        for u in &i.updates {
            let _ = write!(content, "<p><strong>{}</strong> ({}): {}</p>", esc(&u.status), rfc3339(u.at), esc(&u.body));
        }
        let _ = write!(
            a,
            r#"<entry><id>{0}/incidents/{1}</id><title>{2} [{3}]</title><updated>{4}</updated><published>{5}</published><link href="{0}/incidents/{1}"/><content type="html">{6}</content></entry>"#,
            esc(base_url),
            i.id,
            esc(&i.title),
            esc(&i.status),
            rfc3339(i.updated_at),
            rfc3339(i.created_at),
            esc(&content)
        );
    }
    for m in &v.maintenance {
        let _ = write!(
            a,
            r#"<entry><id>{0}/maintenance/{1}</id><title>Maintenance: {2}</title><updated>{3}</updated><link href="{0}/"/><content type="text">{4} ({5} – {6})</content></entry>"#,
            esc(base_url),
            m.id,
            esc(&m.title),
            rfc3339(m.created_at),
            esc(&m.body),
            rfc3339(m.starts_at),
            rfc3339(m.ends_at)
        );
    }
    a.push_str("</feed>\n");
    a
}

/// Label values in the Prometheus text format.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A Prometheus histogram of seconds, with S3 Replication Time Control's
/// 15-minute promise among its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// (upper bound, observations at or under it, cumulative).
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let bounds = [0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];
        Histogram { buckets: bounds.iter().map(|&b| (b, 0)).collect(), sum: 0.0, count: 0 }
    }
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        for (bound, n) in self.buckets.iter_mut() {
            if v <= *bound {
                *n += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Counters the controller keeps while it runs.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Per datastore: seconds from an object's write to its verified copy.
    pub replication_lag: Vec<(String, Histogram)>,
    pub samples: u64,
    pub replication: Vec<(String, drctl_state::RunTotals)>,
    /// (action, seconds) of finished steps.
    pub step_seconds: Vec<(String, f64, u64)>,
    pub executions: Vec<(String, u64)>,
}

/// The replication lag histograms, in Prometheus' text format.
fn lag_histograms(c: &Counters) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# HELP drctl_replication_lag_seconds Seconds from an object's write on the primary to its verified copy in a replica.\n# TYPE drctl_replication_lag_seconds histogram");
    for (d, h) in &c.replication_lag {
        let d = label(d);
        for (bound, n) in &h.buckets {
            let _ = writeln!(m, "drctl_replication_lag_seconds_bucket{{datastore=\"{d}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(m, "drctl_replication_lag_seconds_bucket{{datastore=\"{d}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(m, "drctl_replication_lag_seconds_sum{{datastore=\"{d}\"}} {}", h.sum);
        let _ = writeln!(m, "drctl_replication_lag_seconds_count{{datastore=\"{d}\"}} {}", h.count);
    }
    m
}

/// `/metrics`.
pub fn metrics(v: &View, c: &Counters) -> String {
    let mut m = String::new();
    let mut gauge = |name: &str, help: &str, rows: Vec<(String, Option<f64>)>| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in rows {
            if let Some(x) = value {
                let _ = writeln!(m, "{name}{{{labels}}} {x}");
            }
        }
    };
    let ds = v.status.as_ref().map(|s| s.datastores.clone()).unwrap_or_default();
    gauge(
        "drctl_rpo_seconds",
        "Live RPO of a datastore: seconds of writes a failover would lose now.",
        ds.iter().map(|d| (format!("datastore=\"{}\"", label(&d.name)), d.rpo_s)).collect(),
    );
    gauge(
        "drctl_split_brain",
        "1 when more than one member of the datastore takes writes now.",
        ds.iter().map(|d| (format!("datastore=\"{}\"", label(&d.name)), Some(d.split_brain as u8 as f64))).collect(),
    );
    gauge(
        "drctl_rpo_target_seconds",
        "Contractual RPO target of a datastore.",
        ds.iter().map(|d| (format!("datastore=\"{}\"", label(&d.name)), d.rpo_target_s)).collect(),
    );
    gauge(
        "drctl_rto_estimate_seconds",
        "Estimated RTO of a service (worst zone loss), from the plan.",
        v.services.iter().map(|s| (format!("service=\"{}\"", label(&s.name)), s.rto_estimate_s)).collect(),
    );
    gauge(
        "drctl_rto_target_seconds",
        "Contractual RTO target of a service.",
        v.services.iter().map(|s| (format!("service=\"{}\"", label(&s.name)), s.rto_target_s)).collect(),
    );
    gauge(
        "drctl_service_up",
        "1 when the service's health check passes.",
        v.services
            .iter()
            .map(|s| (format!("service=\"{}\"", label(&s.name)), s.healthy.map(|h| h as u8 as f64)))
            .collect(),
    );
    gauge(
        "drctl_executions",
        "Executions by state.",
        c.executions.iter().map(|(st, n)| (format!("state=\"{}\"", label(st)), Some(*n as f64))).collect(),
    );
    let _ = writeln!(m, "# HELP drctl_samples_total Measurements taken by this controller.\n# TYPE drctl_samples_total counter\ndrctl_samples_total {}", c.samples);
    let _ = writeln!(m, "# HELP drctl_replication_objects_total Objects handled by drctl's replication.\n# TYPE drctl_replication_objects_total counter");
    for (d, t) in &c.replication {
        for (result, n) in [("copied", t.copied), ("skipped", t.skipped), ("failed", t.failed)] {
            let _ =
                writeln!(m, "drctl_replication_objects_total{{datastore=\"{}\",result=\"{result}\"}} {n}", label(d));
        }
    }
    let _ = writeln!(m, "# HELP drctl_replication_bytes_total Bytes copied by drctl's replication.\n# TYPE drctl_replication_bytes_total counter");
    for (d, t) in &c.replication {
        let _ = writeln!(m, "drctl_replication_bytes_total{{datastore=\"{}\"}} {}", label(d), t.bytes);
    }
    m.push_str(&lag_histograms(c));
    let _ = writeln!(m, "# HELP drctl_step_duration_seconds Duration of finished runbook steps, by action.\n# TYPE drctl_step_duration_seconds summary");
    for (action, sum, count) in &c.step_seconds {
        let _ = writeln!(m, "drctl_step_duration_seconds_sum{{action=\"{}\"}} {sum}", label(action));
        let _ = writeln!(m, "drctl_step_duration_seconds_count{{action=\"{}\"}} {count}", label(action));
    }
    m
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn the_lag_histogram_is_cumulative_and_rendered_for_prometheus() {
        let mut h = Histogram::default();
        for v in [0.05, 0.7, 0.9, 20.0, 1000.0, 5000.0] {
            h.observe(v);
        }
        let at = |b: f64| h.buckets.iter().find(|(x, _)| *x == b).unwrap().1;
        assert_eq!((at(0.1), at(1.0), at(900.0), at(3600.0), h.count), (1, 3, 4, 5, 6));
        let c = Counters { replication_lag: vec![("assets".into(), h)], ..Counters::default() };
        let m = lag_histograms(&c);
        assert!(m.contains("# TYPE drctl_replication_lag_seconds histogram"), "{m}");
        assert!(m.contains("drctl_replication_lag_seconds_bucket{datastore=\"assets\",le=\"900\"} 4"), "{m}");
        assert!(m.contains("drctl_replication_lag_seconds_bucket{datastore=\"assets\",le=\"+Inf\"} 6"), "{m}");
        assert!(m.contains("drctl_replication_lag_seconds_count{datastore=\"assets\"} 6"), "{m}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn feed_text_drops_what_xml_forbids() {
        assert_eq!(super::esc("a\u{1}b\u{FFFE}c\td <x>"), "abc\td &lt;x&gt;");
    }
}
