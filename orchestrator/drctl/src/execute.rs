//! `declare`, `resume`, `approve`, `abort`, `executions`, `show`: the
//! incident commander's commands. Output is short and in the order a
//! commander reads it under stress: the id first, then what was checked,
//! then each step as it finishes, then the verdict with the measured RTO.

use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_control::failover::{self, Declaration};
use drctl_core::duration::format_secs;
use drctl_core::Topology;
use drctl_state::journal::exec_state;
use drctl_state::State;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

fn state_error(e: drctl_state::Error) -> Failure {
    match e {
        drctl_state::Error::NoSuchExecution(_) | drctl_state::Error::Locked { .. } => Failure::bad_input(e.to_string()),
        other => Failure::Runtime(other.into()),
    }
}

fn control_error(e: drctl_control::Error) -> Failure {
    match e {
        drctl_control::Error::State(s) => state_error(s),
        drctl_control::Error::BadRequest(m) => Failure::bad_input(m),
    }
}

pub async fn declare(
    topo: Topology,
    state: State,
    decl: Declaration,
    yes: bool,
    dry_run: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    let id = failover::new_id();
    println!("{id}");
    let prepared = failover::prepare(&topo, &state, &decl, &id).await.map_err(control_error)?;
    print!("{}", crate::text::plan(&topo, &prepared.plan.plan, style));
    println!();
    for c in &prepared.checks {
        println!("  {} {}: {}", if c.ok { style.green("✓") } else { style.red("✗") }, c.subject, c.detail);
    }
    if prepared.refused() {
        if !dry_run {
            failover::create(&state, &id, &decl, &prepared).map_err(control_error)?;
            state
                .set_execution_state(&id, exec_state::REFUSED, Some(std::time::SystemTime::now()))
                .map_err(state_error)?;
        }
        eprintln!("{} refused: a check failed; nothing in the world was changed", style.red("✗"));
        return Ok(Outcome::Failed);
    }
    if dry_run {
        println!("{} dry run: every check passed; nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    if prepared.specs.is_empty() {
        println!("nothing to fail over");
        return Ok(Outcome::Done);
    }
    if !yes && std::io::stdin().is_terminal() {
        print!("Fail over {} entities now? [y/N] ", prepared.plan.plan.entities.len());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("not declared");
            return Ok(Outcome::Done);
        }
    }
    failover::create(&state, &id, &decl, &prepared).map_err(control_error)?;
    crate::cli::audit(
        &state,
        "declare",
        &format!("execution {id}"),
        &serde_json::json!({"zones": decl.zones, "regions": decl.regions, "targets": decl.targets, "reason": decl.reason, "force": decl.force}),
    );
    run(Arc::new(topo), Arc::new(state), &id, style).await
}

pub async fn resume(topo: Topology, state: State, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let row = state.execution(id).map_err(state_error)?;
    if exec_state::is_final(&row.state) {
        println!("{id} already {}", row.state);
        return finish(Some(&topo), &state, id, style);
    }
    println!("{id}");
    crate::cli::audit(&state, "resume", &format!("execution {id}"), &serde_json::json!({}));
    run(Arc::new(topo), Arc::new(state), id, style).await
}

async fn run(topo: Arc<Topology>, state: Arc<State>, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let watcher = {
        let state = state.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut seen = state.events(&id).map(|e| e.len()).unwrap_or(0);
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let Ok(events) = state.events(&id) else { continue };
                for e in events.iter().skip(seen) {
                    if let Some(step) = &e.step {
                        let detail = e.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                        println!("  {} {step} {}{detail}", drctl_control::live::now_rfc3339(), e.kind);
                    }
                }
                seen = events.len();
            }
        })
    };
    let result = failover::execute(topo.clone(), state.clone(), id).await;
    // Let the watcher print the last transitions, then stop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    watcher.abort();
    result.map_err(control_error)?;
    finish(Some(&topo), &state, id, style)
}

