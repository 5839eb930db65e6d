//! `backups`, `backup`, `restore` and the resume of a restore: the
//! commands of the other half of disaster recovery, printed in the order
//! an operator reads them (the restore's id first, then what it will do,
//! then each step, then what came back).

use crate::context::audit;
use crate::flags::BackupKind;
use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_backup::cloud;
use drctl_backup::restore::{self, Proposal, Request};
use drctl_control::live::Clients;
use drctl_core::duration::format_secs;
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_state::State;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn failure(e: drctl_backup::Error) -> Failure {
    if e.is_bad_input() {
        Failure::bad_input(e.to_string())
    } else {
        match e {
            drctl_backup::Error::State(s) => crate::execute::state_error(s),
            other => Failure::Runtime(other.into()),
        }
    }
}

pub async fn backups(topo: &Topology, state: &State, json: bool, style: &Style) -> Result<Outcome, Failure> {
    let site = drctl_backup::site_dir(topo);
    let (report, met) = drctl_backup::report::backups(topo, &site, state, SystemTime::now()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let list = report["datastores"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no datastore has a `backup:` section in {}", topo.file.display());
        }
        for d in &list {
            let name = d["name"].as_str().unwrap_or_default();
            let mark = match d["meets_rpo"].as_bool() {
                Some(true) => style.green("✓"),
                Some(false) => style.red("✗"),
                None => style.dim("·"),
            };
            let rpo = d["rpo_s"].as_f64().map(format_secs).unwrap_or_else(|| "unknown".into());
            let target =
                d["rpo_target_s"].as_f64().map(|t| format!(" (target {})", format_secs(t))).unwrap_or_default();
            println!(
                "{mark} {} {}: backup RPO {rpo}{target}",
                style.bold(name),
                d["kind"].as_str().unwrap_or_default()
            );
            if let Some(e) = d["error"].as_str() {
                println!("    {}", style.red(e));
            }
            if let Some(w) = d["warning"].as_str() {
                println!("    {} {w}", style.yellow("!"));
            }
            if let (Some(a), Some(b)) = (d["earliest_restorable"].as_str(), d["latest_restorable"].as_str()) {
                println!("    restorable from {a} to {b}");
            }
            if let Some(b) = d["last_backup"].as_object() {
                println!(
                    "    last backup: {} finished {} ({} bytes)",
                    b["kind"].as_str().unwrap_or_default(),
                    b["finished_at"].as_str().unwrap_or_default(),
                    b["size"]
                );
            }
            match d["last_restore_test"].as_object() {
                Some(t) => println!(
                    "    last restore test: {} {}, restore {} s, recovery-point error {} s",
                    t["at"].as_str().unwrap_or_default(),
                    if t["passed"] == true { "passed" } else { "FAILED" },
                    t["restore_s"],
                    t["recovery_point_error_s"]
                ),
                None => println!("    {}", style.yellow("never tested by a restore")),
            }
        }
    }
    Ok(if met { Outcome::Done } else { Outcome::ObjectiveMissed })
}

pub async fn backup(
    topo: &Topology,
    state: &State,
    datastore: &str,
    kind: BackupKind,
    style: &Style,
) -> Result<Outcome, Failure> {
    // The primary where it is now: after a failover, the new one.
    let ds = drctl_backup::pg_datastore_now(topo, state, datastore).map_err(failure)?;
    if let Some(w) = ds.zone_warning() {
        println!("{} {w}", style.yellow("!"));
    }
    let kind = match kind {
        BackupKind::Full => drctl_backup::pgbackrest::Kind::Full,
        BackupKind::Diff => drctl_backup::pgbackrest::Kind::Diff,
        BackupKind::Incr => drctl_backup::pgbackrest::Kind::Incr,
    };
    audit(state, "backup", &format!("datastore {datastore}"), &serde_json::json!({ "kind": kind.as_str() }))?;
    let site = drctl_backup::site_dir(topo);
    println!(
        "backing up {datastore} ({}) from its primary in {} to its repository in {}",
        kind.as_str(),
        ds.primary_zone,
        ds.repo_zone
    );
    let started = std::time::Instant::now();
    let set = drctl_backup::take_backup(&site, &ds, kind).await.map_err(failure)?;
    println!(
        "{} backup {} ({}) finished in {:.1} s: {} bytes, {} in the repository",
        style.green("✓"),
        set.label,
        set.kind,
        started.elapsed().as_secs_f64(),
        set.size,
        set.repo_size
    );
    Ok(Outcome::Done)
}

