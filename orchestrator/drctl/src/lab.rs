//! `drctl lab` and `drctl drill`: glue between the flags and drctl-lab.

use crate::context::{self, lab_state_url, Context};
use crate::{Failure, Outcome};
use drctl_control::declare::Actor;
use drctl_drill::Error as DrillError;
use drctl_lab::lab::{Lab, LabClient, Manifest, Options};
use drctl_lab::procs::{RunningProcess, ZoneProcess};
use drctl_lab::Error as LabError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The lab's highly available controllers (docs/guide/ha-etcd.md): an etcd member and a
/// `drctl serve` in each zone, on the zone's own addresses, so losing a
/// zone loses both.
struct Ha {
    etcd: Vec<RunningProcess>,
    state_url: String,
    controllers: Vec<(u8, String, String)>,
}

/// Where zone `z`'s etcd member and controller listen.
fn ha_addresses(base: u16, z: u8) -> (String, String, String) {
    (
        format!("127.0.{z}.21:{}", base + 72),
        format!("127.0.{z}.21:{}", base + 73),
        format!("127.0.{z}.20:{}", base + 70),
    )
}

/// Starts a fresh etcd member per zone and waits for the cluster to answer.
fn start_etcd(dir: &Path, base: u16) -> Result<Ha, Failure> {
    let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH")
                .and_then(|ps| std::env::split_paths(&ps).map(|p| p.join("etcd")).find(|p| p.exists()))
        })
        .ok_or_else(|| {
            Failure::bad_input("a drill through controllers needs etcd (Debian: apt-get install etcd-server)")
        })?;
    let data = dir.join("etcd");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| Failure::bad_input(format!("cannot create {}: {e}", data.display())))?;
    let initial: Vec<String> = (1..=3u8).map(|z| format!("m{z}=http://{}", ha_addresses(base, z).1)).collect();
    let mut etcd = Vec::new();
    for z in 1..=3u8 {
        let (client, peer, _) = ha_addresses(base, z);
        let mut p = RunningProcess::new(ZoneProcess {
            zone: z,
            name: format!("etcd member m{z}"),
            program: bin.clone(),
            args: [
                "--name",
                &format!("m{z}"),
                "--data-dir",
                &data.join(format!("m{z}")).display().to_string(),
                "--listen-client-urls",
                &format!("http://{client}"),
                "--advertise-client-urls",
                &format!("http://{client}"),
                "--listen-peer-urls",
                &format!("http://{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://{peer}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            log: data.join(format!("m{z}.log")),
        });
        p.start().map_err(Failure::bad_input)?;
        etcd.push(p);
    }
    let members: Vec<String> = (1..=3u8).map(|z| ha_addresses(base, z).0).collect();
    let state_url = format!("etcd://{}/lab", members.join(","));
    Ok(Ha { etcd, state_url, controllers: Vec::new() })
}

/// Starts the controllers, lab-az1's first (it leads at the start, so a
/// zone outage of lab-az1 takes the leader), and hands every process to
/// the lab, whose zone outages kill them.
async fn start_controllers(lab: &Lab, ha: &mut Ha, dir: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(e.into()))?;
    let topology = lab.manifest.topology.display().to_string();
    let http =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().map_err(anyhow::Error::from)?;
    for z in 1..=3u8 {
        let (_, _, listen) = ha_addresses(lab.layout().base, z);
        let id = format!("lab-az{z}-ctl");
        let url = format!("http://{listen}");
        let mut p = RunningProcess::new(ZoneProcess {
            zone: z,
            name: format!("controller {id}"),
            program: exe.clone(),
            args: [
                "serve",
                "-f",
                &topology,
                "--state",
                &ha.state_url,
                "--id",
                &id,
                "--listen",
                &listen,
                "--advertise",
                &url,
                "--lease-ttl",
                "3s",
                "--sample-every",
                "1s",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect(),
            log: dir.join(format!("{id}.log")),
        });
        p.start().map_err(Failure::bad_input)?;
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v: serde_json::Value = match http.get(format!("{url}/api/v1/leader")).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            if (z == 1 && v["leading"] == true) || (z > 1 && v["leader"] == "lab-az1-ctl") {
                break;
            }
            if std::time::Instant::now() >= until {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "controller {id} did not {} within 30 s (see {})",
                    if z == 1 { "lead" } else { "follow" },
                    dir.join(format!("{id}.log")).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ha.controllers.push((z, id, url));
        lab.adopt(p);
    }
    for p in ha.etcd.drain(..) {
        lab.adopt(p);
    }
    Ok(())
}

/// The commander token a drill declares through the controllers with
/// (kept in memory only; the store keeps its hash).
fn drill_token(state: &drctl_state::State) -> Result<String, Failure> {
    state
        .create_token(&format!("drill-{}", std::process::id()), drctl_state::controller::Role::Commander, None)
        .map_err(|e| Failure::Runtime(e.into()))
}

fn lab_failure(e: LabError) -> Failure {
    match e {
        LabError::BadInput(m) => Failure::bad_input(m),
        other => Failure::Runtime(anyhow::anyhow!("{other}")),
    }
}

fn api_failure(e: drctl_lab_api::Error) -> Failure {
    match e {
        drctl_lab_api::Error::Refused(m) => Failure::bad_input(m),
        other => Failure::Runtime(other.into()),
    }
}

fn drill_failure(e: DrillError) -> Failure {
    match e {
        DrillError::BadInput(m) => Failure::bad_input(m),
        DrillError::Lab(e) => api_failure(e),
        DrillError::Declare(e) => crate::execute::control_error(e),
        other => Failure::Runtime(other.into()),
    }
}

pub fn fresh_state(dir: &Path) -> Result<Arc<drctl_state::State>, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| Failure::bad_input(format!("cannot create {}: {e}", dir.display())))?;
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    drctl_state::State::open(&lab_state_url(dir)).map_err(|e| Failure::Runtime(e.into()))
}

