//! Runs a parsed command: resolves what it needs through the [`Context`]
//! (the one wiring point) and calls the module that does the work. Each
//! command module imports `context` and `flags`, never this one, so no
//! module of the binary imports another in a circle.

use crate::context::{self, load, open_state, print_diagnostics, runtime, Context};
use crate::flags::*;
use crate::text::{self, Style};
use crate::{bench, Failure, Outcome};
use drctl_core::graph::{self, Format};
use drctl_core::{Observations, Severity, Topology};
use std::path::Path;

pub fn run(cli: Cli) -> Result<Outcome, Failure> {
    let ctx = Context::new(cli.state.clone());
    // Hints printed from here on name the same store this command uses.
    drctl_core::hint::use_store_flags(topology_file(&cli.command).as_deref(), ctx.state_from_command_line());
    let style = ctx.style;
    match cli.command {
        Command::Status { file, output, watch } => {
            let topo = load(&file.path, &style)?;
            let wiring = ctx.wiring(&file.path);
            let state = open_state(&wiring.state_url)?;
            let clients = context::clients(&wiring);
            runtime()?.block_on(crate::live::status(&clients, &topo, &*state, output == Output::Json, watch, &style))
        }
        Command::Readiness { file, output } => {
            let topo = load(&file.path, &style)?;
            let wiring = ctx.wiring(&file.path);
            let state = open_state(&wiring.state_url)?;
            let clients = context::clients(&wiring);
            runtime()?.block_on(crate::readiness::run(&clients, &topo, &*state, output == Output::Json, &style))
        }
        Command::Declare { file, scope, reason, yes, dry_run, overrides, parallel } => {
            declare(&ctx, file, scope, reason, yes, dry_run, overrides, parallel, style)
        }
        Command::Resume { file, id } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            if state.execution(&id).is_ok_and(|row| drctl_backup::restore::is_restore(&row)) {
                let clients = context::clients(&ctx.wiring(&file.path));
                return runtime()?.block_on(crate::restore::resume(topo, state, clients, &id, &style));
            }
            let declarer = ctx.declarer(topo, &file.path)?;
            runtime()?.block_on(crate::execute::resume(declarer, &id, &style))
        }
        Command::Retry { file, id, step, overrides } => retry(&ctx, file, id, step, overrides, style),
        Command::Skip { file, id, step, yes } => skip(&ctx, file, id, step, yes, style),
        Command::Approve { store, id, step, done, by } => approve(&ctx, store, id, step, done, by, style),
        Command::Abort { store, id } => crate::execute::abort(&*ctx.store(&store)?, &id),
        Command::Executions { store, output } => crate::execute::list(&*ctx.store(&store)?, output == Output::Json),
        Command::Show { id, output, store } => {
            let state = ctx.store(&store)?;
            let topo = drctl_core::load(&store.file).topology;
            crate::execute::show(topo.as_ref(), &*state, &id, output == Output::Json, &style)
        }
        Command::Replicate { file, once, names, resolve, resolve_all, zone, resolution, output } => {
            replicate(&ctx, file, once, names, resolve, resolve_all, zone, resolution, output, style)
        }
        Command::Validate { file, output } => validate(&file.path, output, &style),
        Command::Plan { file, scope, parallel, output } => plan(&ctx, file, scope, parallel, output, style),
        Command::Discover { regions, output } => discover(&ctx, regions, output),
        Command::IamPolicy { file, for_use, account } => iam_policy(file, for_use, account, style),
        Command::Graph { file, scope, format } => graph(&ctx, file, scope, format, style),
        Command::Lab(cmd) => run_lab(cmd),
        Command::Drill { experiment, file, lab, lab_dir, base_port, report, dry_run, keep, parallel, output } => {
            if std::fs::read_to_string(&experiment).is_ok_and(|src| drctl_core::restore_test::is_restore_test(&src)) {
                let file = file.unwrap_or_else(|| "drctl.yaml".into());
                let args = crate::restore::TestArgs { experiment, report, keep, json: output == Output::Json };
                return crate::restore::drill(&ctx, &file, args, lab);
            }
            crate::lab::drill(
                crate::lab::DrillArgs {
                    experiment,
                    file,
                    lab,
                    lab_dir,
                    base_port,
                    report,
                    dry_run,
                    parallel,
                    json: output == Output::Json,
                },
                &ctx,
            )
        }
        cmd @ Command::Serve { .. } => serve(&ctx, cmd, style),
        Command::Subscriptions(SubscriptionsArgs { store, cmd: SubscriptionsCommand::List { output } }) => {
            crate::serve::subscriptions_list(&*ctx.store(&store)?, output == Output::Json)
        }
        Command::Token(TokenArgs { store, cmd }) => crate::serve::token(&*ctx.store(&store)?, &store.file, cmd),
        Command::CustomerLink(args) => crate::serve::customer_link(&*ctx.store(&args.store)?, args),
        Command::Keys(KeysArgs { file, cmd }) => {
            let paths = context::key_paths(&ctx.wiring(&file).state_url);
            crate::serve::keys(&paths, cmd)
        }
        Command::Audit(AuditArgs { store, cmd }) => audit(&ctx, store, cmd),
        Command::StatusPage(StatusPageCommand::Export { dir, file, base_url }) => {
            let topo = load(&file.path, &style)?;
            let wiring = ctx.wiring(&file.path);
            let state = open_state(&wiring.state_url)?;
            runtime()?.block_on(crate::serve::export(topo, state, context::clients(&wiring), &dir, &base_url))
        }
        Command::Schema => {
            let schema = drctl_core::schema::topology_schema();
            println!("{}", serde_json::to_string_pretty(&schema).map_err(anyhow::Error::from)?);
            Ok(Outcome::Done)
        }
        Command::Bench(cmd) => run_bench(&ctx, cmd, style),
        Command::Backups { file, output } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            runtime()?.block_on(crate::restore::backups(&topo, &*state, output == Output::Json, &style))
        }
        Command::Backup { file, datastore, kind } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            runtime()?.block_on(crate::restore::backup(&topo, &*state, &datastore, kind, &style))
        }
        Command::Restore { file, datastore, to, into, prefix, replace, reason, dry_run, yes, unfenced } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            let clients = context::clients(&ctx.wiring(&file.path));
            let args =
                crate::restore::RestoreArgs { datastore, to, into, prefix, replace, reason, dry_run, yes, unfenced };
            runtime()?.block_on(crate::restore::restore(topo, state, clients, args, &style))
        }
        Command::Erase { file, subject, reason, yes, wait } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            let clients = context::clients(&ctx.wiring(&file.path));
            runtime()?.block_on(crate::erasure::erase(topo, state, clients, &subject, &reason, yes, wait, &style))
        }
        Command::Erasures { file, output, verify } => {
            let topo = load(&file.path, &style)?;
            let state = ctx.state(&file.path)?;
            let clients = context::clients(&ctx.wiring(&file.path));
            runtime()?.block_on(crate::erasure::list(topo, state, clients, output == Output::Json, verify, &style))
        }
        Command::Man { dir } => crate::man::write(&dir),
        Command::Completions { shell } => completions(shell),
    }
}

