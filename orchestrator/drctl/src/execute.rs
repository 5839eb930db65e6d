//! `declare`, `resume`, `retry`, `skip`, `approve`, `abort`, `executions`,
//! `show`: the incident commander's commands. Output is short and in the
//! order a commander reads it under stress: the id first, then what was
//! checked, then each step as it finishes, then the verdict with the
//! measured RTO. A paused execution says what failed, what is already
//! switched and the exact commands that go on; Ctrl-C says the failover
//! goes on and how to find it again. Every command printed works typed as
//! printed (with the `-f FILE` the commander typed).

use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_control::declare::{self, Actor, Declarer, IncidentPolicy, PauseView, Recorded};
use drctl_control::failover::{self, Declaration};
use drctl_control::overrides::Overrides;
use drctl_core::duration::format_secs;
use drctl_core::Topology;
use drctl_state::controller::Role;
use drctl_state::journal::exec_state;
use drctl_state::State;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// A state error as the operator meets it: a name that is not there, a
/// request the store refuses or an entity another execution holds is
/// theirs to change (exit 2); anything else is the store failing (exit 1).
pub(crate) fn state_error(e: drctl_state::Error) -> Failure {
    match e {
        drctl_state::Error::NoSuchExecution(_)
        | drctl_state::Error::Locked { .. }
        | drctl_state::Error::NotFound(_)
        | drctl_state::Error::Invalid(_) => Failure::bad_input(e.to_string()),
        other => Failure::Runtime(other.into()),
    }
}

pub(crate) fn control_error(e: drctl_control::Error) -> Failure {
    match e {
        drctl_control::Error::State(s) => state_error(s),
        drctl_control::Error::Request(r) => Failure::Refused(r),
        other => Failure::Runtime(other.into()),
    }
}

