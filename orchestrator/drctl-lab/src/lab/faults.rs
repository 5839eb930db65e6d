//! Faults: injecting each kind of [`FaultRequest`], undoing it, and
//! reconciling PostgreSQL after a zone comes back (a returning old
//! primary is rebuilt as a standby, never left writable).

use super::*;

/// How to undo one fault.
pub(super) enum Undo {
    Proxies(Vec<Arc<crate::proxy::ProxyFaults>>),
    /// Bring PostgreSQL back in these zones (as a standby when a primary
    /// runs elsewhere), and lift any power-off of them.
    Restart(Vec<u8>),
    /// Lift a partition (its id in [`Partitions`]).
    Partition(u64, Vec<u8>),
    ResumeCopying,
    S3Errors(Vec<u8>),
    /// Start the zone processes of these zones again.
    StartProcesses(Vec<u8>),
    /// Nothing to undo: a logical disaster stays until a restore undoes it.
    Note(String),
}

pub(super) struct ActiveFault {
    pub(super) id: u64,
    pub(super) request: FaultRequest,
    pub(super) hits: Vec<String>,
    pub(super) undo: Vec<Undo>,
}

pub(super) const ENTITIES: &[&str] = &["orders-db", "assets", "payments", "checkout", "catalog"];

pub(super) fn unknown_target(t: &str) -> Error {
    Error::BadInput(format!("`{t}` is not in the lab; its entities are {}", ENTITIES.join(", ")))
}

/// The proxies that carry traffic to an entity, with words for each.
pub(super) fn proxies_of(inner: &Inner, target: &str) -> Result<Vec<(Arc<crate::proxy::ProxyFaults>, String)>, Error> {
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

/// What the object-overwrite fault writes over an object (the lab's
/// ransomware), told apart from the workload's own bodies by the lab's counts.
pub(super) const OVERWRITTEN: &[u8] = b"ENCRYPTED by the drctl lab's object-overwrite fault\n";

/// Evenly spread picks: `share` of the items, in their order.
pub(super) fn every_share<T: Clone>(items: &[T], share: f64) -> Vec<T> {
    let share = share.clamp(0.0, 1.0);
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| ((*i as f64 + 1.0) * share).floor() > (*i as f64 * share).floor())
        .map(|(_, t)| t.clone())
        .collect()
}

/// The assets bucket of zone `z`, through its public (proxied) address.
pub(super) async fn assets_bucket(inner: &Inner, z: u8) -> Result<drctl_aws::s3::Bucket, Error> {
    let m = inner.s3.iter().find(|m| m.zone == z).ok_or_else(|| Error::BadInput(format!("no S3 in lab-az{z}")))?;
    let url = format!("http://{}", m.proxy.listen);
    Ok(drctl_aws::s3::Bucket {
        zone: zone_name(z),
        name: format!("lab-assets-az{z}"),
        client: inner.clients.s3(Some(&url), Some("lab")).await,
        endpoint: Some(url),
    })
}

/// Lab zone numbers (1-based) of zone names.
pub(super) fn zone_numbers(zones: &[String]) -> Result<Vec<u8>, Error> {
    zones
        .iter()
        .map(|z| {
            ZONES.iter().position(|x| x == z).map(|i| i as u8 + 1).ok_or_else(|| {
                Error::BadInput(format!("zone `{z}` is not in the lab; its zones are {}", ZONES.join(", ")))
            })
        })
        .collect()
}

/// What a fault did (or, in a dry run, would do), in words, and how to undo it.
struct Effect {
    hits: Vec<String>,
    undo: Vec<Undo>,
}