fn summary(lab: &Lab, dir: &Path) -> String {
    let l = lab.layout();
    let mut s = String::new();
    s.push_str(&format!("lab up: zones lab-az1, lab-az2, lab-az3 on loopback (pid {})\n", lab.manifest.pid));
    s.push_str(&format!("  orders-db  postgres  primary lab-az1 {}, standby lab-az2 {}\n", l.pg(1).0, l.pg(2).0));
    s.push_str(&format!(
        "  assets     s3        {} (lab-az1), {} (lab-az2), {} (lab-az3); drctl copies every 1s\n",
        l.s3_url(1),
        l.s3_url(2),
        l.s3_url(3)
    ));
    for (i, name) in ["payments", "checkout", "catalog"].iter().enumerate() {
        s.push_str(&format!("  {name:<10} service   http://{}/health\n", l.front_door(i)));
    }
    s.push_str(&format!("  dns        lab.      dig @{} -p {} checkout.lab.\n", l.dns().ip(), l.dns().port()));
    s.push_str("  workload   a row every 50 ms into orders-db, an object every 100 ms into assets\n");
    s.push_str(&format!("  backups    {}\n", lab.backups.describe()));
    s.push_str("             assets' buckets are versioned (a restore goes back through their versions)\n");
    s.push_str(&format!("  topology   {}\n", dir.join("drctl.yaml").display()));
    s
}