pub async fn declare(
    declarer: Declarer,
    decl: Declaration,
    yes: bool,
    dry_run: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    let proposal = declarer.propose(decl, None).await.map_err(control_error)?;
    let id = proposal.id.clone();
    println!("{id}");
    if !dry_run {
        // Typed as printed, these reach this execution in this store.
        println!("  `{}` follows it; `{}` stops it", hint(&format!("show {id}")), hint(&format!("abort {id}")));
    }
    print!("{}", crate::text::plan(&declarer.topology, &proposal.prepared.plan.plan, style));
    println!();
    for c in &proposal.prepared.checks {
        println!("  {} {}: {}", if c.ok { style.green("✓") } else { style.red("✗") }, c.subject, c.detail);
    }
    let who = Actor::cli();
    // Before any question: what in the scope still looks alive (a typo, the wrong zone).
    let alive =
        if yes || proposal.prepared.specs.is_empty() { Vec::new() } else { declarer.still_alive(&proposal).await };
    for a in &alive {
        println!("  {} still alive in the declared scope: {a}", style.red("!"));
    }
    if proposal.refused() || dry_run {
        if declarer.record(&proposal, &who, dry_run, IncidentPolicy::Open).map_err(control_error)? == Recorded::Refused
        {
            eprintln!("{} refused: a check failed; nothing in the world was changed", style.red("✗"));
            return Ok(Outcome::Failed);
        }
        println!("{} dry run: every check passed; nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    if proposal.prepared.specs.is_empty() {
        println!("nothing to fail over; the declaration is journaled");
    } else if !yes && std::io::stdin().is_terminal() {
        let scope: Vec<String> = proposal.decl.zones.iter().chain(&proposal.decl.regions).cloned().collect();
        let question = Confirmation { entities: proposal.prepared.plan.plan.entities.len(), scope, alive };
        let stdin = std::io::stdin();
        if !question.ask(&mut stdin.lock(), &mut std::io::stdout()) {
            // Not a decision to record: nothing was declared, and a script
            // or a tired commander must not read it as done.
            eprintln!(
                "{} not declared: the answer was not the confirmation asked for; nothing was recorded",
                style.red("✗")
            );
            return Ok(Outcome::Failed);
        }
    }
    declarer.record(&proposal, &who, false, IncidentPolicy::Open).map_err(control_error)?;
    if !proposal.decl.overrides.is_empty() {
        println!("overrides: {} (by {}; journaled)", proposal.decl.overrides.flags().join(" "), who.name);
    }
    run(&declarer, &id, None, style).await
}

/// The question a commander answers before a failover starts. Declaring a
/// zone or a region asks for its name to be typed, so a typo or a wrong
/// terminal does not fail a healthy zone over; a target alone asks y/N.
pub struct Confirmation {
    pub entities: usize,
    /// The zones and regions declared lost.
    pub scope: Vec<String>,
    /// What in that scope still looks alive.
    pub alive: Vec<String>,
}

impl Confirmation {
    pub fn ask(&self, input: &mut impl BufRead, out: &mut impl Write) -> bool {
        if !self.alive.is_empty() {
            let _ = writeln!(
                out,
                "{} thing(s) in the declared scope still look alive (listed above): is it really lost?",
                self.alive.len()
            );
        }
        let expected = self.scope.join(",");
        if expected.is_empty() {
            let _ = write!(out, "Fail over {} entities now? [y/N] ", self.entities);
        } else {
            let _ = write!(out, "Fail over {} entities out of {expected}? Type {expected} to confirm: ", self.entities);
        }
        let _ = out.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        let answer = answer.trim();
        if expected.is_empty() {
            matches!(answer, "y" | "Y" | "yes")
        } else {
            let typed: Vec<&str> = answer.split(',').map(str::trim).collect();
            let wanted: Vec<&str> = self.scope.iter().map(String::as_str).collect();
            typed == wanted
        }
    }
}

pub async fn resume(declarer: Declarer, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let row = declarer.state.execution(id).map_err(state_error)?;
    if exec_state::is_final(&row.state) {
        println!("{id} already {}", row.state);
        return finish(Some(&declarer.topology), &*declarer.state, id, style);
    }
    if row.state == exec_state::PAUSED {
        // Only a commander's decision moves it: resume does not guess which.
        println!("{id} is paused: a step failed, and resume does not choose for you");
        return finish(Some(&declarer.topology), &*declarer.state, id, style).map(|_| Outcome::Failed);
    }
    println!("{id}");
    run(&declarer, id, Some(Actor::cli()), style).await
}

/// Runs (or, with `resuming`, resumes) an execution, printing each step's
/// transitions as the journal records them.
async fn run(declarer: &Declarer, id: &str, resuming: Option<Actor>, style: &Style) -> Result<Outcome, Failure> {
    let state = declarer.state.clone();
    // Only what happens from now on: a resumed execution's history is not printed again.
    let mut seen = state.events(id).map(|e| e.len()).unwrap_or(0);
    let mut print_new = move || {
        let Ok(events) = state.events(id) else { return };
        for e in events.iter().skip(seen) {
            if let Some(step) = &e.step {
                let detail = e.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                println!("  {} {step} {}{detail}", drctl_core::text::now_for_humans(), e.kind);
            }
        }
        seen = events.len();
    };
    let work = async {
        match &resuming {
            Some(who) => declarer.resume(id, who).await.map(|_| ()),
            None => declarer.run(id).await.map(|_| ()),
        }
    };
    tokio::pin!(work);
    // Ctrl-C from here on does not kill the failover mid-step: the first
    // says it goes on and how to find it, the second detaches.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot watch for Ctrl-C: {e}")))?;
    let mut pressed = 0;
    // The progress printer runs in this task, exactly as long as the
    // execution, and prints the last transitions once it has ended.
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(Duration::from_millis(150)) => print_new(),
            _ = sigint.recv() => {
                pressed += 1;
                if pressed == 1 {
                    eprintln!(
                        "\n{} the failover goes on: Ctrl-C does not stop it halfway. Ctrl-C again detaches; it can then be resumed here, or by `drctl serve`.",
                        style.yellow("!")
                    );
                    eprintln!("  {}      where it is", hint(&format!("show {id}")));
                    eprintln!("  {}    carries it on (after a detach)", hint(&format!("resume {id}")));
                    eprintln!("  {}     stops it: running steps finish, nothing new starts", hint(&format!("abort {id}")));
                } else {
                    print_new();
                    eprintln!(
                        "{} detached: {id} stays as the journal says; `{}` carries it on",
                        style.yellow("!"),
                        hint(&format!("resume {id}"))
                    );
                    return Ok(Outcome::Interrupted);
                }
            }
        }
    };
    print_new();
    result.map_err(control_error)?;
    finish(Some(&declarer.topology), &*declarer.state, id, style)
}

