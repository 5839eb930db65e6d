//! `drctl iam-policy` proven, not only printed (docs/guide/aws.md): moto's server
//! with IAM enforcement on, drctl run as an IAM user whose only policy is
//! the one `drctl iam-policy` printed for the topology. `status`,
//! `replicate` and a zone failover of an RDS instance, an Aurora cluster,
//! an S3 bucket pair and a Route53 record succeed; with any one statement
//! removed, some call is refused and drctl says so in plain words.
//!
//! What the emulator can judge: moto checks every call's action, and for
//! S3 the bucket and object ARNs too. For RDS, CloudWatch and Route53 it
//! authorizes against the resource `*` and ignores conditions (its
//! `access_control.py`: "TODO add support for the Resource and Condition
//! parts"), so for those statements the test widens `Resource` to `*` and
//! drops `Condition`, keeping the actions exactly as printed; their ARNs
//! and Route53 condition keys are checked by `drctl-control`'s unit tests
//! against AWS's formats. moto names CloudWatch's actions by its signing
//! name (`monitoring:`) and authorizes `HeadBucket` as `s3:HeadBucket`
//! (AWS: `s3:ListBucket`), so the test adds those names. moto files S3's
//! `?replication` calls under other actions, so native replication
//! (`by: s3`) is not part of this test. moto 5.2.5 refuses every Route53
//! GET under enforcement with `SignatureDoesNotMatch` (boto3's requests
//! too), so Route53 runs on a second moto without enforcement: the
//! failover switches the record, and the Route53 statements are not
//! removed one by one here.
//!
//! `--for restore` and `--for erase` are proven the same way by their own
//! test: restore tests, S3 restores into a new bucket and in place, RDS
//! instance and cluster restores, RDS instances replaced by their restored
//! copies (`--replace`), and an erasure of every S3 version.

use drctl_testkit::Moto;
use serde_json::{json, Value};
mod aws;

struct Emulator {
    moto: Moto,
    /// Route53 on a moto without enforcement (see the module documentation).
    dns: Moto,
    admin: (String, String),
    user: (String, String),
}

async fn sdk_as(moto: &Moto, keys: (&str, &str)) -> aws_config::SdkConfig {
    aws::sdk(&moto.endpoint(), keys).await
}

impl Emulator {
    /// moto with IAM enforced after five unchecked requests: an admin user
    /// (allowed everything, to build the estate) and drctl's user (no policy yet).
    async fn start() -> Emulator {
        let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "5")]);
        let iam = aws_sdk_iam::Client::new(&sdk_as(&moto, ("testing", "testing")).await);
        iam.create_user().user_name("admin").send().await.unwrap();
        iam.put_user_policy()
            .user_name("admin")
            .policy_name("everything")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
        let a = iam.create_access_key().user_name("admin").send().await.unwrap();
        iam.create_user().user_name("drctl").send().await.unwrap();
        let u = iam.create_access_key().user_name("drctl").send().await.unwrap();
        let keys = |k: &aws_sdk_iam::operation::create_access_key::CreateAccessKeyOutput| {
            let k = k.access_key().unwrap();
            (k.access_key_id().to_string(), k.secret_access_key().to_string())
        };
        Emulator { admin: keys(&a), user: keys(&u), moto, dns: Moto::start() }
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        sdk_as(&self.moto, (&self.admin.0, &self.admin.1)).await
    }

    /// drctl's user gets exactly `policy` (replacing what it had), set by the admin.
    async fn set_policy(&self, policy: &Value) {
        aws_sdk_iam::Client::new(&self.sdk().await)
            .put_user_policy()
            .user_name("drctl")
            .policy_name("drctl")
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap();
    }
}