/// Opens the state on the lab's etcd, waiting for its members to elect a leader.
async fn open_ha_state(ha: &Ha) -> Result<Arc<drctl_state::State>, Failure> {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match crate::context::open_state(&ha.state_url) {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub async fn up(dir: PathBuf, base_port: u16, controllers: bool) -> Result<Outcome, Failure> {
    let mut ha = if controllers { Some(start_etcd(&dir, base_port)?) } else { None };
    let state = match &ha {
        Some(h) => open_ha_state(h).await?,
        None => fresh_state(&dir)?,
    };
    eprintln!("starting the lab in {} (PostgreSQL, S3, DNS, services, workload)...", dir.display());
    let mut lab = Lab::start(Options { dir: dir.clone(), base_port, state }).await.map_err(lab_failure)?;
    println!("{}", summary(&lab, &dir));
    if let Some(h) = ha.as_mut() {
        start_controllers(&lab, h, &dir).await?;
        let urls: Vec<String> = h.controllers.iter().map(|(_, _, u)| u.clone()).collect();
        lab.set_controllers(&h.state_url, urls).map_err(lab_failure)?;
        println!("  state      {} (an etcd member per zone)", h.state_url);
        for (z, id, url) in &h.controllers {
            println!("  controller {id:<12} lab-az{z}  {url}/  ({url}/api/v1/leader)");
        }
        println!("  a zone outage kills its etcd member and its controller; lab-az1-ctl leads first\n");
    }
    println!("In another terminal (drctl finds the lab's state and credentials by itself):");
    println!("  drctl status -f {}", dir.join("drctl.yaml").display());
    println!("  drctl drill chaos/lab-zone-outage.yaml -f {}", dir.join("drctl.yaml").display());
    println!("  drctl lab status --dir {}", dir.display());
    println!("Ctrl-C here, or `drctl lab down --dir {}`, stops everything.", dir.display());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("\ninterrupted: stopping the lab"),
        _ = lab.shutdown_requested() => eprintln!("`lab down` asked: stopping the lab"),
    }
    lab.stop().await;
    eprintln!("lab stopped: no process or listener left");
    Ok(Outcome::Done)
}

pub fn detach(dir: &Path, base_port: u16, controllers: bool) -> Result<Outcome, Failure> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).map_err(|e| Failure::bad_input(format!("cannot create {}: {e}", dir.display())))?;
    let log = std::fs::File::create(dir.join("lab.log")).map_err(|e| Failure::Runtime(e.into()))?;
    let exe = std::env::current_exe().map_err(|e| Failure::Runtime(e.into()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["lab", "up", "--base-port", &base_port.to_string(), "--dir"]).arg(dir);
    if controllers {
        cmd.arg("--controllers");
    }
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone().map_err(|e| Failure::Runtime(e.into()))?).stderr(log);
    // SAFETY: setsid is async-signal-safe; the lab leaves our session so a
    // closing terminal does not stop it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Failure::Runtime(e.into()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("lab.log")).unwrap_or_default();
            return Err(Failure::Runtime(anyhow::anyhow!("the lab did not start ({status}):\n{log}")));
        }
        if Manifest::read(dir).is_some_and(|m| m.pid == child.id() && (!controllers || !m.controllers.is_empty())) {
            let log = std::fs::read_to_string(dir.join("lab.log")).unwrap_or_default();
            print!("{}", log.lines().filter(|l| !l.starts_with("Ctrl-C")).collect::<Vec<_>>().join("\n"));
            println!(
                "\nThe lab runs in the background (log: {}); `drctl lab down --dir {}` stops it.",
                dir.join("lab.log").display(),
                dir.display()
            );
            return Ok(Outcome::Done);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err(Failure::Runtime(anyhow::anyhow!("the lab did not come up within 90s; see {}", dir.join("lab.log").display())))
}

pub async fn down(dir: &Path) -> Result<Outcome, Failure> {
    let Some(m) = Manifest::read(dir) else {
        println!("no lab runs from {}", dir.display());
        return Ok(Outcome::Done);
    };
    if m.alive() {
        LabClient::new(&m.control).shutdown().await.map_err(api_failure)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while m.alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if m.alive() {
            // SAFETY: signalling the lab's own process, recorded in its manifest.
            unsafe {
                libc::kill(m.pid as i32, libc::SIGKILL);
            }
        }
    }
    // A lab that died without cleaning up: its servers died with it
    // (parent-death signal); remove what it left.
    let _ = std::fs::remove_file(Manifest::path(dir));
    let _ = std::fs::remove_dir_all(&m.scratch);
    println!("lab stopped (pid {})", m.pid);
    Ok(Outcome::Done)
}

