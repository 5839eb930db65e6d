//! Declaring a disaster on an AWS estate (RDS, S3, Route53) served by moto,
//! through the binary and the real AWS SDK.

use drctl_aws::s3::{self, client_for, Bucket};
use drctl_testkit::Moto;
use serde_json::Value;

/// Runs drctl in `dir` against moto with test credentials: (exit code, stdout, stderr).
mod aws;

fn run_drctl(dir: &std::path::Path, moto: &Moto, args: &[&str]) -> (i32, String, String) {
    run_drctl_as(dir, moto, ("testing", "testing"), args)
}

fn run_drctl_as(dir: &std::path::Path, moto: &Moto, keys: (&str, &str), args: &[&str]) -> (i32, String, String) {
    aws::outcome(aws::drctl(dir, &moto.endpoint(), keys).args(args))
}

/// An empty folder of this test's own under the temp dir.
fn fresh_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("drctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zone_failover_promotes_the_rds_replica_switches_dns_and_turns_replication_around() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    aws::rds_pair(&rds, "ledger-a", "ledger-b").await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = r53.create_hosted_zone().name("shop.example.").caller_reference("t").send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    let mk = |zone: &str, name: &str| Bucket {
        zone: zone.into(),
        name: name.into(),
        endpoint: Some(moto.endpoint()),
        client: client_for(&sdk, Some(&moto.endpoint()), None),
    };
    let (a, b) = (mk("az1", "aws-assets-az1"), mk("az2", "aws-assets-az2"));
    for x in [&a, &b] {
        x.client.create_bucket().bucket(&x.name).send().await.unwrap();
    }

    let dir = fresh_dir("declare-aws");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
objectives: {{ tier-0: {{ rpo: 1m, rto: 10m }} }}
datastores:
  - name: ledger-db
    kind: rds-instance
    primary:  {{ zone: az1, instance: ledger-a }}
    replicas: [ {{ zone: az2, instance: ledger-b }} ]
  - name: assets
    kind: s3
    endpoint: \"{ep}\"
    primary:  {{ zone: az1, bucket: aws-assets-az1 }}
    replicas: [ {{ zone: az2, bucket: aws-assets-az2 }} ]
    replication: {{ by: drctl, every: 1m }}
services:
  - name: pay
    tier: tier-0
    zones: [az1, az2]
    depends_on: [ledger-db, assets]
    route: {{ kind: route53, zone_id: {zone_id}, name: pay.shop.example., ttl: 30, records: {{ az1: 10.0.1.10, az2: 10.0.2.10 }} }}