pub(super) async fn inject(inner: &Inner, req: FaultRequest, dry_run: bool) -> Result<Injected, Error> {
    let Effect { hits, undo } = match &req {
        FaultRequest::ZonePartition { zones, one_way } => partition_zones(inner, zones, *one_way, dry_run)?,
        FaultRequest::PowerOff { datastore, zone } => power_off(inner, datastore, zone, dry_run)?,
        FaultRequest::ZoneOutage { zones } => zone_outage(inner, zones, dry_run)?,
        FaultRequest::ProcessKill { target } => match target.as_str() {
            "orders-db" => kill_pg_primary(inner, dry_run).await?,
            "assets" => stop_s3_server(inner, dry_run),
            other => kill_service(inner, other, dry_run)?,
        },
        FaultRequest::Latency { target, delay_ms } => on_proxies(
            inner,
            target,
            dry_run,
            |what| format!("{what}: +{delay_ms}ms each way"),
            |p| p.set_latency(Duration::from_millis(*delay_ms)),
        )?,
        FaultRequest::PacketLoss { target, rate } => on_proxies(
            inner,
            target,
            dry_run,
            |what| format!("{what}: {:.0}% of chunks stall {}ms", rate * 100.0, crate::proxy::LOSS_STALL.as_millis()),
            |p| p.set_loss(*rate),
        )?,
        FaultRequest::Reset { target } => {
            on_proxies(inner, target, dry_run, |what| format!("{what}: connections reset"), |p| p.set_reset(true))?
        }
        FaultRequest::ReplicationPause { datastore } => match datastore.as_str() {
            "orders-db" => cut_pg_replication(inner, dry_run).await?,
            "assets" => pause_copying(inner, dry_run),
            other => return Err(unknown_target(other)),
        },
        FaultRequest::S3Errors { datastore, rate } => s3_errors(inner, datastore.as_deref(), *rate, dry_run)?,
        FaultRequest::DataLoss { datastore, sql } => data_loss(inner, datastore, sql, dry_run).await?,
        FaultRequest::ObjectOverwrite { datastore, share } => {
            overwrite_objects(inner, datastore, *share, dry_run).await?
        }
    };
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

/// Cuts zones off from each other and the controller (or, one way, from
/// the controller only); everything in them keeps running.
fn partition_zones(inner: &Inner, zones: &[String], one_way: bool, dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
    let nums = zone_numbers(zones)?;
    let pid = inner.next_fault.fetch_add(1, Ordering::SeqCst);
    for z in &nums {
        hits.push(if one_way {
            format!("{}: the controller can no longer reach it; the other zones still do", zone_name(*z))
        } else {
            format!(
                "{}: cut off from the other zones and the controller; everything in it keeps running",
                zone_name(*z)
            )
        });
    }
    if !dry_run {
        inner.partitions.add(pid, nums.clone(), one_way);
    }
    Ok(Effect { hits, undo: vec![Undo::Partition(pid, nums)] })
}

/// Kills orders-db's member in one zone, as a power cut would.
fn power_off(inner: &Inner, datastore: &str, zone: &String, dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
    if datastore != "orders-db" {
        return Err(unknown_target(datastore));
    }
    let z = zone_numbers(std::slice::from_ref(zone))?[0];
    let mut pg = inner.pg.lock().unwrap_or_else(|p| p.into_inner());
    let m =
        pg.iter_mut().find(|m| m.zone == z).ok_or_else(|| Error::BadInput(format!("no orders-db member in {zone}")))?;
    if m.server.running() {
        hits.push(format!("postgres (orders-db) in {zone} powered off (pid {})", m.server.pid().unwrap_or(0)));
        if !dry_run {
            m.server.kill();
        }
    } else {
        hits.push(format!("postgres (orders-db) in {zone} was already off"));
    }
    Ok(Effect { hits, undo: vec![Undo::Restart(vec![z])] })
}

/// Takes whole zones down: their PostgreSQL members killed, every address
/// in them down, their zone processes (etcd, controllers) killed.
fn zone_outage(inner: &Inner, zones: &[String], dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
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
            hits.push(format!("{} in {}: killed (pid {})", p.spec.name, zone_name(p.spec.zone), p.pid().unwrap_or(0)));
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
    Ok(Effect { hits, undo: vec![Undo::Proxies(proxies), Undo::Restart(killed), Undo::StartProcesses(nums.clone())] })
}

/// Kills orders-db's writable primary, wherever it runs now.
async fn kill_pg_primary(inner: &Inner, dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
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
    Ok(Effect { hits, undo: vec![Undo::Restart(vec![z])] })
}

/// The first zone's S3 server stops answering.
fn stop_s3_server(inner: &Inner, dry_run: bool) -> Effect {
    let m = &inner.s3[0];
    let hits = vec![format!("S3 server of {} stopped answering ({})", zone_name(m.zone), m.proxy.listen)];
    if !dry_run {
        m.proxy.faults.set_down(true);
    }
    Effect { hits, undo: vec![Undo::Proxies(vec![m.proxy.faults.clone()])] }
}

/// Kills the instance of a service that DNS sends callers to now (or its
/// first instance).
fn kill_service(inner: &Inner, name: &str, dry_run: bool) -> Result<Effect, Error> {
    let i = SERVICES.iter().position(|s| s.0 == name).ok_or_else(|| unknown_target(name))?;
    let answer = inner
        .dns
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&format!("{name}.{DNS_ZONE}"))
        .and_then(|(_, a)| a.first().copied());
    let s = inner
        .services
        .iter()
        .find(|s| s.service == i && Some(s.proxy.listen.ip()) == answer.map(IpAddr::V4))
        .or_else(|| inner.services.iter().find(|s| s.service == i))
        .ok_or_else(|| unknown_target(name))?;
    let hits = vec![format!("{name} in {} ({}) killed", zone_name(s.zone), s.proxy.listen)];
    if !dry_run {
        s.proxy.faults.set_down(true);
    }
    Ok(Effect { hits, undo: vec![Undo::Proxies(vec![s.proxy.faults.clone()])] })
}