pub struct RestoreArgs {
    pub datastore: String,
    pub to: String,
    pub into: Option<String>,
    pub prefix: Option<String>,
    pub replace: bool,
    pub reason: String,
    pub dry_run: bool,
    pub yes: bool,
    /// `--unfenced DATASTORE/ZONE`, with `--replace`.
    pub unfenced: Vec<String>,
}

fn describe(p: &Proposal, site: &std::path::Path) {
    let r = &p.request;
    println!("restore {} to {} (asked: {}) into copy `{}`", r.datastore, r.target, r.to, r.into);
    if let Some(e) = p.earliest {
        println!("  earliest restorable point: {}", restore::rfc3339(e));
    }
    match p.estimate_s() {
        Some(s) => println!(
            "  from a backup of {} bytes: about {} at the restore rate measured here ({:.1} MB/s)",
            p.backup_bytes,
            format_secs(s),
            p.rate.unwrap_or_default() / 1e6
        ),
        None => {
            println!("  from a backup of {} bytes (no restore measured here yet: no time estimate)", p.backup_bytes)
        }
    }
    for line in p.describe(site) {
        println!("  - {line}");
    }
}

pub async fn restore(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    args: RestoreArgs,
    style: &Style,
) -> Result<Outcome, Failure> {
    if cloud::s3_of(&topo, &args.datastore).is_some() {
        return s3_restore(topo, state, clients, args, style).await;
    }
    if cloud::rds_of(&topo, &args.datastore).is_some() {
        return rds_restore(topo, state, clients, args, style).await;
    }
    if args.prefix.is_some() {
        return Err(Failure::bad_input("--prefix applies to S3 datastores only"));
    }
    if args.replace {
        return pg_replace(topo, state, args, style).await;
    }
    if !args.unfenced.is_empty() {
        return Err(Failure::bad_input(
            "--unfenced goes with --replace: a restore into a copy beside the datastore fences nothing",
        ));
    }
    let site = drctl_backup::site_dir(&topo);
    let p = restore::propose(
        &topo,
        &site,
        &*state,
        &args.datastore,
        &args.to,
        args.into.as_deref(),
        args.replace,
        false,
        SystemTime::now(),
    )
    .await
    .map_err(failure)?;
    println!("{}", p.id);
    describe(&p, &site);
    let request = serde_json::json!({ "datastore": args.datastore, "to": args.to, "target": p.request.target,
        "into": p.request.into, "replace": args.replace, "reason": args.reason, "dry_run": args.dry_run });
    if args.dry_run {
        audit(&*state, "restore.dry_run", &format!("datastore {}", args.datastore), &request)?;
        println!("{} dry run: nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    let _ = args.yes; // A copy beside the datastore changes nothing the estate uses: no question to ask.
    audit(&*state, "restore", &format!("execution {}", p.id), &request)?;
    restore::create(&*state, &p, &args.reason, SystemTime::now()).map_err(failure)?;
    run(Arc::new(topo), state, &p.id, style).await
}

/// `restore --replace` of PostgreSQL: the checks, the confirmation (the
/// datastore's name typed, or `--yes`), then the same calls a drill makes
/// ([`drctl_backup::replace`]): begin (audit, journal, incident) and run.
async fn pg_replace(topo: Topology, state: Arc<State>, args: RestoreArgs, style: &Style) -> Result<Outcome, Failure> {
    use drctl_backup::replace;
    let site = drctl_backup::site_dir(&topo);
    let p = replace::propose(
        &topo,
        &site,
        &*state,
        &args.datastore,
        &args.to,
        args.into.as_deref(),
        &args.unfenced,
        SystemTime::now(),
    )
    .await
    .map_err(failure)?;
    println!("{}", p.id);
    describe(&p, &site);
    for c in &p.checks {
        println!("  {} {}: {}", if c.ok { style.green("✓") } else { style.red("✗") }, c.subject, c.detail);
    }
    let who = drctl_control::declare::Actor::cli();
    if p.refused() {
        // Audited as refused; the world is as it was.
        match replace::begin(&*state, &p, &args.reason, &who, SystemTime::now()) {
            Err(drctl_backup::Error::Refused(_)) => {}
            Err(e) => return Err(failure(e)),
            Ok(_) => {}
        }
        eprintln!("{} refused: a check failed; nothing in the world was changed", style.red("✗"));
        return Ok(Outcome::Failed);
    }
    let r = &p.request;
    if args.dry_run {
        let request = serde_json::json!({ "datastore": r.datastore, "to": r.to, "target": r.target,
            "replace": true, "reason": args.reason, "unfenced": r.unfenced, "dry_run": true });
        audit(&*state, "restore.dry_run", &format!("datastore {}", r.datastore), &request)?;
        println!("{} dry run: every check passed; nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    if !confirmed(&args, r, style) {
        return Ok(Outcome::Failed);
    }
    replace::begin(&*state, &p, &args.reason, &who, SystemTime::now()).map_err(failure)?;
    if !r.unfenced.is_empty() {
        let flags: Vec<String> = r.unfenced.iter().map(|u| format!("--unfenced {u}")).collect();
        println!("overrides: {} (by {}; journaled)", flags.join(" "), who.name);
    }
    run(Arc::new(topo), state, &p.id, style).await
}

/// A `--replace`'s confirmation: `--yes`, or the datastore's name typed
/// at a terminal. Says why not when it is not given.
fn confirmed(args: &RestoreArgs, r: &Request, style: &Style) -> bool {
    if args.yes {
        return true;
    }
    let again = again_with_yes(args, r);
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "{} not restored: --replace fences the primary of {} and puts a copy restored to {} in its place, so it asks for confirmation, and this is not a terminal; nothing was changed. To go ahead without the question:\n  {again}",
            style.red("✗"),
            r.datastore,
            r.target
        );
        return false;
    }
    print!(
        "Replace the primary of {} with its copy restored to {}? Writes made after that point are given up. Type {} to confirm: ",
        r.datastore, r.target, r.datastore
    );
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() != r.datastore {
        eprintln!(
            "{} not restored: the answer was not the confirmation asked for; nothing was changed",
            style.red("✗")
        );
        return false;
    }
    true
}

/// The command that runs this `--replace` without its question, typed as
/// printed: the point resolved (a relative `-15m` would move), the same
/// reason, overrides and store.
fn again_with_yes(args: &RestoreArgs, r: &Request) -> String {
    use drctl_control::declare::shell_word;
    let to = if r.to == "latest" { "latest".to_string() } else { r.target.clone() };
    let mut cmd = format!(
        "restore {} --to {} --replace --reason {}",
        shell_word(&r.datastore),
        shell_word(&to),
        shell_word(&args.reason)
    );
    if let Some(i) = &args.into {
        cmd.push_str(&format!(" --into {}", shell_word(i)));
    }
    for u in &r.unfenced {
        cmd.push_str(&format!(" --unfenced {}", shell_word(u)));
    }
    cmd.push_str(" --yes");
    drctl_core::hint::drctl(&cmd)
}

pub async fn resume(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    id: &str,
    style: &Style,
) -> Result<Outcome, Failure> {
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    println!("{id}");
    if drctl_state::journal::exec_state::is_final(&row.state) {
        println!("{id} already {}", row.state);
    } else {
        audit(&*state, "resume", &format!("execution {id}"), &serde_json::json!({}))?;
    }
    let req = restore::request_of(&*state, id).map_err(failure)?;
    if req.is_s3() || req.is_rds() {
        return run_cloud(Arc::new(topo), state, clients, id, style).await;
    }
    run(Arc::new(topo), state, id, style).await
}

/// `drctl skip` of a paused restore's failed step: gives it up, and every
/// step that needs it (listed first), audited; the rest goes on.
pub async fn skip(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    id: &str,
    step: &str,
    yes: bool,
    style: &Style,
) -> Result<Outcome, Failure> {
    let req = restore::request_of(&*state, id).map_err(failure)?;
    let specs = restore::steps(&req);
    let Some(idx) = specs.iter().position(|s| s.id == step) else {
        return Err(Failure::bad_input(format!("restore {id} has no step `{step}` (see `drctl show {id}`)")));
    };
    // Refused before it is audited: a decision that does not fit changes nothing.
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    let failed = state
        .steps(id)
        .map_err(crate::execute::state_error)?
        .iter()
        .any(|s| s.id == step && s.state == drctl_state::journal::StepState::Failed);
    if row.state != drctl_state::journal::exec_state::PAUSED || !failed {
        return Err(Failure::bad_input(format!(
            "restore {id} is {} and its step `{step}` did not fail: only a paused restore's failed step can be given up",
            row.state
        )));
    }
    let needing: Vec<String> =
        drctl_engine::decide::needing(&specs, idx).into_iter().map(|i| specs[i].id.clone()).collect();
    if needing.is_empty() {
        println!("giving up {step}: no step needs it");
    } else {
        println!("giving up {step} and the {} step(s) that need it: {}", needing.len(), needing.join(", "));
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
    let who = drctl_control::declare::Actor::cli();
    audit(
        &*state,
        "skip",
        &format!("execution {id} step {step}"),
        &serde_json::json!({"step": step, "gives_up": needing}),
    )?;
    drctl_engine::decide::skip(&*state, id, &specs, step, &format!("given up by {}", who.name), SystemTime::now())
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    println!("{id}\ngave up {step}; the rest goes on");
    resume(topo, state, clients, id, style).await
}

/// Runs (or resumes) a journaled restore, printing each step as the journal records it.
async fn run(topo: Arc<Topology>, state: Arc<State>, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let site = drctl_backup::site_dir(&topo);
    let req = restore::request_of(&*state, id).map_err(failure)?;
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    let ended = if drctl_state::journal::exec_state::is_final(&row.state) {
        None
    } else {
        let printer = state.clone();
        let mut seen = printer.events(id).map(|e| e.len()).unwrap_or(0);
        let mut print_new = move || {
            let Ok(events) = printer.events(id) else { return };
            for e in events.iter().skip(seen) {
                if let Some(step) = &e.step {
                    let detail = e.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                    println!("  {} {step} {}{detail}", drctl_core::text::now_for_humans(), e.kind);
                }
            }
            seen = events.len();
        };
        let work =
            restore::execute(topo.clone(), site.clone(), state.clone(), Arc::new(drctl_runtime::SystemClock), id);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(Duration::from_millis(150)) => print_new(),
            }
        };
        print_new();
        if req.replace_of.is_some() {
            restore::close_incident_of(&*state, id, &result);
        }
        Some(result.map_err(failure)?)
    };
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    let took = row.finished_at.and_then(|f| f.duration_since(row.declared_at).ok()).map(|d| d.as_secs_f64());
    if row.state != drctl_state::journal::exec_state::SUCCEEDED || matches!(ended, Some(Ended::Failed | Ended::Aborted))
    {
        if row.state == drctl_state::journal::exec_state::PAUSED {
            paused(&*state, id, style)?;
            return Ok(Outcome::Failed);
        }
        eprintln!(
            "{} restore {id} ended {}: `{}` says which step and why; `{}` continues it",
            style.red("✗"),
            row.state,
            drctl_core::hint::drctl(&format!("show {id}")),
            drctl_core::hint::drctl(&format!("resume {id}"))
        );
        return Ok(Outcome::Failed);
    }
    let copy = restore::copy_of(&site, &req);
    let done = restore::restored(&site, &req);
    if let Some(r) = &done {
        restore::record_rate(&*state, &req, r);
    }
    let target = chrono::DateTime::parse_from_rfc3339(&req.target).ok().map(|t| t.timestamp_micros() as f64 / 1e6);
    let recovered = done.as_ref().and_then(|d| d.recovered_point);
    println!(
        "{} restored {} in {}",
        style.green("✓"),
        req.datastore,
        took.map(format_secs).unwrap_or_else(|| "?".into())
    );
    match (recovered, target) {
        (Some(r), Some(t)) => println!(
            "  newest transaction in the copy: {} ({:.3} s before the point asked for)",
            restore::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(r)),
            t - r
        ),
        _ => println!("  no transaction was replayed after the backup: the copy is the backup's state"),
    }
    let user = drctl_backup::postgres::primary_user(
        &drctl_backup::pg_datastore(&topo, &req.datastore).map(|d| d.primary_url).unwrap_or_default(),
    );
    if let Some(url) = copy.tcp_url(&user, "postgres") {
        println!("  the copy `{}` runs at {url} (data in {})", req.into, copy.data.display());
    }
    if let Some(of) = &req.replace_of {
        let p = &of.primary;
        println!(
            "  the restored copy serves at {}:{} in the primary's place (data in {})",
            p.host,
            p.port,
            copy.data.display()
        );
        if let Some(old) = &p.data_directory {
            println!("  the old primary is stopped and fenced; its data stays in {old}");
        }
        for s in state
            .steps(id)
            .map_err(crate::execute::state_error)?
            .iter()
            .filter(|s| s.id.ends_with("/standbys") || s.id.ends_with("/verify"))
        {
            if let Some(n) = &s.note {
                println!("  {}: {n}", s.id);
            }
        }
    }
    Ok(Outcome::Done)
}

