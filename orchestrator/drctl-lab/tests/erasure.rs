//! Erasure on the lab's own S3: a versioned primary bucket in lab-az1 and
//! its replicas in lab-az2 and lab-az3, kept in step by the controller's
//! replication (its own scheduler, running throughout). A subject's keys
//! are written several times and deleted once, each state replicated,
//! then erased through drctl's eraser over the lab's topology: no version
//! and no delete marker of theirs is left in any bucket, another subject's
//! versions are untouched, every copy is verified, and replication passes
//! after the erasure bring nothing back (nor keep the erased keys' names in
//! drctl's state).

use drctl_aws::s3::{self, Bucket};
use drctl_control::declare::Actor;
use drctl_control::erasure::Eraser;
use drctl_control::live::Clients;
use drctl_lab::lab::{Lab, Options};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const BASE: u16 = 23300;
const SUBJECT: &str = "cust-5c2a9";
const OTHER: &str = "cust-77d10";
const KEYS: [&str; 2] = ["avatar.png", "cv.pdf"];

/// Every (key, version id, is a delete marker) under `prefix`.
async fn versions(b: &Bucket, prefix: &str) -> BTreeSet<(String, String, bool)> {
    let mut all = BTreeSet::new();
    let (mut key_marker, mut id_marker) = (None, None);
    loop {
        let page = b
            .client
            .list_object_versions()
            .bucket(&b.name)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing versions in {}: {e:?}", b.zone));
        for v in page.versions() {
            all.insert((
                v.key().unwrap_or_default().to_string(),
                v.version_id().unwrap_or_default().to_string(),
                false,
            ));
        }
        for m in page.delete_markers() {
            all.insert((m.key().unwrap_or_default().to_string(), m.version_id().unwrap_or_default().to_string(), true));
        }
        if page.is_truncated() != Some(true) {
            return all;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_version_id_marker().map(str::to_string);
    }
}

/// (versions, delete markers) in a listing.
fn counts(listed: &BTreeSet<(String, String, bool)>) -> (usize, usize) {
    let markers = listed.iter().filter(|v| v.2).count();
    (listed.len() - markers, markers)
}

/// Polls `cond` until it holds, failing the test with `what` after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every replica holds the primary's current object at `key`
/// (the same ETag), or lacks it as the primary does.
async fn replicated(primary: &Bucket, replicas: [&Bucket; 2], key: &str) -> bool {
    let Ok(source) = s3::list(primary).await else { return false };
    let want = source.get(key).map(|o| o.etag.clone());
    for r in replicas {
        let Ok(dest) = s3::list(r).await else { return false };
        if dest.get(key).map(|o| o.etag.clone()) != want {
            return false;
        }
    }
    true
}

/// How many replication runs of `assets` have finished after `after`,
/// counting each finish as it is seen (the runs follow one another).
async fn runs_finished_after(state: &drctl_state::State, after: SystemTime, runs: usize) {
    let mut seen = Vec::new();
    until(Duration::from_secs(30), &format!("{runs} replication passes after the erasure"), || {
        if let Ok(Some((finished, _, _))) = state.last_replication_run("assets") {
            if finished > after && !seen.contains(&finished) {
                seen.push(finished);
            }
        }
        let done = seen.len() >= runs;
        async move { done }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_the_lab_removes_every_version_from_the_primary_and_every_replica_bucket() {
    let dir = std::env::temp_dir().join(format!("drctl-lab-erasure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = drctl_state::State::open(&format!("sqlite://{}/state.db", dir.display())).unwrap();
    let lab =
        Lab::start(Options { dir: dir.clone(), base_port: BASE, state: state.clone() }).await.expect("the lab starts");
    let l = lab.layout();
    let sdk = drctl_aws::sdk_config_with(&drctl_lab::credentials()).await;
    let bucket = |z: u8| Bucket {
        zone: format!("lab-az{z}"),
        name: format!("lab-assets-az{z}"),
        endpoint: Some(l.s3_url(z)),
        client: s3::client_for(&sdk, Some(&l.s3_url(z)), Some("lab")),
    };
    let (az1, az2, az3) = (bucket(1), bucket(2), bucket(3));
    let all = [&az1, &az2, &az3];
    let (mine, theirs) = (format!("users/{SUBJECT}/"), format!("users/{OTHER}/"));

    // Three versions of each key, each replicated before the next is
    // written, so the replicas hold three versions of their own.
    for round in 1..=3 {
        for prefix in [&mine, &theirs] {
            for k in KEYS {
                s3::put_bytes(&az1, &format!("{prefix}{k}"), format!("{k} v{round}").into_bytes()).await.unwrap();
            }
        }
        for prefix in [&mine, &theirs] {
            for k in KEYS {
                let key = format!("{prefix}{k}");
                until(Duration::from_secs(20), &format!("{key} v{round} replicated"), || {
                    replicated(&az1, [&az2, &az3], &key)
                })
                .await;
            }
        }
    }
    // A delete hides a key behind a marker, on the primary and, once
    // replicated, on each replica: every old version is still there.
    let cv = format!("{mine}cv.pdf");
    let del = az1.client.delete_object().bucket(&az1.name).key(&cv).send().await.unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    until(Duration::from_secs(20), "the delete replicated", || replicated(&az1, [&az2, &az3], &cv)).await;
    for b in all {
        assert_eq!(counts(&versions(b, &mine).await), (6, 1), "before the erasure, in {}", b.zone);
    }
    let mut others_before = Vec::new();
    for b in all {
        let v = versions(b, &theirs).await;
        assert_eq!(counts(&v), (6, 0), "another subject's versions in {}", b.zone);
        others_before.push(v);
    }

    // The erasure, over the lab's own topology with an `erasure:` section,
    // while the controller's replication keeps running.
    let topo_path = dir.join(drctl_lab_api::TOPOLOGY_FILE);
    let yaml = std::fs::read_to_string(&topo_path).unwrap()
        + "\nerasure:\n  locate:\n    - { datastore: assets, prefix: \"users/{subject}/\" }\n";
    let loaded = drctl_core::load_str(&yaml, &topo_path);
    let topo = Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics)));
    let eraser = Eraser::new(topo, state.clone(), Arc::new(Clients::new(drctl_lab::credentials())));
    let started = Instant::now();
    let req = eraser
        .erase(SUBJECT, "ticket 27", &Actor::new("alice", "cli"), Duration::from_secs(30))
        .await
        .expect("the erasure runs");
    let took = started.elapsed();
    assert!(req.verified(), "every copy verified: {req:?}");
    let zones: BTreeSet<&str> = req.copies.iter().map(|c| c.zone.as_str()).collect();
    assert_eq!(zones, BTreeSet::from(["lab-az1", "lab-az2", "lab-az3"]), "{req:?}");
    assert!(req.copies.iter().all(|c| c.erased_at.is_some() && c.verified_at.is_some()), "{req:?}");
    let verified_at = req.copies.iter().filter_map(|c| c.verified_at).max().unwrap();
    let clean = || async {
        for (b, before) in all.iter().zip(&others_before) {
            let left = versions(b, &mine).await;
            assert!(left.is_empty(), "versions or delete markers of the erased subject left in {}: {left:?}", b.zone);
            assert_eq!(&versions(b, &theirs).await, before, "another subject's versions in {} untouched", b.zone);
        }
    };
    clean().await;

    // Replication goes on: two more passes (the second started after the
    // erasure was verified) bring nothing back, and drctl's record of what
    // it replicated holds none of the erased keys.
    runs_finished_after(&*state, verified_at, 2).await;
    clean().await;
    for z in ["lab-az1", "lab-az2", "lab-az3"] {
        let accounted = state.replicated("assets", z).unwrap();
        let named: Vec<&String> = accounted.keys().filter(|k| k.contains(SUBJECT)).collect();
        assert!(named.is_empty(), "drctl's replication record names the erased subject in {z}: {named:?}");
        assert!(accounted.keys().any(|k| k.starts_with(&theirs)), "another subject's keys still accounted for in {z}");
    }
    let (report, _) = eraser.report().unwrap();
    assert!(!report.to_string().contains(SUBJECT), "the ledger's report names the subject: {report}");
    eprintln!("erased and verified on three buckets in {took:?}");

    lab.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