/// Sets a fault (`set`) on every proxy in front of `target`, described per
/// proxy by `describe`.
fn on_proxies(
    inner: &Inner,
    target: &str,
    dry_run: bool,
    describe: impl Fn(&str) -> String,
    set: impl Fn(&crate::proxy::ProxyFaults),
) -> Result<Effect, Error> {
    let mut hits = Vec::new();
    let ps = proxies_of(inner, target)?;
    for (p, what) in &ps {
        hits.push(describe(what));
        if !dry_run {
            set(p);
        }
    }
    Ok(Effect { hits, undo: vec![Undo::Proxies(ps.into_iter().map(|(p, _)| p).collect())] })
}

/// The standby's link to the primary is cut (its replication egress
/// refuses): it stops receiving, so what it lacks, the RPO, grows.
/// (Pausing replay alone would not: WAL received but not replayed is not
/// data at risk, only replay lag.)
async fn cut_pg_replication(inner: &Inner, dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
    let primary = pg_primary_zone(inner).await;
    let Some(primary) = primary else {
        return Err(Error::BadInput("orders-db has no primary answering: there is no replication to pause".into()));
    };
    let mut cut = Vec::new();
    for (z, t, proxy) in inner.egress.iter().filter(|(_, t, _)| *t == primary) {
        hits.push(format!(
            "orders-db standby in {}: replication from {} cut ({})",
            zone_name(*z),
            zone_name(*t),
            proxy.listen
        ));
        if !dry_run {
            proxy.faults.set_down(true);
        }
        cut.push(proxy.faults.clone());
    }
    Ok(Effect { hits, undo: vec![Undo::Proxies(cut)] })
}

/// Holds drctl's copying of assets between zones.
fn pause_copying(inner: &Inner, dry_run: bool) -> Effect {
    let hits = vec!["assets: drctl's copying paused".into()];
    if !dry_run {
        inner.copying_paused.store(true, Ordering::SeqCst);
    }
    Effect { hits, undo: vec![Undo::ResumeCopying] }
}

/// Every zone's S3 endpoint answers `rate` of its requests with 503.
fn s3_errors(inner: &Inner, datastore: Option<&str>, rate: f64, dry_run: bool) -> Result<Effect, Error> {
    if let Some(d) = datastore.filter(|d| *d != "assets") {
        return Err(Error::BadInput(format!("`{d}` is not an S3 datastore of the lab (it has `assets`)")));
    }
    let mut hits = Vec::new();
    let mut zones = Vec::new();
    for m in &inner.s3 {
        hits.push(format!("S3 endpoint of {}: {:.0}% of requests answered 503", zone_name(m.zone), rate * 100.0));
        if !dry_run {
            m.server.set_error_rate(rate);
        }
        zones.push(m.zone);
    }
    Ok(Effect { hits, undo: vec![Undo::S3Errors(zones)] })
}