/// The lab members' fence: powers one off through the control API, out of
/// band, as IPMI or a cloud API would. Exit 0 means it is off. With
/// `check`, nothing is powered off: exit 0 means the control API answers
/// and knows the member, so the fence would work (readiness runs it).
pub async fn power_off(
    control: Option<String>,
    dir: &Path,
    datastore: &str,
    zone: &str,
    check: bool,
) -> Result<Outcome, Failure> {
    let control = match control {
        Some(c) => c,
        None => Manifest::read(dir).filter(|m| m.alive()).map(|m| m.control).ok_or_else(|| {
            Failure::Runtime(anyhow::anyhow!("no lab runs from {}: pass --control HOST:PORT", dir.display()))
        })?,
    };
    if check {
        let st = LabClient::new(&control).status().await.map_err(api_failure)?;
        let known = st.members.iter().any(|m| m.zone == zone && m.what.contains(&format!("({datastore})")));
        if !known {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "the lab's control API at {control} answers but has no {datastore} member in {zone}"
            )));
        }
        println!("the lab's control API at {control} answers and can power off {datastore} in {zone}");
        return Ok(Outcome::Done);
    }
    let done = LabClient::new(&control).power_off(datastore, zone).await.map_err(api_failure)?;
    println!("{}", done.hits.join("; "));
    Ok(Outcome::Done)
}

pub async fn status(dir: &Path, json: bool) -> Result<Outcome, Failure> {
    let m = Manifest::read(dir).filter(|m| m.alive()).ok_or_else(|| {
        Failure::Runtime(anyhow::anyhow!("no lab runs from {}: `drctl lab up` starts one", dir.display()))
    })?;
    let st = LabClient::new(&m.control).status().await.map_err(api_failure)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st).map_err(anyhow::Error::from)?);
        return Ok(Outcome::Done);
    }
    println!("lab (pid {}, since {}), DNS {}", m.pid, st.started_at, st.dns);
    for mem in &st.members {
        println!(
            "  {:<8} {:<40} {:<28} {}{}",
            mem.zone,
            mem.what,
            mem.address,
            if mem.up { "up" } else { "DOWN" },
            if mem.faults.is_empty() { String::new() } else { format!("  [{}]", mem.faults) }
        );
    }
    for f in &st.faults {
        println!("  fault {}: {}", f.id, f.hits.join("; "));
    }
    for (name, w) in st.workload.as_object().into_iter().flatten() {
        if let Some(o) = w.as_object() {
            println!(
                "  workload {name}: {} acknowledged, last seq {}, {} failures",
                o.get("acknowledged").unwrap_or(&serde_json::Value::Null),
                o.get("last_seq").unwrap_or(&serde_json::Value::Null),
                o.get("failures").unwrap_or(&serde_json::Value::Null)
            );
        }
    }
    Ok(Outcome::Done)
}

pub struct DrillArgs {
    pub experiment: PathBuf,
    pub file: Option<PathBuf>,
    pub lab: bool,
    pub lab_dir: PathBuf,
    pub base_port: u16,
    pub report: Option<PathBuf>,
    pub dry_run: bool,
    pub parallel: Option<usize>,
    pub json: bool,
}

