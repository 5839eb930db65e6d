//! A customer's own page (docs/customers.md): the services of their contract with
//! the contract's targets, the live RPO and RTO estimate against them, the
//! drills of the last 90 days that covered each, and the incidents that
//! touched them; and the same evidence as `assurance.json` and a
//! self-contained, printable `assurance.html` for their auditors.
//!
//! A `customer` token sees its own customer and nothing else: another
//! customer's page answers 403 whether or not that customer exists, so a
//! token cannot even learn who else has a contract.

use crate::page::{esc, rfc3339, secs};
use crate::view::{datastores_under, drill_result, View};
use crate::Shared;
use drctl_core::topology::{Contract, Topology};
use drctl_state::controller::{DrillRow, Incident};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// How far back drills and incidents count.
pub const EVIDENCE_DAYS: u64 = 90;

/// What a customer's evidence is drawn from.
#[derive(Clone, Copy)]
pub(crate) struct Sources<'a> {
    pub topo: &'a Topology,
    pub view: Option<&'a View>,
    pub drills: &'a [DrillRow],
    pub incidents: &'a [Incident],
    pub audit_head: Option<&'a str>,
    pub base: &'a str,
    pub now: SystemTime,
    /// Each datastore's last restore test, by name.
    pub restore_tests: &'a [(String, drctl_backup::report::RestoreTest)],
}