/// The topology file a command reads, which decides its state store.
fn topology_file(command: &Command) -> Option<std::path::PathBuf> {
    Some(match command {
        Command::Validate { file, .. }
        | Command::Plan { file, .. }
        | Command::Graph { file, .. }
        | Command::IamPolicy { file, .. }
        | Command::Status { file, .. }
        | Command::Replicate { file, .. }
        | Command::Declare { file, .. }
        | Command::Resume { file, .. }
        | Command::Retry { file, .. }
        | Command::Skip { file, .. }
        | Command::Restore { file, .. }
        | Command::Serve { file, .. }
        | Command::StatusPage(StatusPageCommand::Export { file, .. }) => file.path.clone(),
        Command::Approve { store, .. }
        | Command::Abort { store, .. }
        | Command::Executions { store, .. }
        | Command::Show { store, .. }
        | Command::Token(TokenArgs { store, .. })
        | Command::Audit(AuditArgs { store, .. })
        | Command::Subscriptions(SubscriptionsArgs { store, .. })
        | Command::CustomerLink(CustomerLinkArgs { store, .. }) => store.file.clone(),
        Command::Drill { lab: true, lab_dir, .. } => lab_dir.join(drctl_lab_api::TOPOLOGY_FILE),
        Command::Drill { file, .. } => file.clone()?,
        _ => return None,
    })
}

