//! `drctl bench`: drctl measuring itself, so the numbers in docs/numbers.md can be
//! reproduced with one command on any machine.

use crate::{Failure, Outcome};
use drctl_core::plan::{plan_with, Observations, Scope};
use drctl_core::schedule::Policy;
use drctl_core::synth;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Peak resident memory of this process so far, from /proc (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn plan(sizes: &[usize], runs: usize, parallel: usize) -> Result<Outcome, Failure> {
    println!("parse + validate + plan of synthetic topologies (3 zones, ~2.5 dependencies per entity), zone az1 lost; median of {runs} runs");
    println!("the same topology written as YAML, and as JSON (what generators write; read by the JSON fast path)");
    println!(
        "{:>9}  {:>6}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}  {:>11}  {:>8}",
        "entities", "format", "MiB", "parse+val", "plan", "total", "plan --par", "steps", "peak MiB"
    );
    for &n in sizes {
        for (format, src) in [("yaml", synth::topology_yaml(n, 42)), ("json", synth::topology_json(n, 42))] {
            let scope = Scope { zones: vec!["az1".into()], ..Scope::default() };
            let (mut t_load, mut t_plan, mut t_cap) = (Vec::new(), Vec::new(), Vec::new());
            let mut steps = 0;
            for _ in 0..runs {
                let t0 = Instant::now();
                let loaded = drctl_core::load_str(&src, Path::new("synthetic.yaml"));
                let topo = loaded.topology.ok_or_else(|| {
                    anyhow::anyhow!("the synthetic topology did not validate: {:?}", loaded.diagnostics.first())
                })?;
                let t1 = Instant::now();
                let p = plan_with(&topo, &scope, &Observations::default(), None, Policy::Prioritised)
                    .map_err(anyhow::Error::from)?;
                let t2 = Instant::now();
                let _ = plan_with(&topo, &scope, &Observations::default(), Some(parallel), Policy::Prioritised)
                    .map_err(anyhow::Error::from)?;
                let t3 = Instant::now();
                steps = p.plan.steps.len();
                t_load.push(t1 - t0);
                t_plan.push(t2 - t1);
                t_cap.push(t3 - t2);
            }
            let (l, p, c) = (median(t_load), median(t_plan), median(t_cap));
            println!(
                "{:>9}  {:>6}  {:>9.1}  {:>7.1}ms  {:>7.1}ms  {:>7.1}ms  {:>9.1}ms  {:>11}  {:>8}",
                n,
                format,
                src.len() as f64 / (1024.0 * 1024.0),
                l.as_secs_f64() * 1e3,
                p.as_secs_f64() * 1e3,
                (l + p).as_secs_f64() * 1e3,
                c.as_secs_f64() * 1e3,
                steps,
                peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
            );
        }
    }
    Ok(Outcome::Done)
}

/// Aggregate results of one policy over many generated topologies.
#[derive(Default)]
struct Tally {
    tier0_rto_sum: f64,
    tier0_count: usize,
    missed: usize,
    worst_ratio: f64,
    ratio_sum: f64,
    plans: usize,
}

pub fn scheduler(topologies: usize, entities: usize) -> Result<Outcome, Failure> {
    println!("prioritised vs tier-then-file-order list scheduling; {topologies} topologies of {entities} entities per cap, zone az1 lost");
    println!(
        "{:>4}  {:<12}  {:>15}  {:>12}  {:>22}",
        "cap", "policy", "mean tier-0 RTO", "RTOs missed", "makespan / lower bound"
    );
    for cap in [2usize, 4, 8, 16] {
        let mut tallies = [Tally::default(), Tally::default()];
        for seed in 0..topologies as u64 {
            let yaml = synth::topology_yaml(entities, seed + 1);
            let topo = drctl_core::load_str(&yaml, Path::new("synthetic.yaml"))
                .topology
                .ok_or_else(|| anyhow::anyhow!("synthetic topology invalid"))?;
            let scope = Scope { zones: vec!["az1".into()], ..Scope::default() };
            for (k, policy) in [Policy::Prioritised, Policy::TierThenOrder].into_iter().enumerate() {
                let d = plan_with(&topo, &scope, &Observations::default(), Some(cap), policy)
                    .map_err(anyhow::Error::from)?;
                let t = &mut tallies[k];
                for e in &d.plan.entities {
                    if e.tier.as_deref() == Some("tier-0") && e.kind == "service" {
                        t.tier0_rto_sum += e.rto_estimate_s;
                        t.tier0_count += 1;
                    }
                    t.missed += usize::from(!e.meets_rto);
                }
                let work: f64 = d.plan.steps.iter().map(|s| s.estimate_s).sum();
                let bound = d.plan.critical_path_s.max(work / cap as f64);
                let ratio = if bound > 0.0 { d.plan.makespan_s / bound } else { 1.0 };
                t.worst_ratio = t.worst_ratio.max(ratio);
                t.ratio_sum += ratio;
                t.plans += 1;
            }
        }
        for (k, name) in ["prioritised", "baseline"].iter().enumerate() {
            let t = &tallies[k];
            println!(
                "{:>4}  {:<12}  {:>14.1}s  {:>12}  {:>10.3} mean, {:.3} worst",
                cap,
                name,
                t.tier0_rto_sum / t.tier0_count.max(1) as f64,
                t.missed,
                t.ratio_sum / t.plans.max(1) as f64,
                t.worst_ratio
            );
        }
    }
    Ok(Outcome::Done)
}

/// Answers every request with the same small S3 listing (keep-alive), so a
/// status pass measures drctl and the SDK, not an emulator.
async fn fake_s3() -> std::io::Result<(u16, Endpoint)> {
    slow_endpoint(Duration::ZERO).await
}

/// A bench's stand-in server: it answers while this is held, and stops
/// (its connections with it) when this is dropped.
struct Endpoint(tokio::task::JoinHandle<()>);

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`fake_s3`], each answer sent `delay` after its request arrived.
async fn slow_endpoint(delay: Duration) -> std::io::Result<(u16, Endpoint)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><KeyCount>2</KeyCount><IsTruncated>false</IsTruncated><Contents><Key>a.txt</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>1</Size></Contents><Contents><Key>b.txt</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;92eb5ffee6ae2fec3ad71c777531578f&quot;</ETag><Size>1</Size></Contents></ListBucketResult>";
    let response =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let server = tokio::spawn(async move {
        // Its connections are its own: cancelled with it.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            while connections.try_join_next().is_some() {}
            let response = response.clone();
            connections.spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        if sock.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok((port, Endpoint(server)))
}

pub async fn status(datastores: usize, runs: usize) -> Result<Outcome, Failure> {
    use drctl_control::live::{self, Clients};
    let (port, _endpoint) = fake_s3().await.map_err(anyhow::Error::from)?;
    let mut yaml = String::from("version: 1\nzones: [ { name: z1, region: us-east-1 }, { name: z2, region: us-east-1 } ]\nobjectives: { t0: { rpo: 1m } }\ndatastores:\n");
    for i in 0..datastores {
        yaml.push_str(&format!(
            "  - {{ name: s{i}, kind: s3, tier: t0, endpoint: \"http://127.0.0.1:{port}\", primary: {{ zone: z1, bucket: b{i}-z1 }}, replicas: [ {{ zone: z2, bucket: b{i}-z2 }} ] }}\n"
        ));
    }
    let topo = drctl_core::load_str(&yaml, Path::new("bench.yaml"))
        .topology
        .ok_or_else(|| anyhow::anyhow!("bench topology invalid"))?;
    // Fixed keys for the in-process endpoint, without touching the environment.
    let clients =
        Clients::new(drctl_aws::Credentials::Static { access_key: "bench".into(), secret_key: "bench".into() });
    let _warm = live::status(&clients, &topo, &[], std::time::SystemTime::now()).await;
    let mut times = Vec::new();
    let mut ok = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let report = live::status(&clients, &topo, &[], std::time::SystemTime::now()).await;
        times.push(t.elapsed());
        ok = report.datastores.iter().filter(|d| d.error.is_none() && d.rpo_s == Some(0.0)).count();
    }
    println!(
        "status pass over {datastores} s3 datastores ({} listings, in-process endpoint): median {:.1} ms ({ok} measured in sync), peak {} MiB",
        datastores * 2,
        median(times).as_secs_f64() * 1e3,
        peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
    );
    Ok(Outcome::Done)
}

