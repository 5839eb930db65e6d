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

pub const DEFAULT_BASE_PORT: u16 = 24300;
pub const ZONES: [&str; 3] = ["lab-az1", "lab-az2", "lab-az3"];
pub const DNS_ZONE: &str = "lab.";

/// The lab's services: name, tier, zones (1-based), dependencies.
const SERVICES: &[(&str, &str, &[u8], &[&str])] = &[
    ("payments", "tier-0", &[1, 2], &["orders-db"]),
    ("checkout", "tier-0", &[1, 2], &["payments", "orders-db", "assets"]),
    ("catalog", "tier-1", &[1, 2, 3], &["assets"]),
];

/// Addresses of everything, from the base port.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Layout {
    pub base: u16,
}

fn zone_ip(z: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, z, host))
}

impl Layout {
    pub fn control(&self) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base)
    }
    pub fn dns(&self) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base + 53)
    }
    pub fn pg(&self, z: u8) -> (SocketAddr, SocketAddr) {
        (SocketAddr::new(zone_ip(z, 1), self.base + 32), SocketAddr::new(zone_ip(z, 1), self.base + 33))
    }
    /// Where PostgreSQL in zone `z` reaches the member in zone `t` (its
    /// replication connection speaks for zone `z`).
    pub fn pg_egress(&self, z: u8, t: u8) -> SocketAddr {
        SocketAddr::new(zone_ip(z, 3), self.base + 40 + u16::from(t))
    }
    pub fn s3(&self, z: u8) -> (SocketAddr, SocketAddr) {
        (SocketAddr::new(zone_ip(z, 2), self.base + 90), SocketAddr::new(zone_ip(z, 2), self.base + 91))
    }
    pub fn service(&self, z: u8, i: usize) -> (SocketAddr, SocketAddr) {
        let ip = zone_ip(z, 10 + i as u8);
        (SocketAddr::new(ip, self.base + 80), SocketAddr::new(ip, self.base + 81))
    }
    pub fn front_door(&self, i: usize) -> SocketAddr {
        SocketAddr::new(zone_ip(0, 1), self.base + 60 + i as u16)
    }
    fn every_tcp_address(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.control()];
        for z in 1..=3 {
            let (a, b) = self.s3(z);
            all.extend([a, b]);
        }
        for z in 1..=2 {
            let (a, b) = self.pg(z);
            all.extend([a, b, self.pg_egress(z, 3 - z)]);
        }
        for (i, (_, _, zones, _)) in SERVICES.iter().enumerate() {
            all.push(self.front_door(i));
            for z in zones.iter() {
                let (a, b) = self.service(*z, i);
                all.extend([a, b]);
            }
        }
        all
    }
    pub fn pg_url(&self, z: u8) -> String {
        format!("postgres://postgres@{}/lab", self.pg(z).0)
    }
    pub fn pg_conninfo(&self) -> String {
        let (a1, a2) = (self.pg(1).0, self.pg(2).0);
        format!(
            "host={},{} port={},{} user=postgres dbname=lab target_session_attrs=read-write connect_timeout=1",
            a1.ip(),
            a2.ip(),
            a1.port(),
            a2.port()
        )
    }
    pub fn s3_url(&self, z: u8) -> String {
        format!("http://{}", self.s3(z).0)
    }
}

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

/// How to undo one fault.
enum Undo {
    Proxies(Vec<Arc<crate::proxy::ProxyFaults>>),
    /// Bring PostgreSQL back in these zones (as a standby when a primary
    /// runs elsewhere), and lift any power-off of them.
    Restart(Vec<u8>),
    /// Lift a partition (its id in [`Partitions`]).
    Partition(u64, Vec<u8>),
    ResumeReplay(Vec<u8>),
    ResumeCopying,
    S3Errors(Vec<u8>),
    /// Start the zone processes of these zones again.
    StartProcesses(Vec<u8>),
}

