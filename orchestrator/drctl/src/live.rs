//! `status` and `replicate`: the live commands, printing what drctl-control measures and does.

use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_control::live::{self, Clients};
use drctl_control::replicate;
use drctl_core::duration::format_secs;
use drctl_core::status::StatusReport;
use drctl_core::Topology;
use drctl_state::State;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub async fn status(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    json: bool,
    watch: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    loop {
        let placements = state.placements().unwrap_or_default();
        let at = std::time::SystemTime::now();
        let mut report = live::status(clients, topo, &placements, at).await;
        live::with_state(state, &mut report, at);
        for found in drctl_control::returned::look(topo, state, &report, at).await {
            eprintln!("warning: {found}");
        }
        if let Err(e) = live::record(state, &report, at) {
            eprintln!("warning: RPO samples not recorded: {e}");
        }
        if json {
            let line = if watch { serde_json::to_string(&report) } else { serde_json::to_string_pretty(&report) };
            println!("{}", line.map_err(anyhow::Error::from)?);
        } else {
            if watch && style.colour {
                print!("\x1b[H\x1b[2J");
            }
            // The verdict stays the last line; readiness comes just before it.
            print!("{}", render(topo, &report, style, &crate::readiness::line(state, at)));
        }
        if !watch {
            return Ok(if report.meets_objectives() { Outcome::Done } else { Outcome::ObjectiveMissed });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(if report.meets_objectives() { Outcome::Done } else { Outcome::ObjectiveMissed }),
        }
    }
}