/// One readiness evaluation of `datastores` S3 datastores and `services`
/// services with health URLs over 3 zones, every endpoint answering after
/// `delay` (ten endpoints for each kind, as an estate has many hosts).
pub async fn readiness(datastores: usize, services: usize, delay: Duration, runs: usize) -> Result<Outcome, Failure> {
    use drctl_control::live::Clients;
    use drctl_control::readiness;
    let (mut ports, mut _endpoints) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (port, endpoint) = slow_endpoint(delay).await.map_err(anyhow::Error::from)?;
        ports.push(port);
        _endpoints.push(endpoint);
    }
    let zones = ["az1", "az2", "az3"];
    let mut yaml = String::from("version: 1\nname: bench\nzones: [ { name: az1, region: r1 }, { name: az2, region: r1 }, { name: az3, region: r1 } ]\nobjectives: { t0: { rpo: 1m, rto: 1h } }\ndatastores:\n");
    for i in 0..datastores {
        let (p, r) = (zones[i % 3], zones[(i + 1) % 3]);
        yaml.push_str(&format!(
            "  - {{ name: s{i}, kind: s3, tier: t0, endpoint: \"http://127.0.0.1:{}\", primary: {{ zone: {p}, bucket: b{i}-{p} }}, replicas: [ {{ zone: {r}, bucket: b{i}-{r} }} ], replication: {{ by: drctl, every: 1m }} }}\n",
            ports[i % 10]
        ));
    }
    yaml.push_str("services:\n");
    for i in 0..services {
        let deps = if datastores > 0 { format!("s{}", i % datastores) } else { String::new() };
        yaml.push_str(&format!(
            "  - {{ name: svc{i}, tier: t0, zones: [az1, az2, az3], depends_on: [{deps}], health: {{ url: \"http://127.0.0.1:{}/health/{i}\" }} }}\n",
            ports[10 + i % 10]
        ));
    }
    let topo = drctl_core::load_str(&yaml, Path::new("bench.yaml"))
        .topology
        .ok_or_else(|| anyhow::anyhow!("bench topology invalid"))?;
    let dir = std::env::temp_dir().join(format!("drctl-bench-readiness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state =
        drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).map_err(anyhow::Error::from)?;
    let clients =
        Clients::new(drctl_aws::Credentials::Static { access_key: "bench".into(), secret_key: "bench".into() });
    let opts = readiness::Options::default();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = readiness::evaluate(&topo, &*state, &clients, &opts, std::time::SystemTime::now(), None, &[]).await;
        times.push(t.elapsed());
        last = Some(r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let r = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
    let (errors, warnings) = r.counts();
    println!(
        "readiness evaluation of {} zones, {datastores} s3 datastores and {services} services (endpoints answering after {} ms, {} per endpoint at once): median {:.0} ms over {runs} runs; {} of {} scopes ready, {errors} errors, {warnings} warnings; peak {} MiB",
        r.scopes.len(),
        delay.as_millis(),
        opts.per_endpoint,
        median(times).as_secs_f64() * 1e3,
        r.scopes.iter().filter(|s| s.ready).count(),
        r.scopes.len(),
        peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
    );
    if errors > 0 {
        if let Some(f) = r.scopes.iter().flat_map(|s| &s.findings).find(|f| f.severity == readiness::Severity::Error) {
            println!("first error: {} [{}] {}", f.entity, f.check, f.message);
        }
    }
    Ok(Outcome::Done)
}

/// Actions that do nothing: what is left is the engine and its journal.
struct Noop;

impl drctl_engine::Actions for Noop {
    fn run<'a>(
        &'a self,
        _execution: &'a str,
        _attempt: u32,
        _step: &'a drctl_engine::StepSpec,
    ) -> futures::future::BoxFuture<'a, Result<drctl_engine::Note, drctl_engine::ActionError>> {
        Box::pin(async { Ok(None) })
    }
}