/// The evidence of one customer's contract, as JSON (the page, the
/// assurance report and its HTML are all drawn from this).
pub(crate) fn evidence(contract: &Contract, src: &Sources) -> Value {
    let Sources { topo, view, drills, incidents, audit_head, base, now, restore_tests } = *src;
    let since = now.checked_sub(Duration::from_secs(EVIDENCE_DAYS * 86_400)).unwrap_or(SystemTime::UNIX_EPOCH);
    let reports: Vec<(&DrillRow, Value)> = drills
        .iter()
        .filter(|d| d.finished_at.unwrap_or(d.started_at) >= since)
        .filter_map(|d| Some((d, serde_json::from_str::<Value>(d.report.as_deref()?).ok()?)))
        .collect();
    let target = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let mut services = Vec::new();
    let (mut drills_total, mut drills_passed, mut met_now, mut measured_now) = (0, 0, 0, 0);
    let mut seen_drills: Vec<&str> = Vec::new();
    for &id in &contract.entities {
        let e = topo.entity(id);
        let live = view.and_then(|v| v.services.iter().find(|s| s.name == e.name));
        // A contract names services or datastores; a datastore's live RPO
        // comes from the status, a service's from the datastores under it.
        let datastore =
            view.and_then(|v| v.status.as_ref()).and_then(|s| s.datastores.iter().find(|d| d.name == e.name));
        let rpo_s = live.and_then(|s| s.rpo_s).or(datastore.and_then(|d| d.rpo_s));
        let rto_s = live.and_then(|s| s.rto_estimate_s);
        let (c_rpo, c_rto) = (target(contract.objective.rpo), target(contract.objective.rto));
        let meets_rpo = match (rpo_s, c_rpo) {
            (Some(v), Some(t)) => Some(v <= t),
            _ => None,
        };
        let meets_rto = match (rto_s, c_rto) {
            (Some(v), Some(t)) => Some(v <= t),
            _ => None,
        };
        for m in [meets_rpo, meets_rto].into_iter().flatten() {
            measured_now += 1;
            met_now += usize::from(m);
        }
        let mut deps = datastores_under(topo, id);
        if deps.is_empty() {
            deps.push(id);
        }
        let covered: Vec<Value> = reports
            .iter()
            .filter_map(|(row, rep)| {
                let r = drill_result(topo, &e.name, &deps, row, rep).or_else(|| {
                    // A datastore named by the contract: the drill's own row for it.
                    let d = rep["datastores"].as_array()?.iter().find(|d| d["name"] == e.name.as_str())?;
                    Some(crate::view::LastDrill {
                        id: row.id.clone(),
                        experiment: row.experiment.clone(),
                        at: row.finished_at.unwrap_or(row.started_at),
                        rto_s: None,
                        rpo_s: d["rpo_s"].as_f64(),
                        lost_writes: d["lost_writes"].as_u64(),
                        passed: d["meets_rpo"] == true,
                    })
                })?;
                if !seen_drills.contains(&row.id.as_str()) {
                    seen_drills.push(&row.id);
                    drills_total += 1;
                    drills_passed += usize::from(r.passed);
                }
                Some(json!({
                    "id": r.id, "experiment": r.experiment, "at": rfc3339(r.at),
                    "rto_s": r.rto_s, "rpo_s": r.rpo_s, "lost_writes": r.lost_writes, "passed": r.passed,
                    "meets_contract_rto": match (r.rto_s, c_rto) { (Some(v), Some(t)) => Some(v <= t), _ => None },
                    "meets_contract_rpo": match (r.rpo_s, c_rpo) { (Some(v), Some(t)) => Some(v <= t), _ => None },
                }))
            })
            .collect();
        let touched: Vec<Value> = incidents
            .iter()
            .filter(|i| i.created_at >= since && i.services.contains(&e.name))
            .map(|i| {
                json!({
                    "id": i.id, "title": i.title, "status": i.status,
                    "created_at": rfc3339(i.created_at), "resolved_at": i.resolved_at.map(rfc3339),
                    "url": format!("{base}/incidents/{}", i.id),
                })
            })
            .collect();
        // Each datastore under the service: its last tested restore (or none).
        let restores: Vec<Value> = deps
            .iter()
            .filter(|d| matches!(topo.entity(**d).spec, drctl_core::topology::EntitySpec::Datastore(_)))
            .map(|d| {
                let name = &topo.entity(*d).name;
                let t = restore_tests.iter().find(|(n, _)| n == name).map(|(_, t)| t);
                json!({
                    "datastore": name,
                    "at": t.map(|t| t.at.clone()),
                    "passed": t.map(|t| t.passed),
                    "restore_s": t.and_then(|t| t.restore_s),
                    "recovery_point_error_s": t.and_then(|t| t.recovery_point_error_s),
                })
            })
            .collect();
        services.push(json!({
            "name": e.name,
            "restore_tests": restores,
            "tier": e.tier.map(|t| topo.tiers[t].name.clone()),
            "state": live.map(|s| s.state.as_str()),
            "state_words": live.map(|s| crate::page::state_words(s.state)),
            "why": live.and_then(|s| s.why.as_ref()).map(crate::page::why_words),
            "contract": { "rpo_s": c_rpo, "rto_s": c_rto },
            "live": { "rpo_s": rpo_s, "rto_estimate_s": rto_s, "meets_rpo": meets_rpo, "meets_rto": meets_rto },
            "drills": covered,
            "incidents": touched,
        }));
    }
    json!({
        "customer": contract.customer,
        "topology": topo.name,
        "generated_at": rfc3339(now),
        "measured_at": view.and_then(|v| v.measured_at.clone()),
        "period_days": EVIDENCE_DAYS,
        "contract": { "rpo_s": target(contract.objective.rpo), "rto_s": target(contract.objective.rto) },
        "summary": {
            "services": services.len(),
            "targets_met_now": met_now,
            "targets_measured_now": measured_now,
            "drills": drills_total,
            "drills_passed": drills_passed,
        },
        "services": services,
        "audit_head": audit_head,
        "method": "Live RPO: the age of the newest write the standby does not have yet, sampled by the controller. RTO estimate: the failover plan's critical path from the runbooks' expected step times. Drills: a fault injected in the lab or a drill environment, the failover run by the same engine as a real one, RTO measured from the declaration to the service answering again, writes lost counted by a workload that records every acknowledged write. The audit head is the hash chaining the operator audit log at the time of this report.",
    })
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn verdict(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => r#"<span class="met">met</span>"#,
        Some(false) => r#"<span class="miss">missed</span>"#,
        None => r#"<span class="muted">not measured</span>"#,
    }
}

