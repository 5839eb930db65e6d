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
//! `assemble` (the steps of starting it, in order), `layout` (the
//! addresses), `topology` (the files it writes for drctl), `faults`
//! (injecting, undoing, reconciling), `status` (what it reports, the
//! writes a zone lost) and `api` (its control API).

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
mod assemble;
mod faults;
mod layout;
mod status;
mod topology;

use api::*;
use assemble::*;
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
    /// Where drctl keeps orders-db's backup configuration and restored
    /// copies (the lab stops any copy still running when it stops).
    backup_site: Option<PathBuf>,
}

/// A running lab. Dropping it stops everything it started.
pub struct Lab {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub manifest: Manifest,
    /// orders-db's backups, as `lab up` left them.
    pub backups: Backups,
}

/// orders-db's backups in the lab.
#[derive(Debug, Clone, PartialEq)]
pub enum Backups {
    /// Archived by pgBackRest into lab-az3, with a full backup taken at start.
    Taken { label: String, repo: PathBuf },
    /// pgBackRest is installed but the first backup failed (why).
    Failed(String),
    /// No `pgbackrest` on this machine: archiving is off.
    NotInstalled,
}

impl Backups {
    /// One line for `lab up`'s summary.
    pub fn describe(&self) -> String {
        match self {
            Backups::Taken { label, repo } => format!(
                "orders-db archived by pgBackRest into lab-az3 ({}, encrypted); full backup {label}",
                repo.display()
            ),
            Backups::Failed(why) => format!("orders-db's first backup failed: {why}"),
            Backups::NotInstalled => format!(
                "orders-db is not backed up (pgBackRest is not installed: {}); restore drills need it",
                drctl_backup::pgbackrest::INSTALL_HINT
            ),
        }
    }
}

/// Sets up orders-db's stanza (archiving on) and takes its first full backup.
async fn first_backup(topo: &drctl_core::Topology, dir: &Path) -> Backups {
    let work = async {
        let site = drctl_backup::site_dir(topo);
        // The lab's own site is fresh with each lab (its key, its stanza).
        if site.starts_with(std::path::absolute(dir).unwrap_or(dir.to_path_buf())) {
            let _ = std::fs::remove_dir_all(&site);
        }
        let ds = drctl_backup::pg_datastore(topo, "orders-db")?;
        let repo = match &ds.spec.repo.store {
            drctl_core::topology::backup::RepoStore::Posix { path } => PathBuf::from(path),
            drctl_core::topology::backup::RepoStore::S3 { bucket, .. } => PathBuf::from(bucket),
        };
        let set = drctl_backup::take_backup(&site, &ds, drctl_backup::pgbackrest::Kind::Full).await?;
        Ok::<_, drctl_backup::Error>(Backups::Taken { label: set.label, repo })
    };
    match work.await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "the lab's first backup failed");
            Backups::Failed(e.to_string())
        }
    }
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
                // A member rebuilt, or a copy put in a member's place, by a
                // restore: started by pg_ctl, not by the lab.
                crate::pg::stop_foreign(m.server.bin(), &m.server.data);
            }
            if let (Some(m), Some(site)) = (pg.first(), &self.inner.backup_site) {
                for copy in std::fs::read_dir(site.join("copies")).into_iter().flatten().flatten() {
                    crate::pg::stop_foreign(m.server.bin(), &copy.path().join("data"));
                }
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
        check_base_port(opts.base_port)?;
        let bin = pg_ctl_bin()?;
        refuse_a_second_lab(&opts.dir)?;
        wait_for_free_addresses(&layout).await?;
        let scratch = make_folders(&opts)?;

        // PostgreSQL: primary in lab-az1, standby in lab-az2, each behind its proxy.
        let partitions = Arc::new(Partitions::default());
        let route = Route { partitions: Some(partitions.clone()), source: None };
        let (proxy1, proxy2) = start_pg_proxies(&layout, &route).await?;
        let egress = start_replication_egress(&layout).await?;
        // orders-db is archived and backed up by pgBackRest where it is
        // installed; without it the lab runs as before, archiving off.
        let pgbackrest = drctl_backup::pgbackrest::find().is_ok();
        let mut primary = start_primary(&bin, &scratch, layout.pg(1).1, pgbackrest).await?;
        create_lab_database(&mut primary, layout.pg(1).1).await?;
        // Topology and runbooks first: the backup and the services' S3 clients come from it.
        let topo_path = write_topology_and_runbooks(&opts.dir, &layout, pgbackrest)?;
        let topo = load_own_topology(&topo_path, &mut primary)?;
        // Before the standby exists, so its copy of the primary's settings
        // archives too once it is promoted (the backups follow the primary).
        open_lab_folder_to_postgres(&opts.dir, pgbackrest);
        let backup = if pgbackrest { first_backup(&topo, &opts.dir).await } else { Backups::NotInstalled };
        let standby = start_standby(&bin, &scratch, &layout, &mut primary).await?;
        let pg = vec![
            PgMember { zone: 1, server: primary, proxy: proxy1 },
            PgMember { zone: 2, server: standby, proxy: proxy2 },
        ];

        let s3 = start_s3(&layout, &opts.dir, &route).await?;
        let dns = start_dns(&layout).await?;
        // The lab's own clients sign with the lab's keys (its S3 servers check them).
        let clients = Arc::new(Clients::new(crate::credentials()));
        let (assets, buckets) = assets_buckets(&clients, &topo).await;
        let (services, front_doors) = start_services(&layout, &route, &buckets).await?;

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
            backup_site: pgbackrest.then(|| drctl_backup::site_dir(&topo)),
        });

        let mut tasks = start_workload(&inner, &buckets);
        let topo = Arc::new(topo);
        tasks.push(spawn_sampler(&clients, &opts.state, &topo));
        tasks.push(spawn_replication(&inner, &opts.state, topo, assets));
        tasks.push(serve_control_api(&inner).await?);
        let manifest = write_manifest(&inner, topo_path, scratch)?;
        Ok(Lab { inner, tasks, manifest, backups: backup })
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