pub async fn engine(entities: usize, parallel: usize, etcd: Option<String>) -> Result<Outcome, Failure> {
    use drctl_control::failover::{self, Declaration};
    use std::sync::Arc;
    let yaml = synth::topology_yaml(entities, 7);
    let topo =
        drctl_core::load_str(&yaml, Path::new("bench.yaml")).topology.ok_or_else(|| anyhow::anyhow!("invalid"))?;
    let scope = Scope { zones: vec!["az1".into()], ..Scope::default() };
    let plan = plan_with(&topo, &scope, &Observations::default(), Some(parallel), Policy::Prioritised)
        .map_err(anyhow::Error::from)?;
    let mut specs = failover::steps(&topo, &plan, "bench");
    for s in &mut specs {
        s.action = "noop".into();
    }
    let dir = std::env::temp_dir().join(format!("drctl-bench-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (state, journal) = match &etcd {
        Some(url) => (crate::context::open_state(url)?, "etcd journal"),
        None => (
            drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).map_err(anyhow::Error::from)?,
            "durable SQLite journal",
        ),
    };
    // Its own execution id, so runs on a shared etcd never collide.
    let id = format!("bench-{}", failover::new_id());
    let decl = Declaration {
        zones: scope.zones.clone(),
        regions: vec![],
        targets: vec![],
        reason: "bench".into(),
        overrides: Default::default(),
        parallel: Some(parallel),
    };
    let prepared = failover::Prepared { plan, specs: specs.clone(), checks: vec![] };
    failover::create(&*state, &id, &decl, &prepared, std::time::SystemTime::now(), "bench")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = drctl_engine::Engine::new(state.clone(), Arc::new(Noop), Some(parallel));
    let t = Instant::now();
    let ended = engine.run(&id, &specs).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let wall = t.elapsed();
    // The journal alone: one durable transition, repeated.
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        let tr = drctl_state::journal::Transition {
            at: std::time::SystemTime::now(),
            state: drctl_state::journal::StepState::Succeeded,
            attempts: 1,
            started_at: None,
            finished_at: None,
            error: None,
            note: None,
            ran_by: None,
        };
        state.transition(&id, i % specs.len(), "x", &tr).map_err(anyhow::Error::from)?;
    }
    let per_write = t.elapsed() / n as u32;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "engine: {} no-op steps (--parallel {parallel}, {journal}, {} transitions): {:.1} ms in all, {:.0} µs per step ({ended:?}); one journal transition: {:.0} µs",
        specs.len(),
        specs.len() * 2,
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / specs.len().max(1) as f64,
        per_write.as_secs_f64() * 1e6
    );
    Ok(Outcome::Done)
}