fn finish(topo: Option<&Topology>, state: &State, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let report = failover::report(topo, state, id).map_err(control_error)?;
    print!("{}", render(&report, style));
    let ok = report["state"] == exec_state::SUCCEEDED;
    let meets = report["entities"].as_array().is_some_and(|a| a.iter().all(|e| e["meets_rto"] == true));
    Ok(match (ok, meets) {
        (true, true) => Outcome::Done,
        (true, false) => Outcome::ObjectiveMissed,
        _ => Outcome::Failed,
    })
}

fn render(r: &serde_json::Value, style: &Style) -> String {
    let mut out = format!(
        "\nExecution {} — {} — {}\n",
        r["id"].as_str().unwrap_or(""),
        r["state"].as_str().unwrap_or(""),
        r["reason"].as_str().unwrap_or("")
    );
    for s in r["steps"].as_array().into_iter().flatten() {
        let st = s["state"].as_str().unwrap_or("");
        let mark = match st {
            "succeeded" => style.green("✓"),
            "failed" => style.red("✗"),
            "waiting_approval" => style.yellow("?"),
            _ => style.dim("·"),
        };
        let extra = s["error"].as_str().or(s["note"].as_str()).map(|d| format!(" — {d}")).unwrap_or_default();
        out.push_str(&format!(
            "  {mark} {:<32} {:<18} attempts {}{extra}\n",
            s["id"].as_str().unwrap_or(""),
            st,
            s["attempts"]
        ));
    }
    out.push_str("RTO measured (declaration → failed over):\n");
    for e in r["entities"].as_array().into_iter().flatten() {
        let rto = e["rto_s"].as_f64().map_or("not recovered".into(), format_secs);
        let target = e["rto_target_s"].as_f64().map_or("no target".into(), format_secs);
        let mark = if e["meets_rto"] == true { style.green("✓") } else { style.red("✗") };
        out.push_str(&format!("  {mark} {:<24} {rto} / {target}\n", e["name"].as_str().unwrap_or("")));
    }
    if let Some(rto) = r["rto_s"].as_f64() {
        out.push_str(&format!("Whole execution: {}\n", format_secs(rto)));
    }
    out
}

pub fn approve(state: &State, id: &str, step: &str, by: &str) -> Result<Outcome, Failure> {
    let steps = state.steps(id).map_err(state_error)?;
    let Some(s) = steps.iter().find(|s| s.id == step) else {
        return Err(Failure::bad_input(format!("execution {id} has no step `{step}`")));
    };
    if s.action != drctl_engine::APPROVAL {
        return Err(Failure::bad_input(format!("step `{step}` is a {} step, not an approval", s.action)));
    }
    if state.approve(id, step, by).map_err(state_error)? {
        crate::cli::audit(
            state,
            "approve",
            &format!("execution {id} step {step}"),
            &serde_json::json!({"step": step, "by": by}),
        );
        println!("approved {step} of {id} as {by}");
    } else {
        println!("{step} of {id} was already approved");
    }
    Ok(Outcome::Done)
}

pub fn abort(state: &State, id: &str) -> Result<Outcome, Failure> {
    let now = state.request_abort(id).map_err(state_error)?;
    crate::cli::audit(state, "abort", &format!("execution {id}"), &serde_json::json!({}));
    println!("{id}: {now}");
    Ok(Outcome::Done)
}

pub fn list(state: &State, json: bool) -> Result<Outcome, Failure> {
    let rows = state.executions().map_err(state_error)?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({ "id": r.id, "state": r.state, "declared_at": failover::rfc3339(r.declared_at), "reason": r.reason }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?);
    } else {
        for r in rows {
            println!("{}  {:<10} {}  {}", r.id, r.state, failover::rfc3339(r.declared_at), r.reason);
        }
    }
    Ok(Outcome::Done)
}

pub fn show(topo: Option<&Topology>, state: &State, id: &str, json: bool, style: &Style) -> Result<Outcome, Failure> {
    let report = failover::report(topo, state, id).map_err(control_error)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?);
    } else {
        print!("{}", render(&report, style));
    }
    Ok(Outcome::Done)
}