pub struct TestArgs {
    pub experiment: std::path::PathBuf,
    pub report: Option<std::path::PathBuf>,
    pub keep: Option<String>,
    pub json: bool,
}

/// `drctl drill` of a restore test: exit 0 when verified within the
/// restore RTO, 3 when a check fails or the RTO is missed, 1 when the
/// restore itself failed.
pub fn drill(
    ctx: &crate::context::Context,
    file: &std::path::Path,
    args: TestArgs,
    lab: bool,
) -> Result<Outcome, Failure> {
    let style = &ctx.style;
    if lab {
        return Err(Failure::bad_input(
            "restore tests run against a topology (-f FILE), not `--lab`: start the lab with `drctl lab up`, then `drctl drill EXPERIMENT -f .drctl/lab/drctl.yaml`",
        ));
    }
    let test = match drctl_core::restore_test::load(&args.experiment) {
        Ok(t) => t,
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", crate::text::diagnostic(d, style));
            }
            return Err(Failure::BadInput { message: String::new(), printed: true });
        }
    };
    let keep = match &args.keep {
        Some(k) => Some(
            drctl_core::duration::parse_duration(k).map_err(|why| Failure::bad_input(format!("--keep {k}: {why}")))?,
        ),
        None => None,
    };
    let topo = crate::context::load(file, style)?;
    if let Err(diags) = drctl_core::restore_test::check_against(&test, &topo) {
        for d in &diags {
            eprintln!("{}", crate::text::diagnostic(d, style));
        }
        return Err(Failure::BadInput { message: String::new(), printed: true });
    }
    let state = ctx.state(file)?;
    let clients = crate::context::clients(&ctx.wiring(file));
    crate::context::runtime()?.block_on(async move {
        audit(
            &*state,
            "drill",
            &format!("restore test {}", test.name),
            &serde_json::json!({ "experiment": args.experiment }),
        )?;
        let reports = match args.report {
            Some(d) => drctl_backup::drill::ReportAt::Exactly(d),
            None => drctl_backup::drill::ReportAt::Under(".drctl/reports".into()),
        };
        let run =
            drctl_backup::drill::run(Arc::new(topo), state, clients, &test, keep, reports).await.map_err(failure)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&run.report).unwrap_or_default());
        } else {
            let r = &run.report["restore"];
            println!("{}", run.id);
            println!(
                "restore test {}: {} restored to {}",
                test.name,
                test.datastore,
                r["recovered_point"].as_str().unwrap_or("nothing")
            );
            for c in r["checks"].as_array().into_iter().flatten() {
                let mark = if c["passed"] == true { style.green("✓") } else { style.red("✗") };
                let why = c["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
                let what = c["sql"].as_str().or(c["check"].as_str()).unwrap_or_default();
                println!("  {mark} {what}: got {}{why}", c["got"]);
            }
            println!(
                "  restore {:.1} s (target {}), recovery-point error {}",
                r["restore_s"].as_f64().unwrap_or_default(),
                r["restore_target_s"].as_f64().map(format_secs).unwrap_or_else(|| "none".into()),
                r["recovery_point_error_s"].as_f64().map(|e| format!("{e:.3} s")).unwrap_or_else(|| "unknown".into())
            );
            if let Some(b) = r["kept"]["bucket"].as_str() {
                println!("  the copy is kept in bucket {b}");
            } else if let Some(k) = r["kept"].as_object() {
                println!(
                    "  the copy is kept in {} ({})",
                    k["data"].as_str().unwrap_or_default(),
                    k["url"].as_str().unwrap_or_default()
                );
            }
            let verdict =
                if run.verified && run.meets_rto { style.green("verified") } else { style.red("NOT verified") };
            println!("{verdict}; report in {}", run.report_dir.display());
        }
        if let Some(e) = &run.error {
            eprintln!("{} the restore failed: {e}", style.red("✗"));
            return Ok(Outcome::Failed);
        }
        Ok(if run.verified && run.meets_rto { Outcome::Done } else { Outcome::ObjectiveMissed })
    })
}

