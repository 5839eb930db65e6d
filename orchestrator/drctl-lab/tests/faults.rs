//! Every fault kind against a real lab: injected through the control API,
//! seen by a real client, and gone after healing.

use drctl_lab::lab::{FaultRequest, Lab, LabClient, Options};
use std::time::{Duration, Instant};

const BASE: u16 = 21900;

async fn pg_query(addr: std::net::SocketAddr, sql: &str) -> Result<(String, Duration), String> {
    let t = Instant::now();
    let conninfo = format!("host={} port={} user=postgres dbname=lab connect_timeout=2", addr.ip(), addr.port());
    let work = async {
        let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let rows = c.simple_query(sql).await.map_err(|e| e.to_string())?;
        let first = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        Ok::<_, String>(first.unwrap_or_default())
    };
    let v = tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "no answer".to_string())??;
    Ok((v, t.elapsed()))
}

async fn http_get(url: &str) -> Result<(u16, Duration), String> {
    let t = Instant::now();
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let r = c.get(url).send().await.map_err(|e| e.to_string())?;
    Ok((r.status().as_u16(), t.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_hits_the_lab_and_heals() {
    let dir = std::env::temp_dir().join(format!("drctl-lab-faults-{}", std::process::id()));
    let state = drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).unwrap();
    let lab = Lab::start(Options { dir: dir.clone(), base_port: BASE, state }).await.expect("the lab starts");
    let l = lab.layout();
    let api = LabClient::new(&lab.manifest.control);
    let (pg1, pg2) = (l.pg(1).0, l.pg(2).0);

    // The controller's replication (its own scheduler, the topology's
    // `every: 1s`) copies the workload's objects from lab-az1 to lab-az2.
    let sdk = drctl_aws::sdk_config_with(&drctl_lab::credentials()).await;
    let lab_bucket = |z: u8| drctl_aws::s3::Bucket {
        zone: format!("lab-az{z}"),
        name: format!("lab-assets-az{z}"),
        endpoint: Some(l.s3_url(z)),
        client: drctl_aws::s3::client_for(&sdk, Some(&l.s3_url(z)), Some("lab")),
    };
    let (az1, az2) = (lab_bucket(1), lab_bucket(2));
    until(Duration::from_secs(20), "a workload object replicated to lab-az2", || async {
        let (Ok(written), Ok(copied)) = (drctl_aws::s3::list(&az1).await, drctl_aws::s3::list(&az2).await) else {
            return false;
        };
        written.keys().any(|k| copied.get(k).is_some_and(|c| c.etag == written[k].etag))
    })
    .await;

    // A dry run names what would be hit and changes nothing.
    let dry = api.inject(&FaultRequest::ZoneOutage { zones: vec!["lab-az1".into()] }, true).await.unwrap();
    assert!(dry.hits.iter().any(|h| h.contains("postgres (orders-db) in lab-az1")), "{:?}", dry.hits);
    assert!(pg_query(pg1, "SELECT 1").await.is_ok(), "a dry run injects nothing");
    assert!(api.status().await.unwrap().faults.is_empty());

    // Unknown targets are refused with the lab's entities named.
    let bad = api.inject(&FaultRequest::Latency { target: "nope".into(), delay_ms: 10 }, false).await;
    assert!(matches!(&bad, Err(drctl_lab_api::Error::Refused(m)) if m.contains("orders-db")), "{bad:?}");

    // latency: a query through the proxy pays it both ways.
    let (_, fast) = pg_query(pg1, "SELECT 1").await.unwrap();
    let f = api.inject(&FaultRequest::Latency { target: "orders-db".into(), delay_ms: 150 }, false).await.unwrap();
    let (_, slow) = pg_query(pg1, "SELECT 1").await.unwrap();
    assert!(slow >= Duration::from_millis(300), "latency seen: {slow:?} (was {fast:?})");
    api.heal(f.id).await.unwrap();
    let (_, healed) = pg_query(pg1, "SELECT 1").await.unwrap();
    assert!(healed < Duration::from_millis(300), "latency gone: {healed:?}");

    // packet-loss: every chunk stalls a retransmission timeout.
    let checkout = format!("http://{}/", l.service(1, 1).0);
    let f = api.inject(&FaultRequest::PacketLoss { target: "checkout".into(), rate: 1.0 }, false).await.unwrap();
    let (code, took) = http_get(&checkout).await.unwrap();
    assert_eq!(code, 200);
    assert!(took >= Duration::from_millis(400), "loss stalls the exchange: {took:?}");
    api.heal(f.id).await.unwrap();

    // reset: connections to the service are refused until healed.
    let f = api.inject(&FaultRequest::Reset { target: "payments".into() }, false).await.unwrap();
    assert!(http_get(&format!("http://{}/", l.service(1, 0).0)).await.is_err(), "reset");
    api.heal(f.id).await.unwrap();
    assert_eq!(http_get(&format!("http://{}/", l.service(1, 0).0)).await.unwrap().0, 200);

    // replication-pause: the standby is cut off from the primary (it stops
    // receiving, so the RPO grows); it streams again once healed.
    let receiving = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'";
    let f = api.inject(&FaultRequest::ReplicationPause { datastore: "orders-db".into() }, false).await.unwrap();
    assert!(f.hits[0].contains("replication from lab-az1 cut"), "{:?}", f.hits);
    until(Duration::from_secs(20), "the standby stops receiving", || async {
        pg_query(pg2, receiving).await.is_ok_and(|(n, _)| n == "0")
    })
    .await;
    api.heal(f.id).await.unwrap();
    until(Duration::from_secs(30), "the standby streams again", || async {
        pg_query(pg2, receiving).await.is_ok_and(|(n, _)| n == "1")
    })
    .await;

    // s3-errors: S3 answers 503 SlowDown to the real SDK.
    let bucket = drctl_aws::s3::Bucket {
        zone: "lab-az2".into(),
        name: "lab-assets-az2".into(),
        endpoint: Some(l.s3_url(2)),
        client: drctl_aws::s3::client_for(
            &drctl_aws::sdk_config_with(&drctl_lab::credentials()).await,
            Some(&l.s3_url(2)),
            Some("lab"),
        ),
    };
    drctl_aws::s3::put_bytes(&bucket, "probe", b"x".to_vec()).await.expect("S3 works before the fault");
    let f = api.inject(&FaultRequest::S3Errors { datastore: Some("assets".into()), rate: 1.0 }, false).await.unwrap();
    let err = drctl_aws::s3::put_bytes(&bucket, "probe", b"x".to_vec()).await.unwrap_err().to_string();
    assert!(err.contains("503") || err.contains("SlowDown") || err.to_lowercase().contains("slow"), "{err}");
    api.heal(f.id).await.unwrap();
    drctl_aws::s3::put_bytes(&bucket, "probe", b"y".to_vec()).await.expect("S3 works after healing");

    // process-kill: the primary's postmaster dies; healing restarts it.
    let f = api.inject(&FaultRequest::ProcessKill { target: "orders-db".into() }, false).await.unwrap();
    assert!(f.hits[0].contains("killed"), "{:?}", f.hits);
    assert!(pg_query(pg1, "SELECT 1").await.is_err(), "the primary is dead");
    api.heal(f.id).await.unwrap();
    assert_eq!(pg_query(pg1, "SELECT pg_is_in_recovery()").await.unwrap().0, "f", "back as the primary");

    // zone-outage: everything in lab-az3 stops answering; heal_all undoes it.
    api.inject(&FaultRequest::ZoneOutage { zones: vec!["lab-az3".into()] }, false).await.unwrap();
    assert!(http_get(&format!("{}/", l.s3_url(3))).await.is_err(), "S3 in lab-az3 is down");
    assert!(http_get(&format!("http://{}/", l.service(3, 2).0)).await.is_err(), "catalog in lab-az3 is down");
    let st = api.status().await.unwrap();
    assert!(st.members.iter().filter(|m| m.zone == "lab-az3").all(|m| !m.up));
    assert!(st.members.iter().filter(|m| m.zone == "lab-az1").all(|m| m.up));
    api.heal_all().await.unwrap();
    assert!(http_get(&format!("http://{}/", l.service(3, 2).0)).await.is_ok());
    assert!(api.status().await.unwrap().faults.is_empty());

    // The workload kept writing throughout.
    let st = api.status().await.unwrap();
    assert!(st.workload["orders-db"]["acknowledged"].as_u64().unwrap() > 10, "{}", st.workload);

    lab.stop().await;
    assert!(std::net::TcpListener::bind(pg1).is_ok(), "nothing listens after the lab is dropped");
    assert!(std::net::TcpListener::bind(l.control()).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

/// A zone partition, for real: the cut-off zone's primary keeps taking its
/// own zone's writes while the controller and the other zones cannot reach
/// it. The split-brain checker sees the second primary the moment someone
/// promotes beside it (here, by hand, as a careless failover would), and
/// counts the writes the old one acknowledged afterwards. Powering the old
/// primary off (the lab members' fence) ends them; healing rebuilds it as a
/// standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_keeps_writing_and_the_checker_sees_split_brain() {
    let dir = std::env::temp_dir().join(format!("drctl-lab-partition-{}", std::process::id()));
    let state = drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).unwrap();
    let lab = Lab::start(Options { dir: dir.clone(), base_port: BASE + 200, state }).await.expect("the lab starts");
    let l = lab.layout();
    let api = LabClient::new(&lab.manifest.control);
    let since_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let acked_in = |zone: &'static str| {
        let api = api.clone();
        async move {
            let st = api.status().await.unwrap();
            (st.workload["orders-db"]["acknowledged"].as_u64().unwrap(), st.workload["orders-db"]["last_zone"] == zone)
        }
    };
    let wait_until = |what: &'static str, deadline: Duration| {
        let end = Instant::now() + deadline;
        move || assert!(Instant::now() < end, "timed out waiting for {what}")
    };

    let cut = api
        .inject(&FaultRequest::ZonePartition { zones: vec!["lab-az1".into()], one_way: false }, false)
        .await
        .unwrap();
    assert!(cut.hits[0].contains("keeps running"), "{:?}", cut.hits);
    assert!(pg_query(l.pg(1).0, "SELECT 1").await.is_err(), "the controller's side cannot reach lab-az1");
    let st = api.status().await.unwrap();
    assert!(st.members.iter().any(|m| m.zone == "lab-az1" && m.faults.contains("partitioned")), "{:?}", st.members);
    // lab-az1's own writer still gets its writes acknowledged there.
    let (before, _) = acked_in("lab-az1").await;
    let check = wait_until("lab-az1's writer to keep writing", Duration::from_secs(10));
    loop {
        let (n, in_az1) = acked_in("lab-az1").await;
        if n >= before + 10 && in_az1 {
            break;
        }
        check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Promote lab-az2 beside it (no fence): two writable primaries.
    pg_query(l.pg(2).0, "SELECT pg_promote(true, 30)").await.unwrap();
    let check = wait_until("the checker to see two primaries", Duration::from_secs(15));
    let unsafe_run = loop {
        let s = api.safety("orders-db", since_ms).await.unwrap();
        if s.writable_primaries_max >= 2 && s.split_brain_writes > 0 {
            break s;
        }
        check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(unsafe_run.promoted.iter().any(|(z, _)| z == "lab-az2"), "{unsafe_run:?}");

    // The fence: powered off out of band, lab-az1 acknowledges nothing more.
    let off = api.power_off("orders-db", "lab-az1").await.unwrap();
    assert!(off.hits[0].contains("powered off"), "{:?}", off.hits);
    let fenced = api.safety("orders-db", since_ms).await.unwrap();
    // Nothing more for three probe rounds (and the writers' ticks in between).
    let check = wait_until("three more probe rounds", Duration::from_secs(10));
    let later = loop {
        let s = api.safety("orders-db", since_ms).await.unwrap();
        if s.probe_rounds >= fenced.probe_rounds + 3 {
            break s;
        }
        check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(later.split_brain_writes, fenced.split_brain_writes, "the old primary acknowledged after its fence");

    // Healing lifts the partition and brings lab-az1 back as a standby of lab-az2.
    let notes = api.heal_all().await.unwrap();
    assert!(notes.iter().any(|n| n.contains("lab-az1 rebuilt as a standby of lab-az2")), "{notes:?}");
    let (v, _) = pg_query(l.pg(1).0, "SELECT pg_is_in_recovery()").await.unwrap();
    assert_eq!(v, "t", "lab-az1 is a standby again");
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `cond` until it holds, failing the test with `what` after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
