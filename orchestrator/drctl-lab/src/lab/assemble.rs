//! The steps [`Lab::start`] takes, in the order it takes them: check the
//! ports and folders, start PostgreSQL behind its proxies, write the
//! topology, back up, start S3, DNS and the services, then the background
//! work (workload, probes, sampler, replication) and the control API.

use super::*;

/// The base port leaves room for every lab address below 65535.
pub(super) fn check_base_port(base_port: u16) -> Result<(), Error> {
    if !(1024..=65000).contains(&base_port) {
        return Err(Error::BadInput(format!("--base-port {base_port} must be between 1024 and 65000")));
    }
    Ok(())
}

/// One lab per folder: a live `lab.json` there means one already runs.
pub(super) fn refuse_a_second_lab(dir: &Path) -> Result<(), Error> {
    if let Some(m) = Manifest::read(dir) {
        if m.alive() {
            return Err(Error::BadInput(format!(
                "a lab already runs from {} (pid {}, control {}): `drctl lab down` first",
                dir.display(),
                m.pid,
                m.control
            )));
        }
    }
    Ok(())
}

/// A lab just stopped in this process releases its listeners as its
/// tasks wind down: give them a moment before calling a port taken.
pub(super) async fn wait_for_free_addresses(layout: &Layout) -> Result<(), Error> {
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
    Ok(())
}

/// The lab's folder (with `runbooks/`) and a fresh scratch folder for the
/// PostgreSQL data, handed to the user PostgreSQL runs as; returns the scratch.
pub(super) fn make_folders(opts: &Options) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(opts.dir.join("runbooks"))
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", opts.dir.display())))?;
    let scratch = std::env::temp_dir().join(format!("drctl-lab-{}", opts.base_port));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| Error::Io(format!("cannot create {}: {e}", scratch.display())))?;
    crate::pg::hand_over(&scratch)?;
    Ok(scratch)
}

/// The public proxies of orders-db in lab-az1 and lab-az2.
pub(super) async fn start_pg_proxies(layout: &Layout, route: &Route) -> Result<(Proxy, Proxy), Error> {
    let (pub1, priv1) = layout.pg(1);
    let (pub2, priv2) = layout.pg(2);
    let proxy1 = Proxy::start_with(pub1, priv1, route.clone()).await.map_err(|e| Error::Io(format!("{pub1}: {e}")))?;
    let proxy2 = Proxy::start_with(pub2, priv2, route.clone()).await.map_err(|e| Error::Io(format!("{pub2}: {e}")))?;
    Ok((proxy1, proxy2))
}

/// Replication between zones goes through each zone's egress.
pub(super) async fn start_replication_egress(layout: &Layout) -> Result<Vec<(u8, u8, Proxy)>, Error> {
    let mut egress = Vec::new();
    for (z, t) in [(1u8, 2u8), (2, 1)] {
        let at = layout.pg_egress(z, t);
        let from = Route { partitions: None, source: Some(zone_ip(z, 3)) };
        let proxy = Proxy::start_with(at, layout.pg(t).0, from).await.map_err(|e| Error::Io(format!("{at}: {e}")))?;
        egress.push((z, t, proxy));
    }
    Ok(egress)
}

/// orders-db's primary in lab-az1 (archiving when pgBackRest is installed).
pub(super) async fn start_primary(
    bin: &Path,
    scratch: &Path,
    listen: SocketAddr,
    pgbackrest: bool,
) -> Result<PgServer, Error> {
    let (b1, s1) = (bin.to_path_buf(), scratch.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut p = PgServer::init_primary(&b1, "orders-db lab-az1", s1.join("pg-az1"), listen, pgbackrest)?;
        p.start(false)?;
        Ok::<_, Error>(p)
    })
    .await
    .map_err(|e| Error::Process(e.to_string()))?
}