/// The lab zone-outage drill, several times: detection, RTO and lost
/// writes, each run on a fresh lab.
pub async fn drill(experiment: &Path, runs: usize, base_port: u16) -> Result<Outcome, Failure> {
    let exp = drctl_core::chaos::load(experiment)
        .map_err(|d| Failure::bad_input(d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n")))?;
    println!("{} on a fresh lab, {runs} runs (seconds; lost writes counted from the workload)", exp.name);
    println!(
        "{:>3}  {:>8}  {:>8}  {:>9}  {:>11}  {:>9}  {:>10}  {:>12}  {:>11}  {:>9}  {:>10}",
        "run",
        "detect",
        "declare",
        "RTO decl",
        "RTO fault",
        "pg lag",
        "pg lost",
        "pg writable",
        "split-brain",
        "s3 lag",
        "s3 lost"
    );
    let dir = std::env::temp_dir().join(format!("drctl-bench-drill-{}", std::process::id()));
    let mut fault_rtos = Vec::new();
    for run in 1..=runs {
        let state = crate::lab::fresh_state(&dir)?;
        let lab =
            drctl_lab::lab::Lab::start(drctl_lab::lab::Options { dir: dir.clone(), base_port, state: state.clone() })
                .await
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
        let loaded = drctl_core::load(&lab.manifest.topology);
        let topology = loaded.topology.ok_or_else(|| anyhow::anyhow!("the lab topology did not load"))?;
        let cancel = drctl_runtime::CancellationToken::new();
        let report = drctl_drill::drill::run(drctl_drill::drill::Options {
            topology: std::sync::Arc::new(topology),
            experiment: exp.clone(),
            state,
            clients: crate::context::clients(
                &crate::context::Context::new(drctl_state::DEFAULT_URL.into()).lab_wiring(&dir),
            ),
            lab: Some(drctl_lab_api::LabClient::new(&lab.manifest.control)),
            parallel: None,
            steady_timeout: Duration::from_secs(20),
            clock: std::sync::Arc::new(drctl_runtime::SystemClock),
            cancel,
            say: Box::new(|_| {}),
            controllers: Vec::new(),
            token: None,
            id: None,
        })
        .await
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
        lab.stop().await;
        let worst = |f: fn(&drctl_drill::drill::ServiceResult) -> Option<f64>| {
            report
                .services
                .iter()
                .filter(|s| s.affected)
                .filter_map(f)
                .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))))
        };
        let ds = |name: &str| report.datastores.iter().find(|d| d.name == name);
        let show = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |x| format!("{x:.2}"));
        let lost = |name: &str| ds(name).and_then(|d| d.lost_writes).map_or_else(|| "—".to_string(), |n| n.to_string());
        let rto_fault = worst(|s| s.rto_from_fault_s);
        if let Some(r) = rto_fault {
            fault_rtos.push(r);
        }
        let count = |v: Option<u64>| v.map_or_else(|| "—".to_string(), |n| n.to_string());
        println!(
            "{run:>3}  {:>8}  {:>8}  {:>9}  {:>11}  {:>9}  {:>10}  {:>12}  {:>11}  {:>9}  {:>10}{}",
            show(report.detected_at_s),
            show(report.declared_at_s),
            show(worst(|s| s.rto_s)),
            show(rto_fault),
            show(ds("orders-db").and_then(|d| d.lag_before_fault_s)),
            lost("orders-db"),
            count(ds("orders-db").and_then(|d| d.writable_primaries_max)),
            count(ds("orders-db").and_then(|d| d.split_brain_writes)),
            show(ds("assets").and_then(|d| d.lag_before_fault_s)),
            lost("assets"),
            if report.safe { String::new() } else { format!("  UNSAFE: {}", report.safety_violations.join("; ")) },
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    fault_rtos.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (fault_rtos.first(), fault_rtos.last()) {
        println!(
            "RTO from the fault (detection included): min {min:.2}s, median {:.2}s, max {max:.2}s",
            fault_rtos[fault_rtos.len() / 2]
        );
    }
    Ok(Outcome::Done)
}