struct ActiveFault {
    id: u64,
    request: FaultRequest,
    hits: Vec<String>,
    undo: Vec<Undo>,
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
    _egress: Vec<Proxy>,
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
            egress
                .push(Proxy::start_with(at, layout.pg(t).0, from).await.map_err(|e| Error::Io(format!("{at}: {e}")))?);
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
        let topo_path = opts.dir.join("drctl.yaml");
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
            _egress: egress,
            copying_paused: Arc::new(AtomicBool::new(false)),
            clients: clients.clone(),
            shutdown: tokio::sync::Notify::new(),
            started_at: drctl_control::live::now_rfc3339(),
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
        // The replication job drctl's controller would run for `assets`.
        {
            let (clients, paused, state) = (clients.clone(), inner.copying_paused.clone(), opts.state.clone());
            let topo = Arc::new(topo);
            tasks.push(tokio::spawn(async move {
                let every = Duration::from_secs(1);
                let progress = drctl_aws::s3::NoProgress;
                loop {
                    if !paused.load(Ordering::SeqCst) {
                        let _ = drctl_control::replicate::run_once(&clients, &topo, assets, &*state, &progress).await;
                    }
                    tokio::time::sleep(every).await;
                }
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

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

/// The lab's topology, in the same format users write.
pub fn topology_yaml(l: &Layout, fence_program: Option<&Path>) -> String {
    // Each member's fence powers it off through the control API, out of band.
    let fence = |z: u8| match fence_program {
        Some(exe) => format!(
            ", fence: {{ command: [{}, lab, power-off, --control, \"{}\", --datastore, orders-db, --zone, {}] }}",
            serde_json::to_string(&exe.display().to_string()).unwrap_or_default(),
            l.control(),
            ZONES[z as usize - 1]
        ),
        None => String::new(),
    };
    let mut y = String::new();
    y.push_str("# Written by `drctl lab up`: the lab on loopback. Edit freely; `lab up` writes it anew.\n");
    y.push_str("version: 1\nname: lab\n\nzones:\n");
    for z in ZONES {
        y.push_str(&format!("  - {{ name: {z}, region: lab }}\n"));
    }
    y.push_str("\nobjectives:\n  tier-0: { rpo: 5s, rto: 30s }\n  tier-1: { rpo: 30s, rto: 2m }\n\n");
    y.push_str("contracts:\n  - customer: example-bank\n    services: [payments]\n    rpo: 2s\n    rto: 20s\n\n");
    y.push_str("datastores:\n");
    y.push_str(&format!(
        "  - name: orders-db\n    kind: postgres\n    primary: {{ zone: lab-az1, url: \"{}\"{} }}\n    replicas:\n      - {{ zone: lab-az2, url: \"{}\"{} }}\n    failover: {{ estimate: 3s, max_lag: 10s }}\n",
        l.pg_url(1),
        fence(1),
        l.pg_url(2),
        fence(2)
    ));
    y.push_str("  - name: assets\n    kind: s3\n");
    y.push_str(&format!("    primary: {{ zone: lab-az1, bucket: lab-assets-az1, endpoint: \"{}\" }}\n", l.s3_url(1)));
    y.push_str("    replicas:\n");
    for z in 2..=3 {
        y.push_str(&format!(
            "      - {{ zone: lab-az{z}, bucket: lab-assets-az{z}, endpoint: \"{}\" }}\n",
            l.s3_url(z)
        ));
    }
    y.push_str("    replication: { by: drctl, every: 1s }\n    failover: { estimate: 2s }\n\n");
    y.push_str("services:\n");
    for (i, (name, tier, zones, deps)) in SERVICES.iter().enumerate() {
        let zone_list: Vec<&str> = zones.iter().map(|z| ZONES[*z as usize - 1]).collect();
        y.push_str(&format!(
            "  - name: {name}\n    tier: {tier}\n    zones: [{}]\n    depends_on: [{}]\n",
            zone_list.join(", "),
            deps.join(", ")
        ));
        y.push_str(&format!("    health: {{ url: \"http://{}/health\", timeout: 2s }}\n", l.front_door(i)));
        y.push_str(&format!(
            "    route:\n      kind: lab-dns\n      server: \"{}\"\n      name: {name}.{DNS_ZONE}\n      type: A\n      ttl: 1\n      records: {{ {} }}\n",
            l.dns(),
            zones
                .iter()
                .map(|z| format!("{}: {}", ZONES[*z as usize - 1], l.service(*z, i).0.ip()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if *name == "payments" {
            y.push_str("    failover: { runbook: runbooks/payments.yaml }\n");
        } else {
            y.push_str("    failover: { estimate: 2s }\n");
        }
    }
    y
}

fn payments_runbook(l: &Layout) -> String {
    format!(
        "# Written by `drctl lab up`. The payments service's own failover: switch\n\
         # its DNS record, then prove it healthy through its front door.\n\
         name: payments-failover\n\
         steps:\n\
         \x20 - id: route\n\
         \x20   action: dns.failover\n\
         \x20   with: {{ service: payments }}\n\
         \x20   estimate: 1s\n\
         \x20 - id: verify\n\
         \x20   action: http.health\n\
         \x20   with: {{ url: \"http://{}/health\", within: 20s }}\n\
         \x20   needs: [route]\n\
         \x20   estimate: 1s\n",
        l.front_door(0)
    )
}

fn zone_name(z: u8) -> String {
    ZONES[z as usize - 1].to_string()
}

async fn status(inner: &Inner) -> LabStatus {
    let mut members = Vec::new();
    let cut = inner.partitions.zones();
    let with_cut = |zone: u8, faults: String| {
        if !cut.contains(&zone) {
            return faults;
        }
        [faults, "partitioned".into()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ")
    };
    {
        let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
        for m in pg.iter_mut() {
            let running = m.server.running();
            members.push(MemberStatus {
                what: format!(
                    "postgres (orders-db){}",
                    m.server.pid().map(|p| format!(" pid {p}")).unwrap_or_default()
                ),
                zone: zone_name(m.zone),
                address: m.proxy.listen.to_string(),
                up: running && !m.proxy.faults.is_down(),
                faults: with_cut(m.zone, m.proxy.faults.describe()),
            });
        }
    }
    for m in &inner.s3 {
        let rate = m.server.error_ppm.load(Ordering::SeqCst);
        let mut f = m.proxy.faults.describe();
        if rate > 0 {
            f = [f, format!("503 on {:.0}%", rate as f64 / 1e4)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
        }
        members.push(MemberStatus {
            what: format!("s3 (assets, bucket lab-assets-az{})", m.zone),
            zone: zone_name(m.zone),
            address: format!("http://{}", m.proxy.listen),
            up: !m.proxy.faults.is_down(),
            faults: with_cut(m.zone, f),
        });
    }
    for s in &inner.services {
        members.push(MemberStatus {
            what: format!("service {}", SERVICES[s.service].0),
            zone: zone_name(s.zone),
            address: format!("http://{}", s.proxy.listen),
            up: !s.proxy.faults.is_down(),
            faults: with_cut(s.zone, s.proxy.faults.describe()),
        });
    }
    let faults = inner
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|f| FaultStatus { id: f.id, fault: f.request.clone(), hits: f.hits.clone() })
        .collect();
    LabStatus {
        started_at: inner.started_at.clone(),
        dns: inner.layout.dns().to_string(),
        members,
        faults,
        workload: serde_json::json!({
            "orders-db": inner.pg_log.summary(),
            "assets": inner.s3_log.summary(),
            "copying_paused": inner.copying_paused.load(Ordering::SeqCst),
        }),
    }
}

/// A session on a lab PostgreSQL server itself (not through its fault proxy).
async fn pg_session(addr: SocketAddr, db: &str) -> Result<tokio_postgres::Client, Error> {
    let conninfo = format!("host={} port={} user=postgres dbname={db}", addr.ip(), addr.port());
    drctl_providers::postgres::connect(&conninfo, Duration::from_secs(2))
        .await
        .map_err(|e| Error::Process(e.to_string()))
}

fn pg_error(e: tokio_postgres::Error) -> Error {
    Error::Process(e.to_string())
}

/// What a member says of itself: `Some(true)` in recovery (a standby),
/// `Some(false)` a primary, `None` when it does not answer (down, or fenced:
/// its pg_hba.conf turns sessions away).
async fn recovery_of(inner: &Inner, z: u8) -> Option<bool> {
    let q = async {
        let row = pg_session(inner.layout.pg(z).1, "lab")
            .await?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(pg_error)?;
        Ok::<bool, Error>(row.get(0))
    };
    tokio::time::timeout(Duration::from_secs(2), q).await.ok()?.ok()
}

/// Which member of orders-db accepts writes now (by asking each).
async fn pg_primary_zone(inner: &Inner) -> Option<u8> {
    for z in 1..=2u8 {
        if recovery_of(inner, z).await == Some(false) {
            return Some(z);
        }
    }
    None
}

async fn pg_sql(inner: &Inner, z: u8, sql: &str) -> Result<(), String> {
    let c = pg_session(inner.layout.pg(z).1, "lab").await.map_err(|e| e.to_string())?;
    c.batch_execute(sql).await.map_err(|e| e.to_string())
}

const ENTITIES: &[&str] = &["orders-db", "assets", "payments", "checkout", "catalog"];

fn unknown_target(t: &str) -> Error {
    Error::BadInput(format!("`{t}` is not in the lab; its entities are {}", ENTITIES.join(", ")))
}

/// The proxies that carry traffic to an entity, with words for each.
fn proxies_of(inner: &Inner, target: &str) -> Result<Vec<(Arc<crate::proxy::ProxyFaults>, String)>, Error> {
    let mut out = Vec::new();
    match target {
        "orders-db" => {
            for m in inner.pg.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                out.push((m.proxy.faults.clone(), format!("orders-db in {} ({})", zone_name(m.zone), m.proxy.listen)));
            }
        }
        "assets" => {
            for m in &inner.s3 {
                out.push((m.proxy.faults.clone(), format!("assets in {} ({})", zone_name(m.zone), m.proxy.listen)));
            }
        }
        other => {
            let i = SERVICES.iter().position(|s| s.0 == other).ok_or_else(|| unknown_target(other))?;
            for s in inner.services.iter().filter(|s| s.service == i) {
                out.push((s.proxy.faults.clone(), format!("{other} in {} ({})", zone_name(s.zone), s.proxy.listen)));
            }
        }
    }
    Ok(out)
}

/// Lab zone numbers (1-based) of zone names.
fn zone_numbers(zones: &[String]) -> Result<Vec<u8>, Error> {
    zones
        .iter()
        .map(|z| {
            ZONES.iter().position(|x| x == z).map(|i| i as u8 + 1).ok_or_else(|| {
                Error::BadInput(format!("zone `{z}` is not in the lab; its zones are {}", ZONES.join(", ")))
            })
        })
        .collect()
}

async fn inject(inner: &Inner, req: FaultRequest, dry_run: bool) -> Result<Injected, Error> {
    let mut hits = Vec::new();
    let mut undo = Vec::new();
    match &req {
        FaultRequest::ZonePartition { zones, one_way } => {
            let nums = zone_numbers(zones)?;
            let pid = inner.next_fault.fetch_add(1, Ordering::SeqCst);
            for z in &nums {
                hits.push(if *one_way {
                    format!("{}: the controller can no longer reach it; the other zones still do", zone_name(*z))
                } else {
                    format!(
                        "{}: cut off from the other zones and the controller; everything in it keeps running",
                        zone_name(*z)
                    )
                });
            }
            if !dry_run {
                inner.partitions.add(pid, nums.clone(), *one_way);
            }
            undo.push(Undo::Partition(pid, nums));
        }
        FaultRequest::PowerOff { datastore, zone } => {
            if datastore != "orders-db" {
                return Err(unknown_target(datastore));
            }
            let z = zone_numbers(std::slice::from_ref(zone))?[0];
            let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
            let m = pg
                .iter_mut()
                .find(|m| m.zone == z)
                .ok_or_else(|| Error::BadInput(format!("no orders-db member in {zone}")))?;
            if m.server.running() {
                hits.push(format!("postgres (orders-db) in {zone} powered off (pid {})", m.server.pid().unwrap_or(0)));
                if !dry_run {
                    m.server.kill();
                }
            } else {
                hits.push(format!("postgres (orders-db) in {zone} was already off"));
            }
            undo.push(Undo::Restart(vec![z]));
        }
        FaultRequest::ZoneOutage { zones } => {
            let nums = zone_numbers(zones)?;
            let mut proxies = Vec::new();
            let mut killed = Vec::new();
            {
                let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
                for m in pg.iter_mut().filter(|m| nums.contains(&m.zone)) {
                    hits.push(format!(
                        "postgres (orders-db) in {}: killed, address {} down",
                        zone_name(m.zone),
                        m.proxy.listen
                    ));
                    if !dry_run {
                        m.proxy.faults.set_down(true);
                        m.server.kill();
                    }
                    proxies.push(m.proxy.faults.clone());
                    killed.push(m.zone);
                }
            }
            for m in inner.s3.iter().filter(|m| nums.contains(&m.zone)) {
                hits.push(format!("S3 endpoint of {} ({}) down", zone_name(m.zone), m.proxy.listen));
                proxies.push(m.proxy.faults.clone());
            }
            for s in inner.services.iter().filter(|s| nums.contains(&s.zone)) {
                hits.push(format!("{} in {} ({}) down", SERVICES[s.service].0, zone_name(s.zone), s.proxy.listen));
                proxies.push(s.proxy.faults.clone());
            }
            {
                let mut procs = inner.procs.lock().unwrap_or_else(|p| p.into_inner());
                for p in procs.iter_mut().filter(|p| nums.contains(&p.spec.zone)) {
                    hits.push(format!(
                        "{} in {}: killed (pid {})",
                        p.spec.name,
                        zone_name(p.spec.zone),
                        p.pid().unwrap_or(0)
                    ));
                    if !dry_run {
                        p.kill();
                    }
                }
            }
            if !dry_run {
                for p in &proxies {
                    p.set_down(true);
                }
            }
            undo.push(Undo::Proxies(proxies));
            undo.push(Undo::Restart(killed));
            undo.push(Undo::StartProcesses(nums.clone()));
        }
        FaultRequest::ProcessKill { target } => match target.as_str() {
            "orders-db" => {
                let z = pg_primary_zone(inner)
                    .await
                    .ok_or_else(|| Error::BadInput("orders-db has no writable primary to kill right now".into()))?;
                let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(m) = pg.iter_mut().find(|m| m.zone == z) {
                    hits.push(format!(
                        "postgres primary of orders-db in {} (pid {}) killed",
                        zone_name(z),
                        m.server.pid().unwrap_or(0)
                    ));
                    if !dry_run {
                        m.server.kill();
                    }
                }
                undo.push(Undo::Restart(vec![z]));
            }
            "assets" => {
                let m = &inner.s3[0];
                hits.push(format!("S3 server of {} stopped answering ({})", zone_name(m.zone), m.proxy.listen));
                if !dry_run {
                    m.proxy.faults.set_down(true);
                }
                undo.push(Undo::Proxies(vec![m.proxy.faults.clone()]));
            }
            other => {
                let i = SERVICES.iter().position(|s| s.0 == other).ok_or_else(|| unknown_target(other))?;
                let answer = inner
                    .dns
                    .records
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&format!("{other}.{DNS_ZONE}"))
                    .and_then(|(_, a)| a.first().copied());
                let s = inner
                    .services
                    .iter()
                    .find(|s| s.service == i && Some(s.proxy.listen.ip()) == answer.map(IpAddr::V4))
                    .or_else(|| inner.services.iter().find(|s| s.service == i))
                    .ok_or_else(|| unknown_target(other))?;
                hits.push(format!("{other} in {} ({}) killed", zone_name(s.zone), s.proxy.listen));
                if !dry_run {
                    s.proxy.faults.set_down(true);
                }
                undo.push(Undo::Proxies(vec![s.proxy.faults.clone()]));
            }
        },
        FaultRequest::Latency { target, delay_ms } => {
            let ps = proxies_of(inner, target)?;
            for (p, what) in &ps {
                hits.push(format!("{what}: +{delay_ms}ms each way"));
                if !dry_run {
                    p.set_latency(Duration::from_millis(*delay_ms));
                }
            }
            undo.push(Undo::Proxies(ps.into_iter().map(|(p, _)| p).collect()));
        }
        FaultRequest::PacketLoss { target, rate } => {
            let ps = proxies_of(inner, target)?;
            for (p, what) in &ps {
                hits.push(format!(
                    "{what}: {:.0}% of chunks stall {}ms",
                    rate * 100.0,
                    crate::proxy::LOSS_STALL.as_millis()
                ));
                if !dry_run {
                    p.set_loss(*rate);
                }
            }
            undo.push(Undo::Proxies(ps.into_iter().map(|(p, _)| p).collect()));
        }
        FaultRequest::Reset { target } => {
            let ps = proxies_of(inner, target)?;
            for (p, what) in &ps {
                hits.push(format!("{what}: connections reset"));
                if !dry_run {
                    p.set_reset(true);
                }
            }
            undo.push(Undo::Proxies(ps.into_iter().map(|(p, _)| p).collect()));
        }
        FaultRequest::ReplicationPause { datastore } => match datastore.as_str() {
            "orders-db" => {
                let primary = pg_primary_zone(inner).await;
                let standbys: Vec<u8> = (1..=2u8).filter(|z| Some(*z) != primary).collect();
                for z in &standbys {
                    hits.push(format!("orders-db standby in {}: WAL replay paused", zone_name(*z)));
                    if !dry_run {
                        pg_sql(inner, *z, "SELECT pg_wal_replay_pause()")
                            .await
                            .map_err(|e| Error::Process(format!("pausing replay in {}: {e}", zone_name(*z))))?;
                    }
                }
                undo.push(Undo::ResumeReplay(standbys));
            }
            "assets" => {
                hits.push("assets: drctl's copying paused".into());
                if !dry_run {
                    inner.copying_paused.store(true, Ordering::SeqCst);
                }
                undo.push(Undo::ResumeCopying);
            }
            other => return Err(unknown_target(other)),
        },
        FaultRequest::S3Errors { datastore, rate } => {
            if let Some(d) = datastore.as_deref().filter(|d| *d != "assets") {
                return Err(Error::BadInput(format!("`{d}` is not an S3 datastore of the lab (it has `assets`)")));
            }
            let mut zones = Vec::new();
            for m in &inner.s3 {
                hits.push(format!(
                    "S3 endpoint of {}: {:.0}% of requests answered 503",
                    zone_name(m.zone),
                    rate * 100.0
                ));
                if !dry_run {
                    m.server.set_error_rate(*rate);
                }
                zones.push(m.zone);
            }
            undo.push(Undo::S3Errors(zones));
        }
    }
    if dry_run {
        return Ok(Injected { id: 0, hits });
    }
    let id = inner.next_fault.fetch_add(1, Ordering::SeqCst);
    inner.faults.lock().unwrap_or_else(|p| p.into_inner()).push(ActiveFault {
        id,
        request: req,
        hits: hits.clone(),
        undo,
    });
    Ok(Injected { id, hits })
}

async fn undo_fault(inner: &Inner, f: ActiveFault) -> Vec<String> {
    let mut notes = Vec::new();
    for u in f.undo {
        match u {
            Undo::Proxies(ps) => {
                for p in ps {
                    p.heal();
                }
            }
            Undo::Restart(zones) => {
                lift_power_offs(inner, &zones);
                notes.extend(reconcile(inner, &zones).await);
            }
            Undo::Partition(pid, zones) => {
                inner.partitions.remove(pid);
                lift_power_offs(inner, &zones);
                notes.extend(reconcile(inner, &zones).await);
            }
            Undo::ResumeReplay(zones) => {
                for z in zones {
                    if let Err(e) = pg_sql(inner, z, "SELECT pg_wal_replay_resume()").await {
                        notes.push(format!("resuming replay in {}: {e}", zone_name(z)));
                    }
                }
            }
            Undo::ResumeCopying => inner.copying_paused.store(false, Ordering::SeqCst),
            Undo::S3Errors(zones) => {
                for m in inner.s3.iter().filter(|m| zones.contains(&m.zone)) {
                    m.server.set_error_rate(0.0);
                }
            }
            Undo::StartProcesses(zones) => {
                let mut procs = inner.procs.lock().unwrap_or_else(|p| p.into_inner());
                for p in procs.iter_mut().filter(|p| zones.contains(&p.spec.zone)) {
                    match p.start() {
                        Ok(()) => notes.push(format!("{} in {} started again", p.spec.name, zone_name(p.spec.zone))),
                        Err(e) => notes.push(e),
                    }
                }
            }
        }
    }
    notes
}

async fn heal_all(inner: &Inner) -> Vec<String> {
    let all: Vec<ActiveFault> = std::mem::take(&mut *inner.faults.lock().unwrap_or_else(|p| p.into_inner()));
    let mut notes = Vec::new();
    // Undo in reverse order of injection, power-offs last: a member comes
    // back once the network it rebuilds over is whole again.
    let (power, rest): (Vec<ActiveFault>, Vec<ActiveFault>) =
        all.into_iter().partition(|f| matches!(f.request, FaultRequest::PowerOff { .. }));
    for f in rest.into_iter().rev().chain(power) {
        notes.extend(undo_fault(inner, f).await);
    }
    // Whatever a failover left behind (a fenced old primary) becomes a standby.
    notes.extend(reconcile(inner, &[1, 2]).await);
    notes
}

/// Forgets the power-offs of members in these zones (their zone's fault,
/// being healed, brings them back).
fn lift_power_offs(inner: &Inner, zones: &[u8]) {
    inner.faults.lock().unwrap_or_else(|p| p.into_inner()).retain(|f| match &f.request {
        FaultRequest::PowerOff { zone, .. } => {
            !zone_numbers(std::slice::from_ref(zone)).is_ok_and(|z| zones.contains(&z[0]))
        }
        _ => true,
    });
}

/// Whether a running member is a standby (false: a primary, or fenced).
async fn in_recovery(inner: &Inner, z: u8) -> bool {
    recovery_of(inner, z).await == Some(true)
}

/// Brings orders-db's members in these zones back to a healthy shape:
/// one that is down starts again, as a standby of the primary when one
/// runs elsewhere (never two writable primaries); one that runs but is
/// not a standby beside that primary (a fenced old primary) is rebuilt as
/// its standby, which lifts its fence.
async fn reconcile(inner: &Inner, zones: &[u8]) -> Vec<String> {
    let mut notes = Vec::new();
    let primary_elsewhere = pg_primary_zone(inner).await.filter(|z| !zones.contains(z));
    let mut todo = Vec::new();
    for &z in zones {
        let running = {
            let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
            pg.iter_mut().find(|m| m.zone == z).map(|m| m.server.running())
        };
        match running {
            None => {}
            Some(false) => todo.push(z),
            Some(true) if primary_elsewhere.is_some() && !in_recovery(inner, z).await => todo.push(z),
            Some(true) => {}
        }
    }
    let mut restart = Vec::new();
    {
        let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
        for z in &todo {
            if let Some(pos) = pg.iter().position(|m| m.zone == *z) {
                restart.push(pg.remove(pos));
            }
        }
    }
    let mut back = Vec::new();
    for mut m in restart {
        let via = primary_elsewhere.map(|p| inner.layout.pg_egress(m.zone, p));
        let r = tokio::task::spawn_blocking(move || {
            let r = match via {
                // Never two writable primaries: the old one comes back as a standby.
                Some(p) => m.server.rebuild_as_standby(p),
                None => m.server.start(false),
            };
            (m, r)
        })
        .await;
        if let Ok((m, r)) = r {
            notes.push(match (r, primary_elsewhere) {
                (Ok(()), Some(p)) => format!(
                    "postgres in {} rebuilt as a standby of {}, which took over",
                    zone_name(m.zone),
                    zone_name(p)
                ),
                (Ok(()), None) => format!("postgres in {} restarted", zone_name(m.zone)),
                (Err(e), _) => format!("postgres in {} did not come back: {e}", zone_name(m.zone)),
            });
            back.push(m);
        }
    }
    let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
    pg.extend(back);
    pg.sort_by_key(|m| m.zone);
    notes
}

/// Counts the writes a failover of `datastore` to `zone` lost.
async fn loss(inner: &Inner, datastore: &str, zone: &str) -> Result<Loss, Error> {
    let z = ZONES.iter().position(|x| *x == zone).ok_or_else(|| Error::BadInput(format!("no lab zone `{zone}`")))?
        as u8
        + 1;
    match datastore {
        "orders-db" => {
            let acks = inner.pg_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let reading = |e: String| Error::Process(format!("reading orders-db in {zone}: {e}"));
            let c = pg_session(inner.layout.pg(z).1, "lab").await.map_err(|e| reading(e.to_string()))?;
            let rows = c.query("SELECT seq FROM workload", &[]).await.map_err(|e| reading(e.to_string()))?;
            let present: HashSet<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
            Ok(workload::loss(&acks, zone, &present))
        }
        "assets" => {
            let acks = inner.s3_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let m = inner.s3.iter().find(|m| m.zone == z).ok_or_else(|| Error::BadInput(format!("no S3 in {zone}")))?;
            let bucket = drctl_aws::s3::Bucket {
                zone: zone.into(),
                name: format!("lab-assets-az{z}"),
                endpoint: Some(format!("http://{}", m.proxy.listen)),
                client: inner.clients.s3(Some(&format!("http://{}", m.proxy.listen)), Some("lab")).await,
            };
            let objects = drctl_aws::s3::list(&bucket)
                .await
                .map_err(|e| Error::Process(format!("listing assets in {zone}: {e}")))?;
            let present: HashSet<u64> = objects.keys().filter_map(|k| workload::seq_of_key(k)).collect();
            Ok(workload::loss(&acks, zone, &present))
        }
        other => Err(unknown_target(other)),
    }
}

type ApiError = (StatusCode, String);

fn api_error(e: Error) -> ApiError {
    match e {
        Error::BadInput(m) => (StatusCode::BAD_REQUEST, m),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

#[derive(Deserialize)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct SafetyQuery {
    datastore: String,
    since_ms: u64,
}

#[derive(Deserialize)]
struct LossQuery {
    datastore: String,
    zone: String,
}

fn router(inner: Arc<Inner>) -> axum::Router {
    axum::Router::new()
        .route("/status", get(|AxState(i): AxState<Arc<Inner>>| async move { Json(status(&i).await) }))
        .route(
            "/faults",
            post(
                |AxState(i): AxState<Arc<Inner>>, Query(q): Query<DryRun>, Json(req): Json<FaultRequest>| async move {
                    inject(&i, req, q.dry_run).await.map(Json).map_err(api_error)
                },
            )
            .delete(|AxState(i): AxState<Arc<Inner>>| async move { Json(heal_all(&i).await) }),
        )
        .route(
            "/faults/{id}",
            delete(|AxState(i): AxState<Arc<Inner>>, UrlPath(id): UrlPath<u64>| async move {
                let f = {
                    let mut all = i.faults.lock().unwrap_or_else(|p| p.into_inner());
                    all.iter().position(|f| f.id == id).map(|p| all.remove(p))
                };
                match f {
                    Some(f) => Ok(Json(undo_fault(&i, f).await)),
                    None => Err((StatusCode::NOT_FOUND, format!("no fault {id} in force"))),
                }
            }),
        )
        .route(
            "/members/{datastore}/{zone}/power-off",
            post(|AxState(i): AxState<Arc<Inner>>, UrlPath((datastore, zone)): UrlPath<(String, String)>| async move {
                inject(&i, FaultRequest::PowerOff { datastore, zone }, false).await.map(Json).map_err(api_error)
            }),
        )
        .route(
            "/workload/safety",
            get(|AxState(i): AxState<Arc<Inner>>, Query(q): Query<SafetyQuery>| async move {
                if q.datastore != "orders-db" {
                    return Err(api_error(unknown_target(&q.datastore)));
                }
                let since = std::time::UNIX_EPOCH + Duration::from_millis(q.since_ms);
                let acks = i.pg_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
                // A few rounds before `since` say who was primary then.
                let rounds = i.probes.since(since - Duration::from_secs(2));
                Ok(Json(crate::safety::judge(&rounds, &acks, since)))
            }),
        )
        .route(
            "/workload/loss",
            get(|AxState(i): AxState<Arc<Inner>>, Query(q): Query<LossQuery>| async move {
                loss(&i, &q.datastore, &q.zone).await.map(Json).map_err(api_error)
            }),
        )
        .route(
            "/shutdown",
            post(|AxState(i): AxState<Arc<Inner>>| async move {
                i.shutdown.notify_waiters();
                i.shutdown.notify_one();
                "stopping\n"
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(inner)
}