/// The `lab` database with the workload's and the probes' tables; the
/// primary is stopped if they cannot be made.
pub(super) async fn create_lab_database(primary: &mut PgServer, at: SocketAddr) -> Result<(), Error> {
    let setup = async {
        pg_session(at, "postgres").await?.batch_execute("CREATE DATABASE lab").await.map_err(pg_error)?;
        pg_session(at, "lab")
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
    if let Ok(c) = pg_session(at, "lab").await {
        let _ = c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect").await;
    }
    Ok(())
}

/// `drctl.yaml` (with a fresh pgBackRest repository folder when archiving)
/// and the payments runbook; returns where the topology is.
pub(super) fn write_topology_and_runbooks(dir: &Path, layout: &Layout, pgbackrest: bool) -> Result<PathBuf, Error> {
    let topo_path = dir.join(drctl_lab_api::TOPOLOGY_FILE);
    let fence_program = std::env::current_exe().ok();
    let repo = std::path::absolute(dir.join("pgbackrest-az3")).unwrap_or(dir.join("pgbackrest-az3"));
    let _ = std::fs::remove_dir_all(&repo);
    write(&topo_path, &topology_yaml(layout, fence_program.as_deref(), pgbackrest.then_some(repo.as_path())))?;
    write(&dir.join("runbooks").join("payments.yaml"), &payments_runbook(layout))?;
    Ok(topo_path)
}

/// Loads the topology the lab just wrote; one that does not validate is a
/// bug, and the primary is stopped.
pub(super) fn load_own_topology(topo_path: &Path, primary: &mut PgServer) -> Result<drctl_core::Topology, Error> {
    let loaded = drctl_core::topology::load(topo_path);
    match loaded.topology {
        Some(t) => Ok(t),
        None => {
            primary.stop();
            Err(Error::Process(format!(
                "the lab's own topology does not validate (a bug): {}",
                loaded.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
            )))
        }
    }
}

/// Run as root, the lab's PostgreSQL (and so its archiver) runs as
/// `postgres`, which must reach the stanza's configuration and the
/// repository under the lab's folder: the folder becomes traversable
/// (0711), never listable; the state and its keys inside stay owner-only
/// files and folders.
pub(super) fn open_lab_folder_to_postgres(dir: &Path, pgbackrest: bool) {
    if pgbackrest && drctl_pgserver::run_as().is_some() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711));
    }
}

/// orders-db's standby in lab-az2, replicating through its zone's egress;
/// the primary is stopped if the standby does not start.
pub(super) async fn start_standby(
    bin: &Path,
    scratch: &Path,
    layout: &Layout,
    primary: &mut PgServer,
) -> Result<PgServer, Error> {
    let (b2, s2) = (bin.to_path_buf(), scratch.to_path_buf());
    let listen = layout.pg(2).1;
    let via = layout.pg_egress(2, 1);
    let standby = tokio::task::spawn_blocking(move || {
        let mut s = PgServer::init_standby(&b2, "orders-db lab-az2", s2.join("pg-az2"), listen, via)?;
        s.start(false)?;
        Ok::<_, Error>(s)
    })
    .await
    .map_err(|e| Error::Process(e.to_string()))?;
    match standby {
        Ok(s) => Ok(s),
        Err(e) => {
            primary.stop();
            Err(e)
        }
    }
}

/// S3: one endpoint per zone, each with its zone's bucket, behind its proxy.
pub(super) async fn start_s3(layout: &Layout, dir: &Path, route: &Route) -> Result<Vec<S3Member>, Error> {
    let mut s3 = Vec::new();
    for z in 1..=3u8 {
        let (public, private) = layout.s3(z);
        let root = dir.join("s3").join(format!("az{z}"));
        S3Server::wipe(&root);
        let bucket = format!("lab-assets-az{z}");
        let server = S3Server::start(private, &root, &[&bucket]).await?;
        let proxy =
            Proxy::start_with(public, private, route.clone()).await.map_err(|e| Error::Io(format!("{public}: {e}")))?;
        s3.push(S3Member { zone: z, server, proxy });
    }
    Ok(s3)
}

/// DNS records: each service answers with its first zone.
pub(super) async fn start_dns(layout: &Layout) -> Result<DnsServer, Error> {
    let records: Records = Default::default();
    for (i, (name, _, zones, _)) in SERVICES.iter().enumerate() {
        let ip = match layout.service(zones[0], i).0.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => unreachable!("the lab is IPv4"),
        };
        records.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{name}.{DNS_ZONE}"), (1, vec![ip]));
    }
    DnsServer::start(layout.dns(), DNS_ZONE, records)
        .await
        .map_err(|e| Error::Io(format!("DNS on {}: {e}", layout.dns())))
}

/// The `assets` datastore and its buckets, one per zone, as drctl's
/// controller reaches them.
pub(super) async fn assets_buckets(
    clients: &Clients,
    topo: &drctl_core::Topology,
) -> (drctl_core::topology::EntityId, Vec<drctl_aws::s3::Bucket>) {
    let assets = topo.entity_id("assets").expect("the lab has assets");
    let drctl_core::topology::EntitySpec::Datastore(assets_ds) = &topo.entity(assets).spec else {
        unreachable!("assets is a datastore")
    };
    (assets, drctl_control::live::buckets(clients, topo, assets_ds).await)
}

