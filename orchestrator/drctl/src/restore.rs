//! `backups`, `backup`, `restore` and the resume of a restore: the
//! commands of the other half of disaster recovery, printed in the order
//! an operator reads them (the restore's id first, then what it will do,
//! then each step, then what came back).

use crate::context::audit;
use crate::flags::BackupKind;
use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_backup::restore::{self, Proposal};
use drctl_core::duration::format_secs;
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_state::State;
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
            let target = d["rpo_target_s"].as_f64().map(|t| format!(" (target {})", format_secs(t))).unwrap_or_default();
            println!("{mark} {} {}: backup RPO {rpo}{target}", style.bold(name), d["kind"].as_str().unwrap_or_default());
            if let Some(e) = d["error"].as_str() {
                println!("    {}", style.red(e));
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
    let ds = drctl_backup::pg_datastore(topo, datastore).map_err(failure)?;
    let kind = match kind {
        BackupKind::Full => drctl_backup::pgbackrest::Kind::Full,
        BackupKind::Diff => drctl_backup::pgbackrest::Kind::Diff,
        BackupKind::Incr => drctl_backup::pgbackrest::Kind::Incr,
    };
    audit(state, "backup", &format!("datastore {datastore}"), &serde_json::json!({ "kind": kind.as_str() }))?;
    let site = drctl_backup::site_dir(topo);
    println!("backing up {datastore} ({}) to its repository in {}", kind.as_str(), ds.repo_zone);
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
    pub replace: bool,
    pub reason: String,
    pub dry_run: bool,
    pub yes: bool,
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
        None => println!("  from a backup of {} bytes (no restore measured here yet: no time estimate)", p.backup_bytes),
    }
    for line in p.describe(site) {
        println!("  - {line}");
    }
}

pub async fn restore(topo: Topology, state: Arc<State>, args: RestoreArgs, style: &Style) -> Result<Outcome, Failure> {
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

pub async fn resume(topo: Topology, state: Arc<State>, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    println!("{id}");
    if drctl_state::journal::exec_state::is_final(&row.state) {
        println!("{id} already {}", row.state);
    } else {
        audit(&*state, "resume", &format!("execution {id}"), &serde_json::json!({}))?;
    }
    run(Arc::new(topo), state, id, style).await
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
                    println!("  {} {step} {}{detail}", drctl_control::live::now_rfc3339(), e.kind);
                }
            }
            seen = events.len();
        };
        let work = restore::execute(topo.clone(), site.clone(), state.clone(), Arc::new(drctl_runtime::SystemClock), id);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(Duration::from_millis(150)) => print_new(),
            }
        };
        print_new();
        Some(result.map_err(failure)?)
    };
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    let took = row.finished_at.and_then(|f| f.duration_since(row.declared_at).ok()).map(|d| d.as_secs_f64());
    if row.state != drctl_state::journal::exec_state::SUCCEEDED || matches!(ended, Some(Ended::Failed | Ended::Aborted))
    {
        eprintln!(
            "{} restore {id} ended {}: `drctl show {id} -f {}` says which step and why; `drctl resume {id} -f {}` continues it",
            style.red("✗"),
            row.state,
            topo.file.display(),
            topo.file.display()
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
pub fn drill(ctx: &crate::context::Context, file: &std::path::Path, args: TestArgs, lab: bool) -> Result<Outcome, Failure> {
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
        Some(k) => Some(drctl_core::duration::parse_duration(k).map_err(|why| Failure::bad_input(format!("--keep {k}: {why}")))?),
        None => None,
    };
    let topo = crate::context::load(file, style)?;
    let state = ctx.state(file)?;
    crate::context::runtime()?.block_on(async move {
        audit(&*state, "drill", &format!("restore test {}", test.name), &serde_json::json!({ "experiment": args.experiment }))?;
        let run = drctl_backup::drill::run(Arc::new(topo), state, &test, keep, args.report).await.map_err(failure)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&run.report).unwrap_or_default());
        } else {
            let r = &run.report["restore"];
            println!("{}", run.id);
            println!("restore test {}: {} restored to {}", test.name, test.datastore, r["recovered_point"].as_str().unwrap_or("nothing"));
            for c in r["checks"].as_array().into_iter().flatten() {
                let mark = if c["passed"] == true { style.green("✓") } else { style.red("✗") };
                let why = c["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
                println!("  {mark} {}: got {}{why}", c["sql"].as_str().unwrap_or_default(), c["got"]);
            }
            println!(
                "  restore {:.1} s (target {}), recovery-point error {}",
                r["restore_s"].as_f64().unwrap_or_default(),
                r["restore_target_s"].as_f64().map(format_secs).unwrap_or_else(|| "none".into()),
                r["recovery_point_error_s"].as_f64().map(|e| format!("{e:.3} s")).unwrap_or_else(|| "unknown".into())
            );
            if let Some(k) = r["kept"].as_object() {
                println!("  the copy is kept in {} ({})", k["data"].as_str().unwrap_or_default(), k["url"].as_str().unwrap_or_default());
            }
            let verdict = if run.verified && run.meets_rto { style.green("verified") } else { style.red("NOT verified") };
            println!("{verdict}; report in {}", run.report_dir.display());
        }
        if let Some(e) = &run.error {
            eprintln!("{} the restore failed: {e}", style.red("✗"));
            return Ok(Outcome::Failed);
        }
        Ok(if run.verified && run.meets_rto { Outcome::Done } else { Outcome::ObjectiveMissed })
    })
}
