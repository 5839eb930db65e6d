//! Assembling the lab and serving its control API.
//!
//! Layout (base port B, 24300 by default):
//!
//! | what | public address (through a fault proxy) | server itself |
//! |---|---|---|
//! | PostgreSQL, zone Z | 127.0.Z.1:B+32 | 127.0.Z.1:B+33 |
//! | S3 endpoint, zone Z | 127.0.Z.2:B+90 | 127.0.Z.2:B+91 |
//! | service i, zone Z | 127.0.Z.(10+i):B+80 | 127.0.Z.(10+i):B+81 |
//! | service i's front door | 127.0.0.1:B+60+i | |
//! | DNS (`lab.`, UDP) | 127.0.0.1:B+53 | |
//! | control API (HTTP) | 127.0.0.1:B | |
//! | PostgreSQL replication egress, zone Z to zone T | 127.0.Z.3:B+40+T | (the public address in T) |
//!
//! Every client (drctl, the services, the workload, PostgreSQL's own
//! replication) goes through the public addresses, so a fault injected at
//! a proxy is seen by all of them. Zone partitions are decided by the
//! proxies from the caller's address ([`crate::proxy::Partitions`]): the
//! workload writers and split-brain probes of zone Z connect from
//! 127.0.Z.100 and 127.0.Z.101, a standby replicates through its zone's
//! egress proxy, and drctl (127.0.0.1) is the controller's side. Fault
//! proxies rather than network namespaces: the lab runs anywhere without
//! root, in one process, and a partition is one switch that heals at once.
//! A partition refuses connections (a firewall's REJECT) rather than
//! dropping packets, so a drill measures drctl, not TCP's timeouts.
//!
//! Here: assembling and stopping the lab ([`Lab`]). Beside it:
//! `layout` (the addresses), `topology` (the files it writes for drctl),
//! `faults` (injecting, undoing, reconciling), `status` (what it reports,
//! the writes a zone lost) and `api` (its control API).

use crate::dns::{DnsServer, Records};
use crate::pg::PgServer;
use crate::proxy::{Partitions, Proxy, Route};
use crate::s3::S3Server;
use crate::service::{Dependency, Task};
use crate::workload::{self, Log, Loss};
use crate::Error;
use axum::extract::{Path as UrlPath, Query, State as AxState};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Json;
use drctl_control::live::Clients;
pub use drctl_lab_api::{FaultRequest, FaultStatus, Injected, LabClient, LabStatus, Manifest, MemberStatus};
use drctl_state::State;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod api;
mod faults;
mod layout;
mod status;
mod topology;

use api::*;
use faults::*;
pub use layout::*;
use status::*;
pub use topology::*;

struct PgMember {
    zone: u8,
    server: PgServer,
    proxy: Proxy,
}

struct S3Member {
    zone: u8,
    server: S3Server,
    proxy: Proxy,
}

struct ServiceInstance {
    service: usize,
    zone: u8,
    proxy: Proxy,
    _task: Task,
}

struct Inner {
    layout: Layout,
    dir: PathBuf,
    pg: Mutex<Vec<PgMember>>,
    s3: Vec<S3Member>,
    services: Vec<ServiceInstance>,
    _front_doors: Vec<Task>,
    dns: DnsServer,
    pg_log: Arc<Log>,
    s3_log: Arc<Log>,
    faults: Mutex<Vec<ActiveFault>>,
    next_fault: AtomicU64,
    /// The zone partitions every proxy obeys.
    partitions: Arc<Partitions>,
    /// The split-brain probes' rounds.
    probes: Arc<crate::safety::Probes>,
    /// Replication egress proxies: (from zone, to zone, proxy).
    egress: Vec<(u8, u8, Proxy)>,
    copying_paused: Arc<AtomicBool>,
    clients: Arc<Clients>,
    shutdown: tokio::sync::Notify,
    started_at: String,
    /// etcd members and controllers, per zone ([`Lab::adopt`]).
    procs: Mutex<Vec<crate::procs::RunningProcess>>,
}