/// Services: one instance per zone, each behind its proxy, and a front door.
pub(super) async fn start_services(
    layout: &Layout,
    route: &Route,
    buckets: &[drctl_aws::s3::Bucket],
) -> Result<(Vec<ServiceInstance>, Vec<Task>), Error> {
    let mut services = Vec::new();
    let mut front_doors = Vec::new();
    for (i, (name, _, zones, deps)) in SERVICES.iter().enumerate() {
        for &z in zones.iter() {
            let needs = service_dependencies(layout, deps, &buckets[z as usize - 1]);
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
    Ok((services, front_doors))
}

/// What a service instance checks: orders-db through its public address,
/// its own zone's assets bucket, other services through their front doors.
fn service_dependencies(layout: &Layout, deps: &[&str], zone_bucket: &drctl_aws::s3::Bucket) -> Vec<Dependency> {
    let mut needs = Vec::new();
    for d in deps.iter() {
        match *d {
            "orders-db" => {
                needs.push(Dependency::Postgres { name: "orders-db".into(), conninfo: layout.pg_conninfo() })
            }
            "assets" => needs.push(Dependency::S3 { name: "assets".into(), bucket: zone_bucket.clone() }),
            other => {
                let j = SERVICES.iter().position(|s| s.0 == other).expect("a lab service");
                needs.push(Dependency::Http {
                    name: other.into(),
                    url: format!("http://{}/health", layout.front_door(j)),
                })
            }
        }
    }
    needs
}

/// A writer in each zone, through what it reaches from there (one
/// sequence); each PostgreSQL member probed from inside its own zone; the
/// S3 workload on the assets buckets.
pub(super) fn start_workload(
    inner: &Arc<Inner>,
    buckets: &[drctl_aws::s3::Bucket],
) -> Vec<tokio::task::JoinHandle<()>> {
    let layout = inner.layout;
    let mut tasks = Vec::new();
    let seq = Arc::new(AtomicU64::new(0));
    let pg_members: Vec<(String, SocketAddr)> = (1..=2u8).map(|z| (zone_name(z), layout.pg(z).0)).collect();
    for z in 1..=3u8 {
        let source = zone_ip(z, 100);
        tasks.push(tokio::spawn(workload::run_postgres(source, pg_members.clone(), seq.clone(), inner.pg_log.clone())));
    }
    let probed: Vec<(u8, String, SocketAddr)> = (1..=2u8).map(|z| (z, zone_name(z), layout.pg(z).0)).collect();
    tasks.push(tokio::spawn(crate::safety::run(probed, inner.probes.clone())));
    tasks.push(tokio::spawn(workload::run_s3(buckets.to_vec(), inner.s3_log.clone())));
    tasks
}

/// The sampler drctl's controller would run: every datastore measured
/// and recorded every second, from the controller's side (loopback),
/// into the lab's state. A declaration against the running lab, from
/// the CLI or a drill, then has the evidence a real one would have:
/// the standby's lag when the primary was last seen, and when it went dark.
pub(super) fn spawn_sampler(
    clients: &Arc<Clients>,
    state: &Arc<State>,
    topo: &Arc<drctl_core::Topology>,
) -> tokio::task::JoinHandle<()> {
    let (clients, state, topo) = (clients.clone(), state.clone(), topo.clone());
    tokio::spawn(async move {
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
    })
}

/// The replication job drctl's controller runs for `assets`, through
/// the controller's own scheduler, on the topology's schedule; the
/// `replication-pause` fault holds it. A failed pass is logged.
pub(super) fn spawn_replication(
    inner: &Inner,
    state: &Arc<State>,
    topo: Arc<drctl_core::Topology>,
    assets: drctl_core::topology::EntityId,
) -> tokio::task::JoinHandle<()> {
    let (clients, paused, state) = (inner.clients.clone(), inner.copying_paused.clone(), state.clone());
    let clock: Arc<dyn drctl_control::schedule::Clock> = Arc::new(drctl_control::schedule::SystemClock);
    tokio::spawn(async move {
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
    })
}

/// The lab's control API on its control address.
pub(super) async fn serve_control_api(inner: &Arc<Inner>) -> Result<tokio::task::JoinHandle<()>, Error> {
    let app = router(inner.clone());
    let control = inner.layout.control();
    let listener = tokio::net::TcpListener::bind(control)
        .await
        .map_err(|e| Error::Io(format!("control API on {control}: {e}")))?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// `lab.json`: where the lab's control API, DNS, topology and scratch are.
pub(super) fn write_manifest(inner: &Inner, topology: PathBuf, scratch: PathBuf) -> Result<Manifest, Error> {
    let layout = inner.layout;
    let manifest = Manifest {
        pid: std::process::id(),
        base_port: layout.base,
        control: layout.control().to_string(),
        dns: layout.dns().to_string(),
        topology,
        started_at: inner.started_at.clone(),
        scratch,
        state: None,
        controllers: Vec::new(),
    };
    write(&Manifest::path(&inner.dir), &serde_json::to_string_pretty(&manifest).expect("serializable"))?;
    Ok(manifest)
}