/// The p-th percentile (0..=100) of some durations.
fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// A controller (this binary, `serve`, on loopback) flooded from
/// 127.0.0.1 with idle and trickling connections while another address,
/// 127.0.0.2, reads the page and the status JSON: what an attacker on one
/// address costs everyone else.
pub async fn connections(idle: usize, trickling: usize, probes: usize, per_address: usize) -> Result<Outcome, Failure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("drctl-bench-connections-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(anyhow::Error::from)?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(anyhow::Error::from)?;
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nname: bench\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             datastores:\n  - name: db\n    kind: postgres\n    primary: {{ zone: az1, url: \"postgres://x@127.0.0.1:{}/x\" }}\n\
             services:\n  - {{ name: web, zones: [az1, az2], depends_on: [db] }}\n",
            dead.port()
        ),
    )
    .map_err(anyhow::Error::from)?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(anyhow::Error::from)?.port();
    let exe = std::env::current_exe().map_err(anyhow::Error::from)?;
    let mut server = tokio::process::Command::new(exe)
        .current_dir(&dir)
        .env("DRCTL_STATE", "sqlite://.drctl/state.db")
        .args(["serve", "-f", "drctl.yaml", "--rate-limit", "0", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--max-connections-per-address", &per_address.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(anyhow::Error::from)?;
    let target: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let up = Instant::now();
    while tokio::net::TcpStream::connect(target).await.is_err() {
        if up.elapsed() > Duration::from_secs(30) {
            return Err(Failure::Runtime(anyhow::anyhow!("the controller did not listen within 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from = move |ip: [u8; 4]| async move {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(std::net::SocketAddr::from((ip, 0)))?;
        sock.connect(target).await
    };
    // The probe, one request per connection (a page reader, a monitor).
    let probe = move |path: &'static str| async move {
        let started = Instant::now();
        let mut c = tokio::time::timeout(Duration::from_secs(10), from([127, 0, 0, 2])).await??;
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await??;
        if !buf.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "{path} answered {}",
                String::from_utf8_lossy(&buf[..buf.len().min(12)])
            )));
        }
        Ok::<Duration, std::io::Error>(started.elapsed())
    };
    let measure = move |label: &'static str| async move {
        let mut out = Vec::new();
        for path in ["/", "/api/v1/status"] {
            let mut times = Vec::new();
            let mut failed = 0;
            for _ in 0..probes {
                match probe(path).await {
                    Ok(t) => times.push(t),
                    Err(_) => failed += 1,
                }
            }
            out.push((label, path, percentile(times.clone(), 50.0), percentile(times, 99.0), failed));
        }
        out
    };
    let mut rows = measure("quiet").await;

    // The flood: idle sockets that never speak, and sockets that send a
    // request's headers a byte a second, all from 127.0.0.1.
    let stop = drctl_runtime::CancellationToken::new();
    let mut held = Vec::new();
    let mut refused = 0usize;
    for _ in 0..idle {
        match from([127, 0, 0, 1]).await {
            Ok(c) => held.push(c),
            Err(_) => refused += 1,
        }
    }
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..trickling {
        let stop = stop.clone();
        tricklers.spawn(async move {
            let Ok(mut c) = from([127, 0, 0, 1]).await else { return };
            for b in b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
                if c.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.extend(measure("flooded").await);
    stop.cancel();
    while tricklers.join_next().await.is_some() {}
    drop(held);
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "flood from 127.0.0.1: {idle} idle + {trickling} trickling connections ({refused} refused at connect); probes from 127.0.0.2, {probes} per path, one connection each; --max-connections-per-address {per_address}"
    );
    println!("{:<8} {:<16} {:>10} {:>10} {:>7}", "load", "path", "p50 ms", "p99 ms", "failed");
    let mut ok = true;
    for (label, path, p50, p99, failed) in rows {
        println!(
            "{:<8} {:<16} {:>10.1} {:>10.1} {:>7}",
            label,
            path,
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            failed
        );
        ok &= failed == 0 && p99 < Duration::from_millis(100);
    }
    Ok(if ok { Outcome::Done } else { Outcome::ObjectiveMissed })
}

/// A topology of `n` zones and `n` entities (half datastores, each with a
/// replica in the next zone, half services on two zones depending on two
/// datastores, and one service on every zone with a health URL for each):
/// what a generator writes for a very large estate.
fn wide_topology(n: usize) -> String {
    use std::fmt::Write;
    let half = (n / 2).max(1);
    let zones = n.max(2);
    let mut s = String::with_capacity(n * 200);
    s.push_str("version: 1\nname: wide\nzones:\n");
    for z in 0..zones {
        let _ = writeln!(s, "  - {{ name: zone-{z}, region: region-{} }}", z / 3);
    }
    s.push_str("objectives:\n  tier-0: { rpo: 5s, rto: 2m }\n  tier-1: { rpo: 1m, rto: 15m }\ndatastores:\n");
    for i in 0..half {
        let (z, r) = (i % zones, (i + 1) % zones);
        let _ = writeln!(
            s,
            "  - name: db-{i}\n    kind: postgres\n    primary: {{ zone: zone-{z}, url: \"postgres://app@db-{i}.zone-{z}.internal:5432/app\" }}\n    replicas: [ {{ zone: zone-{r}, url: \"postgres://app@db-{i}.zone-{r}.internal:5432/app\" }} ]"
        );
    }
    s.push_str("services:\n");
    for i in 0..half {
        let (z, r) = (i % zones, (i + 1) % zones);
        let tier = if i % 4 == 0 { "tier-0" } else { "tier-1" };
        let _ = writeln!(
            s,
            "  - {{ name: svc-{i}, tier: {tier}, zones: [zone-{z}, zone-{r}], depends_on: [db-{i}, db-{}] }}",
            (i * 7 + 1) % half
        );
    }
    // One service on every zone, with a health URL per zone: the widest
    // lists and mappings a file can hold.
    s.push_str(
        "  - name: edge
    zones: [",
    );
    for z in 0..zones {
        let _ = write!(s, "{}zone-{z}", if z == 0 { "" } else { ", " });
    }
    s.push_str(
        "]
    health:
      zones:
",
    );
    for z in 0..zones {
        let _ = writeln!(s, "        zone-{z}: http://edge.zone-{z}.internal/health");
    }
    s
}

/// `drctl bench validate`: reading and checking topologies of `n` zones
/// and `n` entities for each size; exits 3 when the time per item at the
/// largest size is more than three times the smallest's (not linear).
pub fn validate(sizes: &[usize], runs: usize) -> Result<Outcome, Failure> {
    println!("parse + validate of a topology of N zones and N entities (half datastores, half services, one service on every zone); median of {runs} runs");
    println!("{:>9}  {:>9}  {:>9}  {:>11}  {:>8}", "N", "MiB", "time", "µs per N", "peak MiB");
    let mut per_item = Vec::new();
    for &n in sizes {
        let src = wide_topology(n);
        if src.len() as u64 > drctl_core::yaml::MAX_FILE_BYTES {
            return Err(Failure::bad_input(format!(
                "{n} zones and entities make a {} MiB file, over the {} MiB the loader reads: choose a smaller size",
                src.len() >> 20,
                drctl_core::yaml::MAX_FILE_BYTES >> 20
            )));
        }
        let mut times = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let loaded = drctl_core::load_str(&src, Path::new("wide.yaml"));
            times.push(t0.elapsed());
            if loaded.topology.is_none() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "the generated topology did not validate: {:?}",
                    loaded.diagnostics.first()
                )));
            }
        }
        let t = median(times);
        let us = t.as_secs_f64() * 1e6 / n.max(1) as f64;
        per_item.push(us);
        println!(
            "{:>9}  {:>9.1}  {:>7.0}ms  {:>11.2}  {:>8}",
            n,
            src.len() as f64 / (1024.0 * 1024.0),
            t.as_secs_f64() * 1e3,
            us,
            peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
        );
    }
    let linear = match (per_item.first(), per_item.last()) {
        (Some(first), Some(last)) => *last <= 3.0 * first,
        _ => true,
    };
    Ok(if linear { Outcome::Done } else { Outcome::ObjectiveMissed })
}