",
            ep = moto.endpoint()
        ),
    )
    .unwrap();
    let drctl = |args: &[&str]| run_drctl(&dir, &moto, args);

    let (code, out, err) = drctl(&["declare", "--zone", "az1", "--reason", "us-east-1a outage", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().to_string();

    let records = r53.list_resource_record_sets().hosted_zone_id(&zone_id).send().await.unwrap();
    let pay = records.resource_record_sets().iter().find(|r| r.name() == "pay.shop.example.").unwrap();
    let values: Vec<&str> = pay.resource_records().iter().map(|r| r.value()).collect();
    assert_eq!(values, ["10.0.2.10"], "only the surviving zone answers");

    let (_, show, _) = drctl(&["show", &id, "--output", "json"]);
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["state"], "succeeded");
    let steps: Vec<(&str, &str)> = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert!(steps.iter().all(|(_, st)| *st == "succeeded"), "{steps:?}");
    // moto accepts PromoteReadReplica but never clears the source field, so
    // the evidence is drctl's own journal of the call it made.
    let ledger = show["steps"].as_array().unwrap().iter().find(|s| s["id"] == "ledger-db/failover").unwrap();
    assert_eq!(ledger["note"], "ledger-b promoted (was a replica of ledger-a)");
    let pay_note = show["steps"].as_array().unwrap().iter().find(|s| s["id"] == "pay/failover").unwrap()["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pay_note.contains("pay.shop.example. answers 10.0.2.10 (INSYNC)"), "{pay_note}");

    // Replication now copies from the promoted bucket in az2.
    s3::put_bytes(&b, "written-after-failover.txt", b"new".to_vec()).await.unwrap();
    let (code, out, err) = drctl(&["replicate", "--once", "--output", "json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(s3::get_bytes(&a, "written-after-failover.txt").await.unwrap(), b"new");

    // Status measures the S3 lag from the promoted bucket now.
    let (_, status, _) = drctl(&["status", "--output", "json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    let assets = status["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "assets").unwrap();
    assert_eq!(assets["primary_zone"], "az2", "{assets}");
    let ledger = status["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "ledger-db").unwrap();
    assert_eq!(ledger["primary_zone"], "az2", "status measures from the promoted instance: {ledger}");

    // Idempotent: declaring the same again changes nothing and succeeds.
    let (code, out, err) = drctl(&["declare", "--zone", "az1", "--reason", "again", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_target_moves_its_writer_and_a_wrong_hosted_zone_is_refused_up_front() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    aws::aurora_cluster(&rds, "billing", &[("billing-1", "us-east-1a"), ("billing-2", "us-east-1b")]).await;
    let dir = fresh_dir("declare-cluster");
    let topology = |zone_id: &str| {
        format!(
            "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
datastores:
  - {{ name: billing-db, kind: rds-cluster, cluster: billing }}
services:
  - name: pay
    zones: [az1, az2]
    depends_on: [billing-db]
    route: {{ kind: route53, zone_id: {zone_id}, name: pay.shop.example., records: {{ az1: 10.0.1.10, az2: 10.0.2.10 }} }}
"
        )
    };
    let drctl = |args: &[&str]| run_drctl(&dir, &moto, args);
    let writer = |members: &aws_sdk_rds::operation::describe_db_clusters::DescribeDbClustersOutput| {
        members.db_clusters()[0]
            .db_cluster_members()
            .iter()
            .find(|m| m.is_cluster_writer() == Some(true))
            .and_then(|m| m.db_instance_identifier().map(str::to_string))
    };

    std::fs::write(dir.join("drctl.yaml"), topology("ZDOESNOTEXIST")).unwrap();
    let (code, out, err) = drctl(&["declare", "--target", "billing-db", "--reason", "move the writer", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("hosted zone ZDOESNOTEXIST"), "{out}");
    let now = rds.describe_db_clusters().db_cluster_identifier("billing").send().await.unwrap();
    assert_eq!(writer(&now).as_deref(), Some("billing-1"), "a refused run changes nothing");

    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = r53.create_hosted_zone().name("shop.example.").caller_reference("c").send().await.unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string();
    std::fs::write(dir.join("drctl.yaml"), topology(&zone_id)).unwrap();
    let (code, out, err) = drctl(&["declare", "--target", "billing-db", "--reason", "move the writer", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let now = rds.describe_db_clusters().db_cluster_identifier("billing").send().await.unwrap();
    assert_eq!(writer(&now).as_deref(), Some("billing-2"), "the writer moved out of az1");

    // A zone declared on a fresh state, with no `status` ever run: where the
    // writer is comes from AWS at declare time, and it is moved out.
    let (code, out, err) =
        drctl(&["declare", "--zone", "az2", "--reason", "az2 lost", "--yes", "--state", "sqlite://fresh.db"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("billing's writer is in az2 now (asked of AWS)"), "{out}");
    assert!(out.contains("billing-db/failover"), "the plan moves the writer: {out}");
    let now = rds.describe_db_clusters().db_cluster_identifier("billing").send().await.unwrap();
    assert_eq!(writer(&now).as_deref(), Some("billing-1"), "the writer left the lost zone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max_lag` applies to `rds-instance` replicas: the ReplicaLag AWS
/// reports (CloudWatch, here moto's) over it refuses the run, and so does
/// an unknown lag; `--force` promotes anyway.
#[tokio::test(flavor = "multi_thread")]
async fn an_rds_replica_behind_max_lag_is_refused_unless_forced() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    aws::rds_pair(&rds, "ledger-a", "ledger-b").await;
    let dir = fresh_dir("rds-lag");
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1
zones:
  - { name: az1, region: us-east-1, aws_zone: us-east-1a }
  - { name: az2, region: us-east-1, aws_zone: us-east-1b }
datastores:
  - name: ledger-db
    kind: rds-instance
    primary:  { zone: az1, instance: ledger-a }
    replicas: [ { zone: az2, instance: ledger-b } ]
    failover: { max_lag: 30s }
",
    )
    .unwrap();
    let drctl = |args: &[&str]| run_drctl(&dir, &moto, args);
    let (code, out, _) = drctl(&["declare", "--zone", "az1", "--reason", "test", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the lag of ledger-b is unknown"), "{out}");

    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    cw.put_metric_data()
        .namespace("AWS/RDS")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("ReplicaLag")
                .dimensions(
                    aws_sdk_cloudwatch::types::Dimension::builder()
                        .name("DBInstanceIdentifier")
                        .value("ledger-b")
                        .build(),
                )
                .value(120.0)
                .timestamp(std::time::SystemTime::now().into())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (code, out, _) = drctl(&["declare", "--zone", "az1", "--reason", "test", "--yes"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ledger-b is 120s behind (ReplicaLag), over max_lag 30s"), "{out}");
    let (code, out, err) = drctl(&["declare", "--zone", "az1", "--reason", "test", "--yes", "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two buckets and S3's own replication from the first into the second
/// (its rule enabled, with `ROLE`); the second is versioned when asked
/// (S3 replicates only between versioned buckets).
const ROLE: &str = "arn:aws:iam::123456789012:role/s3-replication";

async fn native_pair(s3c: &aws_sdk_s3::Client, from: &str, to: &str, version_to: bool) {
    use aws_sdk_s3::types::{
        Destination, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    };
    for b in [from, to] {
        s3c.create_bucket().bucket(b).send().await.unwrap();
    }
    for b in if version_to { vec![from, to] } else { vec![from] } {
        versioned(s3c, b).await;
    }
    let rule = ReplicationRule::builder()
        .id(format!("to-{to}"))
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("").build())
        .destination(Destination::builder().bucket(format!("arn:aws:s3:::{to}")).build().unwrap())
        .build()
        .unwrap();
    s3c.put_bucket_replication()
        .bucket(from)
        .replication_configuration(ReplicationConfiguration::builder().role(ROLE).rules(rule).build().unwrap())
        .send()
        .await
        .unwrap();
}

async fn versioned(s3c: &aws_sdk_s3::Client, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
}

/// The topology of one `by: s3` datastore on moto.
fn native_topology(moto: &Moto, primary: &str, replica: &str) -> String {
    format!(
        "version: 1
zones:
  - {{ name: az1, region: us-east-1, aws_zone: us-east-1a }}
  - {{ name: az2, region: us-east-1, aws_zone: us-east-1b }}
datastores:
  - name: assets
    kind: s3
    endpoint: \"{}\"
    primary: {{ zone: az1, bucket: {primary} }}
    replicas: [ {{ zone: az2, bucket: {replica} }} ]
    replication: {{ by: s3 }}
",
        moto.endpoint()
    )
}

/// `by: s3`: promoting a replica turns S3's own replication around (the
/// new primary replicates into the former one, the former's rules are
/// disabled), verified; a new primary that is not versioned is refused
/// before anything changes.
#[tokio::test(flavor = "multi_thread")]
async fn native_s3_replication_is_turned_around_by_the_failover() {
    use aws_sdk_s3::types::ReplicationRuleStatus;
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let s3c = client_for(&sdk, Some(&moto.endpoint()), None);
    native_pair(&s3c, "native-az1", "native-az2", false).await;
    let role = ROLE;
    let dir = fresh_dir("native-s3");
    std::fs::write(dir.join("drctl.yaml"), native_topology(&moto, "native-az1", "native-az2")).unwrap();
    let drctl = |args: &[&str]| run_drctl(&dir, &moto, args);
    let (code, out, _) = drctl(&["declare", "--target", "assets", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 1, "az2 is not versioned: refused: {out}");
    assert!(out.contains("native-az2 is not versioned"), "{out}");

    versioned(&s3c, "native-az2").await;
    let (code, out, err) = drctl(&["declare", "--target", "assets", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("turned around with role {role}")), "{out}");
    let id = out.lines().next().unwrap().trim();
    let (_, show, _) = drctl(&["show", id, "--output", "json"]);
    assert!(show.contains("native replication now runs from native-az2 into native-az1"), "{show}");
    let now = s3c.get_bucket_replication().bucket("native-az2").send().await.unwrap();
    let cfg = now.replication_configuration().unwrap();
    assert_eq!(cfg.role(), role);
    let to_az1 = cfg.rules().iter().find(|r| r.destination().map(|d| d.bucket()) == Some("arn:aws:s3:::native-az1"));
    assert_eq!(to_az1.map(|r| r.status().clone()), Some(ReplicationRuleStatus::Enabled), "{cfg:?}");
    let old = s3c.get_bucket_replication().bucket("native-az1").send().await.unwrap();
    assert!(
        old.replication_configuration().unwrap().rules().iter().all(|r| r.status() == &ReplicationRuleStatus::Disabled),
        "the former primary no longer replicates into the new one"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `by: s3` with credentials that may not configure replication: the
/// preflight says so, and nothing changes (moto enforcing IAM).
#[tokio::test(flavor = "multi_thread")]
async fn a_turnaround_the_credentials_cannot_make_is_refused_before_anything_changes() {
    use aws_sdk_s3::types::ReplicationRuleStatus;
    // moto checks nothing for the first 8 requests (the setup below), then enforces IAM.
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "8")]);
    let http = reqwest::Client::new();
    let iam = |params: Vec<(&'static str, String)>| {
        let (http, url) = (http.clone(), moto.endpoint());
        async move {
            let mut form = params;
            form.push(("Version", "2010-05-08".into()));
            // Unchecked while the budget lasts; the scope routes it to IAM.
            let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261202/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00";
            let r = http.post(url).header("authorization", auth).form(&form).send().await.unwrap();
            assert!(r.status().is_success(), "{:?}", r.text().await);
            r.text().await.unwrap()
        }
    };
    iam(vec![("Action", "CreateUser".into()), ("UserName", "ops".into())]).await;
    // Everything in S3 but configuring replication (moto files PUT ?replication under CreateBucket).
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":["s3:PutReplicationConfiguration","s3:CreateBucket"],"Resource":"*"}]}"#;
    iam(vec![
        ("Action", "PutUserPolicy".into()),
        ("UserName", "ops".into()),
        ("PolicyName", "no-replication-config".into()),
        ("PolicyDocument", policy.into()),
    ])
    .await;
    let keys = iam(vec![("Action", "CreateAccessKey".into()), ("UserName", "ops".into())]).await;
    let field =
        |name: &str| keys.split(&format!("<{name}>")).nth(1).and_then(|r| r.split('<').next()).unwrap().to_string();
    let (key, secret) = (field("AccessKeyId"), field("SecretAccessKey"));

    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let s3c = client_for(&sdk, Some(&moto.endpoint()), None);
    native_pair(&s3c, "denied-az1", "denied-az2", true).await;
    let dir = fresh_dir("native-denied");
    std::fs::write(dir.join("drctl.yaml"), native_topology(&moto, "denied-az1", "denied-az2")).unwrap();
    let (code, out, err) =
        run_drctl_as(&dir, &moto, (&key, &secret), &["declare", "--target", "assets", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 1, "refused by the preflight: {out}\n{err}");
    assert!(out.contains("may not configure replication on denied-az2"), "{out}\n{err}");
    // Nothing changed: the old rule still replicates, the new primary has none.
    let as_ops = client_for(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::from_keys(&key, &secret, None))
            .load()
            .await,
        Some(&moto.endpoint()),
        None,
    );
    let old = as_ops.get_bucket_replication().bucket("denied-az1").send().await.unwrap();
    assert!(old
        .replication_configuration()
        .unwrap()
        .rules()
        .iter()
        .all(|r| r.status() == &ReplicationRuleStatus::Enabled));
    assert!(as_ops.get_bucket_replication().bucket("denied-az2").send().await.is_err(), "no configuration on az2");
    let _ = std::fs::remove_dir_all(&dir);
}