/// Where primaries are now according to the state store (after failovers),
/// without creating a store just to read it.
fn recorded_world(topo: &Topology, url: &str) -> Observations {
    let exists = url.starts_with("etcd://") || url.strip_prefix("sqlite://").is_some_and(|p| Path::new(p).exists());
    if !exists {
        return Observations::default();
    }
    context::open_state(url)
        .ok()
        .and_then(|s| drctl_control::failover::observations(topo, &*s).ok())
        .unwrap_or_default()
}

fn validate(path: &Path, output: Output, style: &Style) -> Result<Outcome, Failure> {
    let loaded = drctl_core::load(path);
    let errors = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = loaded.diagnostics.len() - errors;
    match output {
        Output::Json => {
            let json = serde_json::json!({
                "file": path,
                "valid": loaded.topology.is_some(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": loaded.diagnostics.iter().map(|d| serde_json::json!({
                    "severity": d.severity, "code": d.code.as_str(), "file": d.file,
                    "line": d.pos.line, "column": d.pos.col, "message": d.message, "hint": d.hint,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&json).map_err(anyhow::Error::from)?);
        }
        Output::Text => {
            print_diagnostics(&loaded.diagnostics, style);
            match &loaded.topology {
                Some(t) => println!("{}", text::validated(path, t, warnings, style)),
                None => eprintln!(
                    "{}: {errors} error{}, {warnings} warning{}",
                    path.display(),
                    if errors == 1 { "" } else { "s" },
                    if warnings == 1 { "" } else { "s" }
                ),
            }
        }
    }
    if loaded.topology.is_some() {
        Ok(Outcome::Done)
    } else {
        Err(Failure::BadInput { message: String::new(), printed: true })
    }
}

/// `replicate`: a pass (or the loop), or a conflict resolved.
#[allow(clippy::too_many_arguments)]
fn replicate(
    ctx: &Context,
    file: FileArg,
    once: bool,
    names: Vec<String>,
    resolve: Option<String>,
    resolve_all: bool,
    zone: Option<String>,
    resolution: Option<Resolution>,
    output: Output,
    style: Style,
) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    let wiring = ctx.wiring(&file.path);
    let state = open_state(&wiring.state_url)?;
    let clients = context::clients(&wiring);
    if let (true, Some(how)) = (resolve_all, resolution) {
        return runtime()?.block_on(crate::live::resolve_all(
            &clients,
            &topo,
            &*state,
            &names,
            zone.as_deref(),
            how,
            output == Output::Json,
        ));
    }
    match (resolve, zone, resolution) {
        (Some(key), Some(zone), Some(how)) => {
            let [name] = names.as_slice() else {
                return Err(Failure::bad_input("--resolve takes exactly one datastore NAME"));
            };
            runtime()?.block_on(crate::live::resolve(&clients, &topo, &*state, name, &zone, &key, how))
        }
        _ => {
            runtime()?.block_on(crate::live::replicate(&clients, &topo, &*state, &names, once, output == Output::Json))
        }
    }
}

/// `plan`: the plan for a scope, from where the primaries are now.
fn plan(
    ctx: &Context,
    file: FileArg,
    scope: ScopeArgs,
    parallel: Option<usize>,
    output: Output,
    style: Style,
) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    let state_url = ctx.wiring(&file.path).state_url;
    let scope = scope.scope();
    if scope.is_empty() {
        return Err(Failure::Refused(drctl_control::Request::EmptyScope));
    }
    let plan = drctl_core::plan(&topo, &scope, &recorded_world(&topo, &state_url), parallel)
        .map_err(|e| Failure::Refused(e.into()))?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan).map_err(anyhow::Error::from)?),
        Output::Text => print!("{}", text::plan(&topo, &plan, &style)),
    }
    Ok(if plan.meets_objectives() { Outcome::Done } else { Outcome::ObjectiveMissed })
}