/// `drctl restore` of an S3 datastore: every key under the prefix made as
/// it was at the time, from its versions, into another bucket or prefix
/// (`--into BUCKET[/PREFIX]`) or in place (`--replace`).
async fn s3_restore(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    args: RestoreArgs,
    style: &Style,
) -> Result<Outcome, Failure> {
    let now = SystemTime::now();
    let request =
        cloud::s3_request(&args.datastore, &args.to, args.into.as_deref(), args.prefix.as_deref(), args.replace, now)
            .map_err(failure)?;
    let id = restore::new_id(now);
    println!("{id}");
    let scope = request.prefix.as_deref().map(|p| format!("keys under `{p}`")).unwrap_or_else(|| "every key".into());
    if args.replace {
        println!("restore {scope} of {} in place to {}: each changed key gets its old version back as a new version, keys created since are hidden behind a delete marker; no version is destroyed", args.datastore, request.target);
    } else {
        println!("restore {scope} of {} as it was at {} into {}", args.datastore, request.target, request.into);
    }
    let audit_req = serde_json::json!({ "datastore": args.datastore, "to": args.to, "target": request.target,
        "into": request.into, "prefix": request.prefix, "replace": args.replace, "reason": args.reason, "dry_run": args.dry_run });
    if args.dry_run {
        audit(&*state, "restore.dry_run", &format!("datastore {}", args.datastore), &audit_req)?;
        println!("{} dry run: nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    audit(&*state, "restore", &format!("execution {id}"), &audit_req)?;
    let p = Proposal { id: id.clone(), request, earliest: None, backup_bytes: 0, rate: None, checks: Vec::new() };
    restore::create(&*state, &p, &args.reason, now).map_err(failure)?;
    if args.replace {
        state
            .create_incident(
                &format!("Restoring {} to an earlier point", args.datastore),
                "identified",
                "We are restoring data to its state before a problem; some recent changes may be undone.",
                &[],
                Some(&id),
            )
            .map_err(crate::execute::state_error)?;
    }
    run_cloud(Arc::new(topo), state, clients, &id, style).await
}

/// Runs (or resumes) an S3 or RDS restore, then says how it ended.
async fn run_cloud(
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    id: &str,
    style: &Style,
) -> Result<Outcome, Failure> {
    let req = restore::request_of(&*state, id).map_err(failure)?;
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    if !drctl_state::journal::exec_state::is_final(&row.state) {
        drctl_backup::cloud::execute(topo.clone(), state.clone(), clients, id, req)
            .await
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("execution {id}: {e}")))?;
    }
    report_end(&topo, &*state, id, style)
}