fn mark(ok: bool, style: &Style) -> String {
    if ok {
        style.green("✓")
    } else {
        style.red("✗")
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".to_string(), format_secs)
}

/// The status table: one line per datastore and service, problems below.
pub fn render(topo: &Topology, r: &StatusReport, style: &Style, before_verdict: &str) -> String {
    let mut out = format!("{} {} at {}\n\n", style.bold("Status of"), style.bold(&topo.name), r.at);
    let mut problems = Vec::new();
    if !r.datastores.is_empty() {
        let w = r.datastores.iter().map(|d| d.name.len()).max().unwrap_or(9).max(9);
        out.push_str(&style.dim(&format!(
            "  {:<w$}  {:<12}  {:<10}  {:<34}  {:>8}  {:>8}\n",
            "DATASTORE", "KIND", "PRIMARY", "REPLICAS (lag)", "RPO", "TARGET"
        )));
        for d in &r.datastores {
            let replicas: Vec<String> = d
                .replicas
                .iter()
                .map(|x| {
                    format!(
                        "{} {}{}",
                        x.zone,
                        if x.healthy { "✓" } else { "✗" },
                        x.lag_s.map(|l| format!(" {}", format_secs(l))).unwrap_or_default()
                    ) + &x
                        .replay_lag_s
                        .filter(|r| *r >= 1.0)
                        .map(|r| format!(" (replay {} behind)", format_secs(r)))
                        .unwrap_or_default()
                })
                .collect();
            let replicas = if replicas.is_empty() { "none".to_string() } else { replicas.join(", ") };
            out.push_str(&format!(
                "  {:<w$}  {:<12}  {:<10}  {:<34}  {:>8}  {:>8}  {}\n",
                d.name,
                d.kind,
                d.primary_zone.as_deref().unwrap_or("?"),
                replicas,
                secs(d.rpo_s),
                d.rpo_target_s.map_or("none".into(), format_secs),
                mark(d.meets_rpo, style)
            ));
            if let Some(e) = &d.error {
                problems.push(format!("{}: {e}", d.name));
            }
            for x in d.replicas.iter().filter(|x| x.error.is_some()) {
                problems.push(format!("{} replica in {}: {}", d.name, x.zone, x.error.as_deref().unwrap_or_default()));
            }
            problems.extend(conflict_lines(&d.name, d.conflicts.iter().map(|c| (&c.zone, &c.key, &c.reason))));
        }
        out.push('\n');
    }
    if !r.services.is_empty() {
        let w = r.services.iter().map(|s| s.name.len()).max().unwrap_or(7).max(7);
        out.push_str(
            &style.dim(&format!("  {:<w$}  {:<8}  {:>12}  {:>8}\n", "SERVICE", "HEALTH", "RTO (worst)", "TARGET")),
        );
        for s in &r.services {
            out.push_str(&format!(
                "  {:<w$}  {:<8}  {:>12}  {:>8}  {}\n",
                s.name,
                if s.healthy { "up" } else { "DOWN" },
                s.rto_estimate_s.map_or("unrecov.".into(), format_secs),
                s.rto_target_s.map_or("none".into(), format_secs),
                mark(s.meets_rto, style)
            ));
            if let Some(e) = &s.error {
                problems.push(format!("{}: {e}", s.name));
            }
        }
        out.push('\n');
    }
    for p in &problems {
        out.push_str(&format!("  {} {p}\n", style.red("!")));
    }
    if !problems.is_empty() {
        out.push('\n');
    }
    out.push_str(before_verdict);
    out.push_str(&verdict(r, style));
    out
}

/// The last line: what is down, then what misses its objective.
fn verdict(r: &StatusReport, style: &Style) -> String {
    let down = r.services.iter().filter(|s| !s.healthy).count();
    let rpo = r.datastores.iter().filter(|d| !d.meets_rpo).count();
    let rto = r.services.iter().filter(|s| !s.meets_rto).count();
    let mut parts = Vec::new();
    if down > 0 {
        parts.push(format!("{down} of {} service{} down", r.services.len(), plural(r.services.len())));
    }
    if rpo + rto > 0 {
        parts.push(format!("{rpo} RPO and {rto} RTO objective{} not met", plural(rpo + rto)));
    }
    if parts.is_empty() {
        format!("{} Every service is up and every objective is met right now.\n", style.green("✓"))
    } else {
        format!("{} {} right now.\n", style.red("✗"), parts.join("; "))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// How many conflicts one list may name before it only counts the rest.
const CONFLICTS_SHOWN: usize = 3;

/// A datastore's conflicts, kept to a few lines whatever their number: per
/// zone a count and the first few keys, then the one command that resolves
/// them all (after a failover a former primary can hold thousands, and a
/// line each would push everything else off the screen).
fn conflict_lines<'a>(
    name: &str,
    conflicts: impl Iterator<Item = (&'a String, &'a String, &'a String)>,
) -> Vec<String> {
    let mut zones: Vec<(&String, Vec<&String>, &String)> = Vec::new();
    for (zone, key, reason) in conflicts {
        match zones.iter_mut().find(|(z, ..)| *z == zone) {
            Some((_, keys, _)) => keys.push(key),
            None => zones.push((zone, vec![key], reason)),
        }
    }
    if zones.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = zones
        .iter()
        .map(|(zone, keys, reason)| {
            let first: Vec<&str> = keys.iter().take(CONFLICTS_SHOWN).map(|k| k.as_str()).collect();
            let more = keys.len().saturating_sub(CONFLICTS_SHOWN);
            format!(
                "{name}: {} object{} in {zone} kept, not replicated over ({reason}): {}{}",
                keys.len(),
                plural(keys.len()),
                first.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            )
        })
        .collect();
    lines.push(format!(
        "  resolve them all: `{}` (one: `{}`)",
        drctl_core::hint::drctl(&format!("replicate {name} --resolve-all --resolution keep|discard|copy-aside")),
        drctl_core::hint::drctl(&format!("replicate {name} --resolve KEY --zone ZONE --resolution keep"))
    ));
    lines
}

/// Progress on a terminal; nothing otherwise.
struct Bar(Option<ProgressBar>);

impl drctl_aws::s3::Progress for Bar {
    fn planned(&self, zone: &str, objects: u64, bytes: u64) {
        if let Some(b) = &self.0 {
            b.set_length(bytes);
            b.set_position(0);
            b.set_message(format!("→ {zone}: {objects} objects"));
        }
    }
    fn copied(&self, _key: &str, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn failed(&self, key: &str, error: &str) {
        if let Some(b) = &self.0 {
            b.println(format!("  ✗ {key}: {error}"));
        }
    }
}

fn bar() -> Bar {
    if !std::io::stderr().is_terminal() {
        return Bar(None);
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Bar(Some(b))
}

pub async fn replicate(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    names: &[String],
    once: bool,
    json: bool,
) -> Result<Outcome, Failure> {
    let ids = replicate::selected(topo, names).map_err(crate::execute::control_error)?;
    if ids.is_empty() {
        return Err(Failure::bad_input("no datastore has `replication: { by: drctl }`; nothing to replicate"));
    }
    if once {
        let mut any_failed = false;
        let mut per = Vec::new();
        let mut total = drctl_state::RunTotals::default();
        let (mut deleted, mut conflicts) = (0u64, Vec::new());
        for &id in &ids {
            let name = &topo.entity(id).name;
            let progress = if json { Bar(None) } else { bar() };
            let s = replicate::run_once(clients, topo, id, state, &system_clock(), &progress)
                .await
                .map_err(|e| Failure::Runtime(e.into()))?;
            if let Some(b) = &progress.0 {
                b.finish_and_clear();
            }
            any_failed |= s.totals.failed > 0 || !s.errors.is_empty();
            total.copied += s.totals.copied;
            total.bytes += s.totals.bytes;
            total.skipped += s.totals.skipped;
            total.failed += s.totals.failed;
            deleted += s.deleted;
            conflicts.extend(s.conflicts.iter().cloned());
            if !json {
                println!(
                    "{name}: copied {} ({}), deleted {}, skipped {} unchanged, failed {}, conflicts {}",
                    s.totals.copied,
                    human_bytes(s.totals.bytes),
                    s.deleted,
                    s.totals.skipped,
                    s.totals.failed,
                    s.conflicts.len()
                );
                for line in conflict_lines(name, s.conflicts.iter().map(|c| (&c.zone, &c.key, &c.reason))) {
                    println!("  ! {line}");
                }
                for f in &s.failures {
                    println!("  ✗ {} → {}: {}", f.key, f.replica_zone, f.error);
                }
                for e in &s.errors {
                    println!("  ✗ {e}");
                }
            }
            per.push(serde_json::json!({
                "name": name, "copied": s.totals.copied, "bytes": s.totals.bytes, "skipped": s.totals.skipped,
                "deleted": s.deleted, "failed": s.totals.failed, "failures": s.failures, "errors": s.errors,
                "conflicts": s.conflicts,
            }));
        }
        if json {
            let out = serde_json::json!({
                "copied": total.copied, "bytes": total.bytes, "skipped": total.skipped, "deleted": deleted,
                "failed": total.failed, "conflicts": conflicts, "datastores": per,
            });
            println!("{}", serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?);
        }
        return Ok(if any_failed { Outcome::Failed } else { Outcome::Done });
    }
    scheduled(clients, topo, state, &ids).await
}

/// Resolves one conflict replication reported; audited.
pub async fn resolve(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    name: &str,
    zone: &str,
    key: &str,
    how: crate::flags::Resolution,
) -> Result<Outcome, Failure> {
    let how = resolution(how);
    let who = drctl_control::declare::Actor::cli();
    let done = replicate::resolve(clients, topo, state, name, zone, key, how, &who)
        .await
        .map_err(crate::execute::control_error)?;
    println!("{done}");
    Ok(Outcome::Done)
}

fn resolution(how: crate::flags::Resolution) -> replicate::Resolution {
    use crate::flags::Resolution as R;
    match how {
        R::Keep => replicate::Resolution::Keep,
        R::Discard => replicate::Resolution::Discard,
        R::CopyAside => replicate::Resolution::CopyAside,
    }
}

/// Resolves every recorded conflict of the named datastores the same way;
/// each is audited. Fails (exit 1) when any could not be resolved.
pub async fn resolve_all(
    clients: &Clients,
    topo: &Topology,
    state: &State,
    names: &[String],
    zone: Option<&str>,
    how: crate::flags::Resolution,
    json: bool,
) -> Result<Outcome, Failure> {
    let who = drctl_control::declare::Actor::cli();
    let done = replicate::resolve_all(clients, topo, state, names, zone, resolution(how), &who)
        .await
        .map_err(crate::execute::control_error)?;
    let failed = done.iter().filter(|(.., r)| r.is_err()).count();
    if json {
        let rows: Vec<serde_json::Value> = done
            .iter()
            .map(|(d, z, k, r)| match r {
                Ok(what) => serde_json::json!({"datastore": d, "zone": z, "key": k, "resolved": what}),
                Err(e) => serde_json::json!({"datastore": d, "zone": z, "key": k, "error": e.to_string()}),
            })
            .collect();
        let out = serde_json::json!({"resolved": done.len() - failed, "failed": failed, "conflicts": rows});
        println!("{}", serde_json::to_string_pretty(&out).map_err(anyhow::Error::from)?);
    } else {
        for (d, z, k, r) in &done {
            match r {
                Ok(what) => println!("{d}: {what}"),
                Err(e) => println!("  ✗ {d}: {k} in {z}: {e}"),
            }
        }
        println!("{} conflict(s) resolved, {failed} failed", done.len() - failed);
    }
    Ok(if failed > 0 { Outcome::Failed } else { Outcome::Done })
}

/// Runs each datastore on its schedule until Ctrl-C.
async fn scheduled(clients: &Clients, topo: &Topology, state: &State, ids: &[usize]) -> Result<Outcome, Failure> {
    eprintln!("replicating {} datastore(s) on their schedules; Ctrl-C stops", ids.len());
    let report = |name: &str, result: &Result<drctl_aws::s3::Summary, drctl_control::Error>| match result {
        Ok(s) => println!(
            "{} {name}: copied {} ({}), skipped {}, failed {}",
            drctl_core::text::now_for_humans(),
            s.totals.copied,
            human_bytes(s.totals.bytes),
            s.totals.skipped,
            s.totals.failed
        ),
        Err(e) => eprintln!("{} {name}: {e}", drctl_core::text::now_for_humans()),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    replicate::run_scheduled(clients, topo, state, ids, &system_clock(), shutdown, &|_| false, &report).await;
    Ok(Outcome::Done)
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The machine's clock, as the replication jobs take it.
fn system_clock() -> std::sync::Arc<dyn drctl_control::schedule::Clock> {
    std::sync::Arc::new(drctl_control::schedule::SystemClock)
}
