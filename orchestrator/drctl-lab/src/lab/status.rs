//! What the lab reports about itself: each member's state, where
//! PostgreSQL's primary is, and the writes a zone lost.

use super::*;

pub(super) async fn status(inner: &Inner) -> LabStatus {
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
pub(super) async fn pg_session(addr: SocketAddr, db: &str) -> Result<tokio_postgres::Client, Error> {
    let conninfo = format!("host={} port={} user=postgres dbname={db}", addr.ip(), addr.port());
    drctl_providers::postgres::connect(&conninfo, Duration::from_secs(2))
        .await
        .map_err(|e| Error::Process(e.to_string()))
}

pub(super) fn pg_error(e: tokio_postgres::Error) -> Error {
    Error::Process(e.to_string())
}

/// What a member says of itself: `Some(true)` in recovery (a standby),
/// `Some(false)` a primary, `None` when it does not answer (down, or fenced:
/// its pg_hba.conf turns sessions away).
pub(super) async fn recovery_of(inner: &Inner, z: u8) -> Option<bool> {
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
pub(super) async fn pg_primary_zone(inner: &Inner) -> Option<u8> {
    for z in 1..=2u8 {
        if recovery_of(inner, z).await == Some(false) {
            return Some(z);
        }
    }
    None
}

/// Counts the writes a failover of `datastore` to `zone` lost.
pub(super) async fn loss(inner: &Inner, datastore: &str, zone: &str) -> Result<Loss, Error> {
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

/// Counts, against the workload's acknowledgements, what a restore of
/// `datastore` to `point` gave back (writes acknowledged before it, intact
/// now) and gave up (writes acknowledged after it, gone now).
pub(super) async fn restored(
    inner: &Inner,
    datastore: &str,
    point: std::time::SystemTime,
) -> Result<drctl_lab_api::Restored, Error> {
    let (acks, present, zone): (Vec<workload::Ack>, HashSet<u64>, u8) = match datastore {
        "orders-db" => {
            let z = pg_primary_zone(inner)
                .await
                .ok_or_else(|| Error::Process("orders-db has no primary answering: nothing to count".into()))?;
            let reading = |e: String| Error::Process(format!("reading orders-db in {}: {e}", zone_name(z)));
            let c = pg_session(inner.layout.pg(z).1, "lab").await.map_err(|e| reading(e.to_string()))?;
            let rows = c.query("SELECT seq FROM workload", &[]).await.map_err(|e| reading(e.to_string()))?;
            let acks = inner.pg_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (acks, rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect(), z)
        }
        "assets" => {
            let b = assets_bucket(inner, 1).await?;
            let objects =
                drctl_aws::s3::list(&b).await.map_err(|e| Error::Process(format!("listing assets in lab-az1: {e}")))?;
            // An object still holding the fault's ciphertext is not back.
            let bad = overwritten_etag();
            let intact = objects
                .iter()
                .filter(|(_, o)| o.etag.trim_matches('"') != bad)
                .filter_map(|(k, _)| workload::seq_of_key(k))
                .collect();
            let acks = inner.s3_log.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (acks, intact, 1)
        }
        other => return Err(unknown_target(other)),
    };
    let (before, after): (Vec<&workload::Ack>, Vec<&workload::Ack>) = acks.iter().partition(|a| a.at < point);
    Ok(drctl_lab_api::Restored {
        before_point: before.len() as u64,
        came_back: before.iter().filter(|a| present.contains(&a.seq)).count() as u64,
        after_point: after.len() as u64,
        lost_writes: after.iter().filter(|a| !present.contains(&a.seq)).count() as u64,
        newest_back_ms: before
            .iter()
            .filter(|a| present.contains(&a.seq))
            .filter_map(|a| a.at.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .max(),
        read_from: zone_name(zone),
    })
}

/// The ETag S3 gives the object-overwrite fault's body (its MD5).
fn overwritten_etag() -> String {
    use md5::Digest;
    md5::Md5::digest(OVERWRITTEN).iter().map(|b| format!("{b:02x}")).collect()
}
