//! `drctl status` and `drctl replicate` end to end: the binary against a
//! real PostgreSQL primary + standby and S3 buckets on moto's server.

use drctl_aws::s3::{self, client_for, Bucket};
use drctl_testkit::{Moto, PgPair};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        Self::named("")
    }

    /// A folder of its own (tests in one binary run at once).
    fn named(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("drctl-live-{tag}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    /// Runs drctl in the temp folder with moto's credentials; (exit code, stdout, stderr).
    fn drctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_drctl"))
            .args(args)
            .current_dir(&self.dir)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("NO_COLOR", "1")
            .env_remove("DRCTL_STATE")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let (code, out, err) = self.drctl(args);
        (code, serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}")))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn datastore<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["datastores"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap()
}

/// Two buckets on `endpoint`, created, for zones az1 and az2.
async fn two_buckets(endpoint: &str, az1: &str, az2: &str) -> (Bucket, Bucket) {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "tests"))
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let mk = |zone: &str, name: &str| Bucket {
        zone: zone.into(),
        name: name.into(),
        endpoint: Some(endpoint.into()),
        client: client_for(&sdk, Some(endpoint), None),
    };
    let (a, b) = (mk("az1", az1), mk("az2", az2));
    for x in [&a, &b] {
        x.client.create_bucket().bucket(&x.name).send().await.unwrap();
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_measures_real_systems_and_replicate_closes_the_s3_gap() {
    let pg = PgPair::start_with_cuttable_link();
    let moto = Moto::start();
    let env = Env::new();
    let (src, _dst) = two_buckets(&moto.endpoint(), "live-assets-az1", "live-assets-az2").await;
    for i in 0..5 {
        s3::put_bytes(&src, &format!("img/{i}.png"), vec![b'x'; 1000 + i]).await.unwrap();
    }
    let topology = format!(
        "version: 1
name: live
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
objectives:
  tier-0: {{ rpo: 1s, rto: 2m }}
datastores:
  - name: orders-db
    kind: postgres
    primary: {{ zone: az1, url: \"{}\" }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
  - name: assets
    kind: s3
    endpoint: \"{}\"
    primary: {{ zone: az1, bucket: live-assets-az1 }}
    replicas: [ {{ zone: az2, bucket: live-assets-az2 }} ]
    replication: {{ by: drctl, every: 5s }}
  - name: ghost-db
    kind: postgres
    primary: {{ zone: az1, url: \"postgres://app:hunter2@127.0.0.1:{}/x\" }}
    replicas: [ {{ zone: az2, url: \"postgres://app:hunter2@127.0.0.1:{}/x\" }} ]
services:
  - {{ name: api, tier: tier-0, zones: [az1, az2], depends_on: [orders-db, assets] }}
",
        pg.primary_url(),
        pg.standby_url(),
        moto.endpoint(),
        drctl_testkit::free_port(),
        drctl_testkit::free_port()
    );
    std::fs::write(env.dir.join("drctl.yaml"), topology).unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;

    // Before replication: the S3 replica is behind, so an objective is missed (exit 3).
    let (code, report) = env.json(&["status", "--output", "json"]);
    assert_eq!(code, 3);
    assert!(report["at"].as_str().unwrap().ends_with('Z'));
    let orders = datastore(&report, "orders-db");
    assert_eq!(orders["primary_zone"], "az1");
    assert!(orders["rpo_s"].as_f64().unwrap() < 1.0, "{orders}");
    assert_eq!(orders["meets_rpo"], true);
    assert_eq!(orders["replicas"][0]["healthy"], true);
    let assets = datastore(&report, "assets");
    assert!(assets["rpo_s"].as_f64().unwrap() >= 1.0, "{assets}");
    assert_eq!(assets["meets_rpo"], false);
    let ghost = datastore(&report, "ghost-db");
    assert_eq!(ghost["rpo_s"], Value::Null);
    assert!(ghost["error"].as_str().unwrap().contains("unreachable"), "{ghost}");
    assert!(!report.to_string().contains("hunter2"), "a password leaked");
    assert_eq!(report["services"][0]["name"], "api");

    let (code, summary) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        (summary["copied"].as_u64(), summary["failed"].as_u64(), summary["skipped"].as_u64()),
        (Some(5), Some(0), Some(0))
    );
    assert_eq!(summary["bytes"].as_u64(), Some(5 * 1000 + 10));

    let (_, report) = env.json(&["status", "--output", "json"]);
    assert_eq!(datastore(&report, "assets")["rpo_s"], 0.0);

    // The standby cut off from its primary while the primary commits for
    // ~3 s: what it has not received is data at risk (paused replay is not).
    // A write the standby has replayed just before the cut, as on a busy
    // database.
    pg.psql(pg.primary_port, "CREATE TABLE IF NOT EXISTS w (id serial, at timestamptz default now())");
    pg.psql(pg.primary_port, "INSERT INTO w DEFAULT VALUES");
    pg.wait_replayed();
    pg.cut_link();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        pg.psql(pg.primary_port, "INSERT INTO w DEFAULT VALUES");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, report) = env.json(&["status", "--output", "json"]);
    let rpo = datastore(&report, "orders-db")["rpo_s"].as_f64().unwrap();
    assert!((2.0..=4.5).contains(&rpo), "3 s of writes the standby did not receive read {rpo}s");
    assert_eq!(code, 3);
    let (_, text, _) = env.drctl(&["status"]);
    assert!(text.contains("orders-db") && text.contains("replica in az2") || text.contains("az2 ✓"), "{text}");

    // Samples were recorded in the default state store.
    let state = drctl_state::State::open(&format!("sqlite://{}", env.dir.join(".drctl/state.db").display())).unwrap();
    let samples = state.rpo_samples("orders-db", std::time::UNIX_EPOCH).unwrap();
    assert!(samples.len() >= 3, "{samples:?}");
    assert!(samples.last().unwrap().rpo_s.unwrap() >= 2.0);
    assert!(state.last_replication_run("assets").unwrap().is_some());
}

#[test]
fn replicate_refuses_what_it_does_not_replicate() {
    let env = Env::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/saas/drctl.yaml");
    let (code, _, err) = env.drctl(&["replicate", "--once", "-f", repo.to_str().unwrap(), "orders-db"]);
    assert_eq!(code, 2);
    assert!(err.contains("`orders-db` is not replicated by drctl"), "{err}");
    let (code, _, err) = env.drctl(&["status", "-f", repo.to_str().unwrap(), "--state", "mysql://x"]);
    assert_eq!(code, 2);
    assert!(err.contains("use sqlite://PATH"), "{err}");
}

/// Through a failover and back, from the CLI: a write the old primary took
/// and never replicated is reported as a conflict, not overwritten or
/// deleted; an operator copies it aside into the new primary (audited),
/// and the next pass replicates the copy and tidies the original.
#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_after_a_failover_is_reported_and_resolved_by_copying_it_aside() {
    let moto = Moto::start();
    let env = Env::named("conflict-");
    let (az1, az2) = two_buckets(&moto.endpoint(), "cf-assets-az1", "cf-assets-az2").await;
    std::fs::write(
        env.dir.join("drctl.yaml"),
        format!(
            "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
datastores:
  - name: assets
    kind: s3
    endpoint: \"{}\"
    primary: {{ zone: az1, bucket: cf-assets-az1 }}
    replicas: [ {{ zone: az2, bucket: cf-assets-az2 }} ]
    replication: {{ by: drctl, every: 1m }}
",
            moto.endpoint()
        ),
    )
    .unwrap();
    s3::put_bytes(&az1, "orders/1.json", b"replicated".to_vec()).await.unwrap();
    let (code, first) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!((code, first["copied"].as_u64()), (0, Some(1)), "{first}");
    // az1 takes a write that never leaves it, then assets fails over to az2.
    s3::put_bytes(&az1, "orders/2.json", b"the only copy".to_vec()).await.unwrap();
    let (code, out, err) = env.drctl(&["declare", "--target", "assets", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, back) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!(code, 0, "{back}");
    let conflicts = back["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{back}");
    assert_eq!((conflicts[0]["datastore"].as_str(), conflicts[0]["zone"].as_str()), (Some("assets"), Some("az1")));
    assert_eq!(conflicts[0]["key"], "orders/2.json");
    assert!(conflicts[0]["reason"].as_str().unwrap().contains("never replicated"), "{back}");
    assert_eq!(s3::get_bytes(&az1, "orders/2.json").await.unwrap(), b"the only copy", "kept");
    // `status` lists it too, until it is resolved.
    let (_, report) = env.json(&["status", "--output", "json"]);
    let listed = &datastore(&report, "assets")["conflicts"];
    assert_eq!(
        (listed[0]["zone"].as_str(), listed[0]["key"].as_str()),
        (Some("az1"), Some("orders/2.json")),
        "{report}"
    );

    let (code, out, err) = env.drctl(&[
        "replicate",
        "assets",
        "--resolve",
        "orders/2.json",
        "--zone",
        "az1",
        "--resolution",
        "copy-aside",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(s3::get_bytes(&az2, "drctl-conflicts/az1/orders/2.json").await.unwrap(), b"the only copy");
    let (code, after) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!(code, 0, "{after}");
    assert!(after["conflicts"].as_array().unwrap().is_empty(), "{after}");
    let (_, report) = env.json(&["status", "--output", "json"]);
    assert_eq!(datastore(&report, "assets")["conflicts"], serde_json::json!([]), "resolved: gone from status");
    assert_eq!((after["copied"].as_u64(), after["deleted"].as_u64()), (Some(1), Some(1)), "{after}");
    assert_eq!(s3::get_bytes(&az1, "drctl-conflicts/az1/orders/2.json").await.unwrap(), b"the only copy");
    let (_, audit, _) = env.drctl(&["audit", "list", "--output", "json"]);
    assert!(audit.contains("replicate.resolve"), "{audit}");
}

/// After a failover a former primary can hold many objects that were never
/// replicated: `status` stays one screen (a count per datastore and zone,
/// the first few keys, one command for all), its last line counts services
/// down, and that command, typed as printed with a resolution chosen,
/// resolves every conflict (each audited).
#[tokio::test(flavor = "multi_thread")]
async fn many_conflicts_fit_one_screen_and_resolve_all_resolves_them() {
    let moto = Moto::start();
    let env = Env::named("conflicts-all-");
    let (az1, _az2) = two_buckets(&moto.endpoint(), "ca-assets-az1", "ca-assets-az2").await;
    let dead = drctl_testkit::free_port();
    std::fs::write(
        env.dir.join("drctl.yaml"),
        format!(
            "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
datastores:
  - name: assets
    kind: s3
    endpoint: \"{}\"
    primary: {{ zone: az1, bucket: ca-assets-az1 }}
    replicas: [ {{ zone: az2, bucket: ca-assets-az2 }} ]
    replication: {{ by: drctl, every: 1m }}
services:
  - {{ name: web, zones: [az1, az2], health: {{ url: \"http://127.0.0.1:{dead}/health\", timeout: 1s }} }}
",
            moto.endpoint()
        ),
    )
    .unwrap();
    s3::put_bytes(&az1, "seed.json", b"replicated".to_vec()).await.unwrap();
    let (code, first) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!(code, 0, "{first}");
    for i in 0..12 {
        s3::put_bytes(&az1, &format!("orders/{i:02}.json"), b"only here".to_vec()).await.unwrap();
    }
    let (code, out, err) = env.drctl(&["declare", "--target", "assets", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, back) = env.json(&["replicate", "--once", "--output", "json"]);
    assert_eq!(back["conflicts"].as_array().unwrap().len(), 12, "{back}");

    let (_, text, _) = env.drctl(&["status"]);
    let conflict_lines: Vec<&str> = text.lines().filter(|l| l.contains("assets:") || l.contains("resolve")).collect();
    assert!(conflict_lines.len() <= 2, "a count, not a line per object: {text}");
    assert!(text.contains("12 objects in az1 kept") && text.contains("and 9 more"), "{text}");
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(last.contains("1 of 1 service down"), "the last line counts services down: {last}");
    let hint = text
        .split('`')
        .find(|h| h.contains("--resolve-all"))
        .unwrap_or_else(|| panic!("the hint to resolve them all: {text}"))
        .to_string();
    assert_eq!(hint, "drctl replicate assets --resolve-all --resolution keep|discard|copy-aside");

    // Typed as printed, with one resolution chosen.
    let typed = hint.replace("keep|discard|copy-aside", "keep");
    let args: Vec<&str> = typed.split_whitespace().skip(1).collect();
    let (code, out, err) = env.drctl(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("12 conflict(s) resolved, 0 failed"), "{out}");
    let (_, report) = env.json(&["status", "--output", "json"]);
    assert_eq!(datastore(&report, "assets")["conflicts"], serde_json::json!([]), "{report}");
    assert_eq!(s3::get_bytes(&az1, "orders/00.json").await.unwrap(), b"only here", "kept as it is");
    let (_, again) = env.json(&["replicate", "--once", "--output", "json"]);
    assert!(again["conflicts"].as_array().unwrap().is_empty(), "kept objects are left alone: {again}");
    let (_, audit, _) = env.drctl(&["audit", "list", "--output", "json"]);
    assert_eq!(audit.matches("replicate.resolve").count(), 12, "each audited");
}