/// `discover`: a topology skeleton from what an AWS account runs.
fn discover(ctx: &Context, regions: Vec<String>, output: String) -> Result<Outcome, Failure> {
    let clients = crate::context::clients(&ctx.flag_wiring());
    crate::context::runtime()?.block_on(async move {
        let sdk = clients.sdk().await;
        let regions = if regions.is_empty() {
            match sdk.region() {
                Some(r) => vec![r.to_string()],
                None => {
                    return Err(Failure::bad_input(
                        "no region: pass --region REGION (repeat for more) or set AWS_REGION",
                    ))
                }
            }
        } else {
            regions
        };
        let estate = drctl_aws::discover::estate(sdk, &regions).await.map_err(|e| Failure::Runtime(e.into()))?;
        let yaml = drctl_aws::discover::skeleton(&estate, &regions);
        // What is printed must validate: a skeleton that does not is a bug, said plainly.
        let loaded = drctl_core::load_str(&yaml, std::path::Path::new("discovered.yaml"));
        if let Some(d) = loaded.diagnostics.iter().find(|d| d.severity == drctl_core::diag::Severity::Error) {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "the skeleton drctl wrote does not validate ({}); please report it",
                d.message
            )));
        }
        if output == "json" {
            let tree =
                drctl_core::yaml::parse(&yaml).map_err(|e| Failure::Runtime(anyhow::anyhow!("{}", e.describe())))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&drctl_core::decode::to_json(&tree)).map_err(anyhow::Error::from)?
            );
        } else {
            print!("{yaml}");
        }
        eprintln!(
            "found {} RDS instances, {} Aurora clusters, {} replicating buckets, {} per-zone records in {}",
            estate.instances.iter().filter(|i| i.cluster.is_none()).count(),
            estate.clusters.len(),
            estate.buckets.len(),
            estate.records.len(),
            regions.join(", ")
        );
        Ok(Outcome::Done)
    })
}

/// `iam-policy`: the least IAM policy a use of the topology needs.
fn iam_policy(file: FileArg, for_use: String, account: Option<String>, style: Style) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    if let Some(a) = account.as_deref().filter(|a| a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit())) {
        return Err(Failure::bad_input(format!("--account `{a}`: an AWS account id is 12 digits")));
    }
    let uses = drctl_control::policy::uses_for(&for_use).ok_or_else(|| {
        Failure::bad_input(format!("--for `{for_use}`: one of {}", drctl_control::policy::USE_NAMES.join(", ")))
    })?;
    let doc = drctl_control::policy::policy(&topo, &drctl_control::policy::Target { uses, account });
    if doc["Statement"].as_array().is_none_or(|s| s.is_empty()) {
        eprintln!(
            "{}: `{for_use}` makes no AWS call for this topology; the policy allows nothing",
            file.path.display()
        );
    }
    println!("{}", serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?);
    Ok(Outcome::Done)
}

/// `graph`: the dependency graph, with a scope's plan drawn on it.
fn graph(
    ctx: &Context,
    file: FileArg,
    scope: ScopeArgs,
    format: GraphFormat,
    style: Style,
) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    let state_url = ctx.wiring(&file.path).state_url;
    let scope = scope.scope();
    let plan = if scope.is_empty() {
        None
    } else {
        Some(
            drctl_core::plan(&topo, &scope, &recorded_world(&topo, &state_url), None)
                .map_err(|e| Failure::Refused(e.into()))?,
        )
    };
    let format = match format {
        GraphFormat::Dot => Format::Dot,
        GraphFormat::Mermaid => Format::Mermaid,
    };
    print!("{}", graph::render(&topo, plan.as_ref(), format));
    Ok(Outcome::Done)
}

/// `audit list` and `audit verify` (against the head file every writer appends to).
fn audit(ctx: &Context, store: StoreArgs, cmd: AuditCommand) -> Result<Outcome, Failure> {
    let state = ctx.store(&store)?;
    match cmd {
        AuditCommand::List { output } => crate::serve::audit_list(&*state, output == Output::Json),
        AuditCommand::Verify { head, head_file } => {
            // Without a head given, the one every writer appends to.
            let head_file = head_file.or_else(|| {
                (head.is_none())
                    .then(|| context::default_head_file(&ctx.wiring(&store.file).state_url))
                    .filter(|p| p.exists())
            });
            let head = match head_file {
                Some(path) => Some(
                    drctl_state::controller::last_head(&path)
                        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?
                        .ok_or_else(|| Failure::bad_input(format!("{} holds no head", path.display())))?,
                ),
                None => head,
            };
            crate::serve::audit_verify(&*state, head.as_deref())
        }
    }
}

/// `completions`: the shell completion script.
fn completions(shell: Shell) -> Result<Outcome, Failure> {
    use clap::CommandFactory;
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "drctl", &mut script);
    // A closed pipe (`| head`) is not a failure worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
    Ok(Outcome::Done)
}