pub fn drill(args: DrillArgs, ctx: &Context) -> Result<Outcome, Failure> {
    let style = &ctx.style;
    let experiment = load_experiment(&args.experiment, style)?;
    let file = args.file.clone().unwrap_or_else(|| PathBuf::from("drctl.yaml"));
    // --lab drills a fresh lab: its own store, its own keys, whatever was chosen.
    let wiring = if args.lab {
        context::Wiring { state_url: lab_state_url(&args.lab_dir), credentials: drctl_lab::credentials() }
    } else {
        ctx.wiring(&file)
    };
    let state_url = wiring.state_url.clone();
    let clients = context::clients(&wiring);
    context::runtime()?.block_on(async move {
        // Ctrl-C cancels the drill, which heals and reports. The watcher
        // lives in this task's select below, never beyond the drill.
        let cancel = drctl_runtime::CancellationToken::new();
        let through_controllers = experiment.declare == drctl_core::chaos::DeclareMode::Controllers;
        let Stage { lab, topo_path, state, controllers, token } =
            stage(&args, &file, &state_url, through_controllers).await?;
        let loaded = drctl_core::load(&topo_path);
        let Some(topology) = loaded.topology else {
            for d in &loaded.diagnostics {
                eprintln!("{}", crate::text::diagnostic(d, style));
            }
            return Err(Failure::BadInput { message: String::new(), printed: true });
        };
        let client = match &lab {
            Some(l) => Some(LabClient::new(&l.manifest.control)),
            None => Manifest::read(topo_path.parent().unwrap_or(Path::new(".")))
                .filter(|m| m.alive())
                .map(|m| LabClient::new(&m.control)),
        };
        let opts = drctl_drill::drill::Options {
            topology: Arc::new(topology),
            experiment,
            state,
            clients,
            lab: client,
            parallel: args.parallel,
            steady_timeout: Duration::from_secs(20),
            clock: Arc::new(drctl_runtime::SystemClock),
            cancel: cancel.clone(),
            say: Box::new(|line| eprintln!("{line}")),
            controllers,
            token,
            id: None,
        };
        if args.dry_run {
            let plan = drctl_drill::drill::dry_run(&opts).await.map_err(drill_failure)?;
            print_dry_run(&plan, args.json)?;
            return Ok(Outcome::Done);
        }
        eprintln!("drill {}: {}", opts.experiment.name, opts.experiment.description.as_deref().unwrap_or(""));
        let state_for_record = opts.state.clone();
        // Audited before the first fault, like every other change: a log
        // that cannot record the drill stops it here.
        let request = serde_json::json!({"experiment": opts.experiment.file, "lab": args.lab});
        let begun = match drctl_drill::lifecycle::begin(&*opts.state, &Actor::cli(), &opts.experiment, request, None) {
            Ok(b) => b,
            Err(e) => {
                if let Some(lab) = lab {
                    lab.stop().await;
                }
                return Err(Failure::Runtime(anyhow::anyhow!("the drill was not started: {e}")));
            }
        };
        let mut opts = opts;
        opts.id = Some(begun.id.clone());
        let drill = drctl_drill::drill::run(opts);
        tokio::pin!(drill);
        let result = tokio::select! {
            r = &mut drill => r,
            // Ctrl-C asks the drill to stop; it goes on healing and reporting.
            _ = tokio::signal::ctrl_c() => {
                cancel.cancel();
                drill.await
            }
        };
        // The drill has run: a record that cannot be written is a warning.
        for w in drctl_drill::lifecycle::finish(&*state_for_record, &begun, &result) {
            eprintln!("warning: {w}");
        }
        if let Some(lab) = lab {
            lab.stop().await;
            eprintln!("lab stopped: no process or listener left");
        }
        let report = match result {
            Ok(r) => r,
            Err(DrillError::Unsteady(m)) => {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "refusing to start the drill, the system is not steady: {m}"
                )))
            }
            Err(e) => return Err(drill_failure(e)),
        };
        conclude(&report, args.report, args.json)
    })
}

/// Where a drill runs and what it declares through: a fresh lab started
/// for it (`--lab`; on etcd with controllers when the experiment declares
/// through them), or the topology's own estate (a running lab's
/// controllers taking the declaration when it has them).
struct Stage {
    lab: Option<Lab>,
    topo_path: PathBuf,
    state: Arc<drctl_state::State>,
    controllers: Vec<String>,
    token: Option<String>,
}