/// Says where a paused execution left the estate and which commands go on.
fn print_paused(topo: Option<&Topology>, state: &State, id: &str, style: &Style) -> Result<(), Failure> {
    let specs = topo.and_then(|t| failover::journaled(t, state, id).ok()).map(|(_, specs)| specs).unwrap_or_default();
    let needing = |step: &str| match specs.iter().position(|s| s.id == step) {
        Some(i) => drctl_engine::decide::needing(&specs, i).into_iter().map(|j| specs[j].id.clone()).collect(),
        None => Vec::new(),
    };
    let Some(view) = PauseView::of(state, id, needing).map_err(control_error)? else { return Ok(()) };
    println!("\n{} {id} is PAUSED: a step failed, and nothing new starts until you decide.", style.red("✗"));
    for s in &view.failed {
        println!("  failed: {} ({}): {}", s.id, s.entity, s.error);
    }
    let list = |v: &[String]| if v.is_empty() { "nothing".to_string() } else { v.join(", ") };
    println!("  already switched: {}", list(&view.switched));
    for (e, steps) in &view.partly {
        println!("  partly switched: {e} ({} done)", steps.join(", "));
    }
    println!("  not switched: {}", list(&view.not_switched));
    println!("Go on with one of (typed as shown):");
    for (cmd, what) in view.commands() {
        println!("  {cmd}\n      {what}");
    }
    Ok(())
}

/// `drctl retry`: the failed step again, with any overrides added.
pub async fn retry(
    declarer: Declarer,
    id: &str,
    step: &str,
    overrides: &Overrides,
    style: &Style,
) -> Result<Outcome, Failure> {
    declarer.retry(id, step, overrides, &Actor::cli()).map_err(control_error)?;
    let with = if overrides.is_empty() { String::new() } else { format!(" with {}", overrides.flags().join(" ")) };
    println!("{id}\nretrying {step}{with}");
    run(&declarer, id, None, style).await
}

/// `drctl skip`: gives the failed step up (and what needs it, listed first).
pub async fn skip(declarer: Declarer, id: &str, step: &str, yes: bool, style: &Style) -> Result<Outcome, Failure> {
    let needing = declarer.needing(id, step).map_err(control_error)?;
    if needing.is_empty() {
        println!("giving up {step}: no step needs it");
    } else {
        println!("giving up {step} and the {} step(s) that need it:", needing.len());
        for n in &needing {
            println!("  {n}");
        }
    }
    if !yes && std::io::stdin().is_terminal() {
        print!("Give them up? Type {step} to confirm: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != step {
            println!("nothing given up");
            return Ok(Outcome::Failed);
        }
    }
    declarer.skip(id, step, &Actor::cli()).map_err(control_error)?;
    println!("{id}\ngave up {step}; the rest goes on");
    run(&declarer, id, None, style).await
}

/// `drctl approve -f FILE`: the decision, then, when nothing runs the
/// execution (a paused one whose failed step is now done), it goes on here.
pub async fn approve_and_go_on(
    declarer: Declarer,
    id: &str,
    step: &str,
    done: bool,
    by: &str,
    style: &Style,
) -> Result<Outcome, Failure> {
    let was_paused = declarer.state.execution(id).map_err(state_error)?.state == exec_state::PAUSED;
    if !was_paused {
        return approve(&*declarer.state, id, step, done, by);
    }
    let who = Actor::new(by, "cli");
    declare::approve(&*declarer.state, id, step, done, &who, Role::Admin).map_err(control_error)?;
    println!("{id}\nrecorded {step} as done by hand, as {}; what needs it goes on", who.name);
    run(&declarer, id, None, style).await
}

