//! Logical disasters in a real lab: orders-db is backed up by pgBackRest
//! from `lab up` on, the two faults that damage data (a `DELETE`, objects
//! overwritten) do so through the control API, and the lab counts what a
//! restore to the moment before gave back and gave up.

use drctl_lab::lab::{Backups, FaultRequest, Lab, LabClient, Options};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BASE: u16 = 22500;

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_backs_up_orders_db_and_its_logical_faults_damage_data_a_restore_can_bring_back() {
    let dir = std::env::temp_dir().join(format!("drctl-lab-logical-{}", std::process::id()));
    let state = drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).unwrap();
    let lab = Lab::start(Options { dir: dir.clone(), base_port: BASE, state }).await.expect("the lab starts");
    let api = LabClient::new(&lab.manifest.control);
    match &lab.backups {
        Backups::Taken { repo, .. } => assert!(repo.join("backup/orders-db").exists(), "{repo:?}"),
        other => panic!("pgBackRest is installed here: the lab backs orders-db up ({other:?})"),
    }
    let topo = std::fs::read_to_string(dir.join("drctl.yaml")).unwrap();
    assert!(topo.contains("backup: { tool: pgbackrest, repo: { zone: lab-az3"), "{topo}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Ransomware: half the objects of the primary bucket overwritten.
    let point = SystemTime::now();
    let hit =
        api.inject(&FaultRequest::ObjectOverwrite { datastore: "assets".into(), share: 0.5 }, false).await.unwrap();
    assert!(hit.hits[0].contains("overwrote") && hit.hits[0].contains("lab-assets-az1"), "{:?}", hit.hits);
    let damaged = api.restored("assets", ms(point)).await.unwrap();
    assert!(damaged.before_point >= 10, "{damaged:?}");
    let half = damaged.before_point / 2;
    assert!(damaged.came_back.abs_diff(half) <= 1, "about half survive the overwrite: {damaged:?}");
    // A heal undoes nothing: only a restore brings data back.
    let notes = api.heal(hit.id).await.unwrap();
    assert!(notes.iter().any(|n| n.contains("until a restore")), "{notes:?}");

    // The restore drctl would run, on the lab's versioned bucket.
    let clients = drctl_control::live::Clients::new(drctl_lab::credentials());
    let url = lab.layout().s3_url(1);
    let b = drctl_aws::s3::Bucket {
        zone: "lab-az1".into(),
        name: "lab-assets-az1".into(),
        client: clients.s3(Some(&url), Some("lab")).await,
        endpoint: Some(url),
    };
    let sum = drctl_aws::s3_restore::restore(&b, "", point, &drctl_aws::s3_restore::Dest::InPlace).await.unwrap();
    assert!(sum.restored >= half && sum.failed.is_empty(), "{sum:?}");
    let back = api.restored("assets", ms(point)).await.unwrap();
    assert_eq!(back.came_back, back.before_point, "every object acknowledged before the point is back: {back:?}");

    // A DELETE without a WHERE, on the primary.
    let point = SystemTime::now();
    let hit = api
        .inject(&FaultRequest::DataLoss { datastore: "orders-db".into(), sql: "DELETE FROM workload".into() }, false)
        .await
        .unwrap();
    assert!(hit.hits[0].contains("ran `DELETE FROM workload`"), "{:?}", hit.hits);
    let lost = api.restored("orders-db", ms(point)).await.unwrap();
    assert!(lost.before_point > 20 && lost.came_back == 0, "every row before the delete is gone: {lost:?}");
    // SQL that fails is the experiment's mistake, refused as such.
    let bad = api
        .inject(&FaultRequest::DataLoss { datastore: "orders-db".into(), sql: "DELETE FROM nope".into() }, false)
        .await;
    assert!(matches!(&bad, Err(drctl_lab_api::Error::Refused(m)) if m.contains("nope")), "{bad:?}");
    let bad = api.inject(&FaultRequest::ObjectOverwrite { datastore: "orders-db".into(), share: 0.5 }, false).await;
    assert!(matches!(&bad, Err(drctl_lab_api::Error::Refused(m)) if m.contains("assets")), "{bad:?}");

    lab.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
