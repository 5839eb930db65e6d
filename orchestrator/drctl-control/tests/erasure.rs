//! Erasure against real components: a PostgreSQL primary and standby
//! (the standby's replay paused during the erasure, then resumed; a
//! failover in the middle of one) and versioned S3 buckets on the AWS API
//! emulator (no version of an erased key left on the primary or the
//! replica).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use drctl_control::declare::Actor;
use drctl_control::erasure::Eraser;
use drctl_control::live::Clients;
use drctl_state::Store;
use drctl_testkit::{Moto, PgPair};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SUBJECT: &str = "cust-8f3e1";

fn load(yaml: &str) -> Arc<drctl_core::Topology> {
    let loaded = drctl_core::load_str(yaml, std::path::Path::new("drctl.yaml"));
    Arc::new(loaded.topology.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics)))
}

fn pg_topology(pg: &PgPair) -> Arc<drctl_core::Topology> {
    load(&format!(
        "{}erasure:\n  deadline: 30d\n  locate:\n    - {{ datastore: orders-db, sql: \"DELETE FROM customers WHERE id = $1\", check: \"SELECT count(*) FROM customers WHERE id = $1\" }}\n    - {{ datastore: orders-db, sql: \"DELETE FROM orders WHERE customer = $1\", check: \"SELECT count(*) FROM orders WHERE customer = $1\" }}\n",
        pg.shop_topology("", "")
    ))
}

fn seed(pg: &PgPair) {
    pg.psql(
        pg.primary_port,
        &format!(
            "CREATE TABLE customers (id text PRIMARY KEY, name text); CREATE TABLE orders (n int, customer text);\
             INSERT INTO customers VALUES ('{SUBJECT}', 'Ada'), ('cust-other', 'Bob');\
             INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN '{SUBJECT}' ELSE 'cust-other' END FROM generate_series(1, 10) g"
        ),
    );
    pg.wait_replayed();
}

fn count(pg: &PgPair, port: u16) -> String {
    pg.psql(port, &format!("SELECT (SELECT count(*) FROM customers WHERE id = '{SUBJECT}') + (SELECT count(*) FROM orders WHERE customer = '{SUBJECT}')"))
}