/// What a paused restore waits for: its failed steps and the decisions
/// that move it on.
fn paused(state: &State, id: &str, style: &Style) -> Result<(), Failure> {
    eprintln!("{} restore {id} is paused: a step failed, and nothing new starts until you decide", style.red("✗"));
    for s in state.steps(id).map_err(crate::execute::state_error)? {
        if s.state != drctl_state::journal::StepState::Failed {
            continue;
        }
        eprintln!("  failed: {}: {}", s.id, s.error.as_deref().unwrap_or(""));
        let step = drctl_control::declare::shell_word(&s.id);
        let lifts = drctl_control::overrides::named_in(s.error.as_deref().unwrap_or(""));
        if !lifts.is_empty() {
            eprintln!(
                "  `{}` runs it again, lifting what its error names",
                drctl_core::hint::drctl(&format!("retry {id} {step} {}", lifts.join(" ")))
            );
        }
        eprintln!("  `{}` runs it again as it is", drctl_core::hint::drctl(&format!("retry {id} {step}")));
        eprintln!(
            "  `{}` gives it up, and every step that needs it",
            drctl_core::hint::drctl(&format!("skip {id} {step}"))
        );
        eprintln!(
            "  `{}` you did it by hand: what needs it goes on",
            drctl_core::hint::drctl(&format!("approve {id} {step} --done"))
        );
    }
    eprintln!("  `{}` stops here: nothing more changes", drctl_core::hint::drctl(&format!("abort {id}")));
    Ok(())
}