/// One estate, named with `tag`: an RDS instance and its replica, an
/// Aurora cluster with a member per zone, an S3 bucket pair drctl copies
/// between, and a Route53 record; and its topology.
async fn estate(e: &Emulator, tag: &str) -> String {
    let sdk = e.sdk().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    aws::rds_pair(&rds, &format!("ledger-a-{tag}"), &format!("ledger-b-{tag}")).await;
    let (cluster, one, two) = (format!("orders-{tag}"), format!("orders-{tag}-1"), format!("orders-{tag}-2"));
    aws::aurora_cluster(&rds, &cluster, &[(&one, "us-east-1a"), (&two, "us-east-1b")]).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&e.moto.endpoint()), None);
    for b in ["a", "b"] {
        s3.create_bucket().bucket(format!("assets-{b}-{tag}")).send().await.unwrap();
    }
    s3.put_object()
        .bucket(format!("assets-a-{tag}"))
        .key("invoice.pdf")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"%PDF"))
        .send()
        .await
        .unwrap();
    let r53 = aws_sdk_route53::Client::new(&sdk_as(&e.dns, ("testing", "testing")).await);
    let zone = r53.create_hosted_zone().name(format!("{tag}.example.")).caller_reference(tag).send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    format!(
        "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
objectives: {{ tier-0: {{ rpo: 1h, rto: 1h }} }}
datastores:
  - name: ledger
    kind: rds-instance
    primary:  {{ zone: az1, instance: ledger-a-{tag} }}
    replicas: [ {{ zone: az2, instance: ledger-b-{tag} }} ]
  - {{ name: orders, kind: rds-cluster, cluster: orders-{tag} }}
  - name: assets
    kind: s3
    endpoint: \"{ep}\"
    primary:  {{ zone: az1, bucket: assets-a-{tag} }}
    replicas: [ {{ zone: az2, bucket: assets-b-{tag} }} ]
    replication: {{ by: drctl, every: 1m }}
services:
  - name: pay
    tier: tier-0
    zones: [az1, az2]
    depends_on: [ledger, orders, assets]
    route: {{ kind: route53, zone_id: {zone_id}, name: pay.{tag}.example., ttl: 30, records: {{ az1: 10.0.1.10, az2: 10.0.2.10 }} }}
",
        ep = e.moto.endpoint()
    )
}

fn drctl(dir: &std::path::Path, e: &Emulator, keys: &(String, String), args: &[&str]) -> (i32, String) {
    let mut c = aws::drctl(dir, &e.moto.endpoint(), (&keys.0, &keys.1));
    let (code, out, err) = aws::outcome(c.env("AWS_ENDPOINT_URL_ROUTE_53", e.dns.endpoint()).args(args));
    (code, format!("{out}\n{err}"))
}

/// What the emulator can evaluate of a statement (see the module documentation).
fn for_the_emulator(policy: &Value) -> Value {
    let mut p = policy.clone();
    for s in p["Statement"].as_array_mut().unwrap() {
        let s3_only = s["Action"].as_array().unwrap().iter().all(|a| a.as_str().unwrap().starts_with("s3:"));
        if !s3_only {
            s["Resource"] = json!("*");
            s.as_object_mut().unwrap().remove("Condition");
        }
        // moto authorizes HeadBucket as `s3:HeadBucket` (AWS: `s3:ListBucket`).
        if s["Action"].as_array().unwrap().iter().any(|a| a == "s3:ListBucket") {
            s["Action"].as_array_mut().unwrap().push(json!("s3:HeadBucket"));
        }
        // moto prefixes an action with the service's signing name, which
        // for CloudWatch is `monitoring`, not IAM's `cloudwatch`.
        for a in s["Action"].as_array_mut().unwrap() {
            if let Some(rest) = a.as_str().and_then(|x| x.strip_prefix("cloudwatch:")) {
                *a = json!(format!("monitoring:{rest}"));
            }
        }
    }
    p
}

const REFUSED: &str = "the credentials lack a permission for this call";