/// A running lab. Dropping it stops everything it started.
pub struct Lab {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub manifest: Manifest,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Controllers first, then the etcd members they stand on.
        let mut procs = std::mem::take(&mut *self.inner.procs.lock().unwrap_or_else(|p| p.into_inner()));
        procs.sort_by_key(|p| p.spec.name.starts_with("etcd"));
        drop(procs);
        if let Ok(mut pg) = self.inner.pg.lock() {
            for m in pg.iter_mut() {
                m.server.stop();
            }
        }
        let _ = std::fs::remove_file(Manifest::path(&self.inner.dir));
        let _ = std::fs::remove_dir_all(&self.manifest.scratch);
    }
}

/// Options for [`Lab::start`].
pub struct Options {
    pub dir: PathBuf,
    pub base_port: u16,
    /// The state store the lab's replication job records into (shared with drctl's commands).
    pub state: Arc<State>,
}

fn pg_ctl_bin() -> Result<PathBuf, Error> {
    crate::pg::find_bin()
}

impl Lab {
    /// Starts everything, writes `drctl.yaml`, runbooks and `lab.json` into `dir`.
    pub async fn start(opts: Options) -> Result<Lab, Error> {
        let layout = Layout { base: opts.base_port };
        if opts.base_port < 1024 || opts.base_port > 65000 {
            return Err(Error::BadInput(format!("--base-port {} must be between 1024 and 65000", opts.base_port)));
        }
        let bin = pg_ctl_bin()?;
        if let Some(m) = Manifest::read(&opts.dir) {
            if m.alive() {
                return Err(Error::BadInput(format!(
                    "a lab already runs from {} (pid {}, control {}): `drctl lab down` first",
                    opts.dir.display(),
                    m.pid,
                    m.control
                )));
            }
        }
        // A lab just stopped in this process releases its listeners as its
        // tasks wind down: give them a moment before calling a port taken.
        let patience = std::time::Instant::now() + Duration::from_secs(3);
        for a in layout.every_tcp_address() {
            while std::net::TcpListener::bind(a).is_err() {
                if std::time::Instant::now() >= patience {
                    return Err(Error::BadInput(format!(
                        "{a} is already in use: another lab or program holds it. `drctl lab down`, or choose --base-port"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        std::fs::create_dir_all(opts.dir.join("runbooks"))
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", opts.dir.display())))?;
        let scratch = std::env::temp_dir().join(format!("drctl-lab-{}", opts.base_port));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", scratch.display())))?;
        crate::pg::hand_over(&scratch)?;

        // PostgreSQL: primary in lab-az1, standby in lab-az2, each behind its proxy.
        let partitions = Arc::new(Partitions::default());
        let route = Route { partitions: Some(partitions.clone()), source: None };
        let (pub1, priv1) = layout.pg(1);
        let (pub2, priv2) = layout.pg(2);
        let proxy1 =
            Proxy::start_with(pub1, priv1, route.clone()).await.map_err(|e| Error::Io(format!("{pub1}: {e}")))?;
        let proxy2 =
            Proxy::start_with(pub2, priv2, route.clone()).await.map_err(|e| Error::Io(format!("{pub2}: {e}")))?;
        // Replication between zones goes through each zone's egress.
        let mut egress = Vec::new();
        for (z, t) in [(1u8, 2u8), (2, 1)] {
            let at = layout.pg_egress(z, t);
            let from = Route { partitions: None, source: Some(zone_ip(z, 3)) };
            let proxy =
                Proxy::start_with(at, layout.pg(t).0, from).await.map_err(|e| Error::Io(format!("{at}: {e}")))?;
            egress.push((z, t, proxy));
        }
        let (b1, s1, b2) = (bin.clone(), scratch.clone(), bin.clone());
        let mut primary = tokio::task::spawn_blocking(move || {
            let mut p = PgServer::init_primary(&b1, "orders-db lab-az1", s1.join("pg-az1"), priv1)?;
            p.start(false)?;
            Ok::<_, Error>(p)
        })
        .await
        .map_err(|e| Error::Process(e.to_string()))??;
        {
            let setup = async {
                pg_session(priv1, "postgres").await?.batch_execute("CREATE DATABASE lab").await.map_err(pg_error)?;
                pg_session(priv1, "lab")
                    .await?
                    .batch_execute(
                        "CREATE TABLE workload (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
                         CREATE TABLE drctl_probe (id int PRIMARY KEY, at timestamptz)",
                    )
                    .await
                    .map_err(pg_error)
            };
            if let Err(e) = setup.await {
                primary.stop();
                return Err(Error::Process(format!("cannot create the lab database: {e}")));
            }
            // drctl reads the RPO exactly from the primary's WAL with
            // pg_walinspect (PostgreSQL 15+); without it, from bounds.
            if let Ok(c) = pg_session(priv1, "lab").await {
                let _ = c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect").await;
            }
        }
        let s2 = scratch.clone();
        let via = layout.pg_egress(2, 1);
        let standby = tokio::task::spawn_blocking(move || {
            let mut s = PgServer::init_standby(&b2, "orders-db lab-az2", s2.join("pg-az2"), priv2, via)?;
            s.start(false)?;
            Ok::<_, Error>(s)
        })
        .await
        .map_err(|e| Error::Process(e.to_string()))?;
        let standby = match standby {
            Ok(s) => s,
            Err(e) => {
                primary.stop();
                return Err(e);
            }
        };
        let pg = vec![
            PgMember { zone: 1, server: primary, proxy: proxy1 },
            PgMember { zone: 2, server: standby, proxy: proxy2 },
        ];

        // S3: one endpoint per zone, each with its zone's bucket.
        let mut s3 = Vec::new();
        for z in 1..=3u8 {
            let (public, private) = layout.s3(z);
            let root = opts.dir.join("s3").join(format!("az{z}"));
            let _ = std::fs::remove_dir_all(&root);
            let bucket = format!("lab-assets-az{z}");
            let server = S3Server::start(private, &root, &[&bucket]).await?;
            let proxy = Proxy::start_with(public, private, route.clone())
                .await
                .map_err(|e| Error::Io(format!("{public}: {e}")))?;
            s3.push(S3Member { zone: z, server, proxy });
        }

        // DNS records: each service answers with its first zone.
        let records: Records = Default::default();
        for (i, (name, _, zones, _)) in SERVICES.iter().enumerate() {
            let ip = match layout.service(zones[0], i).0.ip() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => unreachable!("the lab is IPv4"),
            };
            records.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{name}.{DNS_ZONE}"), (1, vec![ip]));
        }
        let dns = DnsServer::start(layout.dns(), DNS_ZONE, records)
            .await
            .map_err(|e| Error::Io(format!("DNS on {}: {e}", layout.dns())))?;

        // Topology and runbooks first: the services' S3 clients come from it.
        let topo_path = opts.dir.join(drctl_lab_api::TOPOLOGY_FILE);
        let fence_program = std::env::current_exe().ok();
        write(&topo_path, &topology_yaml(&layout, fence_program.as_deref()))?;
        write(&opts.dir.join("runbooks").join("payments.yaml"), &payments_runbook(&layout))?;
        let loaded = drctl_core::topology::load(&topo_path);
        let topo = loaded.topology.ok_or_else(|| {
            Error::Process(format!(
                "the lab's own topology does not validate (a bug): {}",
                loaded.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
            ))
        })?;
        // The lab's own clients sign with the lab's keys (its S3 servers check them).
        let clients = Arc::new(Clients::new(crate::credentials()));
        let assets = topo.entity_id("assets").expect("the lab has assets");
        let drctl_core::topology::EntitySpec::Datastore(assets_ds) = &topo.entity(assets).spec else {
            unreachable!("assets is a datastore")
        };
        let buckets = drctl_control::live::buckets(&clients, &topo, assets_ds).await;

        // Services: one instance per zone, each behind its proxy, and a front door.
        let mut services = Vec::new();
        let mut front_doors = Vec::new();
        for (i, (name, _, zones, deps)) in SERVICES.iter().enumerate() {
            for &z in zones.iter() {
                let mut needs = Vec::new();
                for d in deps.iter() {
                    match *d {
                        "orders-db" => needs
                            .push(Dependency::Postgres { name: "orders-db".into(), conninfo: layout.pg_conninfo() }),
                        "assets" => needs
                            .push(Dependency::S3 { name: "assets".into(), bucket: buckets[z as usize - 1].clone() }),
                        other => {
                            let j = SERVICES.iter().position(|s| s.0 == other).expect("a lab service");
                            needs.push(Dependency::Http {
                                name: other.into(),
                                url: format!("http://{}/health", layout.front_door(j)),
                            })
                        }
                    }
                }
                let (public, private) = layout.service(z, i);
                let task = crate::service::start_instance(private, name, ZONES[z as usize - 1], needs)
                    .await
                    .map_err(|e| Error::Io(format!("{private}: {e}")))?;
                let proxy = Proxy::start_with(public, private, route.clone())
                    .await
                    .map_err(|e| Error::Io(format!("{public}: {e}")))?;
                services.push(ServiceInstance { service: i, zone: z, proxy, _task: task });
            }
            let fd = crate::service::start_front_door(
                layout.front_door(i),
                layout.dns().to_string(),
                format!("{name}.{DNS_ZONE}"),
                layout.service(1, i).0.port(),
            )
            .await
            .map_err(|e| Error::Io(format!("{}: {e}", layout.front_door(i))))?;
            front_doors.push(fd);
        }

        let inner = Arc::new(Inner {
            layout,
            dir: opts.dir.clone(),
            pg: Mutex::new(pg),
            s3,
            services,
            _front_doors: front_doors,
            dns,
            pg_log: Default::default(),
            s3_log: Default::default(),
            faults: Mutex::new(Vec::new()),
            next_fault: AtomicU64::new(1),
            partitions,
            probes: Default::default(),
            egress,
            copying_paused: Arc::new(AtomicBool::new(false)),
            clients: clients.clone(),
            shutdown: tokio::sync::Notify::new(),
            started_at: drctl_core::text::now_for_humans(),
            procs: Mutex::new(Vec::new()),
        });

        let mut tasks = Vec::new();
        // A writer in each zone, through what it reaches from there; one sequence.
        let seq = Arc::new(AtomicU64::new(0));
        let pg_members: Vec<(String, SocketAddr)> = (1..=2u8).map(|z| (zone_name(z), layout.pg(z).0)).collect();
        for z in 1..=3u8 {
            let source = zone_ip(z, 100);
            tasks.push(tokio::spawn(workload::run_postgres(
                source,
                pg_members.clone(),
                seq.clone(),
                inner.pg_log.clone(),
            )));
        }
        // Each member probed from inside its own zone.
        let probed: Vec<(u8, String, SocketAddr)> = (1..=2u8).map(|z| (z, zone_name(z), layout.pg(z).0)).collect();
        tasks.push(tokio::spawn(crate::safety::run(probed, inner.probes.clone())));
        tasks.push(tokio::spawn(workload::run_s3(buckets.clone(), inner.s3_log.clone())));
        let topo = Arc::new(topo);
        // The sampler drctl's controller would run: every datastore measured
        // and recorded every second, from the controller's side (loopback),
        // into the lab's state. A declaration against the running lab, from
        // the CLI or a drill, then has the evidence a real one would have:
        // the standby's lag when the primary was last seen, and when it went dark.
        {
            let (clients, state, topo) = (clients.clone(), opts.state.clone(), topo.clone());
            tasks.push(tokio::spawn(async move {
                let every = Duration::from_secs(1);
                loop {
                    let at = std::time::SystemTime::now();
                    let placements = state.placements().unwrap_or_default();
                    let report = drctl_control::live::status(&clients, &topo, &placements, at).await;
                    if let Err(e) = drctl_control::live::record(&*state, &report, at) {
                        tracing::warn!(error = %e, "the lab could not record a sample");
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
        // The replication job drctl's controller runs for `assets`, through
        // the controller's own scheduler, on the topology's schedule; the
        // `replication-pause` fault holds it. A failed pass is logged.
        {
            let (clients, paused, state) = (clients.clone(), inner.copying_paused.clone(), opts.state.clone());
            let clock: Arc<dyn drctl_control::schedule::Clock> = Arc::new(drctl_control::schedule::SystemClock);
            tasks.push(tokio::spawn(async move {
                let held = |_: &str| paused.load(Ordering::SeqCst);
                let report = |name: &str, result: &Result<drctl_aws::s3::Summary, drctl_control::Error>| match result {
                    Err(e) => tracing::warn!(datastore = name, error = %e, "the lab's replication pass failed"),
                    Ok(s) if !s.errors.is_empty() => {
                        tracing::warn!(datastore = name, errors = %s.errors.join("; "), "the lab's replication pass left objects behind")
                    }
                    Ok(_) => {}
                };
                drctl_control::replicate::run_scheduled(
                    &clients,
                    &topo,
                    &*state,
                    &[assets],
                    &clock,
                    std::future::pending::<()>(),
                    &held,
                    &report,
                )
                .await;
            }));
        }
        let app = router(inner.clone());
        let listener = tokio::net::TcpListener::bind(layout.control())
            .await
            .map_err(|e| Error::Io(format!("control API on {}: {e}", layout.control())))?;
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));

        let manifest = Manifest {
            pid: std::process::id(),
            base_port: layout.base,
            control: layout.control().to_string(),
            dns: layout.dns().to_string(),
            topology: topo_path,
            started_at: inner.started_at.clone(),
            scratch,
            state: None,
            controllers: Vec::new(),
        };
        write(&Manifest::path(&opts.dir), &serde_json::to_string_pretty(&manifest).expect("serializable"))?;
        Ok(Lab { inner, tasks, manifest })
    }

    /// Stops everything and returns once no lab address is held any more
    /// (aborted tasks release their sockets as the runtime drops them).
    pub async fn stop(self) {
        let layout = self.inner.layout;
        drop(self);
        let until = std::time::Instant::now() + Duration::from_secs(5);
        for a in layout.every_tcp_address() {
            while std::net::TcpListener::bind(a).is_err() && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Records the controllers the lab runs and the state they share, in
    /// `lab.json`, so commands on the lab's topology find them.
    pub fn set_controllers(&mut self, state_url: &str, urls: Vec<String>) -> Result<(), Error> {
        self.manifest.state = Some(state_url.to_string());
        self.manifest.controllers = urls;
        write(&Manifest::path(&self.inner.dir), &serde_json::to_string_pretty(&self.manifest).expect("serializable"))
    }

    /// Runs `p` as part of its zone from now on: a zone outage kills it,
    /// healing starts it again; stopping the lab stops it.
    pub fn adopt(&self, p: crate::procs::RunningProcess) {
        self.inner.procs.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// Completes when `POST /shutdown` (or `drctl lab down`) asks the lab to stop.
    pub async fn shutdown_requested(&self) {
        self.inner.shutdown.notified().await
    }

    pub fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// Heals every fault (the lab stays up).
    pub async fn heal_all(&self) -> Vec<String> {
        heal_all(&self.inner).await
    }
}