/// `retry`: a failed step run again, with the checks named waived. A
/// restore's decision is journaled the same way; its own runner goes on.
fn retry(
    ctx: &Context,
    file: FileArg,
    id: String,
    step: String,
    overrides: OverrideArgs,
    style: Style,
) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    let state = ctx.state(&file.path)?;
    let is_restore = state.execution(&id).is_ok_and(|row| drctl_backup::restore::is_restore(&row));
    let declarer = ctx.declarer(topo.clone(), &file.path)?;
    let mut lifted = overrides.overrides();
    if overrides.force {
        lifted.merge(&drctl_control::overrides::Overrides::force());
    }
    if is_restore {
        let clients = context::clients(&ctx.wiring(&file.path));
        declarer
            .retry(&id, &step, &lifted, &drctl_control::declare::Actor::cli())
            .map_err(crate::execute::control_error)?;
        println!("retrying {step}");
        return runtime()?.block_on(crate::restore::resume(topo, state, clients, &id, &style));
    }
    runtime()?.block_on(crate::execute::retry(declarer, &id, &step, &lifted, &style))
}

/// `skip`: a held or failed step passed over, on the commander's word.
fn skip(ctx: &Context, file: FileArg, id: String, step: String, yes: bool, style: Style) -> Result<Outcome, Failure> {
    let topo = load(&file.path, &style)?;
    let state = ctx.state(&file.path)?;
    if state.execution(&id).is_ok_and(|row| drctl_backup::restore::is_restore(&row)) {
        let clients = context::clients(&ctx.wiring(&file.path));
        return runtime()?.block_on(crate::restore::skip(topo, state, clients, &id, &step, yes, &style));
    }
    let declarer = ctx.declarer(topo, &file.path)?;
    runtime()?.block_on(crate::execute::skip(declarer, &id, &step, yes, &style))
}

/// `approve`: a decision on a waiting step; done by hand, the execution goes on.
fn approve(
    ctx: &Context,
    store: StoreArgs,
    id: String,
    step: String,
    done: bool,
    by: Option<String>,
    style: Style,
) -> Result<Outcome, Failure> {
    let by = by.unwrap_or_else(drctl_control::declare::login_name);
    // A step recorded as done by hand lets a paused execution go on:
    // here, when its topology is at hand.
    if done && store.file.exists() {
        let state = ctx.store(&store)?;
        let row = state.execution(&id).map_err(crate::execute::state_error)?;
        if drctl_backup::restore::is_restore(&row) && row.state == drctl_state::journal::exec_state::PAUSED {
            // Recorded in the journal as for a declaration; the restore's own
            // runner carries it on.
            let who = drctl_control::declare::Actor::new(by.as_str(), "cli");
            drctl_control::declare::approve(&*state, &id, &step, true, &who, drctl_state::controller::Role::Admin)
                .map_err(crate::execute::control_error)?;
            println!("recorded {step} of {id} as done by hand, as {by}; what needs it goes on");
            let topo = load(&store.file, &style)?;
            let clients = context::clients(&ctx.wiring(&store.file));
            return runtime()?.block_on(crate::restore::resume(topo, state, clients, &id, &style));
        }
        let topo = load(&store.file, &style)?;
        let declarer = ctx.declarer(topo, &store.file)?;
        runtime()?.block_on(crate::execute::approve_and_go_on(declarer, &id, &step, done, &by, &style))
    } else {
        crate::execute::approve(&*ctx.store(&store)?, &id, &step, done, &by)
    }
}

/// `declare`: checked as every declaration is, then proposed, confirmed and run.
#[allow(clippy::too_many_arguments)]
fn declare(
    ctx: &Context,
    file: FileArg,
    scope: ScopeArgs,
    reason: String,
    yes: bool,
    dry_run: bool,
    overrides: OverrideArgs,
    parallel: Option<usize>,
    style: Style,
) -> Result<Outcome, Failure> {
    // The one check every declaration passes, whoever makes it.
    let (decl, dry_run) = drctl_control::declare::DeclarationRequest {
        zones: scope.zones,
        regions: scope.regions,
        targets: scope.targets,
        reason,
        dry_run,
        force: overrides.force,
        overrides: overrides.overrides(),
        parallel,
    }
    .check()
    .map_err(Failure::Refused)?;
    let topo = load(&file.path, &style)?;
    let declarer = ctx.declarer(topo, &file.path)?;
    runtime()?.block_on(crate::execute::declare(declarer, decl, yes, dry_run, &style))
}