/// The resident memory of process `pid` now, in MiB (Linux only).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One HTTP/1.1 request from loopback address `from` on a new
/// connection; answers the status code and the body.
async fn request_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
    head: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(std::net::SocketAddr::from((from, 0)))?;
    let mut c = tokio::time::timeout(Duration::from_secs(30), sock.connect(to)).await??;
    // A GET says nothing of a body: one with a length is a write to the API.
    let length = if head.starts_with("GET ") { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    let req = format!("{head}Host: bench\r\nConnection: close\r\n{length}\r\n{body}");
    c.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// An SMTP server that takes every message and keeps none (the
/// confirmation mails of the flood go somewhere real, over TCP).
async fn smtp_sink(listener: tokio::net::TcpListener, stop: drctl_runtime::CancellationToken) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (sock, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.cancelled() => break,
        };
        conns.spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            if w.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                return;
            }
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    b"250 kept nowhere\r\n"
                } else {
                    match line.get(..4).map(|v| v.to_ascii_uppercase()).as_deref() {
                        Some("EHLO") => b"250-sink\r\n250 8BITMIME\r\n",
                        Some("DATA") => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        Some("QUIT") => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    }
                };
                if w.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
    conns.abort_all();
}

/// A webhook receiver that notes when each delivery arrives.
async fn hook_sink(
    listener: tokio::net::TcpListener,
    arrived: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    stop: drctl_runtime::CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (mut sock, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.cancelled() => break,
        };
        let arrived = arrived.clone();
        conns.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = Vec::new();
            // The headers, then as much body as they announce.
            loop {
                let Ok(n) = sock.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let want = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= want {
                        break;
                    }
                }
            }
            arrived.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
            let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
        });
    }
    conns.abort_all();
}

/// `drctl bench subscribe`: a controller (this binary, `serve`, on
/// loopback, its e-mail going to an SMTP sink) flooded with `POST
/// /subscribe` from `networks` IPv4 /24s of 127.0.0.0/8, `per_network`
/// addresses each, for at most `seconds`; meanwhile a viewer reads the
/// page and `/api/v1/incidents` from 127.0.0.2 and an operator opens
/// incidents a confirmed webhook subscriber is told of. Reports what was
/// accepted and refused, the pending subscriptions left, the viewer's
/// p99, the subscriber's delay and the controller's resident memory.
/// Exits 3 when the viewer's p99 is 1 s or more, a notification took 10 s
/// or more, or the pending subscriptions passed the cap.
pub async fn subscribe(
    networks: usize,
    per_network: usize,
    seconds: u64,
    concurrency: usize,
) -> Result<Outcome, Failure> {
    let dir = subscribe_folder()?;
    let exe = std::env::current_exe().map_err(rt)?;
    let (viewer, operator) =
        (create_token(&exe, &dir, "viewer", "viewer")?, create_token(&exe, &dir, "operator", "operator")?);

    let stop = drctl_runtime::CancellationToken::new();
    let mut sinks = Sinks::start(&stop).await?;
    let (mut server, pid, target) = start_controller(&exe, &dir, sinks.smtp_port).await?;
    let (viewer_ip, operator_ip) = (std::net::Ipv4Addr::new(127, 0, 0, 2), std::net::Ipv4Addr::new(127, 0, 0, 3));
    subscribe_webhook(operator_ip, target, sinks.hook_port).await?;
    // Let the controller settle (its first samples) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mib(pid);

    let viewing = stop.child_token();
    let viewer_task = spawn_viewer(viewing.clone(), viewer_ip, target, viewer.clone());
    let operator_task = spawn_operator(viewing.clone(), operator_ip, target, sinks.arrived.clone(), &operator);
    let flood = flood_subscriptions(target, pid, networks, per_network, seconds, concurrency, rss_before).await?;
    // One more incident after the flood: its delivery waits for nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    viewing.cancel();
    let (page, api, view_failed) = viewer_task.await.map_err(|e| Failure::Runtime(e.into()))?;
    let delays = operator_task.await.map_err(|e| Failure::Runtime(e.into()))?;
    let rss_after = rss_mib(pid);
    let pending = pending_subscriptions(&exe, &dir)?;
    stop.cancel();
    let _ = server.kill().await;
    while sinks.tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_dir_all(&dir);

    let measured = Measured { flood, pending, page, api, view_failed, delays, rss_before, rss_after };
    Ok(measured.report(networks, per_network, concurrency))
}

fn rt(e: std::io::Error) -> Failure {
    Failure::Runtime(e.into())
}

/// A fresh folder with a topology whose one datastore is a port nobody
/// listens on: the controller has something to sample and nothing to reach.
fn subscribe_folder() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("drctl-bench-subscribe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(rt)?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(rt)?;
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nname: bench\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             datastores:\n  - name: db\n    kind: postgres\n    primary: {{ zone: az1, url: \"postgres://x@127.0.0.1:{}/x\" }}\n\
             services:\n  - {{ name: web, zones: [az1, az2], depends_on: [db] }}\n",
            dead.port()
        ),
    )
    .map_err(rt)?;
    Ok(dir)
}