/// Prints each step of a restore as the journal ends it, and how it ended.
fn report_end(topo: &Topology, state: &State, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    for s in state.steps(id).map_err(crate::execute::state_error)? {
        let detail = s.note.or(s.error).map(|d| format!(": {d}")).unwrap_or_default();
        println!("  {} {}{detail}", s.id, s.state.as_str());
    }
    if row.state == drctl_state::journal::exec_state::PAUSED {
        paused(state, id, style)?;
        return Ok(Outcome::Failed);
    }
    if row.state != drctl_state::journal::exec_state::SUCCEEDED {
        eprintln!(
            "{} restore {id} ended {}: `drctl resume {id} -f {}` continues it",
            style.red("✗"),
            row.state,
            topo.file.display()
        );
        return Ok(Outcome::Failed);
    }
    println!("{} restored", style.green("✓"));
    let replaced = restore::request_of(state, id).ok().and_then(|r| Some((r.kind.clone(), r.rds_replace?)));
    if let Some((kind, p)) = replaced {
        if kind == "rds-cluster" {
            println!("  {} is the cluster restored to the point; the old cluster is kept at {}", p.source, p.aside);
        } else {
            println!("  {} is the instance restored to the point; the old primary is kept at {}", p.source, p.aside);
        }
        for x in &p.replicas {
            println!("  the read replica {} was made again from it; the old one is kept at {}", x.id, x.aside);
        }
    }
    Ok(Outcome::Done)
}