/// `bench`: each measure of `drctl bench`.
fn run_bench(ctx: &Context, cmd: BenchCommand, style: Style) -> Result<Outcome, Failure> {
    match cmd {
        BenchCommand::Plan { entities, runs, parallel } => bench::plan(&entities, runs.max(1), parallel),
        BenchCommand::Scheduler { topologies, entities } => bench::scheduler(topologies, entities),
        BenchCommand::Validate { sizes, runs } => bench::validate(&sizes, runs.max(1)),
        BenchCommand::Subscribe { networks, per_network, seconds, concurrency } => {
            if networks == 0 || networks > 254 * 256 || per_network == 0 || per_network > 254 {
                return Err(Failure::bad_input(
                    "--networks must be 1 to 65024 and --per-network 1 to 254 (addresses of 127.0.0.0/8)",
                ));
            }
            runtime()?.block_on(bench::subscribe(networks, per_network, seconds, concurrency))
        }
        BenchCommand::Connections { idle, trickling, probes, per_address } => {
            runtime()?.block_on(bench::connections(idle, trickling, probes, per_address))
        }
        BenchCommand::Drill { experiment, runs, base_port } => {
            runtime()?.block_on(bench::drill(&experiment, runs.max(1), base_port))
        }
        BenchCommand::Engine { entities, parallel } => {
            // The journal on etcd when --state names one; a private SQLite file otherwise.
            let etcd = ctx.state_flag.starts_with("etcd://").then(|| ctx.state_flag.clone());
            runtime()?.block_on(bench::engine(entities, parallel, etcd))
        }
        BenchCommand::Erasure { file, subjects } => {
            let topo = load(&file.path, &style)?;
            runtime()?.block_on(crate::erasure::bench(topo, subjects))
        }
        BenchCommand::Status { datastores, runs } => runtime()?.block_on(bench::status(datastores, runs.max(1))),
        BenchCommand::Readiness { datastores, services, delay, runs } => {
            runtime()?.block_on(bench::readiness(datastores, services, delay, runs.max(1)))
        }
    }
}

/// `lab`: a lab's servers up, down, a member powered off, its status.
fn run_lab(cmd: LabCommand) -> Result<Outcome, Failure> {
    match cmd {
        LabCommand::Up { dir, base_port, detach, controllers } => {
            if detach {
                crate::lab::detach(&dir, base_port, controllers)
            } else {
                runtime()?.block_on(crate::lab::up(dir, base_port, controllers))
            }
        }
        LabCommand::Down { dir } => runtime()?.block_on(crate::lab::down(&dir)),
        LabCommand::PowerOff { control, dir, datastore, zone, check } => {
            runtime()?.block_on(crate::lab::power_off(control, &dir, &datastore, &zone, check))
        }
        LabCommand::Status { dir, output } => runtime()?.block_on(crate::lab::status(&dir, output == Output::Json)),
    }
}

/// `serve`: the controller, its state and leadership opened for its id.
fn serve(ctx: &Context, cmd: Command, style: Style) -> Result<Outcome, Failure> {
    let Command::Serve {
        file,
        listen,
        tls_cert,
        tls_key,
        peer_ca,
        allow,
        sample_every,
        base_url,
        shutdown_deadline,
        id,
        advertise,
        lease_ttl,
        limits,
        notify,
        readiness,
    } = cmd
    else {
        return Err(Failure::Runtime(anyhow::anyhow!("not a `serve` command")));
    };
    let readiness: drctl_serve::ReadinessOptions = readiness.into();
    readiness.check(notify.smtp.as_deref()).map_err(Failure::bad_input)?;
    let topo = load(&file.path, &style)?;
    let wiring = ctx.wiring(&file.path);
    let scheme = if tls_cert.is_some() { "https" } else { "http" };
    let id = id.unwrap_or_else(|| format!("{}:{}", context::hostname(), listen.port()));
    let advertise = advertise.or_else(|| base_url.clone()).unwrap_or_else(|| format!("{scheme}://{listen}"));
    let (state, leadership) = context::open_controller_state(&wiring.state_url, &id, &advertise, lease_ttl)?;
    crate::serve::serve(crate::serve::ServeArgs {
        id,
        leadership,
        path: file.path,
        topo,
        state,
        clients: context::clients(&wiring),
        state_url: wiring.state_url,
        listen,
        tls: tls_cert.zip(tls_key),
        peer_ca,
        allow,
        sample_every,
        base_url,
        shutdown_deadline,
        limits: limits.into(),
        notify: notify.into(),
        readiness,
    })
}