/// This binary, run in the bench's folder against its state.
fn drctl_in(exe: &Path, dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(exe);
    c.current_dir(dir).env("DRCTL_STATE", "sqlite://.drctl/state.db");
    c
}

/// `drctl token create` in the bench's folder, against its state.
fn create_token(exe: &Path, dir: &Path, name: &str, role: &str) -> Result<String, Failure> {
    let out = drctl_in(exe, dir).args(["token", "create", "--name", name, "--role", role]).output().map_err(rt)?;
    if !out.status.success() {
        return Err(Failure::Runtime(anyhow::anyhow!("token create: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// How many subscriptions are still pending, from `drctl subscriptions list`.
fn pending_subscriptions(exe: &Path, dir: &Path) -> Result<usize, Failure> {
    let out = drctl_in(exe, dir).args(["subscriptions", "list", "--output", "json"]).output().map_err(rt)?;
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(listed.iter().filter(|s| s["state"] == "pending").count())
}

/// Where the controller's mail and webhooks go, and when each webhook
/// delivery arrived.
struct Sinks {
    smtp_port: u16,
    hook_port: u16,
    arrived: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    tasks: tokio::task::JoinSet<()>,
}

impl Sinks {
    async fn start(stop: &drctl_runtime::CancellationToken) -> Result<Sinks, Failure> {
        let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(rt)?;
        let smtp_port = smtp.local_addr().map_err(rt)?.port();
        let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(rt)?;
        let hook_port = hook.local_addr().map_err(rt)?.port();
        let arrived = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(smtp_sink(smtp, stop.clone()));
        tasks.spawn(hook_sink(hook, arrived.clone(), stop.clone()));
        Ok(Sinks { smtp_port, hook_port, arrived, tasks })
    }
}

/// `drctl serve` on a free loopback port, its mail to the SMTP sink;
/// returns once it listens (its process, pid and address).
async fn start_controller(
    exe: &Path,
    dir: &Path,
    smtp_port: u16,
) -> Result<(tokio::process::Child, u32, std::net::SocketAddr), Failure> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(rt)?.port();
    let server = tokio::process::Command::new(exe)
        .current_dir(dir)
        .env("DRCTL_STATE", "sqlite://.drctl/state.db")
        .args(["serve", "-f", "drctl.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--smtp", &format!("smtp://127.0.0.1:{smtp_port}"), "--allow-private-webhooks"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(rt)?;
    let pid = server.id().unwrap_or_default();
    let target: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let up = Instant::now();
    while tokio::net::TcpStream::connect(target).await.is_err() {
        if up.elapsed() > Duration::from_secs(30) {
            return Err(Failure::Runtime(anyhow::anyhow!("the controller did not listen within 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((server, pid, target))
}

/// The confirmed subscriber: a webhook, active at once.
async fn subscribe_webhook(
    operator_ip: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
    hook_port: u16,
) -> Result<(), Failure> {
    let (status, body) = request_from(
        operator_ip,
        target,
        "POST /api/v1/subscriptions HTTP/1.1\r\nContent-Type: application/json\r\n",
        &format!("{{\"webhook\": \"http://127.0.0.1:{hook_port}/hook\"}}"),
    )
    .await
    .map_err(rt)?;
    if status != 201 {
        return Err(Failure::Runtime(anyhow::anyhow!("the webhook subscription answered {status}: {body}")));
    }
    Ok(())
}

/// The viewer: the page and the incidents, one request after another,
/// until `viewing` is cancelled; their times and the failed reads.
fn spawn_viewer(
    viewing: drctl_runtime::CancellationToken,
    viewer_ip: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
    viewer: String,
) -> tokio::task::JoinHandle<(Vec<Duration>, Vec<Duration>, usize)> {
    tokio::spawn(async move {
        let (mut page, mut api, mut failed) = (Vec::new(), Vec::new(), 0usize);
        while !viewing.is_cancelled() {
            let t = Instant::now();
            match request_from(viewer_ip, target, "GET / HTTP/1.1\r\n", "").await {
                Ok((200, _)) => page.push(t.elapsed()),
                _ => failed += 1,
            }
            let t = Instant::now();
            let head = format!("GET /api/v1/incidents HTTP/1.1\r\nAuthorization: Bearer {viewer}\r\n");
            match request_from(viewer_ip, target, &head, "").await {
                Ok((200, _)) => api.push(t.elapsed()),
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (page, api, failed)
    })
}

/// The operator: an incident every few seconds, each one a delivery to
/// the webhook whose delay is measured.
fn spawn_operator(
    viewing: drctl_runtime::CancellationToken,
    operator_ip: std::net::Ipv4Addr,
    target: std::net::SocketAddr,
    arrived: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    operator: &str,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    let head = format!(
        "POST /api/v1/incidents HTTP/1.1\r\nAuthorization: Bearer {operator}\r\nContent-Type: application/json\r\n"
    );
    tokio::spawn(async move {
        let mut delays = Vec::new();
        let mut n = 0;
        while !viewing.is_cancelled() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = viewing.cancelled() => break,
            }
            n += 1;
            let before = arrived.lock().unwrap_or_else(|p| p.into_inner()).len();
            let body = format!("{{\"title\": \"Bench incident {n}\", \"status\": \"investigating\"}}");
            let Ok((201, _)) = request_from(operator_ip, target, &head, &body).await else { continue };
            delays.push(delivery_delay(&arrived, before).await);
        }
        delays
    })
}

/// How long after now the webhook delivery number `before` arrives (30 s
/// at most).
async fn delivery_delay(arrived: &std::sync::Mutex<Vec<Instant>>, before: usize) -> Duration {
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(30);
    loop {
        let got = arrived.lock().unwrap_or_else(|p| p.into_inner()).get(before).copied();
        if let Some(at) = got {
            return at.saturating_duration_since(opened);
        }
        if Instant::now() > deadline {
            return Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the flood sent and was answered, and the controller's peak memory.
struct FloodTally {
    sent: usize,
    total: usize,
    took: Duration,
    accepted: usize,
    limited: usize,
    other: usize,
    peak: f64,
}

/// The flood: every address of `networks` /24s sends one subscription
/// each, `concurrency` at once, for at most `seconds`.
async fn flood_subscriptions(
    target: std::net::SocketAddr,
    pid: u32,
    networks: usize,
    per_network: usize,
    seconds: u64,
    concurrency: usize,
    rss_before: Option<f64>,
) -> Result<FloodTally, Failure> {
    let started = Instant::now();
    let total = networks * per_network;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = std::sync::Arc::new(std::sync::Mutex::new(rss_before.unwrap_or(0.0)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (next, peak) = (next.clone(), peak.clone());
        workers.spawn(async move {
            let (mut accepted, mut limited, mut other) = (0usize, 0usize, 0usize);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || started.elapsed() > Duration::from_secs(seconds) {
                    break;
                }
                // Network n is 127.(1 + n / 256).(n % 256).0/24; host h+1 in it.
                let (n, h) = (i / per_network, i % per_network);
                let from = std::net::Ipv4Addr::new(127, 1 + (n / 256) as u8, (n % 256) as u8, 1 + h as u8);
                let body = format!("email=flood-{i}%40example.org&lang=en");
                let head = "POST /subscribe HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n";
                match request_from(from, target, head, &body).await {
                    Ok((200, _)) => accepted += 1,
                    Ok((429, _)) => limited += 1,
                    _ => other += 1,
                }
                if i % 200 == 0 {
                    if let Some(now) = rss_mib(pid) {
                        let mut p = peak.lock().unwrap_or_else(|p| p.into_inner());
                        *p = p.max(now);
                    }
                }
            }
            (accepted, limited, other)
        });
    }
    let (mut accepted, mut limited, mut other) = (0, 0, 0);
    while let Some(r) = workers.join_next().await {
        let (a, l, o) = r.map_err(|e| Failure::Runtime(e.into()))?;
        accepted += a;
        limited += l;
        other += o;
    }
    let took = started.elapsed();
    let sent = next.load(std::sync::atomic::Ordering::Relaxed).min(total);
    let peak = *peak.lock().unwrap_or_else(|p| p.into_inner());
    Ok(FloodTally { sent, total, took, accepted, limited, other, peak })
}

/// What one `bench subscribe` run measured.
struct Measured {
    flood: FloodTally,
    pending: usize,
    page: Vec<Duration>,
    api: Vec<Duration>,
    view_failed: usize,
    delays: Vec<Duration>,
    rss_before: Option<f64>,
    rss_after: Option<f64>,
}

impl Measured {
    /// Prints the numbers; the objectives are a viewer's p99 under 1 s, every
    /// notification within 10 s and the pending subscriptions within the cap.
    fn report(self, networks: usize, per_network: usize, concurrency: usize) -> Outcome {
        let Measured { flood, pending, page, api, view_failed, delays, rss_before, rss_after } = self;
        let FloodTally { sent, total, took, accepted, limited, other, peak } = flood;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mib = |m: Option<f64>| m.map_or("?".into(), |m| format!("{m:.0}"));
        println!(
            "flood: {sent} of {total} POST /subscribe ({networks} /24s of 127.0.0.0/8 × {per_network} addresses, one each, {concurrency} at once) in {:.1} s",
            took.as_secs_f64()
        );
        println!("answered: {accepted} accepted (200), {limited} refused (429), {other} other");
        println!("pending subscriptions after: {pending} (cap {})", drctl_state::audience::MAX_PENDING);
        println!(
            "viewer from 127.0.0.2 during the flood: GET / p50 {:.1} ms p99 {:.1} ms ({} reads); GET /api/v1/incidents p50 {:.1} ms p99 {:.1} ms ({} reads); {view_failed} failed",
            ms(percentile(page.clone(), 50.0)),
            ms(percentile(page.clone(), 99.0)),
            page.len(),
            ms(percentile(api.clone(), 50.0)),
            ms(percentile(api.clone(), 99.0)),
            api.len()
        );
        let worst = delays.iter().max().copied().unwrap_or_default();
        println!(
            "confirmed webhook subscriber: {} incidents opened during the flood, delivered after median {:.0} ms, at worst {:.0} ms",
            delays.len(),
            ms(percentile(delays.clone(), 50.0)),
            ms(worst)
        );
        println!(
            "controller resident memory (VmRSS): {} MiB before, {} MiB at most during, {} MiB after",
            mib(rss_before),
            mib(Some(peak)),
            mib(rss_after)
        );
        let ok = view_failed == 0
            && percentile(api, 99.0) < Duration::from_secs(1)
            && percentile(page, 99.0) < Duration::from_secs(1)
            && worst < Duration::from_secs(10)
            && pending <= drctl_state::audience::MAX_PENDING;
        if ok {
            Outcome::Done
        } else {
            Outcome::ObjectiveMissed
        }
    }
}
