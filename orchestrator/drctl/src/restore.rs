//! `backups`, `backup`, `restore` and the resume of a restore: the
//! commands of the other half of disaster recovery, printed in the order
//! an operator reads them (the restore's id first, then what it will do,
//! then each step, then what came back).

use crate::context::audit;
use crate::flags::BackupKind;
use crate::text::Style;
use crate::{Failure, Outcome};
use drctl_backup::restore::{self, Proposal, Request};
use drctl_control::live::Clients;
use drctl_core::duration::format_secs;
use drctl_core::topology::{EntitySpec, Location};
use drctl_core::Topology;
use drctl_engine::Ended;
use drctl_engine::{ActionError, Actions, Note, StepSpec};
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
    pub prefix: Option<String>,
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
    if s3_of(&topo, &args.datastore).is_some() {
        return s3_restore(topo, state, clients, args, style).await;
    }
    if rds_of(&topo, &args.datastore).is_some() {
        return rds_restore(topo, state, clients, args, style).await;
    }
    if args.prefix.is_some() {
        return Err(Failure::bad_input("--prefix applies to S3 datastores only"));
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

/// The primary bucket of an S3 datastore with `backup: { versions }` (or any S3 datastore).
fn s3_of<'a>(topo: &'a Topology, name: &str) -> Option<&'a drctl_core::topology::Datastore> {
    let id = topo.entity_id(name)?;
    match &topo.entity(id).spec {
        EntitySpec::Datastore(d) if d.kind == drctl_core::topology::DatastoreKind::S3 => Some(d),
        _ => None,
    }
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
    let target = restore::resolve_target(&args.to, now).map_err(failure)?;
    let into = match (&args.into, args.replace) {
        (Some(_), true) => return Err(Failure::bad_input("give --into BUCKET[/PREFIX] or --replace, not both")),
        (None, false) => {
            return Err(Failure::bad_input(
                "an S3 restore goes --into BUCKET[/PREFIX] (a new bucket or prefix) or, with --replace, into the bucket itself",
            ))
        }
        (Some(i), false) => i.clone(),
        (None, true) => String::new(),
    };
    let id = restore::new_id(now);
    let request = Request {
        datastore: args.datastore.clone(),
        to: args.to.clone(),
        target: restore::rfc3339(target),
        into,
        replace: args.replace,
        scratch: false,
        port: 0,
        listen: None,
        kind: "s3".into(),
        prefix: args.prefix.clone(),
        set: None,
    };
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
    let p = Proposal { id: id.clone(), request, earliest: None, backup_bytes: 0, rate: None };
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

struct CloudRestore {
    topo: Arc<Topology>,
    state: Arc<State>,
    clients: Arc<Clients>,
    req: Request,
}