/// A drctl command as a hint: with the flags that reach this process's store.
fn hint(args: &str) -> String {
    drctl_core::hint::drctl(args)
}

fn finish(topo: Option<&Topology>, state: &State, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let report = failover::report(topo, state, id).map_err(control_error)?;
    print!("{}", render(&report, style));
    if report["state"] == exec_state::PAUSED {
        print_paused(topo, state, id, style)?;
        return Ok(Outcome::Failed);
    }
    println!("`{}` shows it again; `{}` lists every execution", hint(&format!("show {id}")), hint("executions"));
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
    for o in r["overrides"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  override {} by {} ({}, {})\n",
            o["override"].as_str().unwrap_or(""),
            o["by"].as_str().unwrap_or(""),
            o["with"].as_str().unwrap_or(""),
            o["at"].as_str().unwrap_or("")
        ));
    }
    for o in r["old_primaries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} {} ({})\n",
            style.red("!"),
            o["detail"].as_str().unwrap_or(""),
            o["at"].as_str().unwrap_or("")
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

pub fn approve(state: &State, id: &str, step: &str, done: bool, by: &str) -> Result<Outcome, Failure> {
    let who = Actor::new(by, "cli");
    // The CLI opens the state store itself: whoever can write it has every role.
    if declare::approve(state, id, step, done, &who, Role::Admin).map_err(control_error)? {
        if done {
            println!("recorded {step} of {id} as done, without running it, as {}", who.name);
        } else {
            println!("approved {step} of {id} as {}", who.name);
        }
        let row = state.execution(id).map_err(state_error)?;
        if !drctl_state::journal::exec_state::is_final(&row.state) && !state_has_owner(state, id) {
            println!("nothing runs {id} right now: `{}` carries on from here", hint(&format!("resume {id}")));
        }
    } else {
        println!("{step} of {id} was already approved");
    }
    Ok(Outcome::Done)
}

/// Whether some live process holds the execution's lease.
fn state_has_owner(state: &State, id: &str) -> bool {
    state.execution_owner(id, std::time::SystemTime::now()).ok().flatten().is_some()
}

pub fn abort(state: &State, id: &str) -> Result<Outcome, Failure> {
    let now = declare::abort(state, id, &Actor::cli()).map_err(control_error)?;
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
        if report["state"] == exec_state::PAUSED {
            print_paused(topo, state, id, style)?;
        }
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::Confirmation;

    fn answer(c: &Confirmation, typed: &str) -> (bool, String) {
        let mut out = Vec::new();
        let ok = c.ask(&mut typed.as_bytes(), &mut out);
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_zone_is_confirmed_only_by_typing_its_name() {
        let c = Confirmation { entities: 3, scope: vec!["use1-az1".into()], alive: vec![] };
        let (ok, asked) = answer(&c, "use1-az1\n");
        assert!(ok && asked.contains("Type use1-az1 to confirm"), "{asked}");
        assert!(!answer(&c, "y\n").0, "y is not the zone's name");
        assert!(!answer(&c, "use1-az2\n").0, "a typo does not fail a zone over");
        assert!(!answer(&c, "\n").0);
    }

    #[test]
    fn what_still_looks_alive_is_said_before_the_question() {
        let c = Confirmation {
            entities: 1,
            scope: vec!["az1".into(), "az2".into()],
            alive: vec!["orders-db: the primary in az1 answers and takes writes".into()],
        };
        let (ok, asked) = answer(&c, "az1, az2\n");
        assert!(ok, "{asked}");
        assert!(asked.contains("still look alive"), "{asked}");
        let targets = Confirmation { entities: 1, scope: vec![], alive: vec![] };
        assert!(answer(&targets, "y\n").0 && !answer(&targets, "n\n").0);
    }
}