/// `drctl restore` of an RDS datastore: a new instance (or Aurora cluster)
/// from its automated backups as they were at the time, beside the
/// datastore (`--into NAME`, else `SOURCE-restored-YYYYMMDDHHMMSS`).
/// Nothing the estate uses is touched. With `--replace` (an
/// `rds-instance`), the restored instance then takes the primary's name.
async fn rds_restore(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    args: RestoreArgs,
    style: &Style,
) -> Result<Outcome, Failure> {
    if !args.unfenced.is_empty() {
        return Err(Failure::bad_input(
            "--unfenced is for a PostgreSQL --replace: an RDS --replace fences the old primary by renaming it",
        ));
    }
    if args.replace {
        return rds_replace(topo, state, clients, args, style).await;
    }
    let now = SystemTime::now();
    let request = cloud::rds_request(&topo, &args.datastore, &args.to, args.into.as_deref(), now).map_err(failure)?;
    let source = cloud::rds_of(&topo, &args.datastore).and_then(cloud::rds_source).unwrap_or_default();
    let id = restore::new_id(now);
    println!("{id}");
    let when = if args.to == "latest" { "its latest restorable time".to_string() } else { request.target.clone() };
    println!("restore {} ({source}) as it was at {when} into a new {}: {}", args.datastore, request.kind, request.into);
    let audit_req = serde_json::json!({ "datastore": args.datastore, "to": args.to, "target": request.target,
        "into": request.into, "replace": false, "reason": args.reason, "dry_run": args.dry_run });
    if args.dry_run {
        audit(&*state, "restore.dry_run", &format!("datastore {}", args.datastore), &audit_req)?;
        println!("{} dry run: nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    audit(&*state, "restore", &format!("execution {id}"), &audit_req)?;
    let p = Proposal { id: id.clone(), request, earliest: None, backup_bytes: 0, rate: None, checks: Vec::new() };
    restore::create(&*state, &p, &args.reason, now).map_err(failure)?;
    run_cloud(Arc::new(topo), state, clients, &id, style).await
}

/// `restore --replace` of an `rds-instance` ([`drctl_backup::rds_replace`]):
/// the checks, the confirmation, then begun as a PostgreSQL replace is
/// (audit, journal, incident) and run.
async fn rds_replace(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    args: RestoreArgs,
    style: &Style,
) -> Result<Outcome, Failure> {
    let p = drctl_backup::rds_replace::propose(
        &topo,
        &clients,
        &args.datastore,
        &args.to,
        args.into.as_deref(),
        SystemTime::now(),
    )
    .await
    .map_err(failure)?;
    let r = &p.request;
    println!("{}", p.id);
    println!("replace the primary of {} ({}) with its copy restored to {}", r.datastore, r.kind, r.target);
    for line in p.describe(std::path::Path::new("")) {
        println!("  - {line}");
    }
    for c in &p.checks {
        println!("  {} {}: {}", if c.ok { style.green("✓") } else { style.red("✗") }, c.subject, c.detail);
    }
    let who = drctl_control::declare::Actor::cli();
    if p.refused() {
        match drctl_backup::replace::begin(&*state, &p, &args.reason, &who, SystemTime::now()) {
            Err(drctl_backup::Error::Refused(_)) | Ok(_) => {}
            Err(e) => return Err(failure(e)),
        }
        eprintln!("{} refused: a check failed; nothing in the world was changed", style.red("✗"));
        return Ok(Outcome::Failed);
    }
    if args.dry_run {
        let request = serde_json::json!({ "datastore": r.datastore, "to": r.to, "target": r.target, "into": r.into,
            "replace": true, "reason": args.reason, "dry_run": true });
        audit(&*state, "restore.dry_run", &format!("datastore {}", r.datastore), &request)?;
        println!("{} dry run: every check passed; nothing was changed", style.green("✓"));
        return Ok(Outcome::Done);
    }
    if !confirmed(&args, r, style) {
        return Ok(Outcome::Failed);
    }
    drctl_backup::replace::begin(&*state, &p, &args.reason, &who, SystemTime::now()).map_err(failure)?;
    run_cloud(Arc::new(topo), state, clients, &p.id, style).await
}