impl CloudRestore {
    async fn s3(&self) -> Result<Note, ActionError> {
        let ds = s3_of(&self.topo, &self.req.datastore)
            .ok_or_else(|| ActionError::Fatal(format!("no S3 datastore `{}`", self.req.datastore)))?;
        let buckets = drctl_control::live::buckets(&self.clients, &self.topo, ds).await;
        let src = buckets
            .into_iter()
            .next()
            .ok_or_else(|| ActionError::Fatal("the datastore has no primary bucket".into()))?;
        let at = chrono::DateTime::parse_from_rfc3339(&self.req.target)
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            .map_err(|_| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))?;
        let dest =
            if self.req.replace {
                drctl_aws::s3_restore::Dest::InPlace
            } else {
                let (bucket, prefix) = self.req.into.split_once('/').unwrap_or((self.req.into.as_str(), ""));
                let region = match ds.primary.as_ref().map(|m| &m.location) {
                    Some(Location::S3 { region, .. }) => region.clone().or_else(|| ds.region.clone()),
                    _ => ds.region.clone(),
                };
                let client = self.clients.s3(src.endpoint.as_deref(), region.as_deref()).await;
                if client.head_bucket().bucket(bucket).send().await.is_err() {
                    client.create_bucket().bucket(bucket).send().await.map_err(|e| {
                        ActionError::Fatal(format!("create bucket {bucket}: {}", drctl_aws::explain(&e)))
                    })?;
                }
                let b = drctl_aws::s3::Bucket {
                    zone: src.zone.clone(),
                    name: bucket.to_string(),
                    endpoint: src.endpoint.clone(),
                    client,
                };
                drctl_aws::s3_restore::Dest::Copy { bucket: b, prefix: prefix.to_string() }
            };
        let prefix = self.req.prefix.clone().unwrap_or_default();
        let (copy, to) = match &dest {
            drctl_aws::s3_restore::Dest::InPlace => (src.clone(), prefix.clone()),
            drctl_aws::s3_restore::Dest::Copy { bucket, prefix: p } => (bucket.clone(), p.clone()),
        };
        let sum = drctl_aws::s3_restore::restore(&src, &prefix, at, &dest).await.map_err(|e| match e {
            drctl_aws::Error::Api { transient: true, .. } => ActionError::Transient(e.to_string()),
            other => ActionError::Fatal(other.to_string()),
        })?;
        if !sum.failed.is_empty() {
            let list: Vec<String> = sum.failed.iter().take(5).map(|(k, why)| format!("{k}: {why}")).collect();
            return Err(ActionError::Transient(format!(
                "{} key(s) not restored: {}",
                sum.failed.len(),
                list.join("; ")
            )));
        }
        // No restore brings an erased subject back: the ledger's requests made
        // after the point are replayed on what was restored before it serves.
        let eraser = drctl_control::erasure::Eraser::new(self.topo.clone(), self.state.clone(), self.clients.clone());
        let replayed = eraser
            .replay_on_bucket(&self.req.datastore, &copy, &prefix, &to, at)
            .await
            .map_err(|e| ActionError::Transient(format!("replaying the erasures on the copy: {e}")))?;
        if replayed.resurrected > 0 {
            return Err(ActionError::Transient(format!(
                "{} erased subject(s) still have versions in the copy after the replay",
                replayed.resurrected
            )));
        }
        Ok(Some(format!(
            "{} key(s) restored ({} bytes), {} hidden behind a delete marker, {} already as they were; {} erasure request(s) made since replayed",
            sum.restored, sum.bytes, sum.deleted, sum.unchanged, replayed.requests
        )))
    }
}

/// A restore made through a cloud API, one journaled step: S3 from
/// versions, RDS from automated backups.
impl Actions for CloudRestore {
    fn run<'a>(
        &'a self,
        _e: &'a str,
        _a: u32,
        step: &'a StepSpec,
    ) -> futures::future::BoxFuture<'a, Result<Note, ActionError>> {
        Box::pin(async move {
            match step.action.as_str() {
                "s3.restore_versions" => self.s3().await,
                "rds.restore_to_point" => self.rds().await,
                other => Err(ActionError::Fatal(format!("a restore has no action `{other}`"))),
            }
        })
    }
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
        let specs = restore::steps(&req);
        let actions = Arc::new(CloudRestore { topo: topo.clone(), state: state.clone(), clients, req });
        let engine = drctl_engine::Engine::new(state.clone(), actions, Some(1));
        engine.run(id, &specs).await.map_err(|e| Failure::Runtime(anyhow::anyhow!("execution {id}: {e}")))?;
    }
    report_end(&topo, &*state, id, style)
}

/// Prints each step of a restore as the journal ends it, and how it ended.
fn report_end(topo: &Topology, state: &State, id: &str, style: &Style) -> Result<Outcome, Failure> {
    let row = state.execution(id).map_err(crate::execute::state_error)?;
    for s in state.steps(id).map_err(crate::execute::state_error)? {
        let detail = s.note.or(s.error).map(|d| format!(": {d}")).unwrap_or_default();
        println!("  {} {}{detail}", s.id, s.state.as_str());
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
    Ok(Outcome::Done)
}

/// An RDS datastore (`rds-instance` or `rds-cluster`).
fn rds_of<'a>(topo: &'a Topology, name: &str) -> Option<&'a drctl_core::topology::Datastore> {
    use drctl_core::topology::DatastoreKind;
    match &topo.entity(topo.entity_id(name)?).spec {
        EntitySpec::Datastore(d) if matches!(d.kind, DatastoreKind::RdsInstance | DatastoreKind::RdsCluster) => Some(d),
        _ => None,
    }
}