fn no_subject_in(text: &str) {
    assert!(!text.contains(SUBJECT), "the subject leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_standby_is_verified_only_once_it_has_replayed_the_erasure() {
    let pg = PgPair::start();
    seed(&pg);
    let state = <dyn Store>::in_memory().unwrap();
    let eraser = Eraser::new(pg_topology(&pg), state.clone(), Arc::new(Clients::new(Default::default())));

    pg.psql(pg.standby_port, "SELECT pg_wal_replay_pause()");
    let req = eraser.erase(SUBJECT, "ticket 7", &Actor::new("alice", "cli"), Duration::from_secs(1)).await.unwrap();
    assert_eq!(count(&pg, pg.primary_port), "0", "erased on the primary");
    assert_eq!(count(&pg, pg.standby_port), "6", "the paused standby still has it");
    assert!(!req.verified(), "not verified while the standby has not replayed: {req:?}");
    let standby = req.copies.iter().find(|c| c.zone == "az2").unwrap();
    assert!(standby.verified_at.is_none());
    assert!(standby.pending.as_deref().is_some_and(|p| p.contains("replayed up to")), "{standby:?}");
    let primary = req.copies.iter().find(|c| c.zone == "az1").unwrap();
    assert!(primary.primary && primary.erased_at.is_some() && primary.verified_at.is_some(), "{primary:?}");
    assert!(standby.position.is_some(), "the erasure's position is kept for the standby");
    let (json, overdue) = eraser.report().unwrap();
    assert!(!overdue);
    assert!(json["erasures"][0]["copies"][1]["verified_at"].is_null(), "{json}");
    no_subject_in(&json.to_string());

    pg.psql(pg.standby_port, "SELECT pg_wal_replay_resume()");
    let req = eraser.wait(&req.id, Duration::from_secs(30)).await.unwrap();
    assert!(req.verified(), "{req:?}");
    assert_eq!(count(&pg, pg.standby_port), "0");
    assert_eq!(pg.psql(pg.primary_port, "SELECT count(*) FROM orders"), "5", "only the subject's rows went");

    // The audit log names the request, never the subject.
    let audit = state.audit_entries().unwrap();
    let e = audit.iter().find(|e| e.action == "erase").expect("audited");
    assert_eq!(e.target, format!("erasure {}", req.id));
    no_subject_in(&format!("{audit:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_in_the_middle_of_an_erasure_runs_it_again_on_the_new_primary() {
    let pg = PgPair::start_with_cuttable_link();
    seed(&pg);
    let state = <dyn Store>::in_memory().unwrap();
    let eraser = Eraser::new(pg_topology(&pg), state.clone(), Arc::new(Clients::new(Default::default())));

    // The standby never receives the erasure: its link is cut, then the primary dies.
    pg.cut_link();
    let req = eraser.erase(SUBJECT, "ticket 8", &Actor::new("alice", "cli"), Duration::from_millis(300)).await.unwrap();
    assert!(!req.verified());
    pg.kill_primary();
    pg.psql(pg.standby_port, "SELECT pg_promote(true, 60)");
    assert_eq!(count(&pg, pg.standby_port), "6", "the new primary holds the subject");

    let n = eraser.after_failover("orders-db").await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&pg, pg.standby_port), "0", "erased again on the new primary");
    let req = state.erasure(&req.id).unwrap().unwrap();
    let az2 = req.copies.iter().find(|c| c.zone == "az2").unwrap();
    assert!(az2.primary && az2.erased_at.is_some() && az2.verified_at.is_some(), "{az2:?}");
    let az1 = req.copies.iter().find(|c| c.zone == "az1").unwrap();
    assert!(az1.verified_at.is_some(), "the old primary was verified clean before it died: {az1:?}");
}

async fn versioned(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.as_bytes().to_vec())).send().await.unwrap();
}

async fn versions(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    let v = s3.list_object_versions().bucket(bucket).prefix(prefix).send().await.unwrap();
    v.versions().len() + v.delete_markers().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_an_erased_key_is_gone_from_the_primary_and_the_replica_bucket() {
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "tests"))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .load()
        .await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    let prefix = format!("users/{SUBJECT}/");
    for b in ["assets-az1", "assets-az2"] {
        versioned(&s3, b).await;
        put(&s3, b, &format!("{prefix}avatar.png"), "v1").await;
        put(&s3, b, &format!("{prefix}avatar.png"), "v2").await;
        put(&s3, b, &format!("{prefix}cv.pdf"), "cv").await;
        // A delete marker hides a version; it does not erase it.
        s3.delete_object().bucket(b).key(format!("{prefix}cv.pdf")).send().await.unwrap();
        put(&s3, b, "users/cust-other/avatar.png", "other").await;
    }
    assert_eq!(versions(&s3, "assets-az2", &prefix).await, 4);
    let topo = load(&format!(
        "version: 1\nzones: [ {{ name: az1, region: us-east-1 }}, {{ name: az2, region: us-east-1 }} ]\n\
         datastores:\n  - name: assets\n    kind: s3\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: assets-az1 }}\n    replicas: [ {{ zone: az2, bucket: assets-az2 }} ]\n\
         erasure:\n  locate: [ {{ datastore: assets, prefix: \"users/{{subject}}/\" }} ]\n",
        moto.endpoint()
    ));
    let state = <dyn Store>::in_memory().unwrap();
    let eraser = Eraser::new(topo, state.clone(), Arc::new(Clients::with_sdk(sdk)));
    let started = Instant::now();
    let req = eraser.erase(SUBJECT, "ticket 9", &Actor::new("alice", "cli"), Duration::from_secs(10)).await.unwrap();
    assert!(req.verified(), "{req:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for b in ["assets-az1", "assets-az2"] {
        assert_eq!(versions(&s3, b, &prefix).await, 0, "no version or marker left in {b}");
        assert_eq!(versions(&s3, b, "users/cust-other/").await, 1, "another subject's keys stay in {b}");
    }
    let (json, _) = eraser.report().unwrap();
    assert_eq!(json["erasures"][0]["copies"].as_array().unwrap().len(), 2);
    no_subject_in(&json.to_string());

    // Replication that read an object before the erasure can write its copy
    // after it. A bucket erased but not verified clean is erased again:
    // here the replica's verification is undone by hand, as if the late
    // copy had landed before it was checked.
    put(&s3, "assets-az2", &format!("{prefix}avatar.png"), "a late copy").await;
    state
        .update_erasure(&req.id, &mut |r| {
            if let Some(c) = r.copy_mut("assets", "az2") {
                c.verified_at = None;
            }
        })
        .unwrap();
    let again = eraser.wait(&req.id, Duration::from_secs(10)).await.unwrap();
    assert!(again.verified(), "{again:?}");
    assert_eq!(versions(&s3, "assets-az2", &prefix).await, 0, "the late copy erased too");
    assert_eq!(versions(&s3, "assets-az2", "users/cust-other/").await, 1);
}