/// The evidence as one HTML document: inline style, no script, nothing
/// fetched, printable (`printable`: the assurance report; otherwise the
/// customer's page, which links to the reports).
pub(crate) fn html(e: &Value, printable: bool) -> String {
    let mut h = String::with_capacity(16 * 1024);
    header_html(&mut h, e, printable);
    summary_html(&mut h, e);
    let services = e["services"].as_array().cloned().unwrap_or_default();
    services_now_html(&mut h, &services);
    drills_html(&mut h, &services);
    restores_html(&mut h, &services);
    incidents_html(&mut h, &services);
    let _ = write!(
        h,
        r#"<section><h2>How these numbers are measured</h2><p>{}</p><p class="meta">Audit log head at generation: <code>{}</code></p></section></main></body></html>"#,
        esc(e["method"].as_str().unwrap_or_default()),
        esc(e["audit_head"].as_str().unwrap_or("none"))
    );
    h
}

/// The document's head and the report's header; the customer's page also
/// links to the printable report and the JSON.
fn header_html(h: &mut String, e: &Value, printable: bool) {
    let customer = e["customer"].as_str().unwrap_or_default();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · disaster-recovery assurance</title><style>{STYLE}</style></head><body><main>"#,
        esc(customer)
    );
    let _ = write!(
        h,
        r#"<header><h1>Disaster-recovery assurance: {}</h1><p class="meta">{} · generated <time>{}</time> · last measured <time>{}</time> · covers the last {} days</p></header>"#,
        esc(customer),
        esc(e["topology"].as_str().unwrap_or_default()),
        esc(e["generated_at"].as_str().unwrap_or_default()),
        esc(e["measured_at"].as_str().unwrap_or("not yet")),
        e["period_days"]
    );
    if !printable {
        h.push_str(r#"<p class="noprint"><a href="assurance.html">Printable report</a> · <a href="assurance.json">JSON</a></p>"#);
    }
}

/// The contract, the targets met now, the drills, readiness and erasure.
fn summary_html(h: &mut String, e: &Value) {
    let s = &e["summary"];
    let _ = write!(
        h,
        r#"<section><h2>Summary</h2><ul><li>Contract: RPO {}, RTO {}</li><li>{} of {} targets measured now are met</li><li>{} drills covered your services; {} passed</li>{}</ul></section>"#,
        secs(num(&e["contract"]["rpo_s"]), "-"),
        secs(num(&e["contract"]["rto_s"]), "-"),
        s["targets_met_now"],
        s["targets_measured_now"],
        s["drills"],
        s["drills_passed"],
        e["readiness"].as_str().map_or(String::new(), |l| format!("<li>{}</li>", esc(l)))
            + &e["erasure"]["statement"].as_str().map_or(String::new(), |l| format!("<li>{}</li>", esc(l)))
    );
}