/// `drctl restore` of an RDS datastore: a new instance (or Aurora cluster)
/// from its automated backups as they were at the time, beside the
/// datastore (`--into NAME`, else `SOURCE-restored-YYYYMMDDHHMMSS`).
/// Nothing the estate uses is touched.
async fn rds_restore(
    topo: Topology,
    state: Arc<State>,
    clients: Arc<Clients>,
    args: RestoreArgs,
    style: &Style,
) -> Result<Outcome, Failure> {
    if args.replace {
        return Err(Failure::bad_input(
            "--replace is not supported for RDS yet: restore into a new instance (drop --replace), check it, then point the estate at it",
        ));
    }
    let ds = rds_of(&topo, &args.datastore).ok_or_else(|| Failure::bad_input("not an RDS datastore"))?;
    let source = rds_source(ds).ok_or_else(|| Failure::bad_input("the RDS datastore names no instance or cluster"))?;
    let now = SystemTime::now();
    let target = restore::resolve_target(&args.to, now).map_err(failure)?;
    let into = match &args.into {
        Some(i) => i.clone(),
        None => {
            let stamp = chrono::DateTime::<chrono::Utc>::from(target).format("%Y%m%d%H%M%S");
            let mut name = format!("{source}-restored-{stamp}");
            name.truncate(63);
            name
        }
    };
    if !(1..=63).contains(&into.len())
        || !into.starts_with(|c: char| c.is_ascii_alphabetic())
        || !into.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || into.ends_with('-')
        || into.contains("--")
    {
        return Err(Failure::bad_input(format!(
            "--into `{into}`: an RDS identifier has 1 to 63 letters, digits and single hyphens, starting with a letter"
        )));
    }
    let id = restore::new_id(now);
    let request = Request {
        datastore: args.datastore.clone(),
        to: args.to.clone(),
        target: restore::rfc3339(target),
        into,
        replace: false,
        scratch: false,
        port: 0,
        listen: None,
        kind: topo.entity(topo.entity_id(&args.datastore).unwrap_or_default()).kind_name().to_string(),
        prefix: None,
        set: None,
    };
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
    let p = Proposal { id: id.clone(), request, earliest: None, backup_bytes: 0, rate: None };
    restore::create(&*state, &p, &args.reason, now).map_err(failure)?;
    run_cloud(Arc::new(topo), state, clients, &id, style).await
}

/// The instance (its primary member's) or cluster an RDS datastore restores from.
fn rds_source(ds: &drctl_core::topology::Datastore) -> Option<String> {
    ds.cluster.clone().or_else(|| match ds.primary.as_ref().map(|m| &m.location) {
        Some(Location::RdsInstance { instance }) => Some(instance.clone()),
        _ => None,
    })
}

impl CloudRestore {
    async fn rds(&self) -> Result<Note, ActionError> {
        let ds = rds_of(&self.topo, &self.req.datastore)
            .ok_or_else(|| ActionError::Fatal(format!("no RDS datastore `{}`", self.req.datastore)))?;
        let source =
            rds_source(ds).ok_or_else(|| ActionError::Fatal("no instance or cluster to restore from".into()))?;
        let region = ds.region.clone().or_else(|| ds.primary.as_ref().map(|p| self.topo.zones[p.zone].region.clone()));
        let rds = drctl_aws::rds::Rds::new(self.clients.sdk().await, region.as_deref());
        let at = if self.req.to == "latest" {
            None
        } else {
            Some(
                chrono::DateTime::parse_from_rfc3339(&self.req.target)
                    .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
                    .map_err(|_| ActionError::Fatal(format!("journaled target `{}` is unreadable", self.req.target)))?,
            )
        };
        let wait = std::time::Duration::from_secs(6 * 3600);
        let what = if ds.cluster.is_some() {
            drctl_aws::rds_restore::restore_cluster(&rds, &source, &self.req.into, at, wait).await
        } else {
            drctl_aws::rds_restore::restore_instance(&rds, &source, &self.req.into, at, wait).await
        };
        let made = match what {
            Ok(drctl_aws::rds_restore::Outcome::Started) => {
                format!("{} restored from {source}; available", self.req.into)
            }
            Ok(drctl_aws::rds_restore::Outcome::Existed) => {
                format!("{} (made by an earlier attempt) is available", self.req.into)
            }
            Err(e @ drctl_aws::Error::Api { transient: true, .. }) => {
                return Err(ActionError::Transient(e.to_string()))
            }
            Err(e) => return Err(ActionError::Fatal(e.to_string())),
        };
        let replay = self.rds_replay(&rds, at.unwrap_or_else(SystemTime::now)).await?;
        Ok(Some(format!("{made}; {replay}")))
    }