/// drctl's replication pass, begun before the erasure, can read an object
/// before it and write its copy after it: a bucket is verified only once
/// every pass begun before its erasure has finished, and the late copy is
/// erased too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_verified_only_once_a_replication_pass_begun_before_its_erasure_has_finished() {
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "tests"))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .load()
        .await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    let prefix = format!("users/{SUBJECT}/");
    for b in ["assets-az1", "assets-az2"] {
        versioned(&s3, b).await;
        put(&s3, b, &format!("{prefix}avatar.png"), "v1").await;
        put(&s3, b, &format!("{prefix}avatar.png"), "v2").await;
    }
    let topo = load(&format!(
        "version: 1\nzones: [ {{ name: az1, region: us-east-1 }}, {{ name: az2, region: us-east-1 }} ]\n\
         datastores:\n  - name: assets\n    kind: s3\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: assets-az1 }}\n    replicas: [ {{ zone: az2, bucket: assets-az2 }} ]\n\
         erasure:\n  locate: [ {{ datastore: assets, prefix: \"users/{{subject}}/\" }} ]\n",
        moto.endpoint()
    ));
    let state = <dyn Store>::in_memory().unwrap();
    // A pass under way when the request comes (it has read the primary).
    let pass = state.begin_replication_run("assets", SystemTime::now() - Duration::from_secs(1)).unwrap();
    let eraser = Eraser::new(topo, state.clone(), Arc::new(Clients::with_sdk(sdk)));
    let req = eraser.erase(SUBJECT, "ticket 10", &Actor::new("alice", "cli"), Duration::from_secs(1)).await.unwrap();
    assert!(!req.verified(), "{req:?}");
    for c in &req.copies {
        assert!(c.erased_at.is_some() && c.verified_at.is_none(), "{c:?}");
        let why = c.pending.as_deref().unwrap_or_default();
        assert!(why.starts_with("waiting for the replication pass begun at"), "{why}");
    }
    for b in ["assets-az1", "assets-az2"] {
        assert_eq!(versions(&s3, b, &prefix).await, 0, "erased in {b}");
    }

    // The pass writes the copy it read before the erasure, and finishes.
    put(&s3, "assets-az2", &format!("{prefix}avatar.png"), "v2, copied late").await;
    state.finish_replication_run(pass, SystemTime::now(), Default::default(), None).unwrap();
    let req = eraser.wait(&req.id, Duration::from_secs(10)).await.unwrap();
    assert!(req.verified(), "{req:?}");
    assert_eq!(versions(&s3, "assets-az2", &prefix).await, 0, "the late copy erased too");
}