/// Runs the given SQL on orders-db's primary; replication carries the loss
/// to every standby, and only a restore brings the rows back.
async fn data_loss(inner: &Inner, datastore: &str, sql: &str, dry_run: bool) -> Result<Effect, Error> {
    let mut hits = Vec::new();
    if datastore != "orders-db" {
        return Err(Error::BadInput(format!(
            "`{datastore}` is not a PostgreSQL datastore of the lab (it has `orders-db`)"
        )));
    }
    let z = pg_primary_zone(inner)
        .await
        .ok_or_else(|| Error::BadInput("orders-db has no writable primary to run the SQL on right now".into()))?;
    if dry_run {
        hits.push(format!("orders-db primary in {}: would run `{sql}`", zone_name(z)));
    } else {
        let c = pg_session(inner.layout.pg(z).1, "lab").await?;
        let done = c.simple_query(sql).await.map_err(|e| {
            let why = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
            Error::BadInput(format!("the data-loss SQL failed on orders-db: {why}"))
        })?;
        let rows: u64 = done
            .iter()
            .map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum();
        hits.push(format!(
            "orders-db primary in {}: ran `{sql}` ({rows} rows); replication carries it to every standby",
            zone_name(z)
        ));
    }
    Ok(Effect { hits, undo: vec![Undo::Note("the rows stay lost until a restore brings them back".into())] })
}

/// The lab's ransomware: overwrites `share` of lab-az1's assets with
/// [`OVERWRITTEN`]; the replicator carries it to the other zones.
async fn overwrite_objects(inner: &Inner, datastore: &str, share: f64, dry_run: bool) -> Result<Effect, Error> {
    if datastore != "assets" {
        return Err(Error::BadInput(format!("`{datastore}` is not an S3 datastore of the lab (it has `assets`)")));
    }
    let b = assets_bucket(inner, 1).await?;
    let objects =
        drctl_aws::s3::list(&b).await.map_err(|e| Error::Process(format!("listing assets in lab-az1: {e}")))?;
    let mut keys: Vec<&String> = objects.keys().collect();
    keys.sort();
    let chosen = every_share(&keys, share);
    if !dry_run {
        for k in &chosen {
            drctl_aws::s3::put_bytes(&b, k, OVERWRITTEN.to_vec())
                .await
                .map_err(|e| Error::Process(format!("overwriting {k}: {e}")))?;
        }
    }
    let hits = vec![format!(
        "assets in lab-az1 (bucket {}): {} {} of {} objects with ciphertext; the replicator carries it to the other zones",
        b.name,
        if dry_run { "would overwrite" } else { "overwrote" },
        chosen.len(),
        keys.len()
    )];
    Ok(Effect { hits, undo: vec![Undo::Note("the objects stay overwritten until a restore brings them back".into())] })
}

pub(super) async fn undo_fault(inner: &Inner, f: ActiveFault) -> Vec<String> {
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
            Undo::ResumeCopying => inner.copying_paused.store(false, Ordering::SeqCst),
            Undo::S3Errors(zones) => {
                for m in inner.s3.iter().filter(|m| zones.contains(&m.zone)) {
                    m.server.set_error_rate(0.0);
                }
            }
            Undo::Note(n) => notes.push(n),
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

pub(super) async fn heal_all(inner: &Inner) -> Vec<String> {
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
pub(super) fn lift_power_offs(inner: &Inner, zones: &[u8]) {
    inner.faults.lock().unwrap_or_else(|p| p.into_inner()).retain(|f| match &f.request {
        FaultRequest::PowerOff { zone, .. } => {
            !zone_numbers(std::slice::from_ref(zone)).is_ok_and(|z| zones.contains(&z[0]))
        }
        _ => true,
    });
}

/// Whether a running member is a standby (false: a primary, or fenced).
pub(super) async fn in_recovery(inner: &Inner, z: u8) -> bool {
    recovery_of(inner, z).await == Some(true)
}

/// Brings orders-db's members in these zones back to a healthy shape:
/// one that is down starts again, as a standby of the primary when one
/// runs elsewhere (never two writable primaries); one that runs but is
/// not a standby beside that primary (a fenced old primary) is rebuilt as
/// its standby, which lifts its fence.
pub(super) async fn reconcile(inner: &Inner, zones: &[u8]) -> Vec<String> {
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
            // Not the lab's server, but something serves the member's
            // address: a restore put its copy (or a rebuilt standby) there.
            Some(false) if recovery_of(inner, z).await.is_some() => {}
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_share_picks_that_many_spread_out() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(super::every_share(&items, 0.5), [1, 3, 5, 7, 9]);
        assert_eq!(super::every_share(&items, 1.0).len(), 10);
        assert!(super::every_share(&items, 0.0).is_empty());
        assert_eq!(super::every_share(&items, 0.25).len(), 2);
    }
}