    /// The ledger's requests made after the point, replayed on the restored
    /// instance through the `url` of the datastore's `locate` entries, its
    /// host and port replaced by the new instance's endpoint. Where the
    /// instance cannot be reached from here, the replay is reported pending
    /// (the copy must not serve until it is done).
    async fn rds_replay(&self, rds: &drctl_aws::rds::Rds, point: SystemTime) -> Result<String, ActionError> {
        use drctl_core::topology::erasure::Find;
        let eraser = drctl_control::erasure::Eraser::new(self.topo.clone(), self.state.clone(), self.clients.clone());
        let due = eraser.requests_after(point).map_err(|e| ActionError::Transient(e.to_string()))?;
        let id = self.topo.entity_id(&self.req.datastore);
        let url = self.topo.erasure.as_ref().zip(id).and_then(|(e, id)| {
            e.of(id).find_map(|l| match &l.how {
                Find::Sql { url: Some(u), .. } => Some(u.clone()),
                _ => None,
            })
        });
        let Some(url) = url else { return Ok("no erasure to replay (no `locate` entry with a `url`)".into()) };
        if due == 0 {
            return Ok("no erasure request since the point: nothing to replay".into());
        }
        if rds_of(&self.topo, &self.req.datastore).is_some_and(|d| d.cluster.is_some()) {
            return pending_cluster(due, &self.req.into);
        }
        let endpoint = drctl_aws::rds_restore::instance_endpoint(rds, &self.req.into)
            .await
            .map_err(|e| ActionError::Transient(e.to_string()))?;
        let pending = |why: String| {
            Ok(format!(
                "erasure replay PENDING: {due} request(s) made since the point are not replayed on {} ({why}); do not let it serve before they are",
                self.req.into
            ))
        };
        let Some((host, port)) = endpoint else { return pending("RDS reports no endpoint yet".into()) };
        let Some(there) = with_host(&url, &host, port) else {
            return pending("the `locate` url has no host to replace".into());
        };
        match tokio::time::timeout(Duration::from_secs(30), eraser.replay_on(&self.req.datastore, &there, point)).await
        {
            Ok(Ok(r)) if r.resurrected == 0 => {
                Ok(format!("{} erasure request(s) made since the point replayed on it", r.requests))
            }
            Ok(Ok(r)) => Err(ActionError::Transient(format!(
                "{} erased subject(s) are still in {} after the replay",
                r.resurrected, self.req.into
            ))),
            Ok(Err(e)) => pending(format!("not reachable from here: {e}")),
            Err(_) => pending(format!("{host}:{port} did not answer within 30 s")),
        }
    }
}

/// A restored Aurora cluster has no instance to connect to until one is added.
fn pending_cluster(due: usize, into: &str) -> Result<String, ActionError> {
    Ok(format!(
        "erasure replay PENDING: {due} request(s) made since the point are not replayed on {into} (a restored cluster has no instance yet); do not let it serve before they are"
    ))
}

/// `url` with its host and port replaced (`postgres://user:pw@HOST:PORT/db?...`).
fn with_host(url: &str, host: &str, port: i32) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, after) = match rest.split_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let end = after.find(['/', '?']).unwrap_or(after.len());
    Some(format!("{scheme}://{auth}{host}:{port}{}", &after[end..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_locate_url_points_at_the_restored_instance() {
        assert_eq!(
            super::with_host(
                "postgres://eraser:pw@ledger.abc.rds.amazonaws.com:5432/ledger?sslmode=require",
                "copy.rds",
                6543
            )
            .as_deref(),
            Some("postgres://eraser:pw@copy.rds:6543/ledger?sslmode=require")
        );
        assert_eq!(super::with_host("postgres://h/db", "n", 1).as_deref(), Some("postgres://n:1/db"));
    }
}