async fn stage(args: &DrillArgs, file: &Path, state_url: &str, through_controllers: bool) -> Result<Stage, Failure> {
    let mut controllers: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    let (lab, topo_path, state) = if args.lab {
        if args.file.is_some() {
            eprintln!("note: --lab drills the lab's own topology; -f is ignored");
        }
        // A drill through controllers: etcd first, the lab's whole state on it.
        let mut ha = if through_controllers { Some(start_etcd(&args.lab_dir, args.base_port)?) } else { None };
        let state = match &ha {
            Some(h) => open_ha_state(h).await?,
            None => fresh_state(&args.lab_dir)?,
        };
        eprintln!("starting the lab in {}...", args.lab_dir.display());
        let lab = Lab::start(Options { dir: args.lab_dir.clone(), base_port: args.base_port, state: state.clone() })
            .await
            .map_err(lab_failure)?;
        eprintln!("lab up (PostgreSQL pair, S3 per zone, DNS, 3 services, workload)");
        if let Some(h) = ha.as_mut() {
            start_controllers(&lab, h, &args.lab_dir).await?;
            controllers = h.controllers.iter().map(|(_, _, url)| url.clone()).collect();
            token = Some(drill_token(&*state)?);
            eprintln!(
                "controllers up on etcd ({}): {}; lab-az1-ctl leads",
                h.state_url,
                h.controllers.iter().map(|(_, id, url)| format!("{id} {url}")).collect::<Vec<_>>().join(", ")
            );
        }
        let path = lab.manifest.topology.clone();
        (Some(lab), path, state)
    } else {
        let state = crate::context::open_state(state_url)?;
        // A running lab's controllers (`lab up --controllers`) take the declaration.
        let running = Manifest::read(file.parent().unwrap_or(Path::new("."))).filter(|m| m.alive());
        if let Some(m) = running.filter(|m| through_controllers && !m.controllers.is_empty()) {
            controllers = m.controllers.clone();
            token = Some(drill_token(&*state)?);
        }
        (None, file.to_path_buf(), state)
    };
    Ok(Stage { lab, topo_path, state, controllers, token })
}

/// The experiment file, or its every mistake printed.
fn load_experiment(path: &Path, style: &crate::text::Style) -> Result<drctl_core::chaos::Experiment, Failure> {
    match drctl_core::chaos::load(path) {
        Ok(e) => Ok(e),
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", crate::text::diagnostic(d, style));
            }
            Err(Failure::BadInput { message: String::new(), printed: true })
        }
    }
}

/// What a dry run would inject, and where.
fn print_dry_run(plan: &drctl_drill::drill::DryRun, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(anyhow::Error::from)?);
    } else {
        println!("dry run of {}: nothing is injected", plan.experiment);
        for f in &plan.faults {
            println!("  at {:>6.1}s  {}", f.injected_at_s.unwrap_or(0.0), f.kind);
            for h in &f.hits {
                println!("             would hit {h}");
            }
        }
    }
    Ok(())
}

/// The report written and shown; an unsafe failover is a failure, a
/// missed objective an outcome of its own.
fn conclude(report: &drctl_drill::drill::Report, dir: Option<PathBuf>, json: bool) -> Result<Outcome, Failure> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(".drctl/reports").join(&report.id));
    drctl_drill::report::write_all(report, &dir)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write the report into {}: {e}", dir.display())))?;
    if json {
        println!("{}", serde_json::to_string_pretty(report).map_err(anyhow::Error::from)?);
    } else {
        print!("{}", drctl_drill::report::headline(report));
        println!("report: {}/report.html (also report.md, report.json)", dir.display());
    }
    if !report.safe {
        // Not a missed objective: the failover itself was unsafe.
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the drill failed its safety check: {}",
            report.safety_violations.join("; ")
        )));
    }
    Ok(if report.objectives_met { Outcome::Done } else { Outcome::ObjectiveMissed })
}