/// The whole path: a declaration fails over to a standby that never
/// received an erasure (its link was cut), and the finished failover runs
/// the erasure again on the promoted primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_failover_runs_unverified_erasures_on_the_promoted_standby() {
    use drctl_control::declare::{Declarer, IncidentPolicy, Recorded};
    use drctl_control::failover::Declaration;
    let pg = PgPair::start_with_cuttable_link();
    seed(&pg);
    let dir = std::env::temp_dir().join(format!("drctl-erasure-declare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fence = serde_json::to_string(&pg.power_off_primary_command(&dir.join("fence.env"))).unwrap();
    let topo = load(&format!(
        "version: 1\nzones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"{}\", fence: {{ command: {fence} }} }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
         erasure:\n  locate: [ {{ datastore: orders-db, sql: \"DELETE FROM customers WHERE id = $1\", check: \"SELECT count(*) FROM customers WHERE id = $1\" }} ]\n",
        pg.primary_url(),
        pg.standby_url()
    ));
    let state = <dyn Store>::in_memory().unwrap();
    let clients = Arc::new(Clients::new(Default::default()));
    let eraser = Eraser::new(topo.clone(), state.clone(), clients.clone());
    pg.cut_link();
    let req =
        eraser.erase(SUBJECT, "ticket 10", &Actor::new("alice", "cli"), Duration::from_millis(300)).await.unwrap();
    assert!(!req.verified());
    let held = pg.psql(pg.standby_port, &format!("SELECT count(*) FROM customers WHERE id = '{SUBJECT}'"));
    assert_eq!(held, "1", "the standby never received the erasure");

    let declarer = Declarer::new(topo.clone(), state.clone(), clients.clone());
    let decl = Declaration {
        zones: vec!["az1".into()],
        regions: vec![],
        targets: vec![],
        reason: "az1 lost".into(),
        overrides: drctl_control::overrides::Overrides { accept_lag: true, skip_catch_up: true, ..Default::default() },
        parallel: None,
    };
    let proposal = declarer.propose(decl, None).await.unwrap();
    assert!(!proposal.refused(), "{:?}", proposal.refusals());
    let who = Actor::new("commander", "test");
    assert!(matches!(
        declarer.record(&proposal, &who, false, IncidentPolicy::None).unwrap(),
        Recorded::Accepted { .. }
    ));
    let ended = declarer.run(&proposal.id).await.unwrap();
    assert!(matches!(ended, drctl_engine::Ended::Succeeded), "{ended:?}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "promoted");
    let left = pg.psql(pg.standby_port, &format!("SELECT count(*) FROM customers WHERE id = '{SUBJECT}'"));
    assert_eq!(left, "0", "the erasure ran again on the promoted standby");
    let req = state.erasure(&req.id).unwrap().unwrap();
    let az2 = req.copies.iter().find(|c| c.zone == "az2").unwrap();
    assert!(az2.primary && az2.verified_at.is_some(), "{az2:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restored copy of a bucket that still holds a subject erased after the
/// restore's point: the replay destroys every version under the subject's
/// prefix in the copy (at the prefix the copy holds the keys under), and
/// nothing of another subject; a request made before the point is not
/// replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_bucket_copy_loses_the_subjects_erased_after_its_point() {
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "tests"))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .load()
        .await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    versioned(&s3, "assets-az1").await;
    versioned(&s3, "restored-copy").await;
    // The copy holds the source's keys under `copy/`, as `restore --into restored-copy/copy/` makes it.
    for body in ["v1", "v2"] {
        put(&s3, "restored-copy", &format!("copy/users/{SUBJECT}/avatar.png"), body).await;
    }
    put(&s3, "restored-copy", "copy/users/cust-other/avatar.png", "other").await;
    put(&s3, "restored-copy", "copy/users/cust-early/avatar.png", "early").await;
    let topo = load(&format!(
        "version: 1\nzones: [ {{ name: az1, region: us-east-1 }} ]\n\
         datastores:\n  - name: assets\n    kind: s3\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: assets-az1 }}\n\
         erasure:\n  locate: [ {{ datastore: assets, prefix: \"users/{{subject}}/\" }} ]\n",
        moto.endpoint()
    ));
    let state = <dyn Store>::in_memory().unwrap();
    let eraser = Eraser::new(topo, state.clone(), Arc::new(Clients::with_sdk(sdk)));
    let who = Actor::new("alice", "cli");
    let early = eraser.request("cust-early", "before the point", &who).unwrap();
    // The ledger keeps milliseconds: the point is the later request's own time.
    while std::time::SystemTime::now() < early.requested_at + Duration::from_millis(2) {
        std::hint::spin_loop();
    }
    let later = eraser.request(SUBJECT, "after the point", &who).unwrap();
    let point = state.erasure(&later.id).unwrap().unwrap().requested_at;
    let copy = drctl_aws::s3::Bucket {
        zone: "az1".into(),
        name: "restored-copy".into(),
        endpoint: Some(moto.endpoint()),
        client: s3.clone(),
    };
    let replayed = eraser.replay_on_bucket("assets", &copy, "", "copy/", point).await.unwrap();
    assert_eq!((replayed.requests, replayed.resurrected), (1, 0));
    assert_eq!(versions(&s3, "restored-copy", &format!("copy/users/{SUBJECT}/")).await, 0, "no version left");
    assert_eq!(versions(&s3, "restored-copy", "copy/users/cust-other/").await, 1, "another subject stays");
    assert_eq!(
        versions(&s3, "restored-copy", "copy/users/cust-early/").await,
        1,
        "a request before the point is not replayed"
    );
}

/// An RDS datastore is reached by the `url` on its `locate` entry: there
/// the erasure runs and is checked, as the database's one copy drctl can
/// query (RDS replicas follow it by AWS's own replication). The url here
/// is a real PostgreSQL, standing where an RDS endpoint would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_datastore_is_erased_and_verified_through_its_locate_url() {
    let pg = PgPair::start();
    seed(&pg);
    let url = pg.primary_url();
    let topo = load(&format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: us-east-1 }}\n  - {{ name: az2, region: us-east-1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
         datastores:\n  - name: ledger-db\n    kind: rds-instance\n    primary: {{ zone: az1, instance: shop-ledger-a }}\n    replicas: [ {{ zone: az2, instance: shop-ledger-b }} ]\n\
         services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [ledger-db] }}\n\
         erasure:\n  deadline: 30d\n  locate:\n\
         \x20   - {{ datastore: ledger-db, url: \"{url}\", sql: \"DELETE FROM customers WHERE id = $1\", check: \"SELECT count(*) FROM customers WHERE id = $1\" }}\n\
         \x20   - {{ datastore: ledger-db, url: \"{url}\", sql: \"DELETE FROM orders WHERE customer = $1\", check: \"SELECT count(*) FROM orders WHERE customer = $1\" }}\n"
    ));
    let state = <dyn Store>::in_memory().unwrap();
    let eraser = Eraser::new(topo, state.clone(), Arc::new(Clients::new(Default::default())));
    let req = eraser.erase(SUBJECT, "ticket 9", &Actor::new("alice", "cli"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(count(&pg, pg.primary_port), "0", "erased through the url");
    assert_eq!(pg.psql(pg.primary_port, "SELECT count(*) FROM orders"), "5", "only the subject's rows went");
    assert!(req.verified(), "{req:?}");
    assert_eq!(req.copies.len(), 1, "one copy reached by url: {:?}", req.copies);
    let copy = &req.copies[0];
    assert_eq!((copy.datastore.as_str(), copy.zone.as_str()), ("ledger-db", "az1"));
    assert!(copy.erased_at.is_some() && copy.verified_at.is_some(), "{copy:?}");
    let (json, overdue) = eraser.report().unwrap();
    assert!(!overdue, "{json}");
    no_subject_in(&json.to_string());
}