/// Each service's state, live RPO and RTO estimate against the contract.
fn services_now_html(h: &mut String, services: &[Value]) {
    h.push_str(r#"<section><h2>Your services now</h2><table><thead><tr><th scope="col">Service</th><th scope="col">State</th><th scope="col">Data at risk (RPO)</th><th scope="col">Contract RPO</th><th scope="col"></th><th scope="col">Recovery estimate (RTO)</th><th scope="col">Contract RTO</th><th scope="col"></th></tr></thead><tbody>"#);
    for svc in services {
        let _ = write!(
            h,
            r#"<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(svc["name"].as_str().unwrap_or_default()),
            {
                let state = esc(svc["state_words"].as_str().unwrap_or("unknown"));
                match svc["why"].as_str() {
                    Some(why) => format!(r#"{state}<br><span class="muted">{}</span>"#, esc(why)),
                    None => state,
                }
            },
            secs(num(&svc["live"]["rpo_s"]), "unknown"),
            secs(num(&svc["contract"]["rpo_s"]), "-"),
            verdict(&svc["live"]["meets_rpo"]),
            secs(num(&svc["live"]["rto_estimate_s"]), "unknown"),
            secs(num(&svc["contract"]["rto_s"]), "-"),
            verdict(&svc["live"]["meets_rto"]),
        );
    }
    h.push_str("</tbody></table></section>");
}

/// The drills of the last 90 days, a table per service that had any.
fn drills_html(h: &mut String, services: &[Value]) {
    h.push_str(r#"<section><h2>Drills (last 90 days)</h2>"#);
    let mut any = false;
    for svc in services {
        let drills = svc["drills"].as_array().cloned().unwrap_or_default();
        if drills.is_empty() {
            continue;
        }
        any = true;
        let _ = write!(
            h,
            r#"<h3>{}</h3><table><thead><tr><th scope="col">When</th><th scope="col">Experiment</th><th scope="col">RTO measured</th><th scope="col">RPO measured</th><th scope="col">Writes lost</th><th scope="col">Contract RTO</th><th scope="col">Contract RPO</th><th scope="col">Drill</th></tr></thead><tbody>"#,
            esc(svc["name"].as_str().unwrap_or_default())
        );
        for d in drills {
            let _ = write!(
                h,
                r#"<tr><td><time>{}</time></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(d["at"].as_str().unwrap_or_default()),
                esc(d["experiment"].as_str().unwrap_or_default()),
                secs(num(&d["rto_s"]), "-"),
                secs(num(&d["rpo_s"]), "-"),
                d["lost_writes"].as_u64().map_or_else(|| "not counted".to_string(), |n| n.to_string()),
                verdict(&d["meets_contract_rto"]),
                verdict(&d["meets_contract_rpo"]),
                if d["passed"] == true {
                    r#"<span class="met">passed</span>"#
                } else {
                    r#"<span class="miss">failed</span>"#
                },
            );
        }
        h.push_str("</tbody></table>");
    }
    if !any {
        h.push_str("<p>No drill covered these services in the last 90 days.</p>");
    }
    h.push_str("</section>");
}

/// The entries of `list` across the services, each `key` once, first seen first.
fn unique_rows(services: &[Value], list: &str, key: &str) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    for svc in services {
        for t in svc[list].as_array().cloned().unwrap_or_default() {
            if !rows.iter().any(|r| r[key] == t[key]) {
                rows.push(t);
            }
        }
    }
    rows
}

/// The last tested restore of each datastore under the services.
fn restores_html(h: &mut String, services: &[Value]) {
    h.push_str("<section><h2>Tested restores</h2>");
    let rows = unique_rows(services, "restore_tests", "datastore");
    if rows.is_empty() {
        h.push_str("<p>These services keep no data of their own.</p>");
    } else {
        h.push_str(r#"<table><thead><tr><th scope="col">Data</th><th scope="col">Last tested restore</th><th scope="col">Restore time</th><th scope="col">Recovery-point error</th><th scope="col">Test</th></tr></thead><tbody>"#);
        for t in rows {
            let verdict = match t["passed"].as_bool() {
                Some(true) => r#"<span class="met">passed</span>"#,
                Some(false) => r#"<span class="miss">failed</span>"#,
                None => r#"<span class="muted">never tested</span>"#,
            };
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td><time>{}</time></td><td>{}</td><td>{}</td><td>{verdict}</td></tr>"#,
                esc(t["datastore"].as_str().unwrap_or_default()),
                esc(t["at"].as_str().unwrap_or("-")),
                secs(num(&t["restore_s"]), "-"),
                secs(num(&t["recovery_point_error_s"]), "-"),
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

/// The incidents of the last 90 days that touched the services.
fn incidents_html(h: &mut String, services: &[Value]) {
    h.push_str("<section><h2>Incidents (last 90 days)</h2>");
    let rows = unique_rows(services, "incidents", "id");
    if rows.is_empty() {
        h.push_str("<p>No incident touched these services in the last 90 days.</p>");
    } else {
        h.push_str(r#"<table><thead><tr><th scope="col">Incident</th><th scope="col">Status</th><th scope="col">Opened</th><th scope="col">Resolved</th></tr></thead><tbody>"#);
        for i in rows {
            let _ = write!(
                h,
                r#"<tr><td><a href="{}">{}</a></td><td>{}</td><td><time>{}</time></td><td><time>{}</time></td></tr>"#,
                esc(i["url"].as_str().unwrap_or_default()),
                esc(i["title"].as_str().unwrap_or_default()),
                esc(i["status"].as_str().unwrap_or_default()),
                esc(i["created_at"].as_str().unwrap_or_default()),
                esc(i["resolved_at"].as_str().unwrap_or("-")),
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;color:#1b1f24;background:#fff;margin:0}main{max-width:62rem;margin:0 auto;padding:1.5rem}h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #d0d7de}h3{font-size:1rem}table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e6e9ed;vertical-align:top}thead th{font-size:.85rem;color:#57606a}.meta{color:#57606a;font-size:.9rem}.met{color:#1a7f37;font-weight:600}.miss{color:#cf222e;font-weight:600}.muted{color:#6e7781}code{font-size:.85rem;word-break:break-all}@media print{body{font-size:11pt}main{max-width:none;padding:0}.noprint{display:none}a{color:inherit;text-decoration:none}table{page-break-inside:auto}tr{page-break-inside:avoid}}";

/// The Content-Security-Policy of the self-contained pages: their one
/// inline stylesheet allowed by its hash, nothing else.
pub(crate) fn csp() -> axum::http::HeaderValue {
    static VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let v = VALUE.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE.as_bytes()));
        format!("default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    });
    axum::http::HeaderValue::from_str(v).unwrap_or(axum::http::HeaderValue::from_static("default-src 'none'"))
}

/// The contract of `name`, if the topology has one.
pub(crate) fn contract<'a>(s: &'a Shared, name: &str) -> Option<&'a Contract> {
    s.opts.topology.contracts.iter().find(|c| c.customer == name)
}

/// The evidence for `name` now.
pub(crate) fn evidence_now(s: &Shared, c: &Contract) -> Value {
    let view = s.view.read().unwrap_or_else(|p| p.into_inner()).clone();
    let state = &s.opts.state;
    let head = match state.verify_audit() {
        Ok(drctl_state::controller::Verified::Intact { head, .. }) => Some(head),
        _ => None,
    };
    let (drills, incidents) = (state.drills().unwrap_or_default(), state.incidents().unwrap_or_default());
    let mut zones: Vec<String> = Vec::new();
    for id in &c.entities {
        if let drctl_core::topology::EntitySpec::Service(svc) = &s.opts.topology.entity(*id).spec {
            zones.extend(svc.zones.iter().map(|z| s.opts.topology.zones[*z].name.clone()));
        }
    }
    let line = crate::readiness::customer_line(s.readiness().as_deref(), &zones, s.opts.clock.now());
    let restore_tests = crate::view::restore_tests(&s.opts.topology, &**state);
    let mut e = evidence(
        c,
        &Sources {
            topo: &s.opts.topology,
            view: view.as_deref(),
            drills: &drills,
            incidents: &incidents,
            audit_head: head.as_deref(),
            base: &s.base_url,
            now: s.opts.clock.now(),
            restore_tests: &restore_tests,
        },
    );
    if let (Some(line), Some(o)) = (line, e.as_object_mut()) {
        o.insert("readiness".into(), line.into());
    }
    if let (Some(erasure), Some(o)) = (erasure_statement(s), e.as_object_mut()) {
        o.insert("erasure".into(), erasure);
    }
    e
}

/// Whether requests to erase a person's data kept the deadline the
/// topology promises, over the evidence period, in counts (never a
/// request or an identifier); `None` where the topology has no `erasure:`.
fn erasure_statement(s: &Shared) -> Option<Value> {
    let deadline = s.opts.topology.erasure.as_ref()?.deadline;
    let now = s.opts.clock.now();
    let since = now.checked_sub(Duration::from_secs(EVIDENCE_DAYS * 86_400)).unwrap_or(SystemTime::UNIX_EPOCH);
    let r = drctl_control::erasure::deadline_record(&*s.opts.state, since, now).ok()?;
    let days = deadline.as_secs() / 86_400;
    let within = if days > 0 { format!("{days} days") } else { secs(Some(deadline.as_secs_f64()), "-") };
    let statement = match (r.requests, r.missed) {
        (0, _) => format!("no request to erase personal data in the last {EVIDENCE_DAYS} days (deadline: {within})"),
        (n, 0) => format!(
            "every one of {n} request(s) to erase personal data in the last {EVIDENCE_DAYS} days met its {within} deadline or is within it ({} done on every copy, {} in progress)",
            r.met, r.open
        ),
        (n, missed) => format!(
            "{missed} of {n} request(s) to erase personal data in the last {EVIDENCE_DAYS} days missed the {within} deadline"
        ),
    };
    Some(json!({
        "deadline_s": deadline.as_secs_f64(),
        "requests": r.requests,
        "met": r.met,
        "open": r.open,
        "missed": r.missed,
        "deadline_met": r.missed == 0,
        "statement": statement,
    }))
}