/// status, replicate and a declared zone failover, as drctl's user: (all succeeded, every output).
fn run_all(dir: &std::path::Path, e: &Emulator) -> (bool, String) {
    let (s, out1) = drctl(dir, e, &e.user, &["status", "--output", "json"]);
    let (r, out2) = drctl(dir, e, &e.user, &["replicate", "--once", "--output", "json"]);
    let (d, out3) = drctl(dir, e, &e.user, &["declare", "--zone", "az1", "--reason", "us-east-1a lost", "--yes"]);
    // status exits 3 when an objective is not met (moto reports no replica lag): that is a measurement, not a refusal.
    ((s == 0 || s == 3) && r == 0 && d == 0, format!("{out1}\n{out2}\n{out3}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_generated_policy_is_enough_and_every_statement_is_needed() {
    let e = Emulator::start().await;
    let root = std::env::temp_dir().join(format!("drctl-iam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);

    // The whole policy: everything drctl does works.
    let dir = root.join("full");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("drctl.yaml"), estate(&e, "full").await).unwrap();
    let (code, printed) = drctl(&dir, &e, &e.admin, &["iam-policy", "--for", "serve"]);
    assert_eq!(code, 0, "{printed}");
    let policy: Value = serde_json::from_str(printed.trim()).unwrap();
    let sids: Vec<String> =
        policy["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap().to_string()).collect();
    e.set_policy(&for_the_emulator(&policy)).await;
    let (ok, out) = run_all(&dir, &e);
    assert!(ok && !out.contains(REFUSED), "with the generated policy everything works:\n{out}");
    assert!(out.contains("ledger-b-full promoted") && out.contains("orders-full-2 now writes"), "{out}");
    assert!(out.contains("pay.full.example. answers 10.0.2.10"), "{out}");

    // Nothing broader: the user may not touch what the topology does not name.
    let sdk = sdk_as(&e.moto, (&e.user.0, &e.user.1)).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&e.moto.endpoint()), None);
    assert!(s3.list_objects_v2().bucket("assets-a-other").send().await.is_err(), "another bucket is refused");
    assert!(s3.list_buckets().send().await.is_err(), "listing every bucket is refused");

    // Each statement removed: some call is refused, in plain words. Only
    // those status, replicate and declare use: `serve` also backs up,
    // restores and erases, whose statements the next test removes one by one.
    let used_here: Vec<String> = ["declare", "replicate"]
        .iter()
        .flat_map(|u| {
            let (_, printed) = drctl(&dir, &e, &e.admin, &["iam-policy", "--for", u]);
            let p: Value = serde_json::from_str(printed.trim()).unwrap();
            p["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["Sid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for (n, sid) in sids.iter().enumerate().filter(|(_, s)| used_here.contains(s)) {
        let tag = format!("s{n}");
        let dir = root.join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("drctl.yaml"), estate(&e, &tag).await).unwrap();
        // What status, replicate and declare need, without `serve`'s restore
        // statements (the emulator widens RDS resources to `*`, so those
        // would stand in for a removed describe).
        let mut p = json!({ "Version": "2012-10-17", "Statement": [] });
        for u in ["declare", "replicate"] {
            let (_, printed) = drctl(&dir, &e, &e.admin, &["iam-policy", "--for", u]);
            let one: Value = serde_json::from_str(printed.trim()).unwrap();
            for st in one["Statement"].as_array().unwrap() {
                let list = p["Statement"].as_array_mut().unwrap();
                if !list.iter().any(|x| x["Sid"] == st["Sid"]) {
                    list.push(st.clone());
                }
            }
        }
        p["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != sid.as_str());
        if sid.starts_with("Route53") {
            continue;
        }
        e.set_policy(&for_the_emulator(&p)).await;
        let (ok, out) = run_all(&dir, &e);
        assert!(!ok || out.contains(REFUSED), "without {sid} nothing was refused:\n{out}");
        assert!(out.contains(REFUSED), "without {sid} the refusal says what is missing in plain words:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// S3 keeps modification times to the second: waits until the wall clock
/// is in the next whole second, so writes on either side of a point differ.
fn next_second() -> std::time::SystemTime {
    use std::time::{Duration, SystemTime};
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let next = Duration::from_secs(now.as_secs() + 1);
    while SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap() < next {
        std::thread::sleep(Duration::from_millis(20));
    }
    SystemTime::UNIX_EPOCH + next
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

/// An estate to restore and erase in, named with `tag`: an RDS instance
/// keeping 7 days of backups, an Aurora cluster, and a versioned bucket
/// pair holding a subject's files, overwritten after the returned point
/// (RFC 3339) with a key created since; and its topology.
async fn restore_estate(e: &Emulator, tag: &str) -> (String, String) {
    let sdk = e.sdk().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.create_db_instance()
        .db_instance_identifier(format!("ledger-a-{tag}"))
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    aws::aurora_cluster(&rds, &format!("orders-{tag}"), &[(&format!("orders-{tag}-1"), "us-east-1a")]).await;
    // Replaced with its read replica made again (`--replace`).
    rds.create_db_instance()
        .db_instance_identifier(format!("vault-a-{tag}"))
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    rds.create_db_instance_read_replica()
        .db_instance_identifier(format!("vault-b-{tag}"))
        .source_db_instance_identifier(format!("vault-a-{tag}"))
        .send()
        .await
        .unwrap();
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&e.moto.endpoint()), None);
    for b in ["a", "b"] {
        let bucket = format!("assets-{b}-{tag}");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        put(&s3, &bucket, "img/a", "a v1").await;
        put(&s3, &bucket, "users-cust-1-avatar.png", "v1").await;
        put(&s3, &bucket, "users-cust-1-avatar.png", "v2").await;
    }
    let _ = next_second();
    let point = next_second() - std::time::Duration::from_millis(500);
    put(&s3, &format!("assets-a-{tag}"), "img/a", "ENCRYPTED").await;
    put(&s3, &format!("assets-a-{tag}"), "img/README-pay", "pay").await;
    let at = chrono::DateTime::<chrono::Utc>::from(point).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let yaml = format!(
        "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
objectives: {{ tier-0: {{ rpo: 1h, rto: 1h, restore: {{ rpo: 1h, rto: 1h }} }} }}
datastores:
  - name: ledger
    kind: rds-instance
    primary: {{ zone: az1, instance: ledger-a-{tag} }}
    backup: {{ retention: 7d }}
  - {{ name: orders, kind: rds-cluster, cluster: orders-{tag} }}
  - name: vault
    kind: rds-instance
    primary: {{ zone: az1, instance: vault-a-{tag} }}
    replicas: [ {{ zone: az2, instance: vault-b-{tag} }} ]
  - name: assets
    kind: s3
    tier: tier-0
    endpoint: \"{ep}\"
    primary:  {{ zone: az1, bucket: assets-a-{tag} }}
    replicas: [ {{ zone: az2, bucket: assets-b-{tag} }} ]
    backup: {{ versions: 7d }}
# moto under enforcement miscomputes the signature of a query holding an
# encoded `/` (`?versions&prefix=users%2F...`): this prefix has none.
erasure:
  locate: [ {{ datastore: assets, prefix: \"users-{{subject}}-\" }} ]
",
        ep = e.moto.endpoint()
    );
    (yaml, at)
}

/// What `--for restore` covers, as drctl's user: a restore test of the S3
/// datastore (a scratch bucket made, checked, removed), an S3 restore into
/// a new `drctl-restore-*` bucket and one in place, an RDS instance and an
/// Aurora cluster restored, two RDS instances replaced by their restored
/// copies (one stopped aside, one with its read replica made again) and
/// an Aurora cluster replaced by its copy: (all succeeded, every output).
fn run_restores(dir: &std::path::Path, e: &Emulator, tag: &str, at: &str) -> (bool, String) {
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(b"a v1").iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join("restore-test.yaml"),
        format!("name: t\nrestore: {{ datastore: assets, to: \"{at}\" }}\nverify:\n  - {{ objects: \"img/\", expect: 1 }}\n  - {{ key: img/a, sha256: \"{sha}\" }}\n"),
    )
    .unwrap();
    let into = format!("drctl-restore-{tag}/copy/");
    let swap = format!("ledger-a-{tag}-restored-swap");
    let runs = [
        drctl(dir, e, &e.user, &["drill", "restore-test.yaml", "--report", "rep"]),
        drctl(dir, e, &e.user, &["restore", "assets", "--to", at, "--into", &into, "--reason", "look"]),
        drctl(dir, e, &e.user, &["restore", "assets", "--to", at, "--replace", "--reason", "ransomware", "--yes"]),
        drctl(dir, e, &e.user, &["restore", "ledger", "--to", "latest", "--reason", "bad migration"]),
        drctl(dir, e, &e.user, &["restore", "orders", "--to", "latest", "--reason", "bad migration"]),
        // In the primary's place: renamed aside and stopped, the copy renamed in...
        drctl(
            dir,
            e,
            &e.user,
            &[
                "restore",
                "ledger",
                "--to",
                "latest",
                "--replace",
                "--into",
                &swap,
                "--reason",
                "bad migration",
                "--yes",
            ],
        ),
        // ...and with a read replica made again from it.
        drctl(
            dir,
            e,
            &e.user,
            &["restore", "vault", "--to", "latest", "--replace", "--reason", "bad migration", "--yes"],
        ),
        // An Aurora cluster: an instance added to its copy, then the names swapped.
        drctl(
            dir,
            e,
            &e.user,
            &[
                "restore",
                "orders",
                "--to",
                "latest",
                "--replace",
                "--into",
                &format!("orders-{tag}-restored-swap"),
                "--reason",
                "bad migration",
                "--yes",
            ],
        ),
    ];
    (runs.iter().all(|(c, _)| *c == 0), runs.iter().map(|(_, o)| o.as_str()).collect::<Vec<_>>().join("\n"))
}

/// What `--for erase` covers: a subject's every version on both buckets.
fn run_erase(dir: &std::path::Path, e: &Emulator) -> (bool, String) {
    let (code, out) = drctl(dir, e, &e.user, &["erase", "cust-1", "--reason", "request 1", "--yes", "--wait", "20s"]);
    (code == 0, out)
}

async fn versions_under(e: &Emulator, bucket: &str, prefix: &str) -> usize {
    let s3 = drctl_aws::s3::client_for(&e.sdk().await, Some(&e.moto.endpoint()), None);
    let v = s3.list_object_versions().bucket(bucket).prefix(prefix).send().await.unwrap();
    v.versions().len() + v.delete_markers().len()
}

async fn body(e: &Emulator, bucket: &str, key: &str) -> Option<String> {
    let s3 = drctl_aws::s3::client_for(&e.sdk().await, Some(&e.moto.endpoint()), None);
    let o = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(String::from_utf8_lossy(&o.body.collect().await.ok()?.into_bytes()).to_string())
}

/// `--for restore` and `--for erase`, each alone, are enough for what they
/// cover; nothing broader is granted; and with any one statement removed a
/// call is refused, in plain words.
#[tokio::test(flavor = "multi_thread")]
async fn the_restore_and_erase_policies_are_enough_and_every_statement_is_needed() {
    let e = Emulator::start().await;
    let root = std::env::temp_dir().join(format!("drctl-iam-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let printed_policy = |dir: &std::path::Path, use_: &str| {
        let (code, printed) = drctl(dir, &e, &e.admin, &["iam-policy", "--for", use_]);
        assert_eq!(code, 0, "{printed}");
        // The policy is stdout; stderr (after it) may carry the topology's warnings.
        serde_json::Deserializer::from_str(printed.trim()).into_iter::<Value>().next().unwrap().unwrap()
    };
    let sids = |p: &Value| -> Vec<String> {
        p["Statement"].as_array().unwrap().iter().map(|s| s["Sid"].as_str().unwrap().to_string()).collect()
    };

    // The whole restore policy: every kind of restore works.
    let dir = root.join("restore");
    std::fs::create_dir_all(&dir).unwrap();
    let (yaml, at) = restore_estate(&e, "r").await;
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
    let restore = printed_policy(&dir, "restore");
    assert_eq!(
        sids(&restore),
        [
            "RdsRestoreInstances",
            "RdsRestoreClusters",
            "RdsReplaceInstances",
            "RdsReplaceClusters",
            "S3RestoreReadVersions",
            "S3RestoreWriteObjects",
            "S3RestoreDestinations",
            "S3RestoreTestScratch"
        ]
    );
    e.set_policy(&for_the_emulator(&restore)).await;
    let (ok, out) = run_restores(&dir, &e, "r", &at);
    assert!(ok && !out.contains(REFUSED), "with the restore policy every restore works:\n{out}");
    assert_eq!(body(&e, "drctl-restore-r", "copy/img/a").await.as_deref(), Some("a v1"));
    assert_eq!(body(&e, "assets-a-r", "img/a").await.as_deref(), Some("a v1"), "restored in place");
    assert_eq!(body(&e, "assets-a-r", "img/README-pay").await, None, "hidden behind a marker");
    assert!(out.contains("restored from ledger-a-r") && out.contains("restored from orders-r"), "{out}");
    assert!(out.contains("ledger-a-r-replaced-") && out.contains("is stopped: it takes no write"), "{out}");
    assert!(out.contains("vault-b-r: renamed aside to vault-b-r-replaced-"), "{out}");
    assert!(out.contains("added orders-r-restored-swap-1 to orders-r-restored-swap"), "{out}");
    assert!(out.contains("renamed the old cluster orders-r to orders-r-replaced-"), "{out}");
    assert!(out.contains("renamed orders-r-restored-swap to orders-r"), "{out}");
    // Nothing broader: no other bucket may be made, no other bucket's versions read.
    let sdk = sdk_as(&e.moto, (&e.user.0, &e.user.1)).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&e.moto.endpoint()), None);
    assert!(s3.create_bucket().bucket("elsewhere-r").send().await.is_err(), "another bucket is refused");
    assert!(s3.list_object_versions().bucket("assets-b-r").send().await.is_err(), "a replica is not read");

    // The erase policy alone: every version under the prefix, on both buckets.
    let erase = printed_policy(&dir, "erase");
    assert_eq!(sids(&erase), ["S3EraseVersions"]);
    assert_eq!(
        erase["Statement"][0]["Resource"],
        json!([
            "arn:aws:s3:::assets-a-r",
            "arn:aws:s3:::assets-a-r/users-*",
            "arn:aws:s3:::assets-b-r",
            "arn:aws:s3:::assets-b-r/users-*"
        ])
    );
    e.set_policy(&for_the_emulator(&erase)).await;
    let (ok, out) = run_erase(&dir, &e);
    assert!(ok && !out.contains(REFUSED), "with the erase policy the erasure is verified:\n{out}");
    for b in ["assets-a-r", "assets-b-r"] {
        assert_eq!(versions_under(&e, b, "users-cust-1-").await, 0, "no version left in {b}");
    }
    assert!(
        s3.delete_object().bucket("assets-a-r").key("img/a").version_id("x").send().await.is_err(),
        "only versions under the erasure's prefixes may be destroyed"
    );

    // Each statement removed: some call is refused, in plain words.
    for (use_, all) in [("restore", sids(&restore)), ("erase", sids(&erase))] {
        for (n, sid) in all.iter().enumerate() {
            let tag = format!("{}{n}", &use_[..1]);
            let dir = root.join(&tag);
            std::fs::create_dir_all(&dir).unwrap();
            let (yaml, at) = restore_estate(&e, &tag).await;
            std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
            let mut p = printed_policy(&dir, use_);
            p["Statement"].as_array_mut().unwrap().retain(|s| s["Sid"] != sid.as_str());
            if p["Statement"].as_array().unwrap().is_empty() {
                // IAM refuses a policy with no statement: one that allows nothing drctl calls.
                p["Statement"] = json!([{ "Effect": "Allow", "Action": ["s3:GetBucketTagging"], "Resource": ["arn:aws:s3:::none"] }]);
            }
            e.set_policy(&for_the_emulator(&p)).await;
            let (ok, out) = if use_ == "restore" { run_restores(&dir, &e, &tag, &at) } else { run_erase(&dir, &e) };
            assert!(!ok, "without {sid} everything still worked:\n{out}");
            assert!(out.contains(REFUSED), "without {sid} the refusal says what is missing in plain words:\n{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
