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

    // Each statement removed: some call is refused, in plain words.
    for (n, sid) in sids.iter().enumerate() {
        let tag = format!("s{n}");
        let dir = root.join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("drctl.yaml"), estate(&e, &tag).await).unwrap();
        let (_, printed) = drctl(&dir, &e, &e.admin, &["iam-policy", "--for", "serve"]);
        let mut p: Value = serde_json::from_str(printed.trim()).unwrap();
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
